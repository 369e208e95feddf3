package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/image"
)

// Blob is random access to one blob. ReadAt may be called concurrently.
//
// ReadAt follows io.ReaderAt and never reads past Size: a read that reaches
// past the end returns the bytes up to it and io.EOF, a read at or after the
// end returns 0 and io.EOF, and a read of zero bytes makes no request.
type Blob interface {
	io.ReaderAt
	// Size is the blob's size in bytes.
	Size() int64
	// Stats counts the reads made so far.
	Stats() Stats
	// Close releases the blob's file or idle connections. ReadAt fails after it.
	Close() error
}

// Stats counts what a Blob's reads cost.
type Stats struct {
	// Requests is how many reads went to the store: range requests to a
	// registry (not the ping and token requests Open makes), or reads of a file.
	Requests int64
	// Bytes is how many bytes those reads received: response body bytes from a
	// registry, including those it sent before the offset when it ignored the
	// range, or bytes read from a file.
	Bytes int64
	// RangeIgnored is how many range requests a registry answered with the
	// whole blob (200 instead of 206). Such a read streams the blob up to the
	// bytes asked and drops the connection; it never holds the blob in memory.
	RangeIgnored int64
	// Retries is how many requests were sent again after a failure that
	// RetryPolicy allows to retry; they are counted in Requests too.
	Retries int64
}

// counters are the atomic Stats of a Blob.
type counters struct {
	requests, bytes, rangeIgnored, retries atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{Requests: c.requests.Load(), Bytes: c.bytes.Load(), RangeIgnored: c.rangeIgnored.Load(), Retries: c.retries.Load()}
}

// RetryPolicy bounds how a registry read is retried. Reads are retried after
// failures that can pass: no response or a connection reset, a response that
// broke off (the retry asks for the bytes still missing), a stall, 408, 429
// and 5xx answers, a 401 from the registry (its token expired; the transport
// fetches a new one), and a 403 from the storage host a registry redirected
// to (its signed URL expired; the retry asks the registry for a new one).
// Other answers fail at once.
type RetryPolicy struct {
	// Attempts is how many times one read is tried in all; 1 never retries.
	// The default is 5.
	Attempts int
	// MinBackoff is the wait before the first retry; each further retry
	// waits twice as long, up to MaxBackoff, less a random part of up to a
	// quarter. A Retry-After header asks for longer, up to MaxBackoff. The
	// defaults are 250 ms and 8 s.
	MinBackoff, MaxBackoff time.Duration
	// Stall is how long a request may go without receiving anything, its
	// answer or more of its body, before it is abandoned and retried. The
	// default is 30 s.
	Stall time.Duration
}

// DefaultRetryPolicy is the policy Open uses unless WithRetry says otherwise.
var DefaultRetryPolicy = RetryPolicy{Attempts: 5, MinBackoff: 250 * time.Millisecond, MaxBackoff: 8 * time.Second, Stall: 30 * time.Second}

// withDefaults fills the fields of p that are not set from DefaultRetryPolicy.
func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.Attempts <= 0 {
		p.Attempts = d.Attempts
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = d.MinBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = max(d.MaxBackoff, p.MinBackoff)
	}
	if p.Stall <= 0 {
		p.Stall = d.Stall
	}
	return p
}

// backoff returns the wait before retry number n (1 is the first), at least
// asked (a server's Retry-After), all within MaxBackoff.
func (p RetryPolicy) backoff(n int, asked time.Duration) time.Duration {
	d := p.MinBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	d -= rand.N(d/4 + 1)
	return min(max(d, asked), p.MaxBackoff)
}

// Option configures Open.
type Option func(*openOptions)

type openOptions struct{ retry RetryPolicy }

// WithRetry sets how registry reads are retried; fields left zero take
// DefaultRetryPolicy's values. Layout and file reads are never retried.
func WithRetry(p RetryPolicy) Option { return func(o *openOptions) { o.retry = p } }

