package imageref

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:5000", true},
		{"127.0.0.1", true},
		{"127.0.0.1:5000", true},
		{"127.1.2.3:80", true},
		{"[::1]", true},
		{"[::1]:5000", true},
		{"::1", true},
		{"10.0.0.5:5000", false},
		{"192.168.0.1", false},
		{"[fe80::1]:5000", false},
		{"registry.local", false},
		{"foo.localhost:5000", false},
		{"localhost.example.com", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			if got := isLoopback(tt.host); got != tt.want {
				t.Errorf("isLoopback(%q) = %t, want %t", tt.host, got, tt.want)
			}
		})
	}
}

type countingTransport struct{ n int }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n++
	return nil, errors.New("test transport: no network")
}

func TestHTTPSOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url       string
		allowHTTP bool
		reaches   bool
	}{
		{"http://10.0.0.5:5000/v2/", false, false},
		{"http://registry.local/v2/", false, false},
		{"http://10.0.0.5:5000/v2/", true, true},
		{"https://10.0.0.5:5000/v2/", false, true},
		{"http://127.0.0.1:5000/v2/", false, true},
		{"http://[::1]:5000/v2/", false, true},
		{"http://localhost/v2/", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			next := &countingTransport{}
			req, err := http.NewRequest(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = (&httpsOnly{next: next, allowHTTP: tt.allowHTTP}).RoundTrip(req)
			if got := next.n == 1; got != tt.reaches {
				t.Errorf("request reached the transport: %t, want %t", got, tt.reaches)
			}
			if refused := strings.Contains(err.Error(), "refusing plain HTTP"); refused == tt.reaches {
				t.Errorf("error %q: refused %t, want %t", err, refused, !tt.reaches)
			}
		})
	}
}

func TestRoundTripperInsecure(t *testing.T) {
	t.Parallel()
	rt, err := Options{Insecure: true}.roundTripper()
	if err != nil {
		t.Fatal(err)
	}
	ht, ok := rt.(*httpsOnly).next.(*http.Transport)
	if !ok || ht.TLSClientConfig == nil || !ht.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("Insecure transport does not skip TLS verification")
	}
	if ht == remote.DefaultTransport {
		t.Errorf("Insecure changed remote.DefaultTransport instead of a clone")
	}
	if def := remote.DefaultTransport.(*http.Transport); def.TLSClientConfig != nil && def.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("remote.DefaultTransport skips TLS verification")
	}

	if _, err := (Options{Insecure: true, Transport: &countingTransport{}}).roundTripper(); err == nil {
		t.Errorf("Insecure with a non-*http.Transport: no error")
	}
}
