package convert

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/gzip"
)

const (
	// DefaultChunkSize is the default uncompressed size of a chunk: 256 KiB.
	// A cold random 4 KiB read of a VM disk costs one compressed chunk
	// (about 85 KiB on a real root filesystem, against 340 KiB at 1 MiB),
	// while the TOC grows by one entry per chunk (1.9 MiB gzipped for a
	// 10 GiB disk) and the output by 0.6%; docs/chunk-size.md has the
	// measurements behind this choice.
	DefaultChunkSize = 256 << 10
	// MinChunkSize and MaxChunkSize bound WithChunkSize.
	MinChunkSize = 64 << 10
	MaxChunkSize = 64 << 20
	// DefaultGzipLevel is the default gzip level for eStargz: 6, which on
	// disk images is within about 3% of level 9's size at several times
	// its speed.
	DefaultGzipLevel = 6
)

// Option configures a conversion.
type Option func(*options) error

type options struct {
	chunkSize int
	level     int
	workers   int
	progress  func(Progress)
	force     bool
	tmpDir    string
}

func makeOptions(opts []Option) (options, error) {
	o := options{
		chunkSize: DefaultChunkSize,
		level:     DefaultGzipLevel,
		workers:   runtime.GOMAXPROCS(0),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// CheckOptions reports the first invalid option, so that callers can
// reject bad settings before any I/O.
func CheckOptions(opts ...Option) error {
	_, err := makeOptions(opts)
	return err
}

// WithChunkSize sets the uncompressed size of file chunks, between
// MinChunkSize and MaxChunkSize. The default is DefaultChunkSize (256 KiB).
func WithChunkSize(n int) Option {
	return func(o *options) error {
		if n < MinChunkSize || n > MaxChunkSize {
			return fmt.Errorf("chunk size %d is out of range: use %d KiB to %d MiB", n, MinChunkSize>>10, MaxChunkSize>>20)
		}
		o.chunkSize = n
		return nil
	}
}

// WithCompressionLevel sets the gzip level, 1 (fastest) to 9 (smallest).
// The default is DefaultGzipLevel (6).
func WithCompressionLevel(level int) Option {
	return func(o *options) error {
		if level < gzip.BestSpeed || level > gzip.BestCompression {
			return fmt.Errorf("compression level %d is out of range: use 1 (fastest) to 9 (smallest)", level)
		}
		o.level = level
		return nil
	}
}

// WithWorkers sets how many chunks are compressed at once. It changes speed
// and memory, never the output. The default is runtime.GOMAXPROCS(0).
func WithWorkers(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("workers must be at least 1, got %d", n)
		}
		o.workers = n
		return nil
	}
}

// WithProgress sets a function called as each layer is read. Calls come
// from one goroutine at a time and should return quickly.
func WithProgress(f func(Progress)) Option {
	return func(o *options) error {
		o.progress = f
		return nil
	}
}

// WithForce converts layers that are already valid eStargz with correct
// annotations instead of keeping them. The default is to keep them.
func WithForce(force bool) Option {
	return func(o *options) error {
		o.force = force
		return nil
	}
}

// WithTempDir sets where converted blobs are staged before they are
// written to the destination. The default is os.TempDir().
func WithTempDir(dir string) Option {
	return func(o *options) error {
		o.tmpDir = dir
		return nil
	}
}
