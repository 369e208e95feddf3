package toc_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/zstdfixture"
	"github.com/lazydisk/lazydisk/toc"
)

// counting counts ReadAt calls and bytes.
type counting struct {
	r            io.ReaderAt
	calls, bytes int64
}

func (c *counting) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	c.bytes += int64(len(p))
	return c.r.ReadAt(p, off)
}

// diskTar is a containerDisk-like tar: disk/ and disk/disk.img with runs of
// zeros, text and noise, plus a few other entries.
func diskTar(t testing.TB, size int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(size), 3))
	data := make([]byte, size)
	for off := 0; off < size; {
		n := min(size-off, 4096*(1+r.IntN(100)))
		switch r.IntN(3) {
		case 1:
			copy(data[off:off+n], bytes.Repeat([]byte("lazydisk toc "), n/13+1))
		case 2:
			for i := off; i < off+n; i++ {
				data[i] = byte(r.Uint32())
			}
		}
		off += n
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/disk.img", Mode: 0o444, Uid: 107, Gid: 107, Size: int64(size)})
	tw.Write(data)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/motd", Mode: 0o644, Size: 3})
	tw.Write([]byte("hi\n"))
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "disk/hard.img", Linkname: "disk/disk.img"})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "disk/link", Linkname: "disk.img"})
	tw.Close()
	return b.Bytes()
}

type blobCase struct {
	name   string
	blob   []byte
	ann    map[string]string
	format toc.Format
}

func blobs(t *testing.T) []blobCase {
	t.Helper()
	src := diskTar(t, 5<<20+4321)
	var out []blobCase

	ref, err := estargz.Build(io.NewSectionReader(bytes.NewReader(src), 0, int64(len(src))), estargz.WithChunkSize(512<<10))
	if err != nil {
		t.Fatal(err)
	}
	refBlob, _ := io.ReadAll(ref)
	ref.Close()
	out = append(out, blobCase{"estargz.Build", refBlob, map[string]string{toc.AnnotationTOCDigest: ref.TOCDigest().String()}, toc.FormatEStargz})

	for _, f := range []struct {
		name  string
		write func(context.Context, io.Writer, io.Reader, ...convert.Option) (*convert.Blob, error)
		fmt   toc.Format
	}{{"convert.WriteEStargz", convert.WriteEStargz, toc.FormatEStargz}, {"convert.WriteZstdChunked", convert.WriteZstdChunked, toc.FormatZstdChunked}} {
		var b bytes.Buffer
		res, err := f.write(context.Background(), &b, bytes.NewReader(src))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, blobCase{f.name, b.Bytes(), res.Annotations, f.fmt})
	}

	zb, ann, err := zstdfixture.CStorage(src, 3)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, blobCase{"compressor.ZstdCompressor", zb, ann, toc.FormatZstdChunked})
	return out
}

// TestReadAgreesWithReferences reads each blob's index and checks every
// file and chunk: against the estargz reference reader for eStargz, and by
// decompressing each chunk's blob range and hashing it for both formats.
func TestReadAgreesWithReferences(t *testing.T) {
	t.Parallel()
	for _, bc := range blobs(t) {
		t.Run(bc.name, func(t *testing.T) {
			t.Parallel()
			ix, err := toc.Read(bytes.NewReader(bc.blob), int64(len(bc.blob)), bc.ann)
			if err != nil {
				t.Fatal(err)
			}
			if ix.Format != bc.format || ix.Annotated != ix.Digest || ix.Digest == "" {
				t.Errorf("format %s digest %s annotated %s", ix.Format, ix.Digest, ix.Annotated)
			}
			f, ok := ix.Lookup("./disk/hard.img") // a hard link to disk/disk.img
			if !ok || f.Name != "disk/disk.img" || f.Size != 5<<20+4321 {
				t.Fatalf("Lookup(disk/hard.img) = %+v, %v", f, ok)
			}
			var er *estargz.Reader
			if bc.format == toc.FormatEStargz {
				if er, err = estargz.Open(io.NewSectionReader(bytes.NewReader(bc.blob), 0, int64(len(bc.blob)))); err != nil {
					t.Fatal(err)
				}
				if er.TOCDigest() != ix.Digest {
					t.Errorf("TOC digest %s, reference reader %s", ix.Digest, er.TOCDigest())
				}
			}
			for _, file := range ix.Files {
				for _, c := range file.Chunks {
					if er != nil {
						ce, ok := er.ChunkEntryForOffset(file.Name, c.Offset)
						if !ok || ce.ChunkOffset != c.Offset || ce.ChunkSize != c.Size || ce.Offset != c.CompressedOffset || ce.ChunkDigest != c.Digest.String() {
							t.Fatalf("%s at %d: ours %+v, reference %+v", file.Name, c.Offset, c, ce)
						}
					}
					got := decodeChunk(t, bc.format, bc.blob[c.CompressedOffset:c.CompressedOffset+c.CompressedSize], c.Size)
					if digest.FromBytes(got) != c.Digest {
						t.Fatalf("%s chunk at %d: blob range decodes to %s, TOC says %s", file.Name, c.Offset, digest.FromBytes(got), c.Digest)
					}
				}
			}
			// Byte ranges map to the chunks that cover them.
			cs := f.ChunksFor(1<<20, 4096)
			if len(cs) == 0 || cs[0].Offset > 1<<20 || cs[len(cs)-1].Offset+cs[len(cs)-1].Size < 1<<20+4096 {
				t.Errorf("ChunksFor(1 MiB, 4 KiB) = %+v", cs)
			}
			if all := f.ChunksFor(0, f.Size+100); len(all) != len(f.Chunks) {
				t.Errorf("ChunksFor(whole file) gives %d of %d chunks", len(all), len(f.Chunks))
			}
			if n := len(f.ChunksFor(f.Size, 10)); n != 0 {
				t.Errorf("ChunksFor past the end gives %d chunks", n)
			}
		})
	}
}

