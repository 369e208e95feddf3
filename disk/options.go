package disk

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/image"
)

// Defaults of the options.
const (
	// DefaultCacheSize is the memory cache of verified chunks: 64 MiB.
	DefaultCacheSize = 64 << 20
	// DefaultConcurrency is how many range requests run at once: 8.
	DefaultConcurrency = 8
	// DefaultMaxRequest caps the compressed bytes one merged request asks
	// for: 4 MiB, so that a long read still runs several requests at once.
	DefaultMaxRequest = 4 << 20
	// DefaultReadahead is a readahead that keeps a sequential reader
	// (qemu-img convert or nbdcopy through `lazydisk serve`) at the speed
	// of WriteRange: 32 MiB, eight requests of 4 MiB. WithReadahead turns
	// readahead on; it is off unless asked for.
	DefaultReadahead = 32 << 20
	// DefaultTail is how much of the end of a layer Open fetches first: the
	// footer and, for small disks, the whole TOC. A larger TOC costs one more
	// request for the bytes the tail lacked.
	DefaultTail = 16 << 10
)

// RetryPolicy bounds how a registry read is retried (see WithRetry). Reads
// are retried after failures that can pass: no response or a connection
// reset, a response that broke off (the retry asks for the bytes still
// missing), a stall, 408, 429 and 5xx answers, a 401 from the registry (its
// token expired; the transport fetches a new one), and a 403 from the storage
// host a registry redirected to (its signed URL expired; the retry asks the
// registry for a new one). Other answers fail at once.
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

// SignatureChecker checks the signature of the manifest or index ref names
// and returns the digest it covers, reaching ref with the image options ro.
// verify.NewChecker returns one; the reader does not link the signature
// verifier itself. CheckSignature fails with an error matching
// trust.ErrNoSignature or trust.ErrBadSignature when the signature does not
// hold.
type SignatureChecker interface {
	CheckSignature(ctx context.Context, ref image.Reference, ro ...image.Option) (v1.Hash, error)
}

// Option configures Open. Invalid or conflicting options make Open fail
// before it makes a request.
type Option func(*options) error

type options struct {
	file          string
	platform      *v1.Platform
	platformSet   bool // WithPlatform was given: a single image must be for it
	image         []image.Option
	skipTOCDigest bool
	cacheSize     int64
	cacheDir      string
	concurrency   int
	maxRequest    int64
	retry         RetryPolicy
	readahead     int64
	tail          int64
	signature     SignatureChecker
	// sem, when set, is the semaphore of requests in flight that the files
	// of one Image share.
	sem chan struct{}
}

// WithFile reads the file at path in the image ("disk/fedora.qcow2"; a
// leading "/" or "./" is ignored). The default is the single regular file
// under /disk/, as a KubeVirt containerDisk holds.
func WithFile(path string) Option { return func(o *options) error { o.file = path; return nil } }

// WithPlatform picks the image of an index for p, and makes Open refuse a
// single image whose config is for another platform (an error matching
// image.ErrNoPlatform). The default is linux on this machine's architecture
// for an index, and any platform for a single image.
func WithPlatform(p v1.Platform) Option {
	return func(o *options) error { o.platform, o.platformSet = &p, true; return nil }
}

// WithImageOptions adds options for reaching the image: credentials
// (image.WithKeychain), the transport (image.WithTransport), plain HTTP
// (image.WithPlainHTTP), TLS (image.WithInsecureTLS) and the user agent
// (image.WithUserAgent). The default is image.Read's defaults.
func WithImageOptions(opts ...image.Option) Option {
	return func(o *options) error { o.image = append(o.image, opts...); return nil }
}

// WithInsecureSkipTOCDigest accepts a layer whose descriptor has no TOC
// digest annotation. Chunks are still checked against the TOC, but nothing
// ties the TOC to the manifest. A TOC that does not match an annotation that
// is there is refused all the same.
func WithInsecureSkipTOCDigest() Option {
	return func(o *options) error { o.skipTOCDigest = true; return nil }
}

// WithCacheSize bounds the memory cache of verified chunks to n bytes; 0
// keeps no chunk. The default is DefaultCacheSize (64 MiB).
func WithCacheSize(n int64) Option {
	return func(o *options) error { o.cacheSize = n; return nil }
}

