package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/lazydisk/lazydisk/bench/benchutil"
	"github.com/lazydisk/lazydisk/toc"
)

// A disk is one file of the study, mapped into memory.
type disk struct {
	name    string // e.g. disk-v1.qcow2
	version string // v1, v2-inplace, v2-rebuilt
	format  string // qcow2 or raw
	data    []byte
	offsets map[int][]int64 // random read offsets per read size
}

// studyDisks are the files mkversions.sh builds: version, format, name.
var studyDisks = []struct{ version, format, name string }{
	{"v1", "qcow2", "disk-v1.qcow2"},
	{"v2-inplace", "qcow2", "disk-v2-inplace.qcow2"},
	{"v2-rebuilt", "qcow2", "disk-v2-rebuilt.qcow2"},
	{"v1", "raw", "disk-v1.img"},
	{"v2-inplace", "raw", "disk-v2-inplace.img"},
	{"v2-rebuilt", "raw", "disk-v2-rebuilt.img"},
}

// openDisks maps every study disk of dir read-only into memory.
func openDisks(dir string, samples int, seed uint64) ([]*disk, func(), error) {
	var disks []*disk
	unmap := func() {
		for _, d := range disks {
			syscall.Munmap(d.data)
		}
	}
	for _, sd := range studyDisks {
		path := filepath.Join(dir, sd.name)
		f, err := os.Open(path)
		if err != nil {
			unmap()
			return nil, nil, fmt.Errorf("%w (run bench/mkversions.sh first)", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			unmap()
			return nil, nil, err
		}
		data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		f.Close()
		if err != nil {
			unmap()
			return nil, nil, fmt.Errorf("mapping %s: %w", path, err)
		}
		disks = append(disks, &disk{
			name: sd.name, version: sd.version, format: sd.format, data: data,
			offsets: benchutil.RandomOffsets(fi.Size(), samples, seed),
		})
	}
	return disks, unmap, nil
}

// readSizes are the sizes of the random reads; readAlign aligns them, like
// a guest's page-sized I/O. As in the eStargz chunk-size study.
var readSizes = benchutil.ReadSizes

const readAlign = benchutil.ReadAlign

// A chunkInfo is a span with what the writer would record for it.
type chunkInfo struct {
	span
	digest [32]byte // sha256 of the chunk's bytes
	csize  int64    // its zstd frame
}

// diskResult is what one chunker gives on one disk.
type diskResult struct {
	chunks                 []chunkInfo
	dataChunks, zeroChunks int
	dataBytes, zeroBytes   int64
	frames                 int64 // all frames: the blob without headers, TOC and tar-split
	tocEntries             int
	tocJSON, tocZstd       int
	reads                  []readCost
}

// readCost is the mean cost of one random read of a given size: the
// compressed bytes of the data chunks it touches, and their uncompressed
// bytes, which are decompressed and hashed. Zeros chunks cost nothing.
type readCost struct {
	fetch, decompress float64
}

// frameCache remembers the zstd frame size of every chunk content already
// compressed, across chunkers and disks: most chunks recur.
type frameCache struct {
	mu sync.Mutex
	m  map[[32]byte]int64
}

// studyLevel is the compression level, zstd's 3 (klauspost SpeedDefault),
// that containers/image uses for zstd:chunked.
const studyLevel = 3

// newEncoder returns the encoder of every chunk frame and TOC: one frame
// per EncodeAll, with checksum, as a zstd:chunked writer writes them.
func newEncoder() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(studyLevel)),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
}

// measure chunks one disk and computes everything about the chunks.
func measure(ctx context.Context, c chunker, d *disk, enc *zstd.Encoder, cache *frameCache) (*diskResult, error) {
	spans := c.chunk(d.data)
	if err := checkTiling(spans, int64(len(d.data))); err != nil {
		return nil, fmt.Errorf("%s on %s: %w", c, d.name, err)
	}
	res := &diskResult{chunks: make([]chunkInfo, len(spans))}
	var buf []byte
	for i, s := range spans {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		b := d.data[s.off : s.off+s.size]
		ci := chunkInfo{span: s, digest: sha256.Sum256(b)}
		cache.mu.Lock()
		n, ok := cache.m[ci.digest]
		cache.mu.Unlock()
		if !ok {
			buf = enc.EncodeAll(b, buf[:0])
			n = int64(len(buf))
			cache.mu.Lock()
			cache.m[ci.digest] = n
			cache.mu.Unlock()
		}
		ci.csize = n
		res.frames += n
		if s.zeros {
			res.zeroChunks++
			res.zeroBytes += s.size
		} else {
			res.dataChunks++
			res.dataBytes += s.size
		}
		res.chunks[i] = ci
	}
	var err error
	if res.tocEntries, res.tocJSON, res.tocZstd, err = tocSize(d, res.chunks, enc); err != nil {
		return nil, err
	}
	for _, rs := range readSizes {
		res.reads = append(res.reads, readCosts(res.chunks, rs, d.offsets[rs]))
	}
	return res, nil
}

// checkTiling fails unless spans cover [0, size) in order without gaps.
func checkTiling(spans []span, size int64) error {
	var off int64
	for i, s := range spans {
		if s.off != off || s.size <= 0 {
			return fmt.Errorf("chunk %d is [%d, +%d), want it to start at %d", i, s.off, s.size, off)
		}
		off += s.size
	}
	if off != size {
		return fmt.Errorf("chunks end at %d, the file at %d", off, size)
	}
	return nil
}

