package disk

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/toc"
)

// File is random access to one file of an image. Its methods may be called
// concurrently.
type File struct {
	ctx      context.Context
	cancel   context.CancelFunc
	ref      string
	manifest v1.Hash
	signed   v1.Hash
	layer    v1.Descriptor
	name     string
	size     int64
	entry    toc.File
	format   toc.Format
	blob     blob.Blob
	tocStats blob.Stats
	fetch    *fetcher
	ahead    *detector // nil without readahead
	closed   atomic.Bool
}

// Stats counts what a File's reads cost.
type Stats struct {
	// Requests and BytesFetched count the range requests made, and the
	// bytes they received, since Open: the TOC's and the chunks', with
	// retries.
	Requests     int64 `json:"requests"`
	BytesFetched int64 `json:"bytesFetched"`
	// TOCRequests and TOCBytes are the part of them Open spent on the
	// layers' footers and TOCs.
	TOCRequests int64 `json:"tocRequests"`
	TOCBytes    int64 `json:"tocBytes"`
	// Retries counts requests sent again after a failure that may pass.
	Retries int64 `json:"retries"`
	// RangeIgnored counts requests the registry answered with the whole
	// blob; each was read up to the bytes asked, then dropped.
	RangeIgnored int64 `json:"rangeIgnored"`
	// ChunksFetched counts chunks fetched, decompressed and verified.
	ChunksFetched int64 `json:"chunksFetched"`
	// CacheHits and DiskCacheHits count chunk reads served from the memory
	// cache and from the cache directory.
	CacheHits     int64 `json:"cacheHits"`
	DiskCacheHits int64 `json:"diskCacheHits"`
	// ZeroChunks counts chunk reads served as zeros without fetching.
	ZeroChunks int64 `json:"zeroChunks"`
	// ReadaheadChunks counts chunks fetched ahead of sequential reads
	// (WithReadahead), and ReadaheadHits those of them that a read then
	// asked for; they are in ChunksFetched, and the hits in CacheHits when
	// they had arrived.
	ReadaheadChunks int64 `json:"readaheadChunks"`
	ReadaheadHits   int64 `json:"readaheadHits"`
}

func newFile(ctx context.Context, cancel context.CancelFunc, b blob.Blob, ix *toc.Index, name string, o options) (*File, error) {
	tf, ok := ix.Lookup(name)
	if !ok {
		return nil, ErrFileNotFound
	}
	if tf.Size == 0 {
		return nil, fmt.Errorf("it is 0 bytes long: %w", ErrEmptyDisk)
	}
	for _, c := range tf.Chunks {
		if c.Digest == "" && !c.Zero {
			return nil, fmt.Errorf("the chunk at %d has none: %w", c.Offset, ErrUnverifiable)
		}
	}
	fe, err := newFetcher(ctx, b, ix.Format, tf, o)
	if err != nil {
		return nil, err
	}
	entry := *tf
	entry.Chunks = nil
	f := &File{ctx: ctx, cancel: cancel, name: tf.Name, size: tf.Size, entry: entry, format: ix.Format, blob: b, fetch: fe}
	if o.readahead > 0 {
		f.ahead = newDetector(o.readahead, tf.Size, fe)
	}
	return f, nil
}

// Name returns the file's path in the image, without a leading "/".
func (f *File) Name() string { return f.name }

// Entry returns the file's entry in its layer's TOC (type, mode, owner,
// modification time, size), without its chunks.
func (f *File) Entry() toc.File { return f.entry }

// Size returns the file's size in bytes.
func (f *File) Size() int64 { return f.size }

// Format returns the format of the layer the file is read from.
func (f *File) Format() toc.Format { return f.format }

// Ref returns the image reference the file was opened from.
func (f *File) Ref() string { return f.ref }

// Chunks returns how many chunks the file has.
func (f *File) Chunks() int { return len(f.fetch.chunks) }

// Stats returns what the File's reads have cost so far.
func (f *File) Stats() Stats {
	b := f.blob.Stats()
	return Stats{
		Requests:      b.Requests,
		BytesFetched:  b.Bytes,
		TOCRequests:   f.tocStats.Requests,
		TOCBytes:      f.tocStats.Bytes,
		Retries:       b.Retries,
		RangeIgnored:  b.RangeIgnored,
		ChunksFetched: f.fetch.fetched.Load(),
		CacheHits:     f.fetch.hits.Load(),
		DiskCacheHits: f.fetch.diskHits.Load(),
		ZeroChunks:    f.fetch.zeros.Load(),

		ReadaheadChunks: f.fetch.prefetched.Load(),
		ReadaheadHits:   f.fetch.aheadHits.Load(),
	}
}

// Close cancels the fetches in flight, readahead included, waits for them
// to end and releases the connections. Reads fail after it.
func (f *File) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	f.cancel()
	f.fetch.close()
	return f.blob.Close()
}

// ReadAt reads len(p) bytes at off, following io.ReaderAt: a read that
// reaches past the end returns the bytes up to it and io.EOF. Every byte it
// returns is from a chunk that matched its digest. On an error it returns
// the bytes read before the first chunk that failed. With WithReadahead, a
// read that continues a sequential stream of reads fetches ahead of it.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	return f.readAt(p, off, f.ahead)
}

// readAt is ReadAt, telling d of the read if d is set.
func (f *File) readAt(p []byte, off int64, d *detector) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading %s at offset %d: negative offset", f.name, off)
	}
	if f.closed.Load() {
		return 0, fmt.Errorf("reading %s: %w", f.name, fs.ErrClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= f.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > f.size-off {
		p, eof = p[:f.size-off], io.EOF
	}
	if err := f.ctx.Err(); err != nil {
		return 0, err
	}
	var then func()
	if d != nil {
		end := off + int64(len(p))
		then = func() { d.observe(off, end) }
	}
	n, err := f.fetch.read(p, off, then)
	if err != nil {
		return n, err
	}
	return n, eof
}

// Extent is a run of the file that is either all zero chunks or all others.
type Extent struct {
	Offset, Length int64
	// Zero is set for zero chunks: they read as zeros and cost no fetch.
	Zero bool
}

// Extents returns the extents that cover [off, off+length) of the file,
// clamped to its size, merging neighbours of the same kind. Zero chunks are
// zstd:chunked's zeros chunks and the chunks whose digest is that of zeros.
func (f *File) Extents(off, length int64) []Extent {
	end := min(off+length, f.size)
	if off < 0 || off >= end {
		return nil
	}
	var out []Extent
	chunks := f.fetch.chunks
	i := sort.Search(len(chunks), func(i int) bool { return chunks[i].Offset+chunks[i].Size > off })
	for ; i < len(chunks) && chunks[i].Offset < end; i++ {
		c := chunks[i]
		s, e := max(c.Offset, off), min(c.Offset+c.Size, end)
		if n := len(out); n > 0 && out[n-1].Zero == c.Zero {
			out[n-1].Length = e - out[n-1].Offset
			continue
		}
		out = append(out, Extent{Offset: s, Length: e - s, Zero: c.Zero})
	}
	return out
}

// inflight is a chunk being fetched: done is closed once data or err is set.
type inflight struct {
	done chan struct{}
	data []byte
	err  error
}

// pending is a chunk a read waits for.
type pending struct {
	i    int
	call *inflight
}

var _ io.ReaderAt = (*File)(nil)