func decodeChunk(t *testing.T, f toc.Format, b []byte, size int64) []byte {
	t.Helper()
	var r io.Reader
	if f == toc.FormatZstdChunked {
		d, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	} else {
		z, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = z
	}
	out := make([]byte, size)
	if _, err := io.ReadFull(r, out); err != nil {
		t.Fatalf("decoding a chunk: %v", err)
	}
	return out
}

// TestReadRequests counts reads: one for a TOC within the tail, one for
// an annotated zstd:chunked TOC, two otherwise; and the bytes stay a small
// part of the blob.
func TestReadRequests(t *testing.T) {
	t.Parallel()
	for _, bc := range blobs(t) {
		c := &counting{r: bytes.NewReader(bc.blob)}
		if _, err := toc.Read(c, int64(len(bc.blob)), bc.ann); err != nil {
			t.Fatal(err)
		}
		if c.calls != 1 {
			t.Errorf("%s: %d reads, want 1", bc.name, c.calls)
		}
		c = &counting{r: bytes.NewReader(bc.blob)}
		if _, err := toc.Read(c, int64(len(bc.blob)), nil, toc.WithTail(64)); err != nil {
			t.Fatal(err)
		}
		if c.calls > 2 {
			t.Errorf("%s without annotations, small tail: %d reads, want at most 2", bc.name, c.calls)
		}
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	bs := blobs(t)
	esgz, zstdc := bs[1], bs[2]
	gz := func() []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(diskTar(t, 100000))
		w.Close()
		return b.Bytes()
	}()
	flip := func(b []byte, off int) []byte { c := append([]byte(nil), b...); c[off] ^= 0xff; return c }
	ann := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{}
		for a, b := range m {
			c[a] = b
		}
		c[k] = v
		return c
	}
	tests := []struct {
		name string
		blob []byte
		ann  map[string]string
		want error
	}{
		{"plain gzip", gz, nil, toc.ErrNotSeekable},
		{"empty", nil, nil, toc.ErrNotSeekable},
		{"eStargz footer magic", flip(esgz.blob, len(esgz.blob)-20), nil, toc.ErrNotSeekable},
		{"eStargz TOC offset past the end", withFooterOffset(esgz.blob, int64(len(esgz.blob))+10), nil, toc.ErrInvalid},
		{"eStargz corrupt TOC", flip(esgz.blob, len(esgz.blob)-100), nil, toc.ErrInvalid},
		{"eStargz wrong annotation", esgz.blob, ann(esgz.ann, toc.AnnotationTOCDigest, digest.FromString("x").String()), toc.ErrTOCDigest},
		{"both annotations", esgz.blob, ann(esgz.ann, toc.AnnotationZstdChunkedManifestChecksum, "sha256:00"), toc.ErrBothTOCs},
		{"zstd wrong checksum", zstdc.blob, ann(zstdc.ann, toc.AnnotationZstdChunkedManifestChecksum, digest.FromString("x").String()), toc.ErrTOCDigest},
		{"zstd position past the end", zstdc.blob, ann(zstdc.ann, toc.AnnotationZstdChunkedManifestPosition, "999999999:10:10:1"), toc.ErrInvalid},
		{"zstd TOC over the limit", zstdc.blob, ann(zstdc.ann, toc.AnnotationZstdChunkedManifestPosition, "10:10:999999999999:1"), toc.ErrInvalid},
		{"zstd bad type", zstdc.blob, ann(zstdc.ann, toc.AnnotationZstdChunkedManifestPosition, "10:10:10:2"), toc.ErrInvalid},
	}
	for _, tc := range tests {
		_, err := toc.Read(bytes.NewReader(tc.blob), int64(len(tc.blob)), tc.ann)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// withFooterOffset rewrites the TOC offset in an eStargz footer.
func withFooterOffset(blob []byte, off int64) []byte {
	c := append([]byte(nil), blob[:len(blob)-toc.EStargzFooterSize]...)
	return append(c, toc.EStargzFooter(off)...)
}
