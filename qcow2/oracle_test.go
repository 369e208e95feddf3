package qcow2_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/internal/clitest"
	"github.com/lazydisk/lazydisk/qcow2"
)

const qemuHint = "apt-get install qemu-utils"

// rawDisk writes a raw disk of size bytes with runs of incompressible bytes,
// text-like bytes and zeros, at boundaries that are not cluster aligned.
func rawDisk(t *testing.T, dir string, size int64, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	buf := make([]byte, size)
	for off := int64(0); off < size; {
		n := min(int64(1+rng.IntN(200))*1024+int64(rng.IntN(4))*512, size-off)
		switch rng.IntN(3) {
		case 0:
			for i := range buf[off : off+n] {
				buf[off+int64(i)] = byte(rng.Uint32())
			}
		case 1:
			copy(buf[off:off+n], bytes.Repeat([]byte("guest disk block, compressible text; "), int(n)/37+1))
		}
		off += n
	}
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is one way qemu makes a qcow2 file.
type fixture struct {
	name string
	// what the image must be: version, cluster size, compression, extended L2
	version int
	cluster int64
	comp    qcow2.Compression
	ext     bool
	make    func(t *testing.T, dir, raw string) string // returns the qcow2 path
}

func convertTo(opts ...string) func(t *testing.T, dir, raw string) string {
	return func(t *testing.T, dir, raw string) string {
		out := filepath.Join(dir, "disk.qcow2")
		args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, opts...)
		clitest.Run(t, time.Minute, "qemu-img", append(args, raw, out)...)
		return out
	}
}

// createWrite makes an image with qemu-img create and writes to it with
// qemu-io: data, zeroes (-z, kept allocated or unmapped with -u) and
// discards, unaligned to clusters and subclusters.
func createWrite(size string, opts string, cmds ...string) func(t *testing.T, dir, raw string) string {
	return func(t *testing.T, dir, raw string) string {
		out := filepath.Join(dir, "disk.qcow2")
		args := []string{"create", "-f", "qcow2"}
		if opts != "" {
			args = append(args, "-o", opts)
		}
		clitest.Run(t, time.Minute, "qemu-img", append(args, out, size)...)
		io := []string{"-f", "qcow2"}
		for _, c := range cmds {
			io = append(io, "-c", c)
		}
		clitest.Run(t, time.Minute, "qemu-io", append(io, out)...)
		return out
	}
}

var writes = []string{
	"write -P 0xaa 0 4k", "write -P 0x55 100k 70k", "write -P 0x11 1M 512",
	"write -P 0x22 3000k 300k", "write -z 3100k 64k", "write -z -u 3200k 128k",
	"write -P 0x33 5M 1M", "discard 5200k 128k", "write -z 5500k 4k",
}

var fixtures = []fixture{
	{"create+qemu-io", 3, 64 << 10, qcow2.Deflate, false, createWrite("7M", "", writes...)},
	{"create+qemu-io/compat=0.10", 2, 64 << 10, qcow2.Deflate, false, createWrite("7M", "compat=0.10", writes...)},
	{"create+qemu-io/4k", 3, 4 << 10, qcow2.Deflate, false, createWrite("7M", "cluster_size=4k", writes...)},
	{"create+qemu-io/sparse-1.5G", 3, 64 << 10, qcow2.Deflate, false, createWrite("1536M", "", "write -P 0x44 0 64k", "write -P 0x45 700M 1M", "write -z 1G 2M", "write -P 0x46 1535M 1M")},
	{"extended_l2/cluster_size=128k", 3, 128 << 10, qcow2.Deflate, true, createWrite("7M", "extended_l2=on,cluster_size=128k", writes...)},
	{"extended_l2/cluster_size=32k", 3, 32 << 10, qcow2.Deflate, true, createWrite("7M", "extended_l2=on,cluster_size=32k",
		"write -P 0x61 0 1k", "write -z 1k 1k", "write -P 0x62 5k 3k", "write -z -u 64k 32k", "write -P 0x63 100k 1k", "write -z 101k 1k", "discard 200k 4k")},
	{"convert -c", 3, 64 << 10, qcow2.Deflate, false, convertTo("-c")},
	{"convert -c/compression_type=zstd", 3, 64 << 10, qcow2.Zstd, false, convertTo("-c", "-o", "compression_type=zstd")},
	{"convert -c/compat=0.10", 2, 64 << 10, qcow2.Deflate, false, convertTo("-c", "-o", "compat=0.10")},
	{"convert -c/extended_l2=on", 3, 64 << 10, qcow2.Deflate, true, convertTo("-c", "-o", "extended_l2=on")},
	{"convert -c/cluster_size=4k", 3, 4 << 10, qcow2.Deflate, false, convertTo("-c", "-o", "cluster_size=4k")},
	{"convert -c/cluster_size=2M,zstd", 3, 2 << 20, qcow2.Zstd, false, convertTo("-c", "-o", "cluster_size=2M,compression_type=zstd")},
	{"convert/cluster_size=4k", 3, 4 << 10, qcow2.Deflate, false, convertTo("-o", "cluster_size=4k")},
	{"convert/cluster_size=64k", 3, 64 << 10, qcow2.Deflate, false, convertTo("-o", "cluster_size=64k")},
	{"convert/cluster_size=2M", 3, 2 << 20, qcow2.Deflate, false, convertTo("-o", "cluster_size=2M")},
	{"convert/compat=0.10", 2, 64 << 10, qcow2.Deflate, false, convertTo("-o", "compat=0.10")},
	{"convert/extended_l2=on,cluster_size=64k", 3, 64 << 10, qcow2.Deflate, true, convertTo("-o", "extended_l2=on,cluster_size=64k")},
}

