package disk_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/built"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

// formats are the layer formats every reading test runs against.
var formats = []toc.Format{toc.FormatEStargz, toc.FormatZstdChunked}

// testChunk is the chunk size of the fixtures: small, for many chunks.
const testChunk = 64 << 10

var diskOnce = sync.OnceValue(func() []byte { return makeDisk(3<<20+777, 1) })

// makeDisk returns n bytes shaped like a disk image: random (incompressible)
// runs, text-like runs, and zero runs of 4 KiB to 1 MiB, some long enough to
// become zstd:chunked zero chunks.
func makeDisk(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, 0, n)
	for len(b) < n {
		run := min(n-len(b), 4<<10+r.IntN(300<<10))
		switch r.IntN(3) {
		case 0:
			chunk := make([]byte, run)
			for i := range chunk {
				chunk[i] = byte(r.Uint32())
			}
			b = append(b, chunk...)
		case 1:
			line := []byte("the quick brown fox jumps over the lazy disk 0123456789\n")
			for i := 0; i < run; i++ {
				b = append(b, line[(i+r.IntN(2))%len(line)])
			}
		default:
			b = append(b, make([]byte, min(n-len(b), 4<<10+r.IntN(1<<20)))...)
		}
	}
	return b[:n]
}

// anonymous reads no credentials from the machine running the tests.
func anonymous() disk.Option {
	return disk.WithImageOptions(image.WithKeychain(authn.NewMultiKeychain()))
}

// mustRef parses ref.
func mustRef(t testing.TB, ref string) image.Reference {
	t.Helper()
	r, err := image.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pushDisk packages data as a containerDisk (/disk/disk.img), converts it
// to format with testChunk chunks, edits the manifest with edit if set,
// pushes it to reg as repo:latest and returns its reference and the image.
func pushDisk(t testing.TB, reg *testregistry.Registry, repo string, format toc.Format, data []byte, edit func(*v1.Manifest)) (string, v1.Image) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ropts := image.WithKeychain(authn.NewMultiKeychain())
	src, err := image.Parse("disk:" + path)
	if err != nil {
		t.Fatal(err)
	}
	art, err := image.Read(ctx, src, ropts)
	if err != nil {
		t.Fatal(err)
	}
	img := art.Image
	if format != "" {
		conv, err := convert.Image(ctx, img, convert.WithFormat(format), convert.WithChunkSize(testChunk))
		if err != nil {
			t.Fatalf("converting: %v", err)
		}
		t.Cleanup(func() { conv.Close() })
		img = conv.Image
	}
	if edit != nil {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		m = m.DeepCopy()
		edit(m)
		if img, err = built.Rewrite(img, m); err != nil {
			t.Fatal(err)
		}
	}
	ref := "docker://" + reg.Host + "/" + strings.ReplaceAll(repo, ":", "-") + ":latest"
	dst, err := image.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.Write(ctx, dst, image.Artifact{Image: img}, ropts); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref, img
}

// layerDigest returns the digest of img's only layer.
func layerDigest(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(m.Layers))
	}
	return m.Layers[0].Digest
}

func open(t testing.TB, ref string, opts ...disk.Option) *disk.File {
	t.Helper()
	f, err := disk.Open(context.Background(), mustRef(t, ref), append([]disk.Option{anonymous()}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", ref, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// checkRead reads n bytes at off and compares them, and the io.ReaderAt
// result, with data.
func checkRead(t testing.TB, f *disk.File, data []byte, off, n int64) {
	t.Helper()
	p := make([]byte, n)
	got, err := f.ReadAt(p, off)
	want := int64(0)
	if off < int64(len(data)) {
		want = min(n, int64(len(data))-off)
	}
	switch {
	case int64(got) != want:
		t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d bytes", n, off, got, err, want)
		return
	case want < n && err == nil:
		t.Errorf("ReadAt(%d bytes at %d) read %d, past the end, without io.EOF", n, off, got)
	case want == n && err != nil && (n != 0 || off < int64(len(data))):
		t.Errorf("ReadAt(%d bytes at %d): %v", n, off, err)
	}
	if got > 0 && !bytes.Equal(p[:got], data[off:off+int64(got)]) {
		t.Errorf("ReadAt(%d bytes at %d): the bytes differ from the disk's", n, off)
	}
}
