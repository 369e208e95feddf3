package blob_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// TestReadAt runs the same reads against a registry blob, a layout blob and a
// file, and checks the bytes, the io.ReaderAt errors and the Stats.
func TestReadAt(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	const size = 300_007
	kinds := []struct {
		name string
		open func(t *testing.T, data []byte) blob.Blob
	}{
		{"registry", func(t *testing.T, data []byte) blob.Blob {
			ref, desc := pushBlob(t, reg, "test/readat", data)
			b, err := blob.Open(t.Context(), ref, desc, anonymous())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return b
		}},
		{"layout", func(t *testing.T, data []byte) blob.Blob {
			ref, desc := writeLayout(t, data)
			b, err := blob.Open(t.Context(), ref, desc, anonymous())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return b
		}},
		{"file", func(t *testing.T, data []byte) blob.Blob {
			path := filepath.Join(t.TempDir(), "blob")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := blob.OpenFile(path)
			if err != nil {
				t.Fatalf("OpenFile: %v", err)
			}
			return b
		}},
	}
	for i, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			data := randomBytes(size, uint64(i))
			b := k.open(t, data)
			checkReads(t, b, data)
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n, err := b.ReadAt(make([]byte, 10), 0); n != 0 || !errors.Is(err, fs.ErrClosed) {
				t.Errorf("ReadAt after Close = %d, %v; want 0, fs.ErrClosed", n, err)
			}
		})
	}
}

// read is one ReadAt and what it must return.
type read struct {
	name    string
	off     int64
	n       int
	wantN   int
	wantEOF bool
}