// Open returns random access to the blob desc names (its digest and size) in
// the store ref points into: a registry (docker://), from which each ReadAt
// fetches its bytes with one range request (retried as RetryPolicy says), or
// an OCI image layout (oci:),
// whose blob file ReadAt reads. A registry is pinged, with credentials from
// o as image.Read finds them, before Open returns; the blob itself is not
// fetched until it is read.
//
// ctx is bound at Open and used by every ReadAt: once it is done, reads in
// flight and later reads fail with its error. It must outlive the Blob.
func Open(ctx context.Context, ref image.Reference, desc v1.Descriptor, o []image.Option, opts ...Option) (Blob, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dgst, err := checkDescriptor(desc)
	if err != nil {
		return nil, fmt.Errorf("opening a blob of %s: %w", ref, err)
	}
	switch ref.Transport {
	case image.Docker:
		var oo openOptions
		for _, opt := range opts {
			opt(&oo)
		}
		return openRegistry(ctx, ref, dgst, desc.Size, o, oo.retry.withDefaults())
	case image.OCI:
		return openLayout(ctx, ref, dgst, desc.Size)
	}
	return nil, fmt.Errorf("opening blob %s of %s: blobs are read from docker:// and oci: references only: %w", dgst, ref, image.ErrUnsupported)
}

// checkDescriptor returns desc's digest once it is known to be well formed, so
// that it can name a file or a URL path, and desc's size not negative.
func checkDescriptor(desc v1.Descriptor) (digest.Digest, error) {
	d := digest.Digest(desc.Digest.String())
	if !digest.DigestRegexpAnchored.MatchString(string(d)) {
		return "", fmt.Errorf("the descriptor's digest %q is not ALGORITHM:HEX", d)
	}
	if desc.Size < 0 {
		return "", fmt.Errorf("the descriptor of %s has the negative size %d", d, desc.Size)
	}
	return d, nil
}

// openLayout opens DIR/blobs/ALG/HEX of the layout ref names and checks that
// its size is the descriptor's.
func openLayout(ctx context.Context, ref image.Reference, dgst digest.Digest, size int64) (Blob, error) {
	path := filepath.Join(ref.Path, "blobs", dgst.Algorithm().String(), dgst.Encoded())
	b, err := openFile(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s has no blob %s: %w", ref, dgst, image.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("opening blob %s of %s: %w", dgst, ref, err)
	}
	if b.size != size {
		b.Close()
		return nil, fmt.Errorf("blob %s of %s is %d bytes, but its descriptor says %d: %w", dgst, ref, b.size, size, ErrSizeMismatch)
	}
	return b, nil
}

// OpenFile returns random access to the local file at path, whose size is
// taken when it is opened.
func OpenFile(path string) (Blob, error) {
	b, err := openFile(context.Background(), path)
	if err != nil {
		return nil, fmt.Errorf("opening blob file: %w", err)
	}
	return b, nil
}

// fileBlob reads a regular file with pread.
type fileBlob struct {
	ctx   context.Context
	f     *os.File
	size  int64
	stats counters
}

func openFile(ctx context.Context, path string) (*fileBlob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return &fileBlob{ctx: ctx, f: f, size: fi.Size()}, nil
}

func (b *fileBlob) ReadAt(p []byte, off int64) (int, error) {
	q, eof := clamp(p, off, b.size)
	if len(q) == 0 {
		return 0, eof
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	b.stats.requests.Add(1)
	n, err := b.f.ReadAt(q, off)
	b.stats.bytes.Add(int64(n))
	if err == io.EOF {
		return n, fmt.Errorf("reading %s: it ends at %d, before its size %d: %w", b.f.Name(), off+int64(n), b.size, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return n, err
	}
	return n, eof
}

func (b *fileBlob) Size() int64  { return b.size }
func (b *fileBlob) Stats() Stats { return b.stats.snapshot() }
func (b *fileBlob) Close() error { return b.f.Close() }

// clamp returns the part of p that a read at off of a blob of size bytes can
// fill, and the error ReadAt returns once it is filled: io.EOF when p reaches
// past the end. An empty part means there is nothing to read.
func clamp(p []byte, off, size int64) ([]byte, error) {
	switch {
	case off < 0:
		return nil, fmt.Errorf("reading at offset %d: negative offset", off)
	case off >= size:
		return nil, io.EOF
	case int64(len(p)) > size-off:
		return p[:size-off], io.EOF
	}
	return p, nil
}
