package imageref

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DefaultJobs is how many blobs Read and Write move at once when Options.Jobs
// is not set.
const DefaultJobs = 4

// Options tunes Read and Write. The zero value is ready to use.
type Options struct {
	// PlainHTTP allows plain HTTP to any registry. By default only loopback
	// registries (localhost, 127.0.0.0/8, [::1]) may be spoken to over plain
	// HTTP; every other host must answer HTTPS, including private addresses
	// and *.localhost names, which go-containerregistry alone would try over HTTP.
	PlainHTTP bool
	// Insecure skips verification of registries' TLS certificates. It needs
	// Transport to be nil or an *http.Transport, which is cloned.
	Insecure bool
	// Platform is the platform written into images built from disk:
	// references. The default is linux on runtime.GOARCH. Registry indexes
	// are returned whole whatever Platform says.
	Platform *v1.Platform
	// Keychain finds registry credentials. The default is
	// authn.DefaultKeychain: the Docker config file and its credential helpers.
	Keychain authn.Keychain
	// Transport carries registry requests. The default is
	// remote.DefaultTransport.
	Transport http.RoundTripper
	// UserAgent is added to the User-Agent of registry requests.
	UserAgent string
	// Jobs is how many blobs move at once. The default is DefaultJobs.
	Jobs int
}

func (o Options) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return DefaultJobs
}

// remoteOptions returns the go-containerregistry options for o and the reference to
// use for n: loopback registries, and every registry when PlainHTTP is set,
// are marked insecure so that go-containerregistry falls back to plain HTTP.
func (o Options) remoteOptions(ctx context.Context, n name.Reference) (name.Reference, []remote.Option, error) {
	if o.PlainHTTP || isLoopback(n.Context().RegistryStr()) {
		insecure, err := name.ParseReference(n.Name(), name.Insecure)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing %s: %w", n, err)
		}
		n = insecure
	}
	rt, err := o.roundTripper()
	if err != nil {
		return nil, nil, err
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(rt),
		remote.WithAuthFromKeychain(kc),
		remote.WithJobs(o.jobs()),
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return n, opts, nil
}

// roundTripper returns the transport registry requests go through: o.Transport
// (or remote.DefaultTransport), without TLS verification when o.Insecure is
// set, behind the guard that refuses plain HTTP to non-loopback hosts.
func (o Options) roundTripper() (http.RoundTripper, error) {
	rt := o.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	if o.Insecure {
		ht, ok := rt.(*http.Transport)
		if !ok {
			return nil, fmt.Errorf("skipping TLS verification needs an *http.Transport, not %T", rt)
		}
		ht = ht.Clone()
		if ht.TLSClientConfig == nil {
			ht.TLSClientConfig = &tls.Config{}
		}
		ht.TLSClientConfig.InsecureSkipVerify = true
		rt = ht
	}
	return &httpsOnly{next: rt, allowHTTP: o.PlainHTTP}, nil
}

// httpsOnly refuses plain-HTTP requests to hosts that are not loopback
// before they are dialed, unless allowHTTP is set. It sits below
// go-containerregistry's scheme selection, so its "http" fallback for private
// addresses fails and the HTTPS answer is used.
type httpsOnly struct {
	next      http.RoundTripper
	allowHTTP bool
}

func (t *httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.allowHTTP && !isLoopback(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("refusing plain HTTP to %s: it is not a loopback address; use --plain-http if this registry really serves HTTP", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

// isLoopback reports whether host, with or without a port or IPv6 brackets,
// is localhost or a loopback IP address.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
