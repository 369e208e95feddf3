package imageref

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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
	n, err := o.schemeName(n)
	if err != nil {
		return nil, nil, err
	}
	rt, _, err := o.roundTripper(false)
	if err != nil {
		return nil, nil, err
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(rt),
		remote.WithAuthFromKeychain(o.keychain()),
		remote.WithJobs(o.jobs()),
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return n, opts, nil
}

// Remote returns the reference and go-containerregistry options that Read
// and Write use for the registry reference n (credentials, the plain-HTTP
// policy, TLS, user agent, ctx), for packages that make registry calls Read
// and Write do not, such as listing referrers or reading the tags beside an
// image. Use the returned reference, not n: it carries the scheme policy.
func (o Options) Remote(ctx context.Context, n name.Reference) (name.Reference, []remote.Option, error) {
	return o.remoteOptions(ctx, n)
}

// schemeName returns n, marked insecure when it may be spoken to over plain
// HTTP (a loopback registry, or any with PlainHTTP), so that
// go-containerregistry's ping falls back to HTTP for it.
func (o Options) schemeName(n name.Reference) (name.Reference, error) {
	if !o.PlainHTTP && !isLoopback(n.Context().RegistryStr()) {
		return n, nil
	}
	insecure, err := name.ParseReference(n.Name(), name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", n, err)
	}
	return insecure, nil
}

func (o Options) keychain() authn.Keychain {
	if o.Keychain != nil {
		return o.Keychain
	}
	return authn.DefaultKeychain
}

// roundTripper returns the transport registry requests go through: o.Transport
// (or remote.DefaultTransport), without TLS verification when o.Insecure is
// set, behind the guard that refuses plain HTTP to non-loopback hosts.
//
// When it had to clone an *http.Transport (for Insecure, or for a private
// copy of remote.DefaultTransport when private is set) it returns that clone
// as owned: nothing else uses its connections.
func (o Options) roundTripper(private bool) (rt http.RoundTripper, owned *http.Transport, err error) {
	rt = o.Transport
	if rt == nil {
		rt = remote.DefaultTransport
		if ht, ok := rt.(*http.Transport); ok && private {
			owned = ht.Clone()
			rt = owned
		}
	}
	if o.Insecure {
		ht, ok := rt.(*http.Transport)
		if !ok {
			return nil, nil, fmt.Errorf("skipping TLS verification needs an *http.Transport, not %T", rt)
		}
		if owned == nil {
			owned = ht.Clone()
		}
		if owned.TLSClientConfig == nil {
			owned.TLSClientConfig = &tls.Config{}
		}
		owned.TLSClientConfig.InsecureSkipVerify = true
		rt = owned
	}
	return &httpsOnly{next: rt, allowHTTP: o.PlainHTTP}, owned, nil
}

// PullClient returns an HTTP client with pull access to the repository of
// the registry reference r, for the requests go-containerregistry has no API
// for, such as range requests of blobs. It is set up as Read sets up
// go-containerregistry: credentials from o.Keychain, HTTPS (plain HTTP only
// where Options.PlainHTTP allows it), TLS verification unless o.Insecure, and
// o.UserAgent. It does not retry.
//
// PullClient pings the registry, and fetches a token if the registry asks for
// one, within ctx; the client's requests carry their own contexts. Requests
// to the registry's host go over the scheme the registry answered the ping
// on, whatever the scheme of their URL. Redirects are followed without the
// registry's credentials, except to a loopback, private or link-local IP
// address of another host, which go-containerregistry refuses too.
//
// The client's CloseIdleConnections closes the connections of the transport
// PullClient made for it; an Options.Transport stays the caller's to close.
func (o Options) PullClient(ctx context.Context, r Reference) (*http.Client, error) {
	if r.Transport != Docker || r.Name == nil {
		return nil, fmt.Errorf("%s is not a registry reference: %w", r, ErrUnsupported)
	}
	n, err := o.schemeName(r.Name)
	if err != nil {
		return nil, err
	}
	repo := n.Context()
	rt, owned, err := o.roundTripper(true)
	if err != nil {
		return nil, err
	}
	auth, err := authn.Resolve(ctx, o.keychain(), repo)
	if err != nil {
		return nil, fmt.Errorf("finding credentials for %s: %w", repo, err)
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, transport.NewUserAgent(rt, o.UserAgent),
		[]string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, registryError("reading", r, err)
	}
	return &http.Client{
		Transport:     &pullTransport{RoundTripper: tr, owned: owned},
		CheckRedirect: checkRedirect,
	}, nil
}

// pullTransport is the transport of a PullClient. go-containerregistry's
// wrappers do not pass CloseIdleConnections on, so it reaches the transport
// PullClient made directly.
type pullTransport struct {
	http.RoundTripper
	owned *http.Transport
}

func (t *pullTransport) CloseIdleConnections() {
	if t.owned != nil {
		t.owned.CloseIdleConnections()
	}
}

// checkRedirect refuses a redirect to a loopback, private, link-local or
// unspecified IP address of another host than the one first asked, so a
// registry cannot point a client at internal services (as go-containerregistry's
// remote package does). Names are not resolved.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	from, to := via[0].URL.Hostname(), req.URL.Hostname()
	if to == from {
		return nil
	}
	addr, err := netip.ParseAddr(to)
	if err != nil {
		return nil
	}
	addr = addr.WithZone("").Unmap()
	if addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsUnspecified() {
		return fmt.Errorf("refusing the redirect from %s to the internal address %s", from, to)
	}
	return nil
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
