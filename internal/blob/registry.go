package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/image"
)

// maxErrorBody is how much of an error response's body is read, for the
// excerpt in the error and go-containerregistry's parse of registry errors.
const maxErrorBody = 4 << 10

// maxExcerpt is how many bytes of an error body an error message quotes.
const maxExcerpt = 200

// registryBlob reads a registry blob with one single-range GET per ReadAt.
type registryBlob struct {
	ctx  context.Context
	ref  image.Reference
	what string // "blob sha256:…", for messages
	url  string // https://HOST/v2/REPO/blobs/DIGEST
	host string // the registry, as in url
	size int64
	// client is built once, in Open. Its transport fetches a new token when
	// the registry answers 401 with a challenge; fetch retries the rest.
	client *http.Client
	retry  RetryPolicy
	stats  counters
	closed atomic.Bool
}

func openRegistry(ctx context.Context, ref image.Reference, dgst digest.Digest, size int64, o []image.Option, retry RetryPolicy) (Blob, error) {
	client, err := image.PullClient(ctx, ref, o...)
	if err != nil {
		return nil, err
	}
	repo := ref.Name.Context()
	// The scheme is a placeholder: PullClient's transport sends requests to
	// the registry over the scheme it answered the ping on, which is HTTPS
	// unless package image allows plain HTTP to it.
	u := url.URL{Scheme: "https", Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/" + dgst.String()}
	return &registryBlob{
		ctx:    ctx,
		ref:    ref,
		what:   "blob " + dgst.String(),
		url:    u.String(),
		host:   repo.RegistryStr(),
		size:   size,
		client: client,
		retry:  retry,
	}, nil
}

// ReadAt reads p with one GET of the range bytes=off-(off+len(p)-1), cut at
// the end of the blob, and more when it has to retry. It needs a 206 answer
// whose Content-Range is that range of a blob of Size bytes; a 200 answer
// (the registry ignored the range) is streamed up to off and the connection
// dropped after p is filled.
func (b *registryBlob) ReadAt(p []byte, off int64) (int, error) {
	q, eof := clamp(p, off, b.size)
	if len(q) == 0 {
		return 0, eof
	}
	n, err := b.fetch(q, off)
	if err != nil {
		return n, err
	}
	return n, eof
}

func (b *registryBlob) Size() int64  { return b.size }
func (b *registryBlob) Stats() Stats { return b.stats.snapshot() }

// Close closes the idle connections of the transport Open made; requests in
// flight finish.
func (b *registryBlob) Close() error {
	b.closed.Store(true)
	b.client.CloseIdleConnections()
	return nil
}

// fetch fills p, which is not empty and within the blob, from offset off,
// retrying as b.retry allows: a read that broke off resumes where it stopped.
func (b *registryBlob) fetch(p []byte, off int64) (int, error) {
	done := 0
	unauthorized := false // a 401 is retried once
	for attempt := 1; ; attempt++ {
		if b.closed.Load() {
			return done, fmt.Errorf("reading %s of %s: %w", b.what, b.ref, fs.ErrClosed)
		}
		n, wait, err := b.attempt(p[done:], off+int64(done))
		done += n
		if err == nil {
			return done, nil
		}
		var rerr *retryable
		if !errors.As(err, &rerr) || (rerr.once && unauthorized) {
			return done, err
		}
		unauthorized = unauthorized || rerr.once
		if attempt >= b.retry.Attempts {
			if b.retry.Attempts > 1 {
				return done, fmt.Errorf("%w (gave up after %d attempts)", rerr.err, attempt)
			}
			return done, rerr.err
		}
		b.stats.retries.Add(1)
		if err := sleep(b.ctx, b.retry.backoff(attempt, wait)); err != nil {
			return done, fmt.Errorf("reading %s of %s: %w (while retrying after: %w)", b.what, b.ref, err, rerr.err)
		}
	}
}

// retryable marks the error of an attempt that may succeed if tried again;
// once, that it is worth one retry only.
type retryable struct {
	err  error
	once bool
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// attempt makes one GET of p's range and reports how many bytes of p it
// filled, and for a retryable failure how long the server asked to wait
// (Retry-After, 0 if it did not say). Failures worth retrying are returned
// as *retryable: no response or a broken-off body, a stall, 408, 429 and 5xx,
// 401 from the registry (the transport fetched a fresh token on the way),
// and 403 from the storage host a registry redirected to (its signed URL
// expired; the next attempt asks the registry for a new one). A 401 is worth
// one retry: the registry may have expired the token just after the
// transport refreshed it.
func (b *registryBlob) attempt(p []byte, off int64) (int, time.Duration, error) {
	last := off + int64(len(p)) - 1
	ctx, cancel := context.WithCancelCause(b.ctx)
	defer cancel(nil)
	// The watchdog abandons a request that receives nothing for Stall.
	watchdog := time.AfterFunc(b.retry.Stall, func() { cancel(errStalled) })
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s of %s: %w", b.what, b.ref, err)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, last))
	b.stats.requests.Add(1)
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, 0, b.transient(ctx, b.requestError(err))
	}
	defer resp.Body.Close()
	watchdog.Reset(b.retry.Stall)
	body := &countingReader{r: resp.Body, n: &b.stats.bytes, progress: func() { watchdog.Reset(b.retry.Stall) }}
	from := resp.Request.URL.Host

	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		first, end, total, ok := parseContentRange(cr)
		switch {
		case ok && total >= 0 && total != b.size:
			return 0, 0, fmt.Errorf("reading %s of %s: %s says the blob is %d bytes, but its descriptor says %d: %w",
				b.what, b.ref, from, total, b.size, ErrSizeMismatch)
		case !ok || first != off || end != last:
			return 0, 0, fmt.Errorf("reading %s of %s: %s answered the range bytes=%d-%d with Content-Range %.80q: %w",
				b.what, b.ref, from, off, last, cr, ErrInvalidResponse)
		}
	case http.StatusOK:
		b.stats.rangeIgnored.Add(1)
		if resp.ContentLength >= 0 && resp.ContentLength != b.size {
			return 0, 0, fmt.Errorf("reading %s of %s: %s sends the blob as %d bytes, but its descriptor says %d: %w",
				b.what, b.ref, from, resp.ContentLength, b.size, ErrSizeMismatch)
		}
		if n, err := io.CopyN(io.Discard, body, off); err != nil {
			return 0, 0, b.transient(ctx, b.bodyError(from, n, off, err))
		}
	default:
		err := b.statusError(resp, body, off, last)
		if retryStatus(resp.StatusCode, from != b.host) {
			return 0, retryAfter(resp), &retryable{err: err, once: resp.StatusCode == http.StatusUnauthorized}
		}
		return 0, 0, err
	}
	n, err := io.ReadFull(body, p)
	if err != nil {
		return n, 0, b.transient(ctx, b.bodyError(from, int64(n), int64(len(p)), err))
	}
	return n, 0, nil
}

