package toc_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/testdisk"
	"github.com/lazydisk/lazydisk/toc"
)

// benchBlob is a layer the TOC benchmark parses: a 64 MiB disk-like
// containerDisk converted with 64 KiB chunks, so that its TOC lists 1,024
// chunks, as that of a 256 MiB disk at the default chunk size.
type benchBlob struct {
	blob *convert.Blob
	data []byte
}

var benchBlobs = sync.OnceValues(func() (map[toc.Format]benchBlob, error) {
	tarb, err := testdisk.Tar(testdisk.Bytes(64<<20, 16))
	if err != nil {
		return nil, err
	}
	out := map[toc.Format]benchBlob{}
	for f, w := range map[toc.Format]func(context.Context, io.Writer, io.Reader, ...convert.Option) (*convert.Blob, error){
		toc.FormatEStargz:     convert.WriteEStargz,
		toc.FormatZstdChunked: convert.WriteZstdChunked,
	} {
		var buf bytes.Buffer
		blob, err := w(context.Background(), &buf, bytes.NewReader(tarb), convert.WithChunkSize(64<<10))
		if err != nil {
			return nil, err
		}
		out[f] = benchBlob{blob: blob, data: buf.Bytes()}
	}
	return out, nil
})

// BenchmarkRead parses the footer and TOC of a layer of each format with
// toc.Read, the layer's annotations given (as the reader does), from a blob
// in memory, beside the reference eStargz reader (estargz.Open, which reads
// the same footer and TOC and builds its own index). MB/s are of the
// compressed TOC; chunks is the number of chunks in the TOC. For eStargz,
// x-speed-estargz.Open above 1 is faster than the reference reader.
func BenchmarkRead(b *testing.B) {
	blobs, err := benchBlobs()
	if err != nil {
		b.Fatal(err)
	}
	var refPerOp float64 // ns/op of estargz.Open, once its benchmark ran
	cases := []struct {
		name   string
		format toc.Format
		read   func(bb benchBlob) error
	}{
		{"estargz.Open", toc.FormatEStargz, func(bb benchBlob) error {
			_, err := estargz.Open(io.NewSectionReader(bytes.NewReader(bb.data), 0, int64(len(bb.data))))
			return err
		}},
		{"estargz", toc.FormatEStargz, func(bb benchBlob) error {
			_, err := toc.Read(bytes.NewReader(bb.data), int64(len(bb.data)), bb.blob.Annotations)
			return err
		}},
		{"zstd-chunked", toc.FormatZstdChunked, func(bb benchBlob) error {
			_, err := toc.Read(bytes.NewReader(bb.data), int64(len(bb.data)), bb.blob.Annotations)
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			bb := blobs[c.format]
			b.SetBytes(bb.blob.TOCSize)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := c.read(bb); err != nil {
					b.Fatal(err)
				}
				n++
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(n)
			b.ReportMetric(float64(bb.blob.Chunks), "chunks")
			switch {
			case c.name == "estargz.Open":
				refPerOp = perOp
			case c.format == toc.FormatEStargz && refPerOp > 0:
				b.ReportMetric(refPerOp/perOp, "x-speed-estargz.Open")
			}
		})
	}
}
