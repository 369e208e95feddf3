package convert

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/tarstream"
	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/toc"
)

const testChunk = MinChunkSize

// tarEntry describes one entry of a test tar stream.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func file(name string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)),
		Uid: 107, Gid: 107, Uname: "qemu", Gname: "qemu", ModTime: time.Unix(1700000000, 0)}, data: data}
}

func dir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o555, ModTime: time.Unix(1700000000, 0)}}
}

func tarOf(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
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
	return b.Bytes()
}

// diskLike returns n bytes that look like a VM disk: runs of zeros, of
// compressible text and of random data, deterministic for a seed.
func diskLike(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for off := 0; off < n; {
		run := min(n-off, 4096*(1+r.IntN(40)))
		switch r.IntN(3) {
		case 0: // zeros
		case 1:
			for i := range run {
				b[off+i] = "lazydisk reads only what it needs\n"[i%34]
			}
		case 2:
			for i := range run {
				b[off+i] = byte(r.Uint32())
			}
		}
		off += run
	}
	return b
}

func sampleTar(t testing.TB) []byte {
	hdrX := file("disk/xattr", []byte("x"))
	hdrX.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.test": "value"}
	long := file("disk/"+string(bytes.Repeat([]byte("n"), 150)), []byte("long name"))
	return tarOf(t,
		dir("disk/"),
		file("disk/empty", nil),
		file("disk/one", []byte("1")),
		file("disk/exact", diskLike(testChunk, 1)),
		file("disk/plusone", diskLike(testChunk+1, 2)),
		file("disk/disk.img", diskLike(5*testChunk+12345, 3)),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "disk/link", Linkname: "disk.img"}},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "disk/hard", Linkname: "disk/one"}},
		hdrX, long,
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "disk/fifo"}},
	)
}

func writeEStargz(t testing.TB, src []byte, opts ...Option) ([]byte, *Blob) {
	t.Helper()
	var out bytes.Buffer
	b, err := WriteEStargz(context.Background(), &out, bytes.NewReader(src), append([]Option{WithChunkSize(testChunk)}, opts...)...)
	if err != nil {
		t.Fatalf("WriteEStargz: %v", err)
	}
	return out.Bytes(), b
}

func TestWriteEStargzReferenceReader(t *testing.T) {
	t.Parallel()
	src := sampleTar(t)
	blob, b := writeEStargz(t, src)

	if got := digest.FromBytes(blob); got != b.Digest || int64(len(blob)) != b.Size {
		t.Fatalf("reported blob %s/%d, actual %s/%d", b.Digest, b.Size, got, len(blob))
	}
	rep, err := validate.EStargz(context.Background(), io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))), b.TOCDigest)
	if err != nil {
		t.Fatalf("reference reader rejects the blob: %v", err)
	}
	if rep.DiffID != b.DiffID || rep.Uncompressed != b.Uncompressed {
		t.Errorf("reported DiffID %s size %d, decompressed blob has %s size %d", b.DiffID, b.Uncompressed, rep.DiffID, rep.Uncompressed)
	}
	if rep.Chunks != b.Chunks {
		t.Errorf("reported %d chunks, reader found %d", b.Chunks, rep.Chunks)
	}

	// Every file reads back the same through the reference reader.
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range readTar(t, src) {
		if e.hdr.Typeflag != tar.TypeReg {
			continue
		}
		fr, err := r.OpenFile(e.hdr.Name)
		if err != nil {
			t.Fatalf("OpenFile(%s): %v", e.hdr.Name, err)
		}
		got, err := io.ReadAll(io.NewSectionReader(fr, 0, fr.Size()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, e.data) {
			t.Errorf("%s: content differs (got %d bytes, want %d)", e.hdr.Name, len(got), len(e.data))
		}
	}
	if ent, ok := r.Lookup("disk/xattr"); !ok || string(ent.Xattrs["user.test"]) != "value" {
		t.Errorf("xattr lost: %+v", ent)
	}
	var hard *estargz.TOCEntry
	for _, e := range tocOf(t, blob).Entries {
		if e.Name == "disk/hard" {
			hard = e
		}
	}
	if hard == nil || hard.Type != "hardlink" || hard.LinkName != "disk/one" {
		t.Errorf("hardlink entry: %+v", hard)
	}
}