// transient marks err, the failure of a request or of reading its body, as
// retryable unless the blob's context ended it. A stall is reported as such.
func (b *registryBlob) transient(ctx context.Context, err error) error {
	if b.ctx.Err() != nil {
		return err
	}
	if errors.Is(context.Cause(ctx), errStalled) {
		return &retryable{err: fmt.Errorf("reading %s of %s: %w for %s", b.what, b.ref, errStalled, b.retry.Stall)}
	}
	var te *transport.Error
	if errors.As(err, &te) && !retryStatus(te.StatusCode, false) {
		return err // a token server's refusal
	}
	if errors.Is(err, image.ErrRedirectRefused) {
		return err // the registry would redirect the same way again
	}
	return &retryable{err: err}
}

// retryStatus reports whether a response with this status may be retried.
// redirected is set when it came from another host than the registry.
func retryStatus(code int, redirected bool) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusUnauthorized:
		return !redirected
	case http.StatusForbidden:
		return redirected
	}
	return false
}

// retryAfter returns the wait a Retry-After header in seconds asks for, or 0.
func retryAfter(resp *http.Response) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// bodyError reports a response body that ended, or failed, after got of
// the want bytes expected. A body that ended early is io.ErrUnexpectedEOF,
// never io.EOF, which callers of ReadAt take for the end of the blob.
func (b *registryBlob) bodyError(from string, got, want int64, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %s of %s: the response from %s broke off after %d of %d bytes: %w", b.what, b.ref, from, got, want, err)
}

