package disk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/trust"
)

// fetcher gets the verified bytes of a file's chunks: from the memory cache,
// the cache directory, or the blob, where adjacent missing chunks are
// fetched with one range request. A chunk is fetched once however many reads
// want it at the same time.
type fetcher struct {
	ctx        context.Context
	blob       blob.Blob
	name       string
	gzip       bool
	chunks     []toc.Chunk
	maxRequest int64
	signed     bool
	sem        chan struct{} // one token per request in flight
	cache      *memCache
	dir        *dirCache
	zstd       *zstd.Decoder
	gzPool     sync.Pool

	mu       sync.Mutex
	inflight map[int]*inflight
	// ahead holds the chunks readahead fetched that no read has asked for
	// yet, in flight or in the memory cache; aheadBytes is their size,
	// which aheadLimit bounds.
	ahead                  map[int]struct{}
	aheadBytes, aheadLimit int64
	// wanted marks the chunks a read has asked for: readahead does not
	// fetch them again once the cache has dropped them, as a sequential
	// reader (a copy) reads each byte once, and another stream of it
	// (nbdcopy's connections copy different parts) may have read them.
	wanted []bool
	wg     sync.WaitGroup

	fetched, hits, diskHits, zeros atomic.Int64
	prefetched, aheadHits          atomic.Int64
}

func newFetcher(ctx context.Context, b blob.Blob, format toc.Format, f *toc.File, o options) (*fetcher, error) {
	fe := &fetcher{
		ctx:        ctx,
		blob:       b,
		name:       f.Name,
		gzip:       format == toc.FormatEStargz || format == toc.FormatStargz,
		chunks:     slices.Clone(f.Chunks),
		maxRequest: o.maxRequest,
		signed:     o.signature != nil,
		sem:        make(chan struct{}, o.concurrency),
		cache:      newMemCache(o.cacheSize),
		inflight:   map[int]*inflight{},
		ahead:      map[int]struct{}{},
		aheadLimit: o.readahead,
	}
	if o.sem != nil {
		fe.sem = o.sem
	}
	if o.readahead > 0 {
		fe.wanted = make([]bool, len(f.Chunks))
		// What readahead fetched stays cached until read: the readahead is
		// at most half the cache.
		fe.cache.pinned = func(i int) bool { _, ok := fe.ahead[i]; return ok }
		fe.cache.evicted = func(i int) { fe.unahead(i) }
	}
	if o.cacheDir != "" {
		d, err := openDirCache(o.cacheDir)
		if err != nil {
			return nil, err
		}
		fe.dir = d
	}
	markZeros(fe.chunks)
	if !fe.gzip {
		var largest int64
		for _, c := range f.Chunks {
			largest = max(largest, c.Size)
		}
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(uint64(max(largest, 1<<20))))
		if err != nil {
			return nil, err
		}
		fe.zstd = dec
	}
	return fe, nil
}

// markZeros marks as zero the chunks whose digest is that of zeros: their
// content is known without fetching them. eStargz has no zero chunks of its
// own, and the free space of a raw disk is made of such chunks. Only sizes
// that many chunks share are checked, which are the fixed chunk size of
// eStargz; zstd:chunked writers mark their zero chunks themselves.
func markZeros(chunks []toc.Chunk) {
	bySize := map[int64]int{}
	for _, c := range chunks {
		if !c.Zero {
			bySize[c.Size]++
		}
	}
	zeroDigest := map[int64]digest.Digest{}
	for n, count := range bySize {
		if count >= 16 && len(zeroDigest) < 4 && n <= 64<<20 {
			zeroDigest[n] = digest.SHA256.FromBytes(make([]byte, n))
		}
	}
	for i := range chunks {
		if d, ok := zeroDigest[chunks[i].Size]; ok && chunks[i].Digest == d {
			chunks[i].Zero = true
		}
	}
}

func (fe *fetcher) close() {
	fe.wg.Wait()
	if fe.zstd != nil {
		fe.zstd.Close()
	}
}