// checkReads reads b at its start, middle, last byte, across and past its
// end, with zero lengths, and from several goroutines at once, and checks
// the Stats: one request per read that needs bytes, and the bytes read.
func checkReads(t *testing.T, b blob.Blob, data []byte) {
	t.Helper()
	size := int64(len(data))
	if b.Size() != size {
		t.Fatalf("Size() = %d, want %d", b.Size(), size)
	}
	reads := []read{
		{name: "start", off: 0, n: 100, wantN: 100},
		{name: "middle", off: size / 2, n: 4096, wantN: 4096},
		{name: "last byte", off: size - 1, n: 1, wantN: 1},
		{name: "whole", off: 0, n: int(size), wantN: int(size)},
		{name: "across the end", off: size - 10, n: 100, wantN: 10, wantEOF: true},
		{name: "at the end", off: size, n: 10, wantEOF: true},
		{name: "past the end", off: size + 1000, n: 10, wantEOF: true},
		{name: "zero length", off: 10, n: 0},
		{name: "zero length at the end", off: size, n: 0, wantEOF: true},
	}
	// Random reads that run at once from several goroutines.
	rng := rand.New(rand.NewPCG(1, 2))
	const goroutines, perGoroutine = 8, 16
	var concurrent [goroutines][]read
	for g := range concurrent {
		for range perGoroutine {
			off := rng.Int64N(size)
			n := 1 + rng.IntN(64<<10)
			concurrent[g] = append(concurrent[g], read{off: off, n: n, wantN: int(min(int64(n), size-off)), wantEOF: int64(n) > size-off})
		}
	}

	t.Run("reads", func(t *testing.T) {
		for _, r := range reads {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				if err := checkRead(b, data, r); err != nil {
					t.Error(err)
				}
			})
		}
		t.Run("concurrent", func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			errs := make(chan error, goroutines*perGoroutine)
			for _, rs := range concurrent {
				wg.Go(func() {
					for _, r := range rs {
						if err := checkRead(b, data, r); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	})
	if n, err := b.ReadAt(make([]byte, 10), -1); n != 0 || err == nil || err == io.EOF {
		t.Errorf("ReadAt at -1 = %d, %v; want an error", n, err)
	}

	var want blob.Stats
	for _, r := range append(reads, concurrentReads(concurrent[:])...) {
		if r.wantN > 0 {
			want.Requests++
			want.Bytes += int64(r.wantN)
		}
	}
	if got := b.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func concurrentReads(c [][]read) []read {
	var all []read
	for _, rs := range c {
		all = append(all, rs...)
	}
	return all
}

// checkRead does r on b, whose content is data.
func checkRead(b blob.Blob, data []byte, r read) error {
	p := bytes.Repeat([]byte{0xa5}, r.n)
	n, err := b.ReadAt(p, r.off)
	if n != r.wantN || (err == io.EOF) != r.wantEOF || (err != nil && err != io.EOF) {
		return fmt.Errorf("ReadAt(%d bytes, %d) = %d, %v; want %d, EOF %t", r.n, r.off, n, err, r.wantN, r.wantEOF)
	}
	if n > 0 && !bytes.Equal(p[:n], data[r.off:r.off+int64(n)]) {
		return fmt.Errorf("ReadAt(%d bytes, %d) read other bytes than the blob's", r.n, r.off)
	}
	return nil
}

// writeLayout writes an image whose one layer is data to a new OCI layout
// and returns the layout's reference and the layer's descriptor.
func writeLayout(t testing.TB, data []byte) (image.Reference, v1.Descriptor) {
	t.Helper()
	layer := static.NewLayer(data, types.OCILayer)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustParse(t, "oci:"+filepath.Join(t.TempDir(), "layout"))
	if err := image.Write(t.Context(), ref, image.Artifact{Image: img}, anonymous()...); err != nil {
		t.Fatalf("writing %s: %v", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, m.Layers[0]
}

// TestRangeIgnored reads from a registry that answers range requests with
// the whole blob.
func TestRangeIgnored(t *testing.T) {
	t.Parallel()
	var stripped atomic.Int64
	reg := testregistry.Start(t, testregistry.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Range") != "" {
				r.Header.Del("Range")
				stripped.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}))
	const size = 4 << 20
	data := randomBytes(size, 7)
	ref, desc := pushBlob(t, reg, "test/norange", data)
	b, err := blob.Open(t.Context(), ref, desc, anonymous())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()

	reads := []read{
		{name: "start", off: 0, n: 100, wantN: 100},
		{name: "middle", off: size / 2, n: 4096, wantN: 4096},
		{name: "last byte", off: size - 1, n: 1, wantN: 1},
		{name: "across the end", off: size - 10, n: 100, wantN: 10, wantEOF: true},
	}
	var want blob.Stats
	for _, r := range reads {
		if err := checkRead(b, data, r); err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
		want.Requests++
		want.RangeIgnored++
		// The body is read up to the bytes asked, not to its end.
		want.Bytes += r.off + int64(r.wantN)
	}
	if got := b.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if got := stripped.Load(); got != int64(len(reads)) {
		t.Errorf("the registry ignored %d ranges, want %d", got, len(reads))
	}
}

// faultWriter changes a 206 answer on its way out: its Content-Range, or its
// body, cut to half of each write.
type faultWriter struct {
	http.ResponseWriter
	contentRange *string // nil: keep; "": delete
	short        bool
}

func (w *faultWriter) WriteHeader(code int) {
	if code == http.StatusPartialContent && w.contentRange != nil {
		if *w.contentRange == "" {
			w.Header().Del("Content-Range")
		} else {
			w.Header().Set("Content-Range", *w.contentRange)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if w.short {
		if _, err := w.ResponseWriter.Write(p[:len(p)/2]); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func TestRegistryErrors(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	// The fault of each repository, for blob GETs only, so pushes work.
	reg := testregistry.Start(t, testregistry.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				next.ServeHTTP(w, r)
				return
			}
			repo := strings.Split(r.URL.Path, "/")[2]
			switch repo {
			case "unauth":
				w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
				w.WriteHeader(http.StatusUnauthorized)
			case "denied":
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				w.Write([]byte(`{"errors":[{"code":"DENIED","message":"scripted"}]}`))
			case "broken":
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte("boom\n<html>  second line</html>\n" + strings.Repeat("x", 10000)))
			case "norange":
				next.ServeHTTP(&faultWriter{ResponseWriter: w, contentRange: str("")}, r)
			case "badrange":
				next.ServeHTTP(&faultWriter{ResponseWriter: w, contentRange: str("bytes 5-14/*")}, r)
			case "badtotal":
				next.ServeHTTP(&faultWriter{ResponseWriter: w, contentRange: str("bytes 0-9/12345")}, r)
			case "short":
				next.ServeHTTP(&faultWriter{ResponseWriter: w, short: true}, r)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}))
	data := randomBytes(1000, 3)
	tests := []struct {
		repo     string
		desc     func(v1.Descriptor) v1.Descriptor
		want     error
		wantMsg  []string
		status   int // of the *transport.Error it wraps, if any
		wantRead int
	}{
		{repo: "unauth", want: image.ErrUnauthorized, wantMsg: []string{"refused credentials for repo unauth/x (401)"}, status: 401},
		{repo: "denied", want: image.ErrUnauthorized, wantMsg: []string{"denied access to repo denied/x (403)"}, status: 403},
		{repo: "missing", desc: func(d v1.Descriptor) v1.Descriptor {
			d.Digest.Hex = strings.Repeat("0", 64)
			return d
		}, want: image.ErrNotFound, wantMsg: []string{"has no blob sha256:0000", "repo missing/x (404)"}, status: 404},
		{repo: "broken", wantMsg: []string{"500 Internal Server Error: boom <html> second line</html> xxx", "try again later"}, status: 500},
		{repo: "norange", want: blob.ErrInvalidResponse, wantMsg: []string{`with Content-Range ""`}},
		{repo: "badrange", want: blob.ErrInvalidResponse, wantMsg: []string{`range bytes=0-9 with Content-Range "bytes 5-14/*"`}},
		{repo: "badtotal", want: blob.ErrSizeMismatch, wantMsg: []string{"says the blob is 12345 bytes, but its descriptor says 1000"}},
		{repo: "size", desc: func(d v1.Descriptor) v1.Descriptor {
			d.Size++
			return d
		}, want: blob.ErrSizeMismatch, wantMsg: []string{"says the blob is 1000 bytes, but its descriptor says 1001"}},
		{repo: "short", want: io.ErrUnexpectedEOF, wantMsg: []string{"broke off after 5 of 10 bytes"}, wantRead: 5},
	}
	for _, tt := range tests {
		t.Run(tt.repo, func(t *testing.T) {
			t.Parallel()
			ref, desc := pushBlob(t, reg, tt.repo+"/x", data)
			if tt.desc != nil {
				desc = tt.desc(desc)
			}
			// One attempt: the errors as a request gets them (retries are
			// tested through the fault proxy, in package disk).
			b, err := blob.Open(t.Context(), ref, desc, anonymous(), blob.WithRetry(blob.RetryPolicy{Attempts: 1}))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer b.Close()
			n, err := b.ReadAt(make([]byte, 10), 0)
			if err == nil || n != tt.wantRead {
				t.Fatalf("ReadAt = %d, %v; want %d and an error", n, err, tt.wantRead)
			}
			t.Logf("error: %v", err)
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %q is not %v", err, tt.want)
			}
			for _, other := range []error{image.ErrUnauthorized, image.ErrNotFound, blob.ErrInvalidResponse, blob.ErrSizeMismatch, io.EOF} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %q is %v", err, other)
				}
			}
			for _, msg := range tt.wantMsg {
				if !strings.Contains(err.Error(), msg) {
					t.Errorf("error %q does not say %q", err, msg)
				}
			}
			if strings.Contains(err.Error(), "\n") || len(err.Error()) > 500 {
				t.Errorf("error is not one short line: %q", err)
			}
			var terr *transport.Error
			if got := errors.As(err, &terr); got != (tt.status != 0) || (got && terr.StatusCode != tt.status) {
				t.Errorf("error %q wraps a transport error: %t, want one with status %d", err, got, tt.status)
			}
			if got := b.Stats().Requests; got != 1 {
				t.Errorf("Stats().Requests = %d, want 1", got)
			}
		})
	}
}

// staticKeychain gives auth for host and nothing for other registries.
type staticKeychain struct {
	host string
	auth authn.Authenticator
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.host {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

// TestRedirect reads from a registry that wants credentials and redirects
// blob GETs to a storage host with a signed URL, as registries backed by
// object storage do: the credentials must not reach the storage host, and
// the signature must not appear in errors.
func TestRedirect(t *testing.T) {
	t.Parallel()
	data := randomBytes(50_000, 5)
	var storageAuth, storageGets atomic.Int64
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		storageGets.Add(1)
		if r.Header.Get("Authorization") != "" {
			storageAuth.Add(1)
		}
		if r.URL.Query().Get("X-Signature") != "sekrit" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "storage broke", http.StatusInternalServerError)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(storage.Close)
	// Another host name for the same server, so the redirect crosses hosts.
	storageURL := strings.Replace(storage.URL, "127.0.0.1", "localhost", 1)

	const user, pass = "user", "pass"
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	reg := testregistry.Start(t, testregistry.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != wantAuth {
				w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				target := storageURL + "/storage?X-Signature=sekrit"
				if strings.HasPrefix(r.URL.Path, "/v2/fail/") {
					target += "&fail=1"
				}
				if strings.HasPrefix(r.URL.Path, "/v2/unsigned/") {
					target = storageURL + "/storage?X-Signature=wrong"
				}
				http.Redirect(w, r, target, http.StatusTemporaryRedirect)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	basic := &authn.Basic{Username: user, Password: pass}
	withAuth := []image.Option{image.WithKeychain(staticKeychain{host: reg.Host, auth: basic})}

	tests := []struct {
		repo    string
		o       []image.Option
		want    error
		wantMsg []string
	}{
		{repo: "ok"},
		{repo: "anonymous", o: anonymous(), want: image.ErrUnauthorized, wantMsg: []string{"refused credentials"}},
		{repo: "fail", want: errAny, wantMsg: []string{"500 Internal Server Error: storage broke", "(redirected from registry " + reg.Host + ")"}},
		{repo: "unsigned", want: image.ErrUnauthorized, wantMsg: []string{"403 Forbidden: bad signature", "(redirected from registry " + reg.Host + ")"}},
	}
	for _, tt := range tests {
		t.Run(tt.repo, func(t *testing.T) {
			t.Parallel()
			ref, desc := pushBlob(t, reg, tt.repo+"/x", data, remote.WithAuth(basic))
			o := withAuth
			if tt.o != nil {
				o = tt.o
			}
			b, err := blob.Open(t.Context(), ref, desc, o)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer b.Close()
			before := storageGets.Load()
			p := make([]byte, 1000)
			n, err := b.ReadAt(p, 20_000)
			if tt.want == nil {
				if err != nil || n != len(p) || !bytes.Equal(p, data[20_000:21_000]) {
					t.Fatalf("ReadAt = %d, %v; want %d bytes of the blob", n, err, len(p))
				}
				if storageGets.Load() == before {
					t.Errorf("the read did not go to the storage host")
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadAt = %d, nil; want an error", n)
			}
			t.Logf("error: %v", err)
			if tt.want != errAny && !errors.Is(err, tt.want) {
				t.Errorf("error %q is not %v", err, tt.want)
			}
			for _, msg := range tt.wantMsg {
				if !strings.Contains(err.Error(), msg) {
					t.Errorf("error %q does not say %q", err, msg)
				}
			}
			if strings.Contains(err.Error(), "sekrit") || strings.Contains(err.Error(), pass) {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
	t.Cleanup(func() {
		if got := storageAuth.Load(); got != 0 {
			t.Errorf("the storage host got credentials in %d requests", got)
		}
	})
}

// errAny stands for an error that matches no sentinel.
var errAny = errors.New("any error")

func TestContext(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := randomBytes(1000, 9)
	ref, desc := pushBlob(t, reg, "test/ctx", data)
	layoutRef, layoutDesc := writeLayout(t, data)
	for _, tt := range []struct {
		name string
		ref  image.Reference
		desc v1.Descriptor
	}{{"registry", ref, desc}, {"layout", layoutRef, layoutDesc}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			b, err := blob.Open(ctx, tt.ref, tt.desc, anonymous())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer b.Close()
			if _, err := b.ReadAt(make([]byte, 10), 0); err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			cancel()
			if _, err := b.ReadAt(make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
				t.Errorf("ReadAt after cancel: %v, want context.Canceled", err)
			}
			if _, err := blob.Open(ctx, tt.ref, tt.desc, anonymous()); !errors.Is(err, context.Canceled) {
				t.Errorf("Open with a canceled context: %v, want context.Canceled", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	data := randomBytes(1000, 11)
	ref, desc := writeLayout(t, data)
	withSize := func(n int64) v1.Descriptor { d := desc; d.Size = n; return d }
	tests := []struct {
		name    string
		ref     image.Reference
		desc    v1.Descriptor
		want    error // errAny: an error that is no sentinel
		wantMsg string
	}{
		{name: "layout larger", ref: ref, desc: withSize(desc.Size + 1), want: blob.ErrSizeMismatch, wantMsg: "is 1000 bytes, but its descriptor says 1001"},
		{name: "layout smaller", ref: ref, desc: withSize(desc.Size - 1), want: blob.ErrSizeMismatch, wantMsg: "is 1000 bytes, but its descriptor says 999"},
		{name: "negative size", ref: ref, desc: withSize(-1), want: errAny, wantMsg: "negative size"},
		{name: "layout without the blob", ref: ref, desc: v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}, Size: 1}, want: image.ErrNotFound, wantMsg: "has no blob sha256:1111"},
		{name: "no layout", ref: mustParse(t, "oci:"+filepath.Join(t.TempDir(), "none")), desc: desc, want: image.ErrNotFound, wantMsg: "has no blob"},
		{name: "path in digest", ref: ref, desc: v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: "../../index.json"}, Size: 1}, want: errAny, wantMsg: "is not ALGORITHM:HEX"},
		{name: "no digest", ref: ref, want: errAny, wantMsg: "is not ALGORITHM:HEX"},
		{name: "disk reference", ref: mustParse(t, "disk:/x.qcow2"), desc: desc, want: image.ErrUnsupported, wantMsg: "docker:// and oci: references only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := blob.Open(t.Context(), tt.ref, tt.desc, anonymous())
			if err == nil {
				b.Close()
				t.Fatal("no error")
			}
			if tt.want != errAny && !errors.Is(err, tt.want) {
				t.Errorf("error %q is not %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestOpenFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := blob.OpenFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenFile of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := blob.OpenFile(dir); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("OpenFile of a directory: %v, want an error", err)
	}
}

// TestFileShrank checks that a file that became shorter than its size when
// opened fails reads instead of reporting a short blob with io.EOF.
func TestFileShrank(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, randomBytes(1000, 13), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := blob.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := os.Truncate(path, 500); err != nil {
		t.Fatal(err)
	}
	n, err := b.ReadAt(make([]byte, 100), 450)
	if n != 50 || !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		t.Errorf("ReadAt across the new end = %d, %v; want 50, io.ErrUnexpectedEOF", n, err)
	}
}

// TestCloseConnections checks that Close drops the idle connections of the
// blob's transport, against a minimal registry that counts its connections.
func TestCloseConnections(t *testing.T) {
	t.Parallel()
	data := randomBytes(10_000, 15)
	layer := static.NewLayer(data, types.OCILayer)
	desc := descriptorOf(t, layer)
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
		case "/v2/test/close/blobs/" + desc.Digest.String():
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	ref := mustParse(t, strings.TrimPrefix(srv.URL, "http://")+"/test/close:v1")
	b, err := blob.Open(t.Context(), ref, desc, anonymous())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := checkRead(b, data, read{off: 100, n: 100, wantN: 100}); err != nil {
		t.Fatal(err)
	}
	if open.Load() == 0 {
		t.Fatal("no connection open after a read")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); open.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open 5s after Close", open.Load())
		}
	}
}
