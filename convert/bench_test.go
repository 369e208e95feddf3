package convert_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/testdisk"
	"github.com/lazydisk/lazydisk/internal/zstdfixture"
)

// benchDiskSize is the disk in the writers' benchmark input: big enough
// for every worker to have many chunks, small enough that one iteration of
// estargz.Build, the slowest writer, takes a few seconds.
const benchDiskSize = 32 << 20

// benchTar is the writers' input: a containerDisk tar holding a disk-like
// image (testdisk.Bytes).
var benchTar = sync.OnceValues(func() ([]byte, error) {
	return testdisk.Tar(testdisk.Bytes(benchDiskSize, 15))
})

// refRun is one run of a reference writer: its time and output size.
type refRun struct {
	elapsed time.Duration
	size    int64
}

// estargzBuild runs the reference eStargz writer with its defaults and
// reads its blob to the end; it returns the blob's size.
func estargzBuild(tarb []byte) (int64, error) {
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarb), 0, int64(len(tarb))))
	if err != nil {
		return 0, err
	}
	defer blob.Close()
	return io.Copy(io.Discard, blob)
}

// timed runs f once and returns its time and result.
func timed(f func() (int64, error)) (refRun, error) {
	start := time.Now()
	n, err := f()
	return refRun{elapsed: time.Since(start), size: n}, err
}

// The references the writers' ratios are computed against, each run once
// per test binary (outside any benchmark's timer).
var (
	refEStargz = sync.OnceValues(func() (refRun, error) {
		tarb, err := benchTar()
		if err != nil {
			return refRun{}, err
		}
		return timed(func() (int64, error) { return estargzBuild(tarb) })
	})
	refCStorage = sync.OnceValues(func() (refRun, error) {
		tarb, err := benchTar()
		if err != nil {
			return refRun{}, err
		}
		return timed(func() (int64, error) {
			blob, _, err := zstdfixture.CStorage(tarb, 3)
			return int64(len(blob)), err
		})
	})
)

// benchCounter discards what it is given and counts it.
type benchCounter struct{ n int64 }

func (w *benchCounter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// BenchmarkWrite converts one disk-like containerDisk tar (32 MiB of disk:
// incompressible, text-like and zero runs) in memory with each writer, with
// default options, beside the references: estargz.Build for eStargz and
// containers/storage's zstd:chunked writer (level 3, as podman's default).
// MB/s are of the input tar. Besides ns/op each reports out-bytes, its
// output's size, and the writers report their speed and output size as
// ratios to each reference (x-speed-REF above 1 is faster than REF;
// x-size-REF below 1 is smaller), each reference measured by one run of
// its own.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	writers := []struct {
		name  string
		write func(tarb []byte) (int64, error)
		refs  []string
	}{
		{"estargz.Build", estargzBuild, nil},
		{"cstorage-zstd-chunked", func(tarb []byte) (int64, error) {
			blob, _, err := zstdfixture.CStorage(tarb, 3)
			return int64(len(blob)), err
		}, nil},
		{"WriteEStargz", func(tarb []byte) (int64, error) {
			var w benchCounter
			_, err := convert.WriteEStargz(ctx, &w, bytes.NewReader(tarb))
			return w.n, err
		}, []string{"estargz.Build"}},
		{"WriteZstdChunked", func(tarb []byte) (int64, error) {
			var w benchCounter
			_, err := convert.WriteZstdChunked(ctx, &w, bytes.NewReader(tarb))
			return w.n, err
		}, []string{"estargz.Build", "cstorage"}},
	}
	for _, wr := range writers {
		b.Run(wr.name, func(b *testing.B) {
			tarb, err := benchTar()
			if err != nil {
				b.Fatal(err)
			}
			refs := map[string]refRun{}
			for _, name := range wr.refs {
				get := refEStargz
				if name == "cstorage" {
					get = refCStorage
				}
				if refs[name], err = get(); err != nil {
					b.Fatalf("reference %s: %v", name, err)
				}
			}
			b.SetBytes(int64(len(tarb)))
			b.ReportAllocs()
			var n int
			var size int64
			for b.Loop() {
				if size, err = wr.write(tarb); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(size), "out-bytes")
			perOp := b.Elapsed() / time.Duration(n)
			for name, ref := range refs {
				b.ReportMetric(float64(ref.elapsed)/float64(perOp), "x-speed-"+name)
				b.ReportMetric(float64(size)/float64(ref.size), "x-size-"+name)
			}
		})
	}
}