// read fills p, which is within the file and not empty, from offset off.
// If then is set, it is called once the fetches the read needs are started,
// before the read waits for them.
func (fe *fetcher) read(p []byte, off int64, then func()) (int, error) {
	end := off + int64(len(p))
	first := sort.Search(len(fe.chunks), func(i int) bool { return fe.chunks[i].Offset+fe.chunks[i].Size > off })
	// part returns the bytes of p that chunk i covers, and where they start in the chunk.
	part := func(i int) ([]byte, int64) {
		c := fe.chunks[i]
		s, e := max(c.Offset, off), min(c.Offset+c.Size, end)
		return p[s-off : e-off], s - c.Offset
	}
	var waits []pending
	var claimed []int
	for i := first; i < len(fe.chunks) && fe.chunks[i].Offset < end; i++ {
		dst, from := part(i)
		if fe.chunks[i].Zero {
			clear(dst)
			fe.zeros.Add(1)
			continue
		}
		fe.mu.Lock()
		if fe.unahead(i) {
			fe.aheadHits.Add(1)
		}
		if fe.wanted != nil {
			fe.wanted[i] = true
		}
		if data, ok := fe.cache.get(i); ok {
			fe.mu.Unlock()
			copy(dst, data[from:])
			fe.hits.Add(1)
			continue
		}
		call, ok := fe.inflight[i]
		if !ok {
			call = &inflight{done: make(chan struct{})}
			fe.inflight[i] = call
			claimed = append(claimed, i)
		}
		fe.mu.Unlock()
		waits = append(waits, pending{i, call})
	}
	fe.start(claimed)
	if then != nil {
		then()
	}

	n := 0 // bytes of p known good, in order
	var firstErr error
	for _, w := range waits {
		<-w.call.done
		if w.call.err != nil {
			if firstErr == nil {
				firstErr = w.call.err
			}
			continue
		}
		dst, from := part(w.i)
		copy(dst, w.call.data[from:])
	}
	if firstErr == nil {
		return len(p), nil
	}
	// Report the bytes before the first chunk that failed.
	for i := first; i < len(fe.chunks) && fe.chunks[i].Offset < end; i++ {
		if !fe.chunks[i].Zero && !fe.good(i, waits) {
			break
		}
		dst, _ := part(i)
		n += len(dst)
	}
	return n, firstErr
}

// prefetch starts fetching the chunks of [off, end) that are neither
// zero, cached, in flight nor read before, for a read to come, unless that
// would take the bytes fetched ahead of reads past the readahead. It
// reports whether it had room.
func (fe *fetcher) prefetch(off, end int64) bool {
	first := sort.Search(len(fe.chunks), func(i int) bool { return fe.chunks[i].Offset+fe.chunks[i].Size > off })
	fe.mu.Lock()
	var claimed []int
	var size int64
	for i := first; i < len(fe.chunks) && fe.chunks[i].Offset < end; i++ {
		if _, ok := fe.inflight[i]; ok || fe.chunks[i].Zero || fe.wanted[i] || fe.cache.has(i) {
			continue
		}
		claimed = append(claimed, i)
		size += fe.chunks[i].Size
	}
	if fe.aheadBytes+size > fe.aheadLimit {
		fe.mu.Unlock()
		return false
	}
	for _, i := range claimed {
		fe.inflight[i] = &inflight{done: make(chan struct{})}
		fe.ahead[i] = struct{}{}
	}
	fe.aheadBytes += size
	fe.mu.Unlock()
	if len(claimed) > 0 {
		fe.prefetched.Add(int64(len(claimed)))
		// start reads the cache directory, which the reader that
		// triggered the readahead should not wait for.
		fe.wg.Go(func() { fe.start(claimed) })
	}
	return true
}

// release forgets that readahead fetched the chunks of [off, end) for a
// read to come: the stream they were fetched for has ended. They stay
// cached, but no longer count against the readahead.
func (fe *fetcher) release(off, end int64) {
	first := sort.Search(len(fe.chunks), func(i int) bool { return fe.chunks[i].Offset+fe.chunks[i].Size > off })
	fe.mu.Lock()
	defer fe.mu.Unlock()
	for i := first; i < len(fe.chunks) && fe.chunks[i].Offset < end; i++ {
		fe.unahead(i)
	}
}

// unahead forgets that readahead fetched chunk i, if it did, and reports
// whether it did. The caller holds fe.mu.
func (fe *fetcher) unahead(i int) bool {
	if _, ok := fe.ahead[i]; !ok {
		return false
	}
	delete(fe.ahead, i)
	fe.aheadBytes -= fe.chunks[i].Size
	return true
}

// good reports whether chunk i, which a read waited for or found, has its bytes.
func (fe *fetcher) good(i int, waits []pending) bool {
	for _, w := range waits {
		if w.i == i {
			return w.call.err == nil
		}
	}
	return true // from the cache
}