// WithCacheDir keeps verified chunks in dir as well, named by their digest,
// so that they survive the process and are shared by every image whose
// chunks have the same content. Chunks read from it are verified again. The
// directory is created if needed; it is not bounded in size. The default is
// no directory.
func WithCacheDir(dir string) Option {
	return func(o *options) error { o.cacheDir = dir; return nil }
}

// WithConcurrency bounds the range requests in flight to n. The default is
// DefaultConcurrency (8).
func WithConcurrency(n int) Option {
	return func(o *options) error { o.concurrency = n; return nil }
}

// WithMaxRequest caps the compressed bytes one request fetches when adjacent
// chunks are merged. The default is DefaultMaxRequest (4 MiB).
func WithMaxRequest(n int64) Option {
	return func(o *options) error { o.maxRequest = n; return nil }
}

// WithRetry sets how registry reads are retried; fields left zero take
// the defaults RetryPolicy names (5 attempts, backoff from 250 ms to 8 s,
// 30 s without data ends a request).
func WithRetry(p RetryPolicy) Option {
	return func(o *options) error { o.retry = p; return nil }
}

// WithReadahead makes ReadAt detect sequential streams of reads (several
// may run at once, as from the connections of an NBD client) and fetch the
// chunks ahead of each before they are asked for, so that a copy through
// ReadAt runs as fast as WriteRange. n bounds the bytes fetched ahead and not
// yet read, all streams together, and is capped at half the memory cache
// (WithCacheSize), which holds them: WithCacheSize(0) leaves no room for
// readahead. A stream is a run of at least three reads each of which starts
// near where the previous ones ended; an isolated read never triggers it, so
// random reads still fetch only the chunks they cover. Fetches ahead share
// the requests of WithConcurrency with reads, and Close cancels them. The
// default is 0: no readahead (see DefaultReadahead).
func WithReadahead(n int64) Option {
	return func(o *options) error { o.readahead = n; return nil }
}

// WithSignature makes Open check, before it reads anything else, that the
// manifest or index the reference names carries a valid cosign signature (c
// is usually verify.NewChecker with a public key), and then read that
// manifest by the signed digest. Every byte the File returns is then covered
// by the chain signature -> manifest -> TOC digest annotation -> TOC ->
// chunk.
//
// Open fails with c's error (matching trust.ErrNoSignature or
// trust.ErrBadSignature from verify's checker) when the signature does not
// hold; a TOC or chunk that does not match what the signed manifest says
// fails Open or a read with an error matching trust.ErrContentMismatch (as
// well as ErrChunkDigest, toc.ErrTOCDigest or ErrNoTOCDigest). It cannot be
// combined with WithInsecureSkipTOCDigest. The default checks no signature.
func WithSignature(c SignatureChecker) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("WithSignature needs a checker (verify.NewChecker)")
		}
		o.signature = c
		return nil
	}
}

func newOptions(opts []Option) (options, error) {
	o := options{
		cacheSize:   DefaultCacheSize,
		concurrency: DefaultConcurrency,
		maxRequest:  DefaultMaxRequest,
		tail:        DefaultTail,
		platform:    &v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
	}
	for _, opt := range opts {
		if opt == nil {
			return o, errors.New("a nil disk.Option")
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	switch {
	case o.cacheSize < 0:
		return o, fmt.Errorf("cache size %d is negative", o.cacheSize)
	case o.concurrency < 1:
		return o, fmt.Errorf("concurrency %d: at least 1 request must run", o.concurrency)
	case o.maxRequest < 1:
		return o, fmt.Errorf("maximum request size %d is not positive", o.maxRequest)
	case o.readahead < 0:
		return o, fmt.Errorf("readahead %d is negative", o.readahead)
	case o.signature != nil && o.skipTOCDigest:
		return o, fmt.Errorf("a signature covers the TOC only through its digest annotation: it cannot be checked with the TOC digest skipped")
	}
	o.readahead = min(o.readahead, o.cacheSize/2)
	if err := image.CheckOptions(o.image...); err != nil {
		return o, err
	}
	return o, nil
}
