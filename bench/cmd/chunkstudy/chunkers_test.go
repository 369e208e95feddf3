package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk/internal/zstdfixture"
	"github.com/lazydisk/lazydisk/toc"
)

// testDisk returns n bytes that look enough like a disk for chunkers:
// random runs, text, and zero runs of every length around the thresholds,
// at the start, in the middle and at the end.
func testDisk(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	zeroLens := []int{1, 2, 100, 1023, 1024, 1025, 4095, 4096, 8192, 70000, 300000}
	text := []byte("the quick brown fox jumps over the lazy dog 0123456789\n")
	var b []byte
	b = append(b, make([]byte, 5000)...)
	for len(b) < n {
		switch rng.IntN(3) {
		case 0:
			r := make([]byte, rng.IntN(300000))
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			b = append(b, r...)
		case 1:
			for range rng.IntN(3000) {
				b = append(b, text[rng.IntN(len(text)):]...)
			}
		case 2:
			b = append(b, make([]byte, zeroLens[rng.IntN(len(zeroLens))])...)
		}
	}
	b = b[:n]
	for i := n - 3000; i < n; i++ {
		b[i] = 0
	}
	return b
}

// cstorageWriterChunks runs containers/storage's zstd:chunked writer over a
// tar holding data and returns the chunks its TOC lists for the file.
func cstorageWriterChunks(t *testing.T, data []byte) []span {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/disk.img", Mode: 0o444, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	blob, meta, err := zstdfixture.CStorage(tarBuf.Bytes(), 1)
	if err != nil {
		t.Fatal(err)
	}
	_, tc, err := zstdfixture.TOC(blob, meta)
	if err != nil {
		t.Fatal(err)
	}
	var out []span
	for _, e := range tc.Entries {
		switch {
		case e.Type == "reg" && e.ChunkSize == 0:
			out = append(out, span{off: 0, size: e.Size})
		case e.Type == "reg", e.Type == "chunk":
			out = append(out, span{off: e.ChunkOffset, size: e.ChunkSize, zeros: e.ChunkType == toc.ChunkTypeZeros})
		}
	}
	return out
}

func TestCStorageChunksMatch(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			data := testDisk(6<<20, seed)
			want := cstorageWriterChunks(t, data)
			got := cstorageChunks(data)
			if len(want) < 50 {
				t.Fatalf("containers/storage made only %d chunks; the test data is too regular", len(want))
			}
			if len(got) != len(want) {
				t.Errorf("%d chunks, containers/storage %d", len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("chunk %d is %+v, containers/storage's %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestChunkersTileAndCutZeros(t *testing.T) {
	t.Parallel()
	data := testDisk(8<<20, 7)
	for _, c := range studyChunkers() {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			spans := c.chunk(data)
			if err := checkTiling(spans, int64(len(data))); err != nil {
				t.Fatal(err)
			}
			for i, s := range spans {
				b := data[s.off : s.off+s.size]
				if s.zeros && !allZero(b) {
					t.Fatalf("zeros chunk %d [%d, +%d) has data", i, s.off, s.size)
				}
				if c.zeros.align == 1 && !s.zeros && bytes.Contains(b, make([]byte, c.zeros.min)) {
					t.Fatalf("data chunk %d [%d, +%d) holds a zero run of %d bytes", i, s.off, s.size, c.zeros.min)
				}
				if c.zeros.align > 1 && s.zeros && (s.off%int64(c.zeros.align) != 0 || s.size < int64(c.zeros.min)) {
					t.Fatalf("zeros chunk %d [%d, +%d) is not %d-aligned or shorter than %d", i, s.off, s.size, c.zeros.align, c.zeros.min)
				}
			}
			again := c.chunk(bytes.Clone(data))
			if fmt.Sprint(again) != fmt.Sprint(spans) {
				t.Fatal("chunking the same bytes again gave other chunks")
			}
		})
	}
}

// TestContentDefined checks that the content-defined chunkers find the
// same chunks again after data moves by a whole number of 4 KiB blocks, and
// that byte-level ones also do after it moves by any number of bytes.
func TestContentDefined(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 9))
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, c := range studyChunkers() {
		if strings.HasPrefix(c.name, "fixed") || strings.Contains(c.name, "18 bits") {
			// 18 bits of the rolling sum never match on random bytes
			// (see studyChunkers): every chunk is max bytes long.
			continue
		}
		shifts := []int{3 * 4096}
		if !strings.HasPrefix(c.name, "4 KiB-block") {
			shifts = append(shifts, 777)
		}
		for _, shift := range shifts {
			t.Run(fmt.Sprintf("%s/%d", c, shift), func(t *testing.T) {
				t.Parallel()
				moved := append(bytes.Repeat([]byte{0xa5}, shift), data...)
				digests := map[string]bool{}
				for _, s := range c.chunk(data) {
					digests[string(data[s.off:s.off+s.size])] = true
				}
				var same, total int64
				for _, s := range c.chunk(moved) {
					total += s.size
					if digests[string(moved[s.off:s.off+s.size])] {
						same += s.size
					}
				}
				if float64(same) < 0.9*float64(total) {
					t.Fatalf("after a shift of %d bytes, %d of %d bytes are in chunks seen before", shift, same, total)
				}
			})
		}
	}
}