// tocSize builds the TOC that containers/storage's writer would write for a
// containerDisk layer holding the disk as these chunks ("dir" entry for
// disk/, "reg" entry carrying chunk 0, a "chunk" entry for each other
// chunk, frame offsets in a blob that starts with the tar headers), and
// returns its entry count and its sizes as compact JSON and as one zstd
// frame.
func tocSize(d *disk, chunks []chunkInfo, enc *zstd.Encoder) (entries, jsonSize, zstdSize int, err error) {
	mtime := time.Unix(1704067200, 0).UTC()
	name := "disk/" + d.name
	whole := sha256.Sum256(d.data[:min(len(d.data), 1<<20)]) // any digest: its size is what counts
	es := []toc.ZstdChunkedEntry{{Type: "dir", Name: "disk/", Mode: 0o555, UID: 107, GID: 107, ModTime: &mtime}}
	off := int64(3 * 512) // the frames of the tar headers before the first chunk
	for i, c := range chunks {
		e := toc.ZstdChunkedEntry{Type: "chunk", Name: name, ChunkOffset: c.off}
		if i == 0 {
			e = toc.ZstdChunkedEntry{Type: "reg", Name: name, Mode: 0o444, Size: int64(len(d.data)), UID: 107, GID: 107,
				ModTime: &mtime, Digest: digest.NewDigestFromBytes(digest.SHA256, whole[:]).String()}
		}
		if len(chunks) > 1 {
			e.ChunkSize = c.size
			e.ChunkDigest = "sha256:" + hex.EncodeToString(c.digest[:])
			if c.zeros {
				e.ChunkType = toc.ChunkTypeZeros
			}
		}
		e.Offset = off
		off += c.csize
		es = append(es, e)
	}
	es[1].EndOffset = off
	b, err := json.Marshal(toc.ZstdChunkedTOC{Version: 1, Entries: es,
		TarSplitDigest: digest.FromString("tar-split")})
	if err != nil {
		return 0, 0, 0, err
	}
	return len(es), len(b), len(enc.EncodeAll(b, nil)), nil
}

// readCosts returns the mean cost of reads of readSize bytes at offsets.
func readCosts(chunks []chunkInfo, readSize int, offsets []int64) readCost {
	var fetch, dec int64
	for _, off := range offsets {
		end := off + int64(readSize)
		i := sort.Search(len(chunks), func(i int) bool { return chunks[i].off+chunks[i].size > off })
		for ; i < len(chunks) && chunks[i].off < end; i++ {
			if !chunks[i].zeros {
				fetch += chunks[i].csize
				dec += chunks[i].size
			}
		}
	}
	n := float64(len(offsets))
	return readCost{fetch: float64(fetch) / n, decompress: float64(dec) / n}
}

// dedupResult is what a pull of v2 can reuse of v1, chunk by chunk.
type dedupResult struct {
	dataBytes   int64 // v2's bytes in data chunks
	reusedBytes int64 // of those, in chunks whose digest v1 has
	fetch       int64 // compressed bytes of v2's data chunks that v1 lacks, each distinct chunk once
	frames      int64 // v2's frames, for scale
}

// dedup compares the data chunks of v2 with those of v1.
func dedup(v1, v2 *diskResult) dedupResult {
	have := make(map[[32]byte]bool, len(v1.chunks))
	for _, c := range v1.chunks {
		if !c.zeros {
			have[c.digest] = true
		}
	}
	r := dedupResult{frames: v2.frames}
	fetched := make(map[[32]byte]bool)
	for _, c := range v2.chunks {
		if c.zeros {
			continue
		}
		r.dataBytes += c.size
		switch {
		case have[c.digest]:
			r.reusedBytes += c.size
		case !fetched[c.digest]:
			fetched[c.digest] = true
			r.fetch += c.csize
		}
	}
	return r
}

// blockDedup is the bound for chunkings whose boundaries are 4 KiB-aligned:
// the share of v2's non-zero 4 KiB blocks whose content is somewhere in v1.
func blockDedup(ctx context.Context, v1, v2 *disk) (float64, error) {
	hashes := func(d *disk) ([][32]byte, error) {
		n := (len(d.data) + cdcBlock - 1) / cdcBlock
		out := make([][32]byte, n)
		g, ctx := errgroup.WithContext(ctx)
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			g.Go(func() error {
				for i := w; i < n; i += workers {
					if i%4096 == 0 && ctx.Err() != nil {
						return ctx.Err()
					}
					b := d.data[i*cdcBlock : min((i+1)*cdcBlock, len(d.data))]
					if !allZero(b) {
						out[i] = sha256.Sum256(b)
					}
				}
				return nil
			})
		}
		return out, g.Wait()
	}
	h1, err := hashes(v1)
	if err != nil {
		return 0, err
	}
	h2, err := hashes(v2)
	if err != nil {
		return 0, err
	}
	var zero [32]byte
	have := make(map[[32]byte]bool, len(h1))
	for _, h := range h1 {
		have[h] = true
	}
	var total, found int
	for _, h := range h2 {
		if h == zero {
			continue
		}
		total++
		if have[h] {
			found++
		}
	}
	return float64(found) / float64(total), nil
}
