package disk

import (
	"fmt"
	"net/http"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/internal/imageref"
	"github.com/lazydisk/lazydisk/verify"
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

// RetryPolicy bounds how registry reads are retried (see WithRetry).
type RetryPolicy = blob.RetryPolicy

// Option configures Open.
type Option func(*options)

type options struct {
	file          string
	platform      *v1.Platform
	registry      imageref.Options
	skipTOCDigest bool
	cacheSize     int64
	cacheDir      string
	concurrency   int
	maxRequest    int64
	retry         RetryPolicy
	readahead     int64
	tail          int64
	signed        bool
	verifier      signature.Verifier
	verifyOpts    []verify.Option
}

// WithFile reads the file at path in the image ("disk/fedora.qcow2"; a
// leading "/" or "./" is ignored). The default is the single regular file
// under /disk/, as a KubeVirt containerDisk holds.
func WithFile(path string) Option { return func(o *options) { o.file = path } }

// WithPlatform picks the image of an index for p. The default is linux on
// this machine's architecture.
func WithPlatform(p v1.Platform) Option { return func(o *options) { o.platform = &p } }

// WithKeychain finds registry credentials with k. The default is the
// Docker config file and its credential helpers (authn.DefaultKeychain).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.registry.Keychain = k } }

// WithTransport sends registry requests through rt. The default is
// go-containerregistry's remote.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.registry.Transport = rt }
}

// WithPlainHTTP allows plain HTTP to any registry. By default only loopback
// registries are spoken to over plain HTTP.
func WithPlainHTTP() Option { return func(o *options) { o.registry.PlainHTTP = true } }

// WithInsecureTLS skips verification of registries' TLS certificates.
func WithInsecureTLS() Option { return func(o *options) { o.registry.Insecure = true } }

// WithUserAgent adds ua to the User-Agent of registry requests.
func WithUserAgent(ua string) Option { return func(o *options) { o.registry.UserAgent = ua } }

// WithInsecureSkipTOCDigest accepts a layer whose descriptor has no TOC
// digest annotation. Chunks are still checked against the TOC, but nothing
// ties the TOC to the manifest. A TOC that does not match an annotation that
// is there is refused all the same.
func WithInsecureSkipTOCDigest() Option { return func(o *options) { o.skipTOCDigest = true } }

// WithCacheSize bounds the memory cache of verified chunks to n bytes; 0
// keeps no chunk. The default is DefaultCacheSize (64 MiB).
func WithCacheSize(n int64) Option { return func(o *options) { o.cacheSize = n } }

// WithCacheDir keeps verified chunks in dir as well, named by their digest,
// so that they survive the process and are shared by every image whose
// chunks have the same content. Chunks read from it are verified again. The
// directory is created if needed; it is not bounded in size. The default is
// no directory.
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithConcurrency bounds the range requests in flight to n. The default is
// DefaultConcurrency (8).
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// WithMaxRequest caps the compressed bytes one request fetches when adjacent
// chunks are merged. The default is DefaultMaxRequest (4 MiB).
func WithMaxRequest(n int64) Option { return func(o *options) { o.maxRequest = n } }

// WithRetry sets how registry reads are retried; fields left zero take
// blob.DefaultRetryPolicy's values (5 attempts, backoff from 250 ms to 8 s,
// 30 s without data ends a request).
func WithRetry(p RetryPolicy) Option { return func(o *options) { o.retry = p } }

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
func WithReadahead(n int64) Option { return func(o *options) { o.readahead = n } }

// WithSignature makes Open check, before it reads anything else, that the
// manifest or index the reference names carries a valid cosign signature by
// v (see verify.Signature; opts choose the accepted forms and required
// annotations), and then read that manifest by the signed digest. Every
// byte the File returns is then covered by the chain signature -> manifest
// -> TOC digest annotation -> TOC -> chunk.
//
// Open fails with an error matching verify.ErrNoSignature or
// verify.ErrBadSignature when the signature does not hold; a TOC or chunk
// that does not match what the signed manifest says fails Open or a read with
// an error matching verify.ErrContentMismatch (as well as ErrChunkDigest,
// toc.ErrTOCDigest or ErrNoTOCDigest). It cannot be combined with
// WithInsecureSkipTOCDigest. Load v with verify.LoadPublicKey. The default
// checks no signature.
func WithSignature(v signature.Verifier, opts ...verify.Option) Option {
	return func(o *options) { o.signed, o.verifier, o.verifyOpts = true, v, opts }
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
		opt(&o)
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
	case o.signed && o.verifier == nil:
		return o, fmt.Errorf("WithSignature needs a verifier (verify.LoadPublicKey)")
	case o.signed && o.skipTOCDigest:
		return o, fmt.Errorf("a signature covers the TOC only through its digest annotation: it cannot be checked with the TOC digest skipped")
	}
	o.readahead = min(o.readahead, o.cacheSize/2)
	o.registry.Platform = o.platform
	return o, nil
}
