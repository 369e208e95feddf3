package convert

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/gzip"

	"github.com/lazydisk/lazydisk/toc"
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
	format    toc.Format
	chunkSize int
	level     int // 0: the format's default
	workers   int
	progress  func(Progress)
	force     bool
	tmpDir    string
}

func makeOptions(opts []Option) (options, error) {
	o := options{
		format:    toc.FormatEStargz,
		chunkSize: DefaultChunkSize,
		workers:   runtime.GOMAXPROCS(0),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	// The level's range depends on the format, whichever option came first.
	switch o.format {
	case toc.FormatEStargz:
		if o.level == 0 {
			o.level = DefaultGzipLevel
		} else if o.level < gzip.BestSpeed || o.level > gzip.BestCompression {
			return o, fmt.Errorf("compression level %d is out of range for eStargz: use 1 (fastest) to 9 (smallest)", o.level)
		}
	case toc.FormatZstdChunked:
		if o.level == 0 {
			o.level = DefaultZstdLevel
		} else if o.level < 1 || o.level > 22 {
			return o, fmt.Errorf("compression level %d is out of range for zstd:chunked: use 1 (fastest) to 22 (smallest)", o.level)
		}
	default:
		return o, fmt.Errorf("unknown format %q: use %q or %q", o.format, toc.FormatEStargz, toc.FormatZstdChunked)
	}
	return o, nil
}

// WithFormat sets the output format: toc.FormatEStargz (gzip members, read
// by stargz-snapshotter, the estargz package and, with insecure options,
// containers/storage) or toc.FormatZstdChunked (as containers/storage >=
// 1.54, podman >= 5.1, reads it for partial pulls). Other formats of toc
// (stargz, legacy zstd:chunked) are read, not written. The default is
// toc.FormatEStargz.
func WithFormat(f toc.Format) Option {
	return func(o *options) error {
		o.format = f
		return nil
	}
}

// CheckOptions reports the first invalid option, so that callers can
// reject bad settings before any I/O.
func CheckOptions(opts ...Option) error {
	_, err := makeOptions(opts)
	return err
}

// WithChunkSize sets the uncompressed size of file chunks, between
// MinChunkSize and MaxChunkSize: the fixed size of eStargz chunks, and the
// average of zstd:chunked's content-defined chunks (which range from 3/4 to
// twice it). The default is DefaultChunkSize (256 KiB).
func WithChunkSize(n int) Option {
	return func(o *options) error {
		if n < MinChunkSize || n > MaxChunkSize {
			return fmt.Errorf("chunk size %d is out of range: use %d KiB to %d MiB", n, MinChunkSize>>10, MaxChunkSize>>20)
		}
		o.chunkSize = n
		return nil
	}
}

// WithCompressionLevel sets the compression level: gzip 1 (fastest) to 9
// (smallest) for eStargz, zstd 1 to 22 for zstd:chunked. Zero, the default,
// means DefaultGzipLevel (6) or DefaultZstdLevel (3).
func WithCompressionLevel(level int) Option {
	return func(o *options) error {
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

// WithForce converts layers that are already valid in the target format,
// with correct annotations, instead of keeping them. The default is to keep
// them.
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
