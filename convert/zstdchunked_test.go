package convert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/cstoragetest"
	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/toc"
)

func writeZstd(t testing.TB, src []byte, opts ...Option) ([]byte, *Blob) {
	t.Helper()
	var out bytes.Buffer
	b, err := WriteZstdChunked(context.Background(), &out, bytes.NewReader(src), append([]Option{WithChunkSize(testChunk)}, opts...)...)
	if err != nil {
		t.Fatalf("WriteZstdChunked: %v", err)
	}
	return out.Bytes(), b
}

// zstdTOC reads the TOC the annotations point at and checks its checksum.
func zstdTOC(t testing.TB, blob []byte, ann map[string]string) *toc.ZstdChunkedTOC {
	t.Helper()
	pos, err := toc.ParseManifestPosition(ann[toc.AnnotationZstdChunkedManifestPosition])
	if err != nil {
		t.Fatal(err)
	}
	payload := blob[pos.Offset : pos.Offset+pos.Compressed]
	if got := digest.FromBytes(payload).String(); got != ann[toc.AnnotationZstdChunkedManifestChecksum] {
		t.Fatalf("manifest-checksum %s, TOC payload hashes to %s", ann[toc.AnnotationZstdChunkedManifestChecksum], got)
	}
	dec, _ := zstd.NewReader(nil)
	raw, err := dec.DecodeAll(payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tc toc.ZstdChunkedTOC
	if err := json.Unmarshal(raw, &tc); err != nil {
		t.Fatal(err)
	}
	return &tc
}

// chunkRange is where a chunk's frame is in the blob.
type chunkRange struct {
	e          toc.ZstdChunkedEntry
	start, end int64
}

// chunkRanges lists every data-bearing chunk of the TOC with its frame's
// compressed range: up to the next chunk's offset, or the file's endOffset.
func chunkRanges(tc *toc.ZstdChunkedTOC) []chunkRange {
	var out []chunkRange
	var reg toc.ZstdChunkedEntry
	for i, e := range tc.Entries {
		if e.Type == "reg" {
			reg = e
		}
		if e.Type != "reg" && e.Type != "chunk" || e.Type == "reg" && e.Size == 0 {
			continue
		}
		end := reg.EndOffset
		if i+1 < len(tc.Entries) && tc.Entries[i+1].Type == "chunk" {
			end = tc.Entries[i+1].Offset
		}
		out = append(out, chunkRange{e: e, start: e.Offset, end: end})
	}
	return out
}

func TestWriteZstdChunkedStream(t *testing.T) {
	t.Parallel()
	src := sampleTar(t)
	blob, b := writeZstd(t, src)
	// zstd -dc: the frames decompress to the input tar exactly; the
	// skippable frames are skipped.
	dec, _ := zstd.NewReader(bytes.NewReader(blob))
	plain, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, src) {
		t.Fatalf("blob decompresses to %d bytes that differ from the %d-byte input tar", len(plain), len(src))
	}
	if sum := sha256.Sum256(src); b.DiffID.Encoded() != fmt.Sprintf("%x", sum) || b.Uncompressed != int64(len(src)) {
		t.Errorf("DiffID %s / %d, want sha256 of the input / %d", b.DiffID, b.Uncompressed, len(src))
	}
	if _, ok := b.Annotations[toc.AnnotationTOCDigest]; ok {
		t.Error("zstd:chunked layer carries the eStargz TOC annotation")
	}
	tc := zstdTOC(t, blob, b.Annotations)
	// Every chunk frame decodes alone to its bytes.
	for _, r := range chunkRanges(tc) {
		e := r.e
		chunk, err := dec.DecodeAll(blob[r.start:r.end], nil)
		if err != nil {
			t.Fatalf("%s chunk at %d: %v", e.Name, e.ChunkOffset, err)
		}
		want := e.ChunkDigest
		if want == "" {
			want = e.Digest // a one-chunk file
		}
		if got := digest.FromBytes(chunk).String(); got != want {
			t.Errorf("%s chunk at %d: digest %s, TOC says %s", e.Name, e.ChunkOffset, got, want)
		}
		if e.ChunkType == toc.ChunkTypeZeros && !isZero(chunk) {
			t.Errorf("%s chunk at %d marked zeros but is not", e.Name, e.ChunkOffset)
		}
	}
}

