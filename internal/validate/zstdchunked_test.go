package validate

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/zstdfixture"
	"github.com/lazydisk/lazydisk/toc"
)

// zcFixture is a zstd:chunked blob written by containers/storage's own
// writer, with the tar it compresses and the annotations it produced.
type zcFixture struct {
	tar, blob   []byte
	annotations map[string]string
}

var (
	zcFixtureOnce sync.Once
	zcFixtureVal  zcFixture
	zcFixtureErr  error
)

// diskTar builds a containerDisk-like layer: a directory holding a disk
// image with zero runs (short and long), random and text regions, plus a
// small file with an xattr, a hard link to it, an empty file and a symlink.
func diskTar() ([]byte, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var disk []byte
	text := []byte("the quick brown fox jumps over the lazy dog; ")
	for i := 0; i < 24; i++ {
		switch i % 4 {
		case 0:
			b := make([]byte, 64<<10+rng.IntN(32<<10))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			disk = append(disk, b...)
		case 1:
			disk = append(disk, make([]byte, 4<<10+rng.IntN(200<<10))...)
		case 2:
			disk = append(disk, bytes.Repeat(text, 1000+rng.IntN(2000))...)
		case 3:
			disk = append(disk, make([]byte, 100)...) // below the 1 KiB hole threshold
		}
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		hdr  tar.Header
		data []byte
	}{
		{tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "disk/disk.img", Mode: 0o444, Uid: 107, Gid: 107}, disk},
		{tar.Header{Typeflag: tar.TypeReg, Name: "disk/small.txt", Mode: 0o644,
			PAXRecords: map[string]string{"SCHILY.xattr.user.lazydisk": "yes"}}, []byte("hello, disk\n")},
		{tar.Header{Typeflag: tar.TypeLink, Name: "disk/hard.txt", Linkname: "disk/small.txt", Mode: 0o644}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "disk/empty", Mode: 0o600}, nil},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "disk/link.img", Linkname: "disk.img", Mode: 0o777}, nil},
	}
	for _, e := range entries {
		e.hdr.ModTime = mtime
		e.hdr.Size = int64(len(e.data))
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// zstdChunkedFixture builds the fixture once per test binary: the real
// writer is slow under the race detector.
func zstdChunkedFixture(t *testing.T) zcFixture {
	t.Helper()
	zcFixtureOnce.Do(func() {
		tarb, err := diskTar()
		if err != nil {
			zcFixtureErr = err
			return
		}
		blob, ann, err := zstdfixture.CStorage(tarb, 3)
		if err != nil {
			zcFixtureErr = err
			return
		}
		zcFixtureVal = zcFixture{tar: tarb, blob: blob, annotations: ann}
	})
	if zcFixtureErr != nil {
		t.Fatal(zcFixtureErr)
	}
	return zcFixtureVal
}

func sectionOf(b []byte) *io.SectionReader {
	return io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))
}

// fixtureTOC decodes the fixture's TOC with plain encoding/json.
func fixtureTOC(t *testing.T, f zcFixture) (toc.Position, *toc.ZstdChunkedTOC) {
	t.Helper()
	pos, tc, err := zstdfixture.TOC(f.blob, f.annotations)
	if err != nil {
		t.Fatal(err)
	}
	return pos, tc
}

func TestZstdChunkedAcceptsReferenceWriter(t *testing.T) {
	t.Parallel()
	f := zstdChunkedFixture(t)
	rep, err := ZstdChunked(context.Background(), sectionOf(f.blob), f.annotations)
	if err != nil {
		t.Fatalf("ZstdChunked: %v", err)
	}
	if want := digest.Canonical.FromBytes(f.tar); rep.DiffID != want {
		t.Errorf("DiffID = %s, want %s", rep.DiffID, want)
	}
	if rep.Uncompressed != int64(len(f.tar)) {
		t.Errorf("Uncompressed = %d, want %d", rep.Uncompressed, len(f.tar))
	}
	if want := digest.Digest(f.annotations[toc.AnnotationZstdChunkedManifestChecksum]); rep.TOCDigest != want {
		t.Errorf("TOCDigest = %s, want %s", rep.TOCDigest, want)
	}
	// The fixture must exercise multi-chunk files and zero holes.
	_, tc := fixtureTOC(t, f)
	var chunks, zeros int
	for _, e := range tc.Entries {
		if e.Type == "chunk" {
			chunks++
		}
		if e.ChunkType == toc.ChunkTypeZeros {
			zeros++
		}
	}
	if chunks < 10 || zeros < 3 {
		t.Fatalf("fixture has %d chunk entries and %d zeros chunks; want a disk-like layout", chunks, zeros)
	}
	if rep.Files != 2 || rep.Chunks != chunks+2 {
		t.Errorf("Files, Chunks = %d, %d; want 2, %d", rep.Files, rep.Chunks, chunks+2)
	}
}

