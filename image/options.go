package image

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultJobs is how many blobs Read and Write move at once unless WithJobs
// says otherwise: 4.
const DefaultJobs = 4

// Option configures Read, Write, PullClient and RemoteOptions. Options are
// checked together when they are applied: a conflicting or invalid
// combination is an error there, before any request is made.
type Option func(*options) error

// options is what the Options set. The zero value, with jobs 0 meaning
// DefaultJobs, is the default.
type options struct {
	plainHTTP bool
	insecure  bool
	platform  *v1.Platform
	keychain  authn.Keychain
	transport http.RoundTripper
	userAgent string
	jobs      int
	logger    *slog.Logger
	progress  func(Progress)
	// diskFormat is WithDiskFormat's; "" is DiskKeep.
	diskFormat DiskFormat
}

// Progress is what Write reports while it uploads an image to a registry:
// the bytes of blobs written so far, out of Total. Done is set once, last.
type Progress struct {
	Written, Total int64
	Done           bool
}

// WithLogger logs each registry HTTP request to l at level Debug: method,
// URL without its query string or user info (signed URLs carry their
// credentials there), status and time. Headers, which carry credentials and
// tokens, are never logged. The default logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.logger = l; return nil }
}

// WithProgress makes Write report the progress of an upload to a registry
// to fn, from one goroutine. The default reports nothing.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) error { o.progress = fn; return nil }
}

// WithPlainHTTP allows plain HTTP to any registry. By default only loopback
// registries (localhost, 127.0.0.0/8, [::1]) may be spoken to over plain
// HTTP; every other host must answer HTTPS, including private addresses and
// *.localhost names, which go-containerregistry alone would try over HTTP.
func WithPlainHTTP() Option {
	return func(o *options) error { o.plainHTTP = true; return nil }
}

// WithInsecureTLS skips verification of registries' TLS certificates. It
// needs the transport (WithTransport) to be an *http.Transport, which is
// cloned. The default verifies certificates.
func WithInsecureTLS() Option {
	return func(o *options) error { o.insecure = true; return nil }
}

// WithPlatform sets the platform written into images built from disk:
// references. The default is linux on runtime.GOARCH; an empty OS or
// architecture keeps the default's. Registry and layout indexes are returned
// whole whatever the platform (SelectPlatform picks from them).
func WithPlatform(p v1.Platform) Option {
	return func(o *options) error { o.platform = &p; return nil }
}

// WithKeychain finds registry credentials with k. The default is
// authn.DefaultKeychain: the Docker config file and its credential helpers.
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) error {
		if k == nil {
			return errors.New("WithKeychain needs a keychain (authn.Anonymous for none)")
		}
		o.keychain = k
		return nil
	}
}

// WithTransport carries registry requests over rt. The default is
// go-containerregistry's remote.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return errors.New("WithTransport needs a transport")
		}
		o.transport = rt
		return nil
	}
}

// WithUserAgent adds ua to the User-Agent of registry requests. The default
// adds nothing to go-containerregistry's.
func WithUserAgent(ua string) Option {
	return func(o *options) error { o.userAgent = ua; return nil }
}

// WithJobs sets how many blobs Read and Write move at once. The default is
// DefaultJobs (4).
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("jobs %d: at least 1 blob must move at a time", n)
		}
		o.jobs = n
		return nil
	}
}

// makeOptions applies opts and rejects combinations that cannot work, in
// one place.
func makeOptions(opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	if o.insecure && o.transport != nil {
		if _, ok := o.transport.(*http.Transport); !ok {
			return o, fmt.Errorf("skipping TLS verification needs an *http.Transport, not %T", o.transport)
		}
	}
	return o, nil
}

// CheckOptions reports whether opts are valid together, so that a caller
// can refuse them before doing any work.
func CheckOptions(opts ...Option) error {
	_, err := makeOptions(opts)
	return err
}

func (o options) jobsOrDefault() int {
	if o.jobs > 0 {
		return o.jobs
	}
	return DefaultJobs
}

// remoteOptions returns the go-containerregistry options for o and the reference to
// use for n: loopback registries, and every registry when PlainHTTP is set,
// are marked insecure so that go-containerregistry falls back to plain HTTP.
func (o options) remoteOptions(ctx context.Context, n name.Reference) (name.Reference, []remote.Option, error) {
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
		remote.WithAuthFromKeychain(o.keychainOrDefault()),
		remote.WithJobs(o.jobsOrDefault()),
	}
	if o.userAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.userAgent))
	}
	return n, opts, nil
}

