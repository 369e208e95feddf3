package disk_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/internal/testdisk"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// benchReadDisk is the size of the disk the reader's benchmark reads.
const benchReadDisk = 32 << 20

// pushBench pushes img to reg as repo:latest with go-containerregistry
// and returns the reference disk.Open takes.
func pushBench(b *testing.B, reg *testregistry.Registry, repo string, img v1.Image) string {
	b.Helper()
	r, err := name.ParseReference(reg.Host+"/"+repo+":latest", name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(authn.Anonymous)); err != nil {
		b.Fatalf("pushing %s: %v", r, err)
	}
	return "docker://" + r.String()
}

// BenchmarkReader reads a 32 MiB disk-like containerDisk (testdisk.Bytes)
// from an in-process registry on 127.0.0.1, converted to each format with
// the default options, and beside it the same disk as an ordinary gzip
// layer:
//
//   - Open: disk.Open and Close, which fetch the manifest and the TOC;
//   - ReadAt-4KiB: ReadAt of 4 KiB at a random offset, with no chunk cache
//     (WithCacheSize(0)), so that each read fetches, decompresses and
//     verifies the chunks under it; MB/s are of the 4 KiB;
//   - WriteRange: the whole disk with WriteRange, from a File just opened
//     (outside the timer) with the default cache; x-speed-pull-gzip
//     compares it with pull-gzip;
//   - pull-gzip (the baseline): what a reader without a seekable format
//     does, the gzip layer fetched whole and decompressed
//     (go-containerregistry's Layer.Uncompressed).
//
// Conversion and pushing happen once, before the timers.
func BenchmarkReader(b *testing.B) {
	ctx := context.Background()
	reg := testregistry.Start(b)
	data := testdisk.Bytes(benchReadDisk, 17)
	tarb, err := testdisk.Tar(data)
	if err != nil {
		b.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarb)), nil })
	if err != nil {
		b.Fatal(err)
	}
	src, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		b.Fatal(err)
	}

	var gzipPerOp float64
	b.Run("pull-gzip", func(b *testing.B) {
		ref := pushBench(b, reg, "bench/gzip", src)
		r, err := name.ParseReference(ref[len("docker://"):], name.Insecure)
		if err != nil {
			b.Fatal(err)
		}
		img, err := remote.Image(r, remote.WithAuth(authn.Anonymous))
		if err != nil {
			b.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		n := 0
		for b.Loop() {
			rc, err := layers[0].Uncompressed()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
			n++
		}
		gzipPerOp = float64(b.Elapsed().Nanoseconds()) / float64(n)
	})

	for _, format := range formats {
		b.Run(strings.ReplaceAll(string(format), ":", "-"), func(b *testing.B) {
			conv, err := convert.Image(ctx, src, convert.WithFormat(format))
			if err != nil {
				b.Fatalf("converting: %v", err)
			}
			b.Cleanup(func() { conv.Close() })
			ref := pushBench(b, reg, "bench/"+string(format[:4]), conv.Image)
			openBench := func(b *testing.B, opts ...disk.Option) *disk.File {
				f, err := disk.Open(ctx, mustRef(b, ref), append([]disk.Option{anonymous()}, opts...)...)
				if err != nil {
					b.Fatalf("Open(%s): %v", ref, err)
				}
				b.Cleanup(func() { f.Close() })
				return f
			}

			b.Run("Open", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f, err := disk.Open(ctx, mustRef(b, ref), anonymous())
					if err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
			})
			b.Run("ReadAt-4KiB", func(b *testing.B) {
				f := openBench(b, disk.WithCacheSize(0))
				r := rand.New(rand.NewPCG(4, 4096))
				p := make([]byte, 4096)
				b.SetBytes(int64(len(p)))
				b.ReportAllocs()
				for b.Loop() {
					off := r.Int64N(f.Size()/4096) * 4096
					if _, err := f.ReadAt(p, off); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if off := int64(len(data)) / 2; func() bool { f.ReadAt(p, off); return !bytes.Equal(p, data[off:off+4096]) }() {
					b.Fatal("ReadAt returned bytes that differ from the disk's")
				}
			})
			b.Run("WriteRange", func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				var out benchCounter
				n := 0
				for b.Loop() {
					b.StopTimer()
					f, err := disk.Open(ctx, mustRef(b, ref), anonymous())
					if err != nil {
						b.Fatal(err)
					}
					out.n = 0
					b.StartTimer()
					if _, err := f.WriteRange(&out, 0, f.Size()); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					f.Close()
					b.StartTimer()
					n++
				}
				if out.n != int64(len(data)) {
					b.Fatalf("WriteRange wrote %d bytes, want %d", out.n, len(data))
				}
				f := openBench(b)
				var all bytes.Buffer
				if _, err := f.WriteRange(&all, 0, f.Size()); err != nil || !bytes.Equal(all.Bytes(), data) {
					b.Fatalf("WriteRange: %v, or the bytes differ from the disk's", err)
				}
				if gzipPerOp > 0 {
					b.ReportMetric(gzipPerOp/(float64(b.Elapsed().Nanoseconds())/float64(n)), "x-speed-pull-gzip")
				}
			})
		})
	}
}

// benchCounter discards what it is given and counts it.
type benchCounter struct{ n int64 }

func (w *benchCounter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