// resign replaces the fixture's TOC with edit's version of it and rewrites
// the trailer and annotations to match, so that only the edit is wrong.
func resign(t *testing.T, f zcFixture, edit func(*toc.ZstdChunkedTOC)) ([]byte, map[string]string) {
	t.Helper()
	blob, ann, err := zstdfixture.Resign(f.blob, f.annotations, edit)
	if err != nil {
		t.Fatal(err)
	}
	return blob, ann
}

func TestZstdChunkedResignedTOCRoundTrip(t *testing.T) {
	t.Parallel()
	f := zstdChunkedFixture(t)
	// Re-encoding the same TOC with encoding/json must pass: the helper
	// used by the rejection tests changes nothing else.
	blob, ann := resign(t, f, func(*toc.ZstdChunkedTOC) {})
	if _, err := ZstdChunked(context.Background(), sectionOf(blob), ann); err != nil {
		t.Fatalf("re-signed unchanged TOC rejected: %v", err)
	}
}

func TestZstdChunkedRejects(t *testing.T) {
	t.Parallel()
	f := zstdChunkedFixture(t)
	pos, tc := fixtureTOC(t, f)
	ts, err := toc.ParseTarSplitPosition(f.annotations[toc.AnnotationZstdChunkedTarSplitPosition])
	if err != nil {
		t.Fatal(err)
	}
	// A data chunk of the disk image that is not its last.
	var dataChunk int64
	for i, e := range tc.Entries {
		if e.Type == "chunk" && e.ChunkType == "" && i+1 < len(tc.Entries) && tc.Entries[i+1].Type == "chunk" {
			dataChunk = (e.Offset + tc.Entries[i+1].Offset) / 2
			break
		}
	}
	if dataChunk == 0 {
		t.Fatal("no data chunk in the fixture")
	}
	flip := func(off int64) func([]byte, map[string]string) ([]byte, map[string]string) {
		return func(b []byte, a map[string]string) ([]byte, map[string]string) {
			b[off] ^= 0x40
			return b, a
		}
	}
	annotation := func(key, value string) func([]byte, map[string]string) ([]byte, map[string]string) {
		return func(b []byte, a map[string]string) ([]byte, map[string]string) {
			if value == "" {
				delete(a, key)
			} else {
				a[key] = value
			}
			return b, a
		}
	}
	resigned := func(edit func(*toc.ZstdChunkedTOC)) func([]byte, map[string]string) ([]byte, map[string]string) {
		return func([]byte, map[string]string) ([]byte, map[string]string) { return resign(t, f, edit) }
	}
	entry := func(tc *toc.ZstdChunkedTOC, name string) *toc.ZstdChunkedEntry {
		for i := range tc.Entries {
			if tc.Entries[i].Name == name && tc.Entries[i].Type != "chunk" {
				return &tc.Entries[i]
			}
		}
		t.Fatalf("no entry %q", name)
		return nil
	}
	chunkOf := func(tc *toc.ZstdChunkedTOC, zeros bool) *toc.ZstdChunkedEntry {
		for i := range tc.Entries {
			if e := &tc.Entries[i]; e.Type == "chunk" && (e.ChunkType == toc.ChunkTypeZeros) == zeros {
				return e
			}
		}
		t.Fatal("no such chunk")
		return nil
	}

	tests := []struct {
		name   string
		mutate func([]byte, map[string]string) ([]byte, map[string]string)
		want   string // part of the error message
	}{
		{"byte flipped in a data chunk frame", flip(dataChunk), "decod"},
		{"byte flipped in the first header frame", flip(20), "data stream"},
		{"byte flipped in the TOC payload", flip(pos.Offset + pos.Compressed/2), "manifest-checksum"},
		{"byte flipped in the tar-split payload", flip(ts.Offset + ts.Compressed/2), "tarSplitDigest"},
		{"footer magic", flip(int64(len(f.blob)) - 3), "footer"},
		{"footer field", flip(int64(len(f.blob)) - 64), "footer"},
		{"TOC skippable frame magic", flip(pos.Offset - 8), "skippable"},
		{"wrong manifest-checksum", annotation(toc.AnnotationZstdChunkedManifestChecksum, digest.Canonical.FromString("x").String()), "manifest-checksum"},
		{"bad manifest-checksum", annotation(toc.AnnotationZstdChunkedManifestChecksum, "sha256:nothex"), "manifest-checksum"},
		{"missing manifest-checksum", annotation(toc.AnnotationZstdChunkedManifestChecksum, ""), "manifest-checksum"},
		{"missing manifest-position", annotation(toc.AnnotationZstdChunkedManifestPosition, ""), "manifest-position"},
		{"manifest type 2", annotation(toc.AnnotationZstdChunkedManifestPosition, strings.TrimSuffix(f.annotations[toc.AnnotationZstdChunkedManifestPosition], ":1")+":2"), "manifest type"},
		{"missing tarsplit-position", annotation(toc.AnnotationZstdChunkedTarSplitPosition, ""), "tarsplit-position"},
		{"tarsplit-position off by one", annotation(toc.AnnotationZstdChunkedTarSplitPosition, toc.Position{Offset: ts.Offset + 1, Compressed: ts.Compressed, Uncompressed: ts.Uncompressed}.String()), "tar-split"},
		{"tarsplit-position wrong uncompressed length", annotation(toc.AnnotationZstdChunkedTarSplitPosition, toc.Position{Offset: ts.Offset, Compressed: ts.Compressed, Uncompressed: ts.Uncompressed + 1}.String()), "footer"},
		{"TOC over the size limit", annotation(toc.AnnotationZstdChunkedManifestPosition, toc.Position{Offset: pos.Offset, Compressed: pos.Compressed, Uncompressed: toc.MaxTOCSize + 1}.String()+":1"), "limit"},
		{"both TOC annotations", annotation(toc.AnnotationTOCDigest, digest.Canonical.FromString("x").String()), "both"},
		{"truncated by one byte", func(b []byte, a map[string]string) ([]byte, map[string]string) { return b[:len(b)-1], a }, "blob is"},
		{"truncated to half", func(b []byte, a map[string]string) ([]byte, map[string]string) { return b[:len(b)/2], a }, "past the end"},

		{"TOC mode differs from tar-split", resigned(func(tc *toc.ZstdChunkedTOC) { entry(tc, "disk/disk.img").Mode = 0o644 }), "mode"},
		{"TOC xattr differs from tar-split", resigned(func(tc *toc.ZstdChunkedTOC) { entry(tc, "disk/small.txt").Xattrs = nil }), "xattrs"},
		{"TOC mtime differs from tar-split", resigned(func(tc *toc.ZstdChunkedTOC) {
			mt := time.Unix(1, 0)
			entry(tc, "disk/empty").ModTime = &mt
		}), "modtime"},
		{"TOC lacks an entry", resigned(func(tc *toc.ZstdChunkedTOC) {
			e := entry(tc, "disk/link.img")
			*e = toc.ZstdChunkedEntry{Type: "symlink", Name: "disk/other", Linkname: e.Linkname, Mode: e.Mode, ModTime: e.ModTime}
		}), "TOC lacks"},
		{"TOC has a duplicate entry", resigned(func(tc *toc.ZstdChunkedTOC) { tc.Entries = append(tc.Entries, *entry(tc, "disk/empty")) }), "two entries"},
		{"TOC without tarSplitDigest", resigned(func(tc *toc.ZstdChunkedTOC) { tc.TarSplitDigest = "" }), "tarSplitDigest"},
		{"TOC version 2", resigned(func(tc *toc.ZstdChunkedTOC) { tc.Version = 2 }), "version"},
		{"wrong file digest", resigned(func(tc *toc.ZstdChunkedTOC) {
			entry(tc, "disk/small.txt").Digest = digest.Canonical.FromString("x").String()
		}), "digest"},
		{"wrong chunk digest", resigned(func(tc *toc.ZstdChunkedTOC) {
			chunkOf(tc, false).ChunkDigest = digest.Canonical.FromString("x").String()
		}), "chunkDigest"},
		{"data chunk marked zeros", resigned(func(tc *toc.ZstdChunkedTOC) { chunkOf(tc, false).ChunkType = toc.ChunkTypeZeros }), "non-zero"},
		{"unknown chunk type", resigned(func(tc *toc.ZstdChunkedTOC) { chunkOf(tc, true).ChunkType = "sparse" }), "chunkType"},
		{"chunk sizes leave a gap", resigned(func(tc *toc.ZstdChunkedTOC) { chunkOf(tc, true).ChunkOffset++ }), "contiguous"},
		{"chunk too long", resigned(func(tc *toc.ZstdChunkedTOC) { entry(tc, "disk/disk.img").ChunkSize++ }), "contiguous"},
		{"chunk range shifted", resigned(func(tc *toc.ZstdChunkedTOC) { chunkOf(tc, true).Offset++ }), "decod"},
		{"endOffset short", resigned(func(tc *toc.ZstdChunkedTOC) { entry(tc, "disk/disk.img").EndOffset-- }), "decod"},
		{"single-chunk file with chunk fields", resigned(func(tc *toc.ZstdChunkedTOC) { entry(tc, "disk/small.txt").ChunkSize = 12 }), "chunk fields"},
		{"dangling chunk entry", resigned(func(tc *toc.ZstdChunkedTOC) {
			c := *chunkOf(tc, false)
			tc.Entries = append([]toc.ZstdChunkedEntry{c}, tc.Entries...)
		}), "does not follow"},
		{"symlink with data fields", resigned(func(tc *toc.ZstdChunkedTOC) { entry(tc, "disk/link.img").Offset = 10 }), "data fields"},
		// The validator's former checks let this through; the TOC decoder
		// it shares with the reader (toc.DecodeZstdChunkedTOC) refuses it.
		{"chunk entry with its own endOffset", resigned(func(tc *toc.ZstdChunkedTOC) {
			c := chunkOf(tc, false)
			c.EndOffset = c.Offset + 1 // containers/storage takes a file's end from its last chunk entry
		}), "file fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blob, ann := tt.mutate(bytes.Clone(f.blob), maps.Clone(f.annotations))
			_, err := ZstdChunked(context.Background(), sectionOf(blob), ann)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
			t.Log(err)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("err is more than one line: %q", err)
			}
		})
	}
}