// requestError reports a request that got no response, without the query
// of the URL, which may be a signed storage URL the registry redirected to.
func (b *registryBlob) requestError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("reading %s of %s: GET %s: %w", b.what, b.ref, redactURL(uerr.URL), uerr.Err)
	}
	return fmt.Errorf("reading %s of %s: %w", b.what, b.ref, err)
}

// statusError reports a response that is neither 200 nor 206. A 401, 403 or
// 404 from the registry is reported as package image reports it for manifests;
// one from the storage the registry redirected to, or any other status, is
// reported with the host, the status and an excerpt of the body. The
// *transport.Error of the response stays reachable with errors.As.
func (b *registryBlob) statusError(resp *http.Response, body io.Reader, off, last int64) error {
	raw, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	parsed := *resp
	parsed.Body = io.NopCloser(bytes.NewReader(raw))
	terr := transport.CheckError(&parsed)
	from := resp.Request.URL.Host
	code := resp.StatusCode
	var sentinel error
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		sentinel = image.ErrUnauthorized
	case http.StatusNotFound:
		sentinel = image.ErrNotFound
	}
	if sentinel != nil && from == b.host {
		return image.RegistryError("reading", b.ref, b.what, terr)
	}

	who := from
	if from != b.host {
		who += " (redirected from registry " + b.host + ")"
	}
	msg := fmt.Sprintf("reading %s of %s: %s answered the range bytes=%d-%d with %d %s", b.what, b.ref, who, off, last, code, http.StatusText(code))
	if e := excerpt(terr, raw); e != "" {
		msg += ": " + e
	}
	if code >= 500 {
		msg += "; try again later, or check the registry's health"
	}
	wrapped := []error{terr}
	if sentinel != nil {
		wrapped = append(wrapped, sentinel)
	}
	return &failure{msg: msg, wrapped: wrapped}
}

// excerpt returns the registry's first error diagnostic, or the start of a
// body that has none, on one line.
func excerpt(terr error, raw []byte) string {
	var te *transport.Error
	s := string(raw)
	if errors.As(terr, &te) && len(te.Errors) > 0 {
		s = te.Errors[0].String()
	}
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if len(s) <= maxExcerpt {
		return s
	}
	cut := maxExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// parseContentRange parses "bytes FIRST-LAST/TOTAL" (RFC 9110 section
// 14.4); total is -1 for the unknown total "*".
func parseContentRange(s string) (first, last, total int64, ok bool) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, false
	}
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, false
	}
	f, l, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, false
	}
	fi, err1 := strconv.ParseUint(f, 10, 63)
	la, err2 := strconv.ParseUint(l, 10, 63)
	total = -1
	var err3 error
	if size != "*" {
		var t uint64
		t, err3 = strconv.ParseUint(size, 10, 63)
		total = int64(t)
	}
	first, last = int64(fi), int64(la)
	if err1 != nil || err2 != nil || err3 != nil || first > last || (total >= 0 && last >= total) {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// redactURL returns s without user information and with the values of its
// query replaced, as go-containerregistry's errors show URLs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(a URL that does not parse)"
	}
	u.User = nil
	u.Fragment = ""
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// countingReader adds the bytes read through it to n, and calls progress,
// if set, when it got some.
type countingReader struct {
	r        io.Reader
	n        *atomic.Int64
	progress func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if n > 0 && c.progress != nil {
		c.progress()
	}
	return n, err
}