func TestWriteZstdChunkedDeterministic(t *testing.T) {
	// Not parallel: changes GOMAXPROCS.
	src := sampleTar(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var sums []string
	for _, procs := range []int{1, 4} {
		runtime.GOMAXPROCS(procs)
		blob, _ := writeZstd(t, src)
		sums = append(sums, fmt.Sprintf("%x", sha256.Sum256(blob)))
	}
	if sums[0] != sums[1] {
		t.Fatalf("output differs between GOMAXPROCS=1 (%s) and 4 (%s)", sums[0], sums[1])
	}
}

// TestWriteZstdChunkedFromEStargz converts an eStargz stream: the
// landmark and TOC entries go, and the result is the original tar.
func TestWriteZstdChunkedFromEStargz(t *testing.T) {
	t.Parallel()
	src := sampleTar(t)
	esgz, _ := writeEStargz(t, src)
	blob, b := writeZstd(t, mustGunzip(t, esgz))
	direct, _ := writeZstd(t, src)
	if !bytes.Equal(blob, direct) {
		t.Errorf("eStargz -> zstd:chunked differs from converting the original tar (DiffID %s)", b.DiffID)
	}
}

// TestWriteZstdChunkedPartialPull runs containers/storage's own partial-pull
// code (overlay store, chunked.NewDiffer, PrepareStagedLayer) over our blob.
// It needs root and overlayfs and says so when it skips.
func TestWriteZstdChunkedPartialPull(t *testing.T) {
	t.Parallel()
	cstoragetest.Skip(t)
	src := sampleTar(t)
	blob, b := writeZstd(t, src)
	res, err := cstoragetest.PartialPull(t, bytes.NewReader(blob), int64(len(blob)), b.Digest, b.Annotations)
	if err != nil {
		t.Fatalf("containers/storage refuses our blob (fallback=%v): %v", res.Fallback, err)
	}
	if res.UncompressedDigest != b.DiffID || res.TOCDigest.String() != b.Annotations[toc.AnnotationZstdChunkedManifestChecksum] || res.Size != int64(len(src)) {
		t.Errorf("containers/storage computed DiffID %s, TOC %s, size %d; want %s, %s, %d",
			res.UncompressedDigest, res.TOCDigest, res.Size, b.DiffID, b.Annotations[toc.AnnotationZstdChunkedManifestChecksum], len(src))
	}
}

// TestWriteZstdChunkedCorruption corrupts one byte of a chunk, of the TOC
// and of the tar-split of our blob; the validator rejects each, and so does
// containers/storage when it can run.
func TestWriteZstdChunkedCorruption(t *testing.T) {
	t.Parallel()
	blob, b := writeZstd(t, sampleTar(t))
	tc := zstdTOC(t, blob, b.Annotations)
	// The middle of the largest data chunk frame, so the flipped byte is
	// inside the chunk whatever its neighbours.
	var chunkOff, largest int64
	for _, r := range chunkRanges(tc) {
		if n := r.end - r.start; r.e.ChunkType == "" && n > largest {
			largest, chunkOff = n, r.start+n/2
		}
	}
	if largest < 100 {
		t.Fatalf("no data chunk frame of 100 bytes or more in the sample (largest %d)", largest)
	}
	tocPos, _ := toc.ParseManifestPosition(b.Annotations[toc.AnnotationZstdChunkedManifestPosition])
	tsPos, _ := toc.ParseTarSplitPosition(b.Annotations[toc.AnnotationZstdChunkedTarSplitPosition])
	for _, tc := range []struct {
		name string
		off  int64
	}{
		{"chunk", chunkOff},
		{"TOC", tocPos.Offset + tocPos.Compressed/2},
		{"tar-split", tsPos.Offset + tsPos.Compressed/2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := append([]byte(nil), blob...)
			bad[tc.off] ^= 0x55
			_, err := validate.ZstdChunked(context.Background(), io.NewSectionReader(bytes.NewReader(bad), 0, int64(len(bad))), b.Annotations)
			if !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("validator accepted a blob with a corrupt %s: %v", tc.name, err)
			}
			if os.Geteuid() != 0 {
				return
			}
			res, err := cstoragetest.PartialPull(t, bytes.NewReader(bad), int64(len(bad)), digest.FromBytes(bad), b.Annotations)
			if err == nil || res.Fallback {
				t.Errorf("containers/storage: fallback=%v err=%v, want a hard error", res.Fallback, err)
			}
		})
	}
}

// TestWriteZstdChunkedZstdCLI checks the blob with the zstd command line
// tool when it is installed: `zstd -dc` must print the input tar.
func TestWriteZstdChunkedZstdCLI(t *testing.T) {
	t.Parallel()
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("zstd is not installed (apt-get install zstd)")
	}
	src := sampleTar(t)
	blob, _ := writeZstd(t, src)
	cmd := exec.Command(zstdBin, "-dc")
	cmd.Stdin = bytes.NewReader(blob)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd -dc: %v", err)
	}
	if !bytes.Equal(out, src) {
		t.Fatalf("zstd -dc printed %d bytes that differ from the %d-byte input tar", len(out), len(src))
	}
}