// RemoteOptions returns the reference and go-containerregistry options that
// Read and Write use for the registry reference n (credentials, the
// plain-HTTP policy, TLS, user agent, ctx), for registry calls Read and Write
// do not make, such as listing referrers or reading the tags beside an image.
// Use the returned reference, not n: it carries the scheme policy.
func RemoteOptions(ctx context.Context, n name.Reference, opts ...Option) (name.Reference, []remote.Option, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, nil, err
	}
	return o.remoteOptions(ctx, n)
}

// schemeName returns n, marked insecure when it may be spoken to over plain
// HTTP (a loopback registry, or any with PlainHTTP), so that
// go-containerregistry's ping falls back to HTTP for it.
func (o options) schemeName(n name.Reference) (name.Reference, error) {
	if !o.plainHTTP && !isLoopback(n.Context().RegistryStr()) {
		return n, nil
	}
	insecure, err := name.ParseReference(n.Name(), name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", n, err)
	}
	return insecure, nil
}

func (o options) keychainOrDefault() authn.Keychain {
	if o.keychain != nil {
		return o.keychain
	}
	return authn.DefaultKeychain
}

// roundTripper returns the transport registry requests go through: o.transport
// (or remote.DefaultTransport), without TLS verification when o.insecure is
// set, behind the guard that refuses plain HTTP to non-loopback hosts.
//
// When it had to clone an *http.Transport (for Insecure, or for a private
// copy of remote.DefaultTransport when private is set) it returns that clone
// as owned: nothing else uses its connections.
func (o options) roundTripper(private bool) (rt http.RoundTripper, owned *http.Transport, err error) {
	rt = o.transport
	if rt == nil {
		rt = remote.DefaultTransport
		if ht, ok := rt.(*http.Transport); ok && private {
			owned = ht.Clone()
			rt = owned
		}
	}
	if o.insecure {
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
	if o.logger != nil {
		rt = &logRequests{next: rt, log: o.logger}
	}
	return &httpsOnly{next: rt, allowHTTP: o.plainHTTP}, owned, nil
}

// logRequests logs each request that goes through it, without secrets.
type logRequests struct {
	next http.RoundTripper
	log  *slog.Logger
}

func (l *logRequests) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := l.next.RoundTrip(req)
	attrs := []any{"method", req.Method, "url", redactURL(req.URL), "ms", time.Since(start).Milliseconds()}
	if r := req.Header.Get("Range"); r != "" {
		attrs = append(attrs, "range", r)
	}
	if err != nil {
		l.log.Debug("http", append(attrs, "err", err.Error())...)
		return resp, err
	}
	l.log.Debug("http", append(attrs, "status", resp.StatusCode)...)
	return resp, nil
}

// redactURL is u without user info, query string or fragment.
func redactURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	s := c.String()
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}

// PullClient returns an HTTP client with pull access to the repository of
// the registry reference r, for the requests go-containerregistry has no API
// for, such as range requests of blobs. It is set up as Read sets up
// go-containerregistry: credentials from WithKeychain, HTTPS (plain HTTP only
// where WithPlainHTTP or a loopback host allows it), TLS verification unless
// WithInsecureTLS, and WithUserAgent. It does not retry.
//
// PullClient pings the registry, and fetches a token if the registry asks for
// one, within ctx; the client's requests carry their own contexts. Requests
// to the registry's host go over the scheme the registry answered the ping
// on, whatever the scheme of their URL. Redirects are followed without the
// registry's credentials, except to a loopback, private or link-local IP
// address of another host, which go-containerregistry refuses too.
//
// The client's CloseIdleConnections closes the connections of the transport
// PullClient made for it; a WithTransport transport stays the caller's to close.
func PullClient(ctx context.Context, r Reference, opts ...Option) (*http.Client, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
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
	auth, err := authn.Resolve(ctx, o.keychainOrDefault(), repo)
	if err != nil {
		return nil, fmt.Errorf("finding credentials for %s: %w", repo, err)
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, transport.NewUserAgent(rt, o.userAgent),
		[]string{repo.Scope(transport.PullScope)})
	if err != nil {
		sent := credsNone
		if auth != authn.Anonymous {
			sent = credsSent
		}
		return nil, registryErrorCreds("reading", r, "", err, sent)
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

// ErrRedirectRefused is what a request fails with (wrapped in a
// *url.Error) when the client refused to follow a redirect: to an internal
// address of another host, or past 10 redirects. The refusal is permanent:
// asking again gets the same redirect. (It is declared here, next to the
// check that returns it.)
var ErrRedirectRefused = errors.New("redirect not followed")

// checkRedirect refuses a redirect to a loopback, private, link-local or
// unspecified IP address of another host than the one first asked, so a
// registry cannot point a client at internal services (as go-containerregistry's
// remote package does). Names are not resolved.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("stopped after 10 redirects: %w", ErrRedirectRefused)
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
		return fmt.Errorf("refusing the redirect from %s to the internal address %s: %w", from, to, ErrRedirectRefused)
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
