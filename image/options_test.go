package image

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
	rt, owned, err := options{insecure: true}.roundTripper(false)
	if err != nil {
		t.Fatal(err)
	}
	ht, ok := rt.(*httpsOnly).next.(*http.Transport)
	if !ok || ht.TLSClientConfig == nil || !ht.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("Insecure transport does not skip TLS verification")
	}
	if owned != ht {
		t.Errorf("roundTripper returned %p as its own clone, but sends through %p", owned, ht)
	}
	if ht == remote.DefaultTransport {
		t.Errorf("Insecure changed remote.DefaultTransport instead of a clone")
	}
	if def := remote.DefaultTransport.(*http.Transport); def.TLSClientConfig != nil && def.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("remote.DefaultTransport skips TLS verification")
	}

	if _, _, err := (options{insecure: true, transport: &countingTransport{}}).roundTripper(false); err == nil {
		t.Errorf("Insecure with a non-*http.Transport: no error")
	}
}

// TestRoundTripperPrivate checks which *http.Transport roundTripper clones,
// so that a PullClient closes only connections nobody else uses.
func TestRoundTripperPrivate(t *testing.T) {
	t.Parallel()
	own := &http.Transport{}
	tests := []struct {
		name      string
		o         options
		private   bool
		wantOwned bool
	}{
		{name: "shared default", wantOwned: false},
		{name: "private default", private: true, wantOwned: true},
		{name: "caller's transport", o: options{transport: own}, private: true, wantOwned: false},
		{name: "caller's transport, insecure", o: options{transport: own, insecure: true}, private: true, wantOwned: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rt, owned, err := tt.o.roundTripper(tt.private)
			if err != nil {
				t.Fatal(err)
			}
			next := rt.(*httpsOnly).next
			if (owned != nil) != tt.wantOwned {
				t.Fatalf("owned = %v, want a clone: %t", owned, tt.wantOwned)
			}
			switch {
			case owned != nil && next != owned:
				t.Errorf("sends through %v, not the clone it returned", next)
			case owned == nil && tt.o.transport == nil && next != remote.DefaultTransport:
				t.Errorf("sends through %v, want remote.DefaultTransport", next)
			case owned == nil && tt.o.transport != nil && next != tt.o.transport:
				t.Errorf("sends through %v, want the caller's transport", next)
			case owned != nil && (owned == remote.DefaultTransport || owned == own):
				t.Errorf("the owned transport is a shared one")
			}
		})
	}
}

func TestCheckRedirect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, to string
		hops     int
		ok       bool
	}{
		{from: "https://reg.example.com/v2/x", to: "https://storage.example.com/o?sig=1", ok: true},
		{from: "http://127.0.0.1:5000/v2/x", to: "http://127.0.0.1:6000/o", ok: true},
		{from: "http://127.0.0.1:5000/v2/x", to: "http://localhost:6000/o", ok: true},
		{from: "https://reg.example.com/v2/x", to: "https://8.8.8.8/o", ok: true},
		{from: "https://reg.example.com/v2/x", to: "http://169.254.169.254/latest/meta-data"},
		{from: "https://reg.example.com/v2/x", to: "http://10.1.2.3/o"},
		{from: "https://reg.example.com/v2/x", to: "http://127.0.0.1:8080/o"},
		{from: "https://reg.example.com/v2/x", to: "http://[::1]/o"},
		{from: "https://reg.example.com/v2/x", to: "http://[::ffff:192.168.1.1]/o"},
		{from: "https://reg.example.com/v2/x", to: "http://0.0.0.0/o"},
		{from: "https://reg.example.com/v2/x", to: "https://storage.example.com/o", hops: 10},
	}
	for _, tt := range tests {
		t.Run(tt.to, func(t *testing.T) {
			t.Parallel()
			from, err := http.NewRequest(http.MethodGet, tt.from, nil)
			if err != nil {
				t.Fatal(err)
			}
			to, err := http.NewRequest(http.MethodGet, tt.to, nil)
			if err != nil {
				t.Fatal(err)
			}
			via := []*http.Request{from}
			for range tt.hops - 1 {
				via = append(via, to)
			}
			if err := checkRedirect(to, via); (err == nil) != tt.ok {
				t.Errorf("checkRedirect(%s -> %s, %d hops) = %v, want allowed: %t", tt.from, tt.to, len(via), err, tt.ok)
			}
		})
	}
}

// TestMakeOptions checks that invalid and conflicting options are rejected
// where they are applied, before any request.
func TestMakeOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []Option
		ok   bool
	}{
		{name: "none", ok: true},
		{name: "insecure with the default transport", opts: []Option{WithInsecureTLS()}, ok: true},
		{name: "insecure with an *http.Transport", opts: []Option{WithTransport(&http.Transport{}), WithInsecureTLS()}, ok: true},
		{name: "insecure with another transport", opts: []Option{WithInsecureTLS(), WithTransport(&countingTransport{})}},
		{name: "no jobs", opts: []Option{WithJobs(0)}},
		{name: "nil keychain", opts: []Option{WithKeychain(nil)}},
		{name: "nil transport", opts: []Option{WithTransport(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := makeOptions(tt.opts)
			if (err == nil) != tt.ok {
				t.Errorf("makeOptions: %v, want ok %t", err, tt.ok)
			}
			if err := CheckOptions(tt.opts...); (err == nil) != tt.ok {
				t.Errorf("CheckOptions: %v, want ok %t", err, tt.ok)
			}
		})
	}
}
