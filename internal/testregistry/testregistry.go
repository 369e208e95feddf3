package testregistry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // registers the "filesystem" storage driver
	"github.com/sirupsen/logrus"
)

// Registry is a running in-process registry.
type Registry struct {
	// Host is the registry's address, "127.0.0.1:PORT", as it appears in
	// image references.
	Host string
	// RootDir is the filesystem driver's root directory. Tests may read or
	// corrupt stored blobs there (see BlobPath).
	RootDir string
}

// Option configures Start.
type Option func(*options)

type options struct {
	middleware []func(http.Handler) http.Handler
}

// WithMiddleware puts mw in front of the registry's handler, to script faults
// (401, 404, 500, short bodies, ignored ranges) for some requests and pass the
// others through. Several middlewares wrap in the order given: the first one
// sees the request first.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(o *options) { o.middleware = append(o.middleware, mw) }
}

// Start runs a registry on 127.0.0.1 with filesystem storage under
// t.TempDir(), and stops it in t.Cleanup: the server and its connections are
// closed and its goroutines have ended when the cleanup returns.
//
// The registry logs through logrus's standard logger; Start discards that
// logger's output for the whole test binary, because the registry logs every
// 4xx answer at error level.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	reg, stop, err := Serve(t.TempDir(), o.middleware...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stopping the test registry: %v", err)
		}
	})
	return reg
}

// Serve runs a registry on 127.0.0.1 with filesystem storage under root,
// behind the middlewares (the first sees requests first), until stop is
// called: stop closes the server and its connections and returns once its
// goroutines have ended. Benchmarks use it; tests use Start.
func Serve(root string, middleware ...func(http.Handler) http.Handler) (reg *Registry, stop func() error, err error) {
	logrus.SetOutput(io.Discard)
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": root},
		// The purger would start a goroutine that outlives the test.
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	cfg.HTTP.Secret = "test"

	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	var h http.Handler = app
	for i := len(middleware) - 1; i >= 0; i-- {
		h = middleware[i](h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop = func() error {
		errs := []error{srv.Close()}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serving: %w", err))
		}
		errs = append(errs, app.Shutdown())
		cancel()
		return errors.Join(errs...)
	}
	return &Registry{Host: ln.Addr().String(), RootDir: root}, stop, nil
}

// BlobPath returns where the registry stores the content of the blob with
// digest dgst ("sha256:abcd..."): RootDir/docker/registry/v2/blobs/sha256/ab/abcd.../data.
// The file exists only once the blob has been pushed.
func (r *Registry) BlobPath(dgst string) string {
	alg, hex, _ := strings.Cut(dgst, ":")
	prefix := hex
	if len(prefix) > 2 {
		prefix = prefix[:2]
	}
	return filepath.Join(r.RootDir, "docker", "registry", "v2", "blobs", alg, prefix, hex, "data")
}
