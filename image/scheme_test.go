package image_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lazydisk/lazydisk/image"
)

// recorder is a RoundTripper that makes no connection: it records the scheme
// of each request that reaches it and fails it.
type recorder struct {
	mu      sync.Mutex
	schemes []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.schemes, req.URL.Scheme) {
		r.schemes = append(r.schemes, req.URL.Scheme)
	}
	return nil, errors.New("test transport: no network")
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := slices.Clone(r.schemes)
	slices.Sort(s)
	return s
}

// TestSchemePolicy checks which schemes reach the transport: plain HTTP only
// for loopback registries or with PlainHTTP, even for the private addresses
// and *.localhost names go-containerregistry would try over HTTP.
func TestSchemePolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref       string
		plainHTTP bool
		write     bool
		pull      bool // PullClient instead of Read
		want      []string
		refused   bool // the error says plain HTTP was refused
	}{
		{ref: "127.0.0.1:5000/x:y", want: []string{"http", "https"}},
		{ref: "127.0.0.2:5000/x:y", want: []string{"http", "https"}},
		{ref: "localhost:5000/x:y", want: []string{"http", "https"}},
		{ref: "localhost/x:y", want: []string{"http", "https"}},
		{ref: "[::1]:5000/x:y", want: []string{"http", "https"}},
		{ref: "10.0.0.5:5000/x:y", want: []string{"https"}, refused: true},
		{ref: "192.168.1.2/x:y", want: []string{"https"}, refused: true},
		{ref: "registry.localhost:5000/x:y", want: []string{"https"}, refused: true},
		{ref: "registry.local:5000/x:y", want: []string{"https"}},
		{ref: "10.0.0.5:5000/x:y", write: true, want: []string{"https"}, refused: true},
		{ref: "registry.example.com/x:y", want: []string{"https"}},
		{ref: "10.0.0.5:5000/x:y", plainHTTP: true, want: []string{"http", "https"}},
		{ref: "registry.example.com/x:y", plainHTTP: true, want: []string{"http", "https"}},
		{ref: "127.0.0.1:5000/x:y", pull: true, want: []string{"http", "https"}},
		{ref: "10.0.0.5:5000/x:y", pull: true, want: []string{"https"}, refused: true},
		{ref: "registry.example.com/x:y", pull: true, want: []string{"https"}},
		{ref: "10.0.0.5:5000/x:y", pull: true, plainHTTP: true, want: []string{"http", "https"}},
	}
	for _, tt := range tests {
		name := tt.ref
		if tt.plainHTTP {
			name += " plain-http"
		}
		if tt.write {
			name += " write"
		}
		if tt.pull {
			name += " pull"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			o := []image.Option{anonymous(), image.WithTransport(rec)}
			if tt.plainHTTP {
				o = append(o, image.WithPlainHTTP())
			}
			r := mustParse(t, tt.ref)
			var err error
			switch {
			case tt.write:
				err = image.Write(t.Context(), r, image.Artifact{Image: randomImage(t)}, o...)
			case tt.pull:
				_, err = image.PullClient(t.Context(), r, o...)
			default:
				_, err = image.Read(t.Context(), r, o...)
			}
			if err == nil {
				t.Fatal("no error from a transport that fails every request")
			}
			if got := rec.seen(); !slices.Equal(got, tt.want) {
				t.Errorf("schemes sent: %v, want %v (error: %v)", got, tt.want, err)
			}
			if got := strings.Contains(err.Error(), "refusing plain HTTP to "+r.Name.Context().RegistryStr()); got != tt.refused {
				t.Errorf("error %q mentions refusing plain HTTP: %t, want %t", err, got, tt.refused)
			}
		})
	}
}