// start fetches the claimed chunks: from the cache directory if it has
// them, else in runs of adjacent chunks, one request per run, at most
// len(sem) requests at once.
func (fe *fetcher) start(claimed []int) {
	var missing []int
	for _, i := range claimed {
		if fe.dir != nil {
			if data, ok := fe.dir.get(fe.chunks[i].Digest, fe.chunks[i].Size); ok {
				fe.diskHits.Add(1)
				fe.finish(i, data, nil)
				continue
			}
		}
		missing = append(missing, i)
	}
	for len(missing) > 0 {
		run := 1
		size := fe.chunks[missing[0]].CompressedSize
		for run < len(missing) {
			prev, next := fe.chunks[missing[run-1]], fe.chunks[missing[run]]
			if missing[run] != missing[run-1]+1 || next.CompressedOffset != prev.CompressedOffset+prev.CompressedSize ||
				size+next.CompressedSize > fe.maxRequest {
				break
			}
			size += next.CompressedSize
			run++
		}
		r := missing[:run]
		missing = missing[run:]
		fe.wg.Add(1)
		go func() {
			defer fe.wg.Done()
			select {
			case fe.sem <- struct{}{}:
			case <-fe.ctx.Done():
				for _, i := range r {
					fe.finish(i, nil, fe.ctx.Err())
				}
				return
			}
			fe.fetchRun(r)
			<-fe.sem
		}()
	}
}

// fetchRun fetches the adjacent chunks r with one request, then decompresses
// and verifies each.
func (fe *fetcher) fetchRun(r []int) {
	first, last := fe.chunks[r[0]], fe.chunks[r[len(r)-1]]
	start, end := first.CompressedOffset, last.CompressedOffset+last.CompressedSize
	buf := make([]byte, end-start)
	if _, err := fe.blob.ReadAt(buf, start); err != nil {
		err = fmt.Errorf("fetching chunks %d-%d of %s: %w", r[0], r[len(r)-1], fe.name, err)
		for _, i := range r {
			fe.finish(i, nil, err)
		}
		return
	}
	for _, i := range r {
		c := fe.chunks[i]
		data, err := fe.decode(c, buf[c.CompressedOffset-start:c.CompressedOffset-start+c.CompressedSize])
		if err == nil {
			fe.fetched.Add(1)
			if fe.dir != nil {
				fe.dir.put(c.Digest, data) // best effort: a full disk only costs a refetch
			}
		}
		fe.finish(i, data, err)
	}
}

// decode decompresses chunk c from its compressed bytes and checks its digest.
func (fe *fetcher) decode(c toc.Chunk, comp []byte) ([]byte, error) {
	data := make([]byte, c.Size)
	var err error
	if fe.gzip {
		err = fe.gunzip(data, comp)
	} else {
		var out []byte
		out, err = fe.zstd.DecodeAll(comp, data[:0])
		if err == nil && int64(len(out)) != c.Size {
			err = fmt.Errorf("it decompresses to %d bytes, not %d", len(out), c.Size)
		}
		data = out
	}
	where := fmt.Sprintf("chunk [%d, %d) of %s (blob bytes %d-%d)", c.Offset, c.Offset+c.Size, fe.name, c.CompressedOffset, c.CompressedOffset+c.CompressedSize-1)
	if err != nil {
		return nil, fe.mismatch(fmt.Errorf("%s does not decompress (%w): %w", where, err, ErrChunkDigest))
	}
	if got := c.Digest.Algorithm().FromBytes(data); got != c.Digest {
		return nil, fe.mismatch(fmt.Errorf("%s hashes to %s, but its TOC says %s: %w", where, got, c.Digest, ErrChunkDigest))
	}
	return data, nil
}

// mismatch marks a chunk that does not match its TOC as content that does
// not match the signed manifest, when a signature was checked.
func (fe *fetcher) mismatch(err error) error {
	if fe.signed {
		return fmt.Errorf("%w: %w", trust.ErrContentMismatch, err)
	}
	return err
}

// gunzip fills data from the gzip members in comp (eStargz: a chunk starts
// a member; the range may run on into the next file's header).
func (fe *fetcher) gunzip(data, comp []byte) error {
	zr, _ := fe.gzPool.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(comp))
	} else {
		err = zr.Reset(bytes.NewReader(comp))
	}
	if err != nil {
		return fmt.Errorf("it is not gzip: %w", err)
	}
	defer fe.gzPool.Put(zr)
	if _, err := io.ReadFull(zr, data); err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	return nil
}

// finish records the outcome of chunk i's fetch and wakes its readers.
func (fe *fetcher) finish(i int, data []byte, err error) {
	fe.mu.Lock()
	call := fe.inflight[i]
	delete(fe.inflight, i)
	if err != nil || !fe.cache.put(i, data) {
		fe.unahead(i) // nothing keeps it for a read to come
	}
	fe.mu.Unlock()
	call.data, call.err = data, err
	close(call.done)
}