// TestOracle checks the guest view of qcow2 files qemu made against
// qemu-img convert -O raw, whole and at random offsets, and Extents
// against qemu-img map on which ranges hold data.
func TestOracle(t *testing.T) {
	t.Parallel()
	clitest.Need(t, qemuHint, "qemu-img", "qemu-io")
	for i, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			raw := rawDisk(t, dir, 6<<20+3*512, uint64(i))
			q := fx.make(t, dir, raw)
			want := filepath.Join(dir, "want.raw")
			clitest.Run(t, time.Minute, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", q, want)
			im, f := open(t, q)
			defer f.Close()
			if im.Version() != fx.version || im.ClusterSize() != fx.cluster || im.Compression() != fx.comp || im.ExtendedL2() != fx.ext {
				t.Fatalf("image is version %d, %d-byte clusters, %s, extended L2 %t; want %d, %d, %s, %t",
					im.Version(), im.ClusterSize(), im.Compression(), im.ExtendedL2(), fx.version, fx.cluster, fx.comp, fx.ext)
			}
			checkGuest(t, im, want)
			checkMap(t, im, q)
			// qemu-io write -z on v3 images leaves zero clusters or zero
			// subclusters: make sure they were read as such.
			if fx.version == 3 && (strings.HasPrefix(fx.name, "create") || strings.HasPrefix(fx.name, "extended")) {
				es, err := im.Extents(0, im.Size())
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(es, func(e qcow2.Extent) bool { return e.Kind == qcow2.Zero }) {
					t.Fatalf("no zero extent in %v", es)
				}
			}
		})
	}
}

func open(t *testing.T, path string) (*qcow2.Image, *os.File) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	// Small caches, so that the tests evict tables and clusters.
	im, err := qcow2.Open(f, fi.Size(), qcow2.WithL2Cache(1), qcow2.WithClusterCache(1))
	if err != nil {
		f.Close()
		t.Fatalf("Open: %v", err)
	}
	return im, f
}

// checkGuest compares im with the raw file want: whole, then at random
// offsets and lengths.
func checkGuest(t *testing.T, im *qcow2.Image, want string) {
	t.Helper()
	wf, err := os.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	fi, _ := wf.Stat()
	if im.Size() != fi.Size() {
		t.Fatalf("Size() = %d, qemu-img convert gave %d bytes", im.Size(), fi.Size())
	}
	if im.Size() <= 64<<20 {
		wb, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(im, 0, im.Size()))
		if err != nil {
			t.Fatalf("reading the whole guest disk: %v", err)
		}
		if !bytes.Equal(got, wb) {
			i := 0
			for i < len(got) && got[i] == wb[i] {
				i++
			}
			t.Fatalf("guest disk differs from qemu-img convert -O raw, first at byte %d", i)
		}
	}
	// Random reads from four goroutines at once: the caches are shared.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(im.Size()), uint64(g)))
			for range 75 {
				off := rng.Int64N(im.Size())
				n := 1 + rng.IntN(300<<10)
				got := make([]byte, n)
				m, err := im.ReadAt(got, off)
				wantN := int(min(int64(n), im.Size()-off))
				if m != wantN || (err != nil && !(err == io.EOF && wantN < n)) {
					t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, m, err, wantN)
					return
				}
				exp := make([]byte, wantN)
				if _, err := wf.ReadAt(exp, off); err != nil && err != io.EOF {
					t.Error(err)
					return
				}
				if !bytes.Equal(got[:m], exp) {
					t.Errorf("ReadAt(%d bytes at %d) differs from qemu-img convert -O raw", n, off)
					return
				}
			}
		})
	}
	wg.Wait()
}

type span struct {
	Start, Length int64
	Data          bool
}

// checkMap compares Extents over the whole disk with qemu-img map: the
// same ranges hold data, and the rest reads as zeros.
func checkMap(t *testing.T, im *qcow2.Image, path string) {
	t.Helper()
	var qm []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal([]byte(clitest.Run(t, time.Minute, "qemu-img", "map", "--output=json", "-f", "qcow2", path)), &qm); err != nil {
		t.Fatal(err)
	}
	var want []span
	for _, e := range qm {
		if !e.Data && !e.Zero {
			t.Fatalf("qemu-img map has a range neither data nor zero: %+v", e)
		}
		want = appendSpan(want, span{e.Start, e.Length, e.Data})
	}
	es, err := im.Extents(0, im.Size())
	if err != nil {
		t.Fatal(err)
	}
	var got []span
	for _, e := range es {
		got = appendSpan(got, span{e.Offset, e.Length, e.Kind == qcow2.Data})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Extents data ranges:\n%v\nqemu-img map:\n%v", spans(got), spans(want))
	}
	// Every range Extents says is not data reads as zeros.
	for _, e := range es {
		if e.Kind == qcow2.Data || e.Length > 8<<20 {
			continue
		}
		b := make([]byte, e.Length)
		if _, err := im.ReadAt(b, e.Offset); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
			t.Fatalf("%s extent at %d does not read as zeros", e.Kind, e.Offset)
		}
	}
}

func appendSpan(s []span, e span) []span {
	if k := len(s) - 1; k >= 0 && s[k].Data == e.Data && s[k].Start+s[k].Length == e.Start {
		s[k].Length += e.Length
		return s
	}
	return append(s, e)
}

func spans(s []span) string {
	var b strings.Builder
	for _, e := range s {
		fmt.Fprintf(&b, "  data=%t %d+%d\n", e.Data, e.Start, e.Length)
	}
	return b.String()
}
