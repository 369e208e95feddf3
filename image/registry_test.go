package image_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

func TestRegistryRoundTrip(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	tests := []struct {
		name string
		ref  string
		art  image.Artifact
	}{
		{"image", "docker://" + reg.Host + "/test/image:v1", image.Artifact{Image: randomImage(t)}},
		{"bare reference", reg.Host + "/test/bare:v1", image.Artifact{Image: randomImage(t)}},
		{"multi-platform index", "docker://" + reg.Host + "/test/index:v1", image.Artifact{Index: randomIndex(t)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := mustParse(t, tt.ref)
			if err := image.Write(t.Context(), r, tt.art, anonymous()); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got, err := image.Read(t.Context(), r, anonymous())
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if (got.Index != nil) != (tt.art.Index != nil) {
				t.Fatalf("Read gave Image %v, Index %v; wrote Image %v, Index %v", got.Image, got.Index, tt.art.Image, tt.art.Index)
			}
			if g, w := artifactDigest(t, got), artifactDigest(t, tt.art); g != w {
				t.Errorf("read digest %s, wrote %s", g, w)
			}
			byDigest := mustParse(t, "docker://"+reg.Host+"/"+r.Name.Context().RepositoryStr()+"@"+artifactDigest(t, tt.art).String())
			if _, err := image.Read(t.Context(), byDigest, anonymous()); err != nil {
				t.Errorf("Read by digest: %v", err)
			}
		})
	}
}

// faultRegistry answers 401 under /v2/unauth/, 403 under /v2/denied/ and 500
// under /v2/broken/, and passes everything else to a real registry.
func faultRegistry(t *testing.T) *testregistry.Registry {
	return testregistry.Start(t, testregistry.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fail := func(status int, code string) {
				w.Header().Set("Content-Type", "application/json")
				if status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
				}
				w.WriteHeader(status)
				w.Write([]byte(`{"errors":[{"code":"` + code + `","message":"scripted"}]}`))
			}
			switch {
			case strings.HasPrefix(r.URL.Path, "/v2/unauth/"):
				fail(http.StatusUnauthorized, "UNAUTHORIZED")
			case strings.HasPrefix(r.URL.Path, "/v2/denied/"):
				fail(http.StatusForbidden, "DENIED")
			case strings.HasPrefix(r.URL.Path, "/v2/broken/"):
				w.WriteHeader(http.StatusInternalServerError)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}))
}

func TestRegistryErrors(t *testing.T) {
	t.Parallel()
	reg := faultRegistry(t)
	tests := []struct {
		name    string
		ref     string
		write   bool
		want    error // nil: neither sentinel
		wantMsg string
		status  int
	}{
		{name: "401 read", ref: "/unauth/x:v1", want: image.ErrUnauthorized, wantMsg: "no credentials were sent (none found for " + reg.Host + "): run `lazydisk login " + reg.Host + "`", status: 401},
		{name: "401 write", ref: "/unauth/x:v1", write: true, want: image.ErrUnauthorized, wantMsg: "refused credentials for repo unauth/x (401)", status: 401},
		{name: "403 read", ref: "/denied/x:v1", want: image.ErrUnauthorized, wantMsg: "denied access to repo denied/x (403)", status: 403},
		{name: "404 tag", ref: "/missing/x:v1", want: image.ErrNotFound, wantMsg: `has no "v1" in repo missing/x (404)`, status: 404},
		{name: "404 digest", ref: "/missing/x@" + testDigest, want: image.ErrNotFound, wantMsg: testDigest, status: 404},
		{name: "500 read", ref: "/broken/x:v1", wantMsg: "failed with 500 Internal Server Error: try again later", status: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := mustParse(t, "docker://"+reg.Host+tt.ref)
			var err error
			if tt.write {
				err = image.Write(t.Context(), r, image.Artifact{Image: randomImage(t)}, anonymous())
			} else {
				_, err = image.Read(t.Context(), r, anonymous())
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			for _, sentinel := range []error{image.ErrUnauthorized, image.ErrNotFound} {
				if errors.Is(err, sentinel) != (sentinel == tt.want) {
					t.Errorf("errors.Is(%q, %v) = %t", err, sentinel, !(sentinel == tt.want))
				}
			}
			var terr *transport.Error
			if !errors.As(err, &terr) || terr.StatusCode != tt.status {
				t.Errorf("error %q does not wrap a transport error with status %d", err, tt.status)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestInsecure reads through a TLS proxy with a self-signed certificate:
// only image.WithInsecureTLS lets the read through.
func TestInsecure(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	img := randomImage(t)
	if err := image.Write(t.Context(), mustParse(t, reg.Host+"/test/tls:v1"), image.Artifact{Image: img}, anonymous()); err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: reg.Host}))
	t.Cleanup(proxy.Close)
	host := strings.TrimPrefix(proxy.URL, "https://")
	r := mustParse(t, host+"/test/tls:v1")

	if _, err := image.Read(t.Context(), r, anonymous()); err == nil {
		t.Error("Read through a self-signed TLS proxy succeeded without Insecure")
	}
	got, err := image.Read(t.Context(), r, anonymous(), image.WithInsecureTLS())
	if err != nil {
		t.Fatalf("Read with Insecure: %v", err)
	}
	if g, w := digestOf(t, got.Image), digestOf(t, img); g != w {
		t.Errorf("read digest %s, wrote %s", g, w)
	}
}