// TestWriteEStargzMatchesBuild compares our TOC with the one estargz.Build
// writes for the same tar: everything but compressed offsets must agree.
func TestWriteEStargzMatchesBuild(t *testing.T) {
	t.Parallel()
	src := sampleTar(t)
	ours, _ := writeEStargz(t, src)
	ref, err := estargz.Build(io.NewSectionReader(bytes.NewReader(src), 0, int64(len(src))), estargz.WithChunkSize(testChunk))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	refBlob, err := io.ReadAll(ref)
	if err != nil {
		t.Fatal(err)
	}
	a, b := tocOf(t, ours), tocOf(t, refBlob)
	// Both writers omit a user or group name equal to the previous one for
	// the same id, but Build restarts that per worker part; fill the names
	// in as readers do.
	fillNames(a)
	fillNames(b)
	if len(a.Entries) != len(b.Entries) {
		t.Fatalf("TOC has %d entries, estargz.Build's has %d", len(a.Entries), len(b.Entries))
	}
	for i := range a.Entries {
		x, y := *a.Entries[i], *b.Entries[i]
		x.Offset, y.Offset = 0, 0
		xs, ys := fmt.Sprintf("%+v", x), fmt.Sprintf("%+v", y)
		if xs != ys {
			t.Errorf("entry %d differs:\n ours  %s\n Build %s", i, xs, ys)
		}
	}
}

func fillNames(toc *estargz.JTOC) {
	u, g := map[int]string{}, map[int]string{}
	for _, e := range toc.Entries {
		if e.Uname == "" {
			e.Uname = u[e.UID]
		}
		if e.Gname == "" {
			e.Gname = g[e.GID]
		}
		u[e.UID], g[e.GID] = e.Uname, e.Gname
	}
}

func tocOf(t testing.TB, blob []byte) *estargz.JTOC {
	t.Helper()
	sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
	off, _, err := estargz.OpenFooter(sr)
	if err != nil {
		t.Fatal(err)
	}
	toc, _, err := new(estargz.GzipDecompressor).ParseTOC(io.NewSectionReader(sr, off, int64(len(blob))-off-estargz.FooterSize))
	if err != nil {
		t.Fatal(err)
	}
	return toc
}

// TestWriteEStargzLossless checks that the decompressed blob is the source
// tar byte for byte, between the landmark entry and the TOC entry.
func TestWriteEStargzLossless(t *testing.T) {
	t.Parallel()
	src := sampleTar(t)
	blob, b := writeEStargz(t, src)
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(plain)) != b.Uncompressed || digest.FromBytes(plain) != b.DiffID {
		t.Fatalf("uncompressed size/DiffID mismatch")
	}
	const landmark = 2 * tarstream.BlockSize
	body := src[:len(src)-2*tarstream.BlockSize] // without the end-of-archive marker
	if !bytes.Equal(plain[landmark:landmark+len(body)], body) {
		t.Fatal("decompressed blob does not contain the source tar unchanged")
	}
}

