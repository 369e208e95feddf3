package convert

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/lazydisk/lazydisk/toc"
)

// fileChunks converts a tar holding data as disk/disk.img and returns the
// file's chunks from the TOC.
func fileChunks(t *testing.T, data []byte, chunkSize int) []toc.ZstdChunkedEntry {
	t.Helper()
	blob, b := writeZstd(t, tarOf(t, file("disk/disk.img", data)), WithChunkSize(chunkSize))
	var out []toc.ZstdChunkedEntry
	for _, r := range chunkRanges(zstdTOC(t, blob, b.Annotations)) {
		e := r.e
		if e.ChunkSize == 0 { // a one-chunk file
			e.ChunkSize, e.ChunkDigest = e.Size, e.Digest
		}
		out = append(out, e)
	}
	return out
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCDCBoundaries(t *testing.T) {
	t.Parallel()
	const avg = 256 << 10
	c := newCDC(avg)
	if c.min != 192<<10 || c.max != 512<<10 || c.cut != 1<<28 {
		t.Fatalf("newCDC(256 KiB) = %+v, want min 192 KiB, max 512 KiB, cut 2^28 (docs/zstd-chunking.md)", c)
	}
	data := randomBytes(8<<20+1000, 1)
	chunks := fileChunks(t, data, avg)
	var next int64
	for i, e := range chunks {
		if e.ChunkOffset != next {
			t.Fatalf("chunk %d starts at %d, want %d", i, e.ChunkOffset, next)
		}
		if e.ChunkOffset%cdcBlock != 0 {
			t.Errorf("chunk %d starts at %d, not a multiple of 4 KiB", i, e.ChunkOffset)
		}
		if last := i == len(chunks)-1; !last && (e.ChunkSize < int64(c.min) || e.ChunkSize > int64(c.max)) {
			t.Errorf("chunk %d has %d bytes, outside [%d, %d]", i, e.ChunkSize, c.min, c.max)
		}
		next += e.ChunkSize
	}
	if next != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes of %d", next, len(data))
	}
	if n := len(chunks); n < 20 || n > 40 {
		t.Errorf("%d chunks for 8 MiB at a 256 KiB average", n)
	}
}

func TestCDCZeroRuns(t *testing.T) {
	t.Parallel()
	var data []byte
	data = append(data, randomBytes(100<<10, 2)...)
	data = append(data, make([]byte, 60<<10)...) // short run: data
	data = append(data, randomBytes(100<<10, 3)...)
	data = append(data, make([]byte, 20<<20)...) // long run: zeros chunks of at most 8 MiB
	data = append(data, randomBytes(50<<10, 4)...)
	chunks := fileChunks(t, data, 256<<10)
	var zeroBytes, zeroChunks int64
	for _, e := range chunks {
		if e.ChunkType == toc.ChunkTypeZeros {
			zeroBytes += e.ChunkSize
			zeroChunks++
			if e.ChunkSize > maxZeroChunk {
				t.Errorf("zeros chunk of %d bytes, over %d", e.ChunkSize, maxZeroChunk)
			}
		}
	}
	if zeroBytes != 20<<20 || zeroChunks != 3 {
		t.Errorf("zeros chunks cover %d bytes in %d chunks, want the 20 MiB run in 3", zeroBytes, zeroChunks)
	}
}

// TestCDCShift inserts 64 KiB (one qcow2 cluster) early in a file: with
// fixed chunks every later chunk would change; here almost all survive.
func TestCDCShift(t *testing.T) {
	t.Parallel()
	a := randomBytes(16<<20, 5)
	b := append(append(append([]byte(nil), a[:1<<20]...), randomBytes(64<<10, 6)...), a[1<<20:]...)
	seen := map[string]bool{}
	for _, e := range fileChunks(t, a, 256<<10) {
		seen[e.ChunkDigest] = true
	}
	var reused, total int64
	for _, e := range fileChunks(t, b, 256<<10) {
		total += e.ChunkSize
		if seen[e.ChunkDigest] {
			reused += e.ChunkSize
		}
	}
	if frac := float64(reused) / float64(total); frac < 0.9 {
		t.Errorf("after a 64 KiB insertion %.0f%% of the bytes are in reused chunks, want at least 90%%", 100*frac)
	}
	if !bytes.Equal(b[:1<<20], a[:1<<20]) {
		t.Fatal("test setup")
	}
}
