package disk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

// TestReadRanges is the property test: for both formats, over a real
// registry, random ranges and the edge cases (empty, first and last byte,
// chunk and zero-chunk boundaries, past the end) read the disk's bytes.
func TestReadRanges(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()
	size := int64(len(data))
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			ref, _ := pushDisk(t, reg, "ranges/"+string(format), format, data, nil)
			// A cache smaller than a read makes most reads fetch.
			f := open(t, ref, disk.WithCacheSize(3*testChunk))
			if f.Size() != size || f.Name() != "disk/disk.img" {
				t.Fatalf("Open: %s, %d bytes; want disk/disk.img, %d", f.Name(), f.Size(), size)
			}
			bounds := disk.ChunkBounds(f)
			if len(bounds) < 20 {
				t.Fatalf("the fixture has %d chunks; the test wants many", len(bounds)-1)
			}
			zeros := 0
			for _, e := range f.Extents(0, size) {
				if e.Zero {
					zeros++
					bounds = append(bounds, e.Offset, e.Offset+e.Length)
				}
			}
			if format == toc.FormatZstdChunked && zeros == 0 {
				t.Fatal("the zstd:chunked fixture has no zero chunks")
			}
			type rng struct{ off, n int64 }
			ranges := []rng{{0, 0}, {size, 0}, {size + 5, 0}, {0, 1}, {size - 1, 1}, {0, size}, {size - 10, 100},
				{size, 1}, {size + 1000, 10}, {0, size + 1}}
			for _, b := range bounds {
				for _, d := range []int64{-1, 0, 1} {
					if o := b + d; o >= 0 {
						ranges = append(ranges, rng{o, 1}, rng{o, 2}, rng{o - min(o, 3), 7})
					}
				}
			}
			r := rand.New(rand.NewPCG(uint64(len(format)), 5))
			for range 300 {
				n := r.Int64N(4 * testChunk)
				if r.IntN(4) == 0 {
					n = r.Int64N(4096)
				}
				ranges = append(ranges, rng{r.Int64N(size + 10), n})
			}
			for _, x := range ranges {
				checkRead(t, f, data, x.off, x.n)
			}
			// The same reads, concurrently, on a File with a shared cache.
			g := open(t, ref)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for k := w; k < len(ranges); k += 8 {
						checkRead(t, g, data, ranges[k].off, ranges[k].n)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			var all bytes.Buffer
			if n, err := f.WriteRange(&all, 0, size+100); err != nil || n != size || !bytes.Equal(all.Bytes(), data) {
				t.Errorf("WriteRange(all) = %d, %v; equal: %t", n, err, bytes.Equal(all.Bytes(), data))
			}
			var part bytes.Buffer
			if n, err := f.WriteRange(&part, 12345, 5<<20); err != nil || n != size-12345 || !bytes.Equal(part.Bytes(), data[12345:]) {
				t.Errorf("WriteRange(12345, 5 MiB) = %d, %v", n, err)
			}
		})
	}
}