// TestZstdChunkedRefusedTOCs signs each TOC of
// testdata/zstd-chunked-toc/refused into the fixture blob (trailer and
// annotations rewritten to match, so that only the TOC is wrong): the
// validator refuses each with the error of toc.DecodeZstdChunkedTOC, the
// decoder the reader uses.
func TestZstdChunkedRefusedTOCs(t *testing.T) {
	t.Parallel()
	f := zstdChunkedFixture(t)
	paths, err := filepath.Glob("../../testdata/zstd-chunked-toc/refused/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no refused TOCs: %v", err)
	}
	for _, p := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(p), ".json"), func(t *testing.T) {
			t.Parallel()
			js, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			blob, ann, err := zstdfixture.ResignJSON(f.blob, f.annotations, js)
			if err != nil {
				t.Fatal(err)
			}
			pos, err := toc.ParseManifestPosition(ann[toc.AnnotationZstdChunkedManifestPosition])
			if err != nil {
				t.Fatal(err)
			}
			_, decErr := toc.DecodeZstdChunkedTOC(js, pos.Offset-toc.SkippableFrameHeaderSize)
			if decErr == nil {
				t.Fatal("DecodeZstdChunkedTOC accepts it")
			}
			_, err = ZstdChunked(context.Background(), sectionOf(blob), ann)
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, toc.ErrInvalid) || !strings.Contains(err.Error(), decErr.Error()) {
				t.Errorf("err = %v, want ErrInvalid with the decoder's error %q", err, decErr)
			}
		})
	}
}