func TestWriteEStargzDeterministic(t *testing.T) {
	// Not parallel: changes GOMAXPROCS.
	src := sampleTar(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var sums []string
	for _, procs := range []int{1, 4} {
		runtime.GOMAXPROCS(procs)
		blob, _ := writeEStargz(t, src)
		sums = append(sums, fmt.Sprintf("%x", sha256.Sum256(blob)))
	}
	if sums[0] != sums[1] {
		t.Fatalf("output differs between GOMAXPROCS=1 (%s) and 4 (%s)", sums[0], sums[1])
	}
	// The worker count must not matter either.
	one, _ := writeEStargz(t, src, WithWorkers(1))
	many, _ := writeEStargz(t, src, WithWorkers(7))
	if !bytes.Equal(one, many) {
		t.Fatal("output differs between 1 and 7 workers")
	}
}

// TestWriteEStargzReconvert feeds an eStargz blob back in: its TOC and
// landmark must be dropped and the result must be identical.
func TestWriteEStargzReconvert(t *testing.T) {
	t.Parallel()
	src := sampleTar(t)
	first, b1 := writeEStargz(t, src)
	second, b2 := writeEStargz(t, mustGunzip(t, first))
	if b1.TOCDigest != b2.TOCDigest || !bytes.Equal(first, second) {
		t.Fatalf("converting an eStargz layer again changed it: TOC %s -> %s", b1.TOCDigest, b2.TOCDigest)
	}
}

func mustGunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteEStargzBadInput(t *testing.T) {
	t.Parallel()
	good := sampleTar(t)
	tests := []struct {
		name string
		src  []byte
		want error
	}{
		{"empty", nil, tarstream.ErrNotTar},
		{"not a tar", bytes.Repeat([]byte("not a tar archive "), 100), tarstream.ErrNotTar},
		{"truncated payload", good[:len(good)/2], tarstream.ErrInvalid},
		{"truncated header", good[:1000], tarstream.ErrInvalid},
		{"dotdot", tarOf(t, file("disk/../../etc/passwd", []byte("x"))), tarstream.ErrUnsafePath},
		{"absolute", tarOf(t, file("/etc/passwd", []byte("x"))), tarstream.ErrUnsafePath},
		{"hardlink escape", tarOf(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "../y"}}), tarstream.ErrUnsafePath},
		{"trailing data", append(append([]byte(nil), good...), bytes.Repeat([]byte{1}, 2<<20)...), tarstream.ErrTrailingData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := WriteEStargz(context.Background(), io.Discard, bytes.NewReader(tc.src), WithChunkSize(testChunk))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for i, o := range []Option{WithChunkSize(1), WithChunkSize(1 << 30), WithCompressionLevel(-1), WithCompressionLevel(10), WithWorkers(0)} {
		if _, err := WriteEStargz(context.Background(), io.Discard, bytes.NewReader(nil), o); err == nil {
			t.Errorf("eStargz option %d accepted an invalid value", i)
		}
	}
	for i, o := range []Option{WithCompressionLevel(23), WithFormat("zstd")} {
		if _, err := WriteZstdChunked(context.Background(), io.Discard, bytes.NewReader(nil), o); err == nil {
			t.Errorf("zstd:chunked option %d accepted an invalid value", i)
		}
	}
	if err := CheckOptions(WithFormat(toc.FormatZstdChunked), WithCompressionLevel(19)); err != nil {
		t.Errorf("zstd level 19 refused: %v", err)
	}
}

func readTar(t testing.TB, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr: *h, data: data})
	}
}

// failingWriter fails once more than n bytes have been written to it.
type failingWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errDiskFull
	}
	return len(p), nil
}

// TestWriteEStargzFailures checks that a failing destination or a cancelled
// context stops the pipeline with the cause and leaves no goroutine behind.
func TestWriteEStargzFailures(t *testing.T) {
	// Not parallel: counts goroutines.
	src := tarOf(t, file("disk/disk.img", diskLike(40*testChunk, 7)))
	before := runtime.NumGoroutine()

	_, err := WriteEStargz(context.Background(), &failingWriter{n: 3 * testChunk / 4}, bytes.NewReader(src), WithChunkSize(testChunk), WithWorkers(3))
	if !errors.Is(err, errDiskFull) {
		t.Errorf("failing writer: got %v, want %v", err, errDiskFull)
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(src[:len(src)/3])
		cancel() // the rest of the input never comes
	}()
	_, err = WriteEStargz(ctx, io.Discard, &ctxReader{ctx: ctx, r: pr}, WithChunkSize(testChunk))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
	pw.Close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left running, %d before", n, before)
	}
}

// ctxReader fails reads once its context is done, as a network body would.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	type res struct {
		n   int
		err error
	}
	ch := make(chan res, 1)
	go func() { n, err := c.r.Read(p); ch <- res{n, err} }()
	select {
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	case r := <-ch:
		return r.n, r.err
	}
}