// TestLazy checks what reads cost: a cold small read fetches only the
// chunks it covers, in one request; zero chunks and cached chunks cost
// nothing; adjacent chunks are fetched with one request.
func TestLazy(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			ref, _ := pushDisk(t, reg, "lazy/"+string(format), format, data, nil)
			f := open(t, ref)
			st := f.Stats()
			if st.Requests != st.TOCRequests || st.Requests < 1 || st.Requests > 2 || st.BytesFetched != st.TOCBytes {
				t.Fatalf("after Open: %+v; want only the TOC's one or two requests", st)
			}
			bounds := disk.ChunkBounds(f)
			comp := disk.CompressedSizes(f)
			// A 4 KiB read inside the data chunk in the middle.
			i := len(comp) / 2
			for comp[i] == 0 || bounds[i+1]-bounds[i] < 8192 {
				i++
			}
			before := f.Stats()
			checkRead(t, f, data, bounds[i]+100, 4096)
			after := f.Stats()
			if got := after.Requests - before.Requests; got != 1 {
				t.Errorf("a 4 KiB read made %d requests, want 1", got)
			}
			if got := after.BytesFetched - before.BytesFetched; got != comp[i] {
				t.Errorf("a 4 KiB read fetched %d bytes, want the chunk's %d", got, comp[i])
			}
			// Again: from the cache.
			checkRead(t, f, data, bounds[i]+200, 4096)
			if again := f.Stats(); again.Requests != after.Requests || again.CacheHits != after.CacheHits+1 {
				t.Errorf("a cached read: %+v after %+v", again, after)
			}
			// Five adjacent cold data chunks: one request.
			j := i + 2
			for k := j; k < j+5; k++ {
				if comp[k] == 0 {
					j = k + 1
				}
			}
			before = f.Stats()
			checkRead(t, f, data, bounds[j], bounds[j+5]-bounds[j])
			after = f.Stats()
			if after.Requests-before.Requests != 1 || after.ChunksFetched-before.ChunksFetched != 5 {
				t.Errorf("5 adjacent chunks: %d requests, %d chunks; want 1 and 5", after.Requests-before.Requests, after.ChunksFetched-before.ChunksFetched)
			}
			for _, e := range f.Extents(0, f.Size()) {
				if !e.Zero {
					continue
				}
				before = f.Stats()
				checkRead(t, f, data, e.Offset, e.Length)
				if after = f.Stats(); after.Requests != before.Requests || after.ZeroChunks == before.ZeroChunks {
					t.Errorf("reading the zero extent %+v: %+v after %+v; want no request", e, after, before)
				}
				break
			}
		})
	}
}

// TestCorruptChunk corrupts one byte of one chunk in the registry's
// storage: reads of that chunk fail with ErrChunkDigest, others succeed.
func TestCorruptChunk(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			ref, img := pushDisk(t, reg, "corrupt/"+string(format), format, data, nil)
			f := open(t, ref, disk.WithCacheSize(0))
			bounds := disk.ChunkBounds(f)
			i := corruptChunk(t, reg, img, f, len(bounds)/3)
			p := make([]byte, 4096)
			for _, at := range []int64{bounds[i], bounds[i+1] - 10, bounds[i] - 10} {
				n, err := f.ReadAt(p, at)
				if !errors.Is(err, disk.ErrChunkDigest) {
					t.Errorf("ReadAt(%d) over the corrupt chunk: %d, %v; want ErrChunkDigest", at, n, err)
				}
				t.Logf("error: %v", err)
				if want := max(0, bounds[i]-at); int64(n) != want || !bytes.Equal(p[:n], data[at:at+int64(n)]) {
					t.Errorf("ReadAt(%d) returned %d bytes, want the %d before the corrupt chunk", at, n, want)
				}
			}
			checkRead(t, f, data, bounds[i+1], 4096)
			checkRead(t, f, data, 0, bounds[i])
		})
	}
}

// corruptChunk flips one byte in the middle of the first chunk of f from
// chunk index from on that has at least 1000 compressed bytes, in the
// registry's storage of img's layer, and returns the chunk's index.
func corruptChunk(t *testing.T, reg *testregistry.Registry, img v1.Image, f *disk.File, from int) int {
	t.Helper()
	bounds, sizes := disk.ChunkBounds(f), disk.CompressedSizes(f)
	i := from
	for sizes[i] < 1000 {
		i++
	}
	path := reg.BlobPath(layerDigest(t, img).String())
	blob, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blob[chunkBlobOffset(t, blob, int64(len(blob)), img, bounds[i])+sizes[i]/2] ^= 0x40
	if err := os.WriteFile(path, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	return i
}

// chunkBlobOffset finds where the chunk at file offset off starts in the blob.
func chunkBlobOffset(t *testing.T, blob []byte, size int64, img v1.Image, off int64) int64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	ix, err := toc.Read(bytes.NewReader(blob), size, m.Layers[0].Annotations)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ix.Lookup("disk/disk.img")
	return f.ChunksFor(off, 1)[0].CompressedOffset
}