func TestZstdChunkedCanceled(t *testing.T) {
	t.Parallel()
	f := zstdChunkedFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ZstdChunked(ctx, sectionOf(f.blob), f.annotations)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want context.Canceled and not ErrInvalid", err)
	}
}

func TestZstdFrameLen(t *testing.T) {
	t.Parallel()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 1000, 300 << 10} {
		in := bytes.Repeat([]byte("abcdefgh"), n/8)
		frame := enc.EncodeAll(in, nil)
		got, err := zstdFrameLen(append(frame, 1, 2, 3))
		if err != nil || got != len(frame) {
			t.Errorf("%d bytes: zstdFrameLen = %d, %v; want %d", n, got, err, len(frame))
		}
		if _, err := zstdFrameLen(frame[:len(frame)-1]); err == nil {
			t.Errorf("%d bytes: truncated frame accepted", n)
		}
	}
}

// tarOf writes entries as a PAX tar and appends pad zero bytes after the
// end-of-archive marker, as tar tools that fill a record do.
func tarOf(t *testing.T, pad int, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), make([]byte, pad)...)
}

type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func reg(name string, data []byte) tarEntry {
	return tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, data}
}

// TestZstdChunkedAcceptsReferenceWriterEdgeCases checks that what the
// reference writer makes of unusual tars passes: the validator must not be
// stricter than the format where our writer copies c/storage's.
func TestZstdChunkedAcceptsReferenceWriterEdgeCases(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	longName := "disk/" + strings.Repeat("d", 120) + "/disk.img"
	tests := []struct {
		name string
		tar  []byte
	}{
		{"empty layer", tarOf(t, 0)},
		{"only a directory", tarOf(t, 0, tarEntry{tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o755}, nil})},
		{"one-byte file", tarOf(t, 0, reg("a", []byte{1}))},
		{"all-zero file", tarOf(t, 0, reg("zeros.img", make([]byte, 300<<10)))},
		{"file ending in a hole", tarOf(t, 0, reg("disk.img", append(random(100<<10), make([]byte, 64<<10)...)))},
		{"file starting with a hole", tarOf(t, 0, reg("disk.img", append(make([]byte, 64<<10), random(100<<10)...)))},
		{"hole of exactly 1 KiB", tarOf(t, 0, reg("disk.img", append(append(random(10<<10), make([]byte, 1024)...), random(10<<10)...)))},
		{"record padding after the tar", tarOf(t, 9216, reg("disk.img", random(70<<10)))},
		{"long names and link names", tarOf(t, 0,
			reg(longName, random(5000)),
			tarEntry{tar.Header{Typeflag: tar.TypeSymlink, Name: "disk/l", Linkname: longName, Mode: 0o777}, nil},
			tarEntry{tar.Header{Typeflag: tar.TypeLink, Name: "disk/h", Linkname: longName, Mode: 0o644}, nil})},
		{"devices, fifo, big ids, times, xattrs", tarOf(t, 0,
			tarEntry{tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil},
			tarEntry{tar.Header{Typeflag: tar.TypeBlock, Name: "dev/vda", Mode: 0o660, Devmajor: 254, Devminor: 0}, nil},
			tarEntry{tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}, nil},
			tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: "disk/img", Mode: 0o4755, Uid: 1 << 22, Gid: 3 << 21,
				AccessTime: time.Unix(1700000001, 5), ChangeTime: time.Unix(1700000002, 0), Format: tar.FormatPAX,
				PAXRecords: map[string]string{"SCHILY.xattr.user.bin": "\x00\x01\xff", "SCHILY.xattr.user.a": ""}},
				random(3000)})},
		{"many small files", func() []byte {
			var es []tarEntry
			for i := range 200 {
				es = append(es, reg(strings.Repeat("f", 1+i%50)+string(rune('a'+i%26))+"/"+string(rune('a'+i/26)), random(rng.IntN(3000))))
			}
			return tarOf(t, 0, es...)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blob, ann, err := zstdfixture.CStorage(tt.tar, 3)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := ZstdChunked(context.Background(), sectionOf(blob), ann)
			if err != nil {
				t.Fatalf("ZstdChunked: %v", err)
			}
			if want := digest.Canonical.FromBytes(tt.tar); rep.DiffID != want || rep.Uncompressed != int64(len(tt.tar)) {
				t.Errorf("DiffID, Uncompressed = %s, %d; want %s, %d", rep.DiffID, rep.Uncompressed, want, len(tt.tar))
			}
		})
	}
}

// BenchmarkZstdChunked validates a 64 MiB disk-like layer written by the
// reference writer; the bytes per second are those of the uncompressed tar.
func BenchmarkZstdChunked(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	disk := make([]byte, 0, 64<<20)
	for len(disk) < 64<<20-(1<<20) {
		switch rng.IntN(3) {
		case 0:
			r := make([]byte, 256<<10)
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			disk = append(disk, r...)
		case 1:
			disk = append(disk, make([]byte, 1<<20)...)
		case 2:
			disk = append(disk, bytes.Repeat([]byte("lazydisk benchmark text region "), 16<<10)...)
		}
	}
	var tarb bytes.Buffer
	tw := tar.NewWriter(&tarb)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/disk.img", Mode: 0o444, Size: int64(len(disk))}); err != nil {
		b.Fatal(err)
	}
	if _, err := tw.Write(disk); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	blob, ann, err := zstdfixture.CStorage(tarb.Bytes(), 3)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(tarb.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ZstdChunked(context.Background(), sectionOf(blob), ann); err != nil {
			b.Fatal(err)
		}
	}
}