// TestTrust checks the TOC digest annotation: a missing one is refused
// unless the caller accepts it; a wrong one is refused always.
func TestTrust(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()[:1<<20]
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			drop := func(m *v1.Manifest) {
				for k := range m.Layers[0].Annotations {
					if k == toc.AnnotationTOCDigest || k == toc.AnnotationZstdChunkedManifestChecksum {
						delete(m.Layers[0].Annotations, k)
					}
				}
			}
			ref, _ := pushDisk(t, reg, "noann/"+string(format), format, data, drop)
			_, err := disk.Open(t.Context(), mustRef(t, ref), anonymous())
			if !errors.Is(err, disk.ErrNoTOCDigest) {
				t.Errorf("Open without the annotation: %v; want ErrNoTOCDigest", err)
			}
			f := open(t, ref, disk.WithInsecureSkipTOCDigest())
			checkRead(t, f, data, 1000, 100_000)

			wrong := func(m *v1.Manifest) {
				for k := range m.Layers[0].Annotations {
					if k == toc.AnnotationTOCDigest || k == toc.AnnotationZstdChunkedManifestChecksum {
						m.Layers[0].Annotations[k] = "sha256:" + fmt.Sprintf("%064x", 1)
					}
				}
			}
			ref, _ = pushDisk(t, reg, "wrongann/"+string(format), format, data, wrong)
			for _, opts := range [][]disk.Option{nil, {disk.WithInsecureSkipTOCDigest()}} {
				if _, err := disk.Open(t.Context(), mustRef(t, ref), append(opts, anonymous())...); !errors.Is(err, toc.ErrTOCDigest) {
					t.Errorf("Open with a wrong annotation: %v; want toc.ErrTOCDigest", err)
				}
			}
		})
	}
}

// TestOpenErrors checks what Open refuses, with sentinels.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()[:200_000]
	plain, _ := pushDisk(t, reg, "plain", "", data, nil)
	esgz, _ := pushDisk(t, reg, "esgz", toc.FormatEStargz, data, nil)
	tests := []struct {
		name string
		ref  string
		opts []disk.Option
		want error
	}{
		{"not seekable", plain, nil, toc.ErrNotSeekable},
		{"no such file", esgz, []disk.Option{disk.WithFile("/disk/other.img")}, disk.ErrFileNotFound},
		{"a directory", esgz, []disk.Option{disk.WithFile("disk")}, disk.ErrFileNotFound},
		{"disk: source", "disk:/nonexistent", nil, nil},
		{"bad cache size", esgz, []disk.Option{disk.WithCacheSize(-1)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := disk.Open(t.Context(), mustRef(t, tt.ref), append(tt.opts, anonymous())...)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			t.Logf("error: %v", err)
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Open: %v; want %v", err, tt.want)
			}
		})
	}
	f := open(t, esgz, disk.WithFile("./disk/disk.img"))
	checkRead(t, f, data, 0, int64(len(data)))
}

// TestCacheDir reads a disk once with a cache directory; a second File
// then reads it all from the directory, and refetches a damaged entry.
func TestCacheDir(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()
	dir := t.TempDir()
	ref, _ := pushDisk(t, reg, "cachedir", toc.FormatZstdChunked, data, nil)
	f := open(t, ref, disk.WithCacheDir(dir))
	if _, err := f.WriteRange(io.Discard, 0, f.Size()); err != nil {
		t.Fatal(err)
	}
	fetched := f.Stats().ChunksFetched
	g := open(t, ref, disk.WithCacheDir(dir))
	var buf bytes.Buffer
	if _, err := g.WriteRange(&buf, 0, g.Size()); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("second read: %v, equal %t", err, bytes.Equal(buf.Bytes(), data))
	}
	st := g.Stats()
	if st.Requests != st.TOCRequests || st.DiskCacheHits != fetched {
		t.Errorf("second read: %+v; want no chunk request and %d disk cache hits", st, fetched)
	}
}

// TestContext checks that a File's reads stop with its context.
func TestContext(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	ref, _ := pushDisk(t, reg, "ctx", toc.FormatEStargz, diskOnce()[:500_000], nil)
	ctx, cancel := context.WithCancel(t.Context())
	f, err := disk.Open(ctx, mustRef(t, ref), anonymous())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cancel()
	if _, err := f.ReadAt(make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt after cancel: %v", err)
	}
}

// TestReadahead reads the disk sequentially through ReadAt with
// readahead: the bytes are right, the chunks ahead are fetched before they
// are asked for, with fewer requests than without readahead, while an
// isolated read still fetches only its chunk.
func TestReadahead(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			ref, _ := pushDisk(t, reg, "readahead/"+string(format), format, data, nil)
			f := open(t, ref, disk.WithReadahead(1<<20))
			bounds, comp := disk.ChunkBounds(f), disk.CompressedSizes(f)
			i := len(comp) / 2
			for comp[i] == 0 {
				i++
			}
			checkRead(t, f, data, bounds[i]+10, 4096)
			if st := f.Stats(); st.ChunksFetched != 1 || st.BytesFetched-st.TOCBytes != comp[i] || st.ReadaheadChunks != 0 {
				t.Errorf("an isolated 4 KiB read: %+v; want its chunk only", st)
			}

			const step = 48 << 10 // not a multiple of the chunk size
			sequential := func(f *disk.File) disk.Stats {
				for off := int64(0); off < int64(len(data)); off += step {
					checkRead(t, f, data, off, step)
				}
				return f.Stats()
			}
			with := sequential(open(t, ref, disk.WithReadahead(1<<20)))
			without := sequential(open(t, ref))
			if with.ReadaheadChunks == 0 || with.ReadaheadHits != with.ReadaheadChunks || without.ReadaheadChunks != 0 {
				t.Errorf("with readahead: %+v; without: %+v; want chunks read ahead, all of them used", with, without)
			}
			if with.ChunksFetched != without.ChunksFetched || 2*(with.Requests-with.TOCRequests) > without.Requests-without.TOCRequests {
				t.Errorf("with readahead: %d chunks in %d requests; without: %d in %d; want the same chunks in less than half the requests",
					with.ChunksFetched, with.Requests-with.TOCRequests, without.ChunksFetched, without.Requests-without.TOCRequests)
			}

			// Four readers with reads in flight at once, as an NBD client
			// with several connections.
			g := open(t, ref, disk.WithReadahead(1<<20), disk.WithCacheSize(2<<20))
			var wg sync.WaitGroup
			for w := range int64(4) {
				wg.Go(func() {
					for off := w * step; off < int64(len(data)); off += 4 * step {
						checkRead(t, g, data, off, step)
					}
				})
			}
			wg.Wait()
			if st := g.Stats(); st.ReadaheadHits == 0 {
				t.Errorf("four readers: %+v; want chunks read ahead and used", st)
			}
		})
	}
}

// TestReadaheadClose checks that Close cancels the readahead in flight: the
// registry never answers the requests for what is read ahead, yet Close
// returns at once.
func TestReadaheadClose(t *testing.T) {
	t.Parallel()
	var stallFrom atomic.Int64
	stallFrom.Store(-1)
	stalled := make(chan struct{}, 64)
	reg := testregistry.Start(t, testregistry.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var first int64
			if from := stallFrom.Load(); from >= 0 && strings.Contains(r.URL.Path, "/blobs/") {
				if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &first); err == nil && first >= from {
					stalled <- struct{}{}
					<-r.Context().Done()
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}))
	data := diskOnce()
	ref, img := pushDisk(t, reg, "readahead-close", toc.FormatEStargz, data, nil)
	f, err := disk.Open(t.Context(), mustRef(t, ref), anonymous(), disk.WithReadahead(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blob, err := os.ReadFile(reg.BlobPath(layerDigest(t, img).String()))
	if err != nil {
		t.Fatal(err)
	}
	// Chunks before the fourth are read; from the fourth on, the registry
	// stalls.
	stallFrom.Store(chunkBlobOffset(t, blob, int64(len(blob)), img, 3*testChunk))
	for k := range int64(3) {
		checkRead(t, f, data, k*testChunk, testChunk)
	}
	select {
	case <-stalled:
	case <-time.After(10 * time.Second):
		t.Fatalf("no readahead request after three sequential reads: %+v", f.Stats())
	}
	start := time.Now()
	f.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s with readahead in flight", took)
	}
	if st := f.Stats(); st.ReadaheadChunks == 0 {
		t.Errorf("%+v: want chunks read ahead", st)
	}
}
