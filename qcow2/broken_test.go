package qcow2_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"

	"github.com/lazydisk/lazydisk/internal/clitest"
	"github.com/lazydisk/lazydisk/qcow2"
)

// Layout of the small image tiny builds: 512-byte clusters; the header in
// cluster 0, the refcount table in 1, the L1 table in 2, the L2 table in 3,
// a data cluster in 4 and a compressed cluster in 5. The guest disk is 16
// KiB: cluster 0 is data (0xd1), 1 is a zero cluster, 2 is compressed
// (text), the rest are unallocated.
const (
	tinyCluster = 512
	tinyRefcnt  = 1 * tinyCluster
	tinyL1      = 2 * tinyCluster
	tinyL2      = 3 * tinyCluster
	tinyData    = 4 * tinyCluster
	tinyComp    = 5 * tinyCluster
	tinySize    = 16 << 10
)

var tinyText = bytes.Repeat([]byte("compressed cluster! "), tinyCluster/20+1)[:tinyCluster]

// tiny returns a valid version 3 image; tests break it.
func tiny() []byte {
	f := make([]byte, 6*tinyCluster)
	be := binary.BigEndian
	copy(f, qcow2.Magic)
	be.PutUint32(f[4:], 3)
	be.PutUint32(f[20:], 9) // cluster_bits
	be.PutUint64(f[24:], tinySize)
	be.PutUint32(f[36:], 1) // l1_size
	be.PutUint64(f[40:], tinyL1)
	be.PutUint64(f[48:], tinyRefcnt)
	be.PutUint32(f[56:], 1)
	be.PutUint32(f[96:], 4)    // refcount_order
	be.PutUint32(f[100:], 112) // header_length
	be.PutUint64(f[tinyL1:], tinyL2|1<<63)
	be.PutUint64(f[tinyL2:], tinyData|1<<63)
	be.PutUint64(f[tinyL2+8:], 1) // zero flag
	copy(f[tinyData:], bytes.Repeat([]byte{0xd1}, tinyCluster))
	var c bytes.Buffer
	w, _ := flate.NewWriter(&c, flate.BestCompression)
	w.Write(tinyText)
	w.Close()
	copy(f[tinyComp:], c.Bytes())
	// 512-byte clusters: bits 0-60 offset, bit 61 the extra sector count.
	be.PutUint64(f[tinyL2+16:], 1<<62|tinyComp)
	return f
}

func TestTiny(t *testing.T) {
	t.Parallel()
	f := tiny()
	im, err := qcow2.Open(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, tinySize)
	if _, err := im.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, tinySize)
	copy(want, bytes.Repeat([]byte{0xd1}, tinyCluster))
	copy(want[2*tinyCluster:], tinyText)
	if !bytes.Equal(got, want) {
		t.Fatal("guest disk of the hand-made image differs")
	}
	es, err := im.Extents(0, tinySize)
	if err != nil {
		t.Fatal(err)
	}
	wantEs := []qcow2.Extent{{0, 512, qcow2.Data}, {512, 512, qcow2.Zero}, {1024, 512, qcow2.Data}, {1536, tinySize - 1536, qcow2.Hole}}
	if len(es) != len(wantEs) {
		t.Fatalf("Extents = %v, want %v", es, wantEs)
	}
	for i := range es {
		if es[i] != wantEs[i] {
			t.Fatalf("Extents = %v, want %v", es, wantEs)
		}
	}
	if n, err := im.ReadAt(make([]byte, 10), tinySize-4); n != 4 || err != io.EOF {
		t.Fatalf("ReadAt across the end = %d, %v; want 4, EOF", n, err)
	}
}

// TestBroken checks that each broken image is refused, by Open or by the
// read that reaches the broken part, with a one-line error matching its
// sentinel, and no panic.
func TestBroken(t *testing.T) {
	t.Parallel()
	be := binary.BigEndian
	tests := []struct {
		name   string
		break_ func(f []byte) []byte
		want   error
	}{
		{"empty", func(f []byte) []byte { return nil }, qcow2.ErrNotQcow2},
		{"magic", func(f []byte) []byte { f[3] = 0xfa; return f }, qcow2.ErrNotQcow2},
		{"version 1", func(f []byte) []byte { be.PutUint32(f[4:], 1); return f }, qcow2.ErrUnsupported},
		{"version 4", func(f []byte) []byte { be.PutUint32(f[4:], 4); return f }, qcow2.ErrUnsupported},
		{"truncated header", func(f []byte) []byte { return f[:90] }, qcow2.ErrCorrupt},
		{"backing file", func(f []byte) []byte { be.PutUint64(f[8:], 200); be.PutUint32(f[16:], 8); return f }, qcow2.ErrBackingFile},
		{"AES", func(f []byte) []byte { be.PutUint32(f[32:], 1); return f }, qcow2.ErrEncrypted},
		{"LUKS", func(f []byte) []byte { be.PutUint32(f[32:], 2); return f }, qcow2.ErrEncrypted},
		{"external data file bit", func(f []byte) []byte { f[79] |= 1 << 2; return f }, qcow2.ErrExternalData},
		{"external data file extension", func(f []byte) []byte {
			be.PutUint32(f[112:], 0x44415441)
			be.PutUint32(f[116:], 8)
			return f
		}, qcow2.ErrExternalData},
		{"unknown incompatible bit", func(f []byte) []byte { f[79] |= 1 << 5; return f }, qcow2.ErrUnsupported},
		{"marked corrupt", func(f []byte) []byte { f[79] |= 1 << 1; return f }, qcow2.ErrCorrupt},
		{"compression type 7", func(f []byte) []byte { f[79] |= 1 << 3; f[104] = 7; return f }, qcow2.ErrUnsupported},
		{"zstd without its bit", func(f []byte) []byte { f[104] = 1; return f }, qcow2.ErrCorrupt},
		{"cluster_bits 8", func(f []byte) []byte { be.PutUint32(f[20:], 8); return f }, qcow2.ErrCorrupt},
		{"cluster_bits 40", func(f []byte) []byte { be.PutUint32(f[20:], 40); return f }, qcow2.ErrCorrupt},
		{"header_length past the cluster", func(f []byte) []byte { be.PutUint32(f[100:], 4096); return f }, qcow2.ErrCorrupt},
		{"header_length too short", func(f []byte) []byte { be.PutUint32(f[100:], 72); return f }, qcow2.ErrCorrupt},
		{"size overflows", func(f []byte) []byte { be.PutUint64(f[24:], 1<<63+512); return f }, qcow2.ErrCorrupt},
		{"L1 too small for the size", func(f []byte) []byte { be.PutUint64(f[24:], 1<<40); return f }, qcow2.ErrCorrupt},
		{"L1 larger than 32 MiB", func(f []byte) []byte { be.PutUint32(f[36:], 1<<23); return f }, qcow2.ErrCorrupt},
		{"L1 past the file", func(f []byte) []byte { be.PutUint64(f[40:], 1<<30); return f }, qcow2.ErrCorrupt},
		{"L1 offset overflows", func(f []byte) []byte { be.PutUint64(f[40:], 1<<63-512); return f }, qcow2.ErrCorrupt},
		{"L1 in the header", func(f []byte) []byte { be.PutUint64(f[40:], 0); return f }, qcow2.ErrCorrupt},
		{"L1 on the refcount table", func(f []byte) []byte { be.PutUint64(f[40:], tinyRefcnt); return f }, qcow2.ErrCorrupt},
		{"refcount table past the file", func(f []byte) []byte { be.PutUint32(f[56:], 1000); return f }, qcow2.ErrCorrupt},
		{"header extension past the cluster", func(f []byte) []byte {
			be.PutUint32(f[112:], 0x12345678)
			be.PutUint32(f[116:], 1<<31)
			return f
		}, qcow2.ErrCorrupt},
		{"L2 past the file", func(f []byte) []byte { be.PutUint64(f[tinyL1:], 1<<40); return f }, qcow2.ErrCorrupt},
		{"L2 on the L1 table", func(f []byte) []byte { be.PutUint64(f[tinyL1:], tinyL1); return f }, qcow2.ErrCorrupt},
		{"data past the file", func(f []byte) []byte { be.PutUint64(f[tinyL2:], 1<<40); return f }, qcow2.ErrCorrupt},
		{"data on the L2 table", func(f []byte) []byte { be.PutUint64(f[tinyL2:], tinyL2); return f }, qcow2.ErrCorrupt},
		{"data on the L1 table", func(f []byte) []byte { be.PutUint64(f[tinyL2:], tinyL1); return f }, qcow2.ErrCorrupt},
		{"compressed garbage", func(f []byte) []byte { copy(f[tinyComp:], bytes.Repeat([]byte{0xff}, 64)); return f }, qcow2.ErrCorrupt},
		{"compressed too short", func(f []byte) []byte {
			var c bytes.Buffer
			w, _ := flate.NewWriter(&c, flate.BestCompression)
			w.Write(tinyText[:100])
			w.Close()
			copy(f[tinyComp:], c.Bytes())
			return f
		}, qcow2.ErrCorrupt},
		{"compressed past the file", func(f []byte) []byte { be.PutUint64(f[tinyL2+16:], 1<<62|1<<40); return f }, qcow2.ErrCorrupt},
		{"compressed in the header", func(f []byte) []byte { be.PutUint64(f[tinyL2+16:], 1<<62|100); return f }, qcow2.ErrCorrupt},
		{"extended L2 with 512-byte clusters", func(f []byte) []byte { f[79] |= 1 << 4; return f }, qcow2.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := openAndRead(tt.break_(tiny()))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// openAndRead opens f and reads all of it and all its extents, returning
// the first error.
func openAndRead(f []byte) error {
	im, err := qcow2.Open(bytes.NewReader(f), int64(len(f)), qcow2.WithL2Cache(1), qcow2.WithClusterCache(1))
	if err != nil {
		return err
	}
	if _, err := im.Extents(0, im.Size()); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for off := int64(0); off < im.Size(); off += int64(len(buf)) {
		if _, err := im.ReadAt(buf, off); err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// TestBrokenQemu breaks L2 entries of images qemu made: an unaligned data
// cluster, and an extended L2 entry whose subcluster is both allocated
// and zero.
func TestBrokenQemu(t *testing.T) {
	t.Parallel()
	clitest.Need(t, qemuHint, "qemu-img", "qemu-io")
	for _, tt := range []struct {
		name, opts string
		entry      func(e, bitmap uint64) (uint64, uint64)
	}{
		{"unaligned data cluster", "cluster_size=64k", func(e, b uint64) (uint64, uint64) { return e + 4096, b }},
		{"subcluster allocated and zero", "extended_l2=on", func(e, b uint64) (uint64, uint64) { return e, b | 1<<32 }},
		{"allocated subcluster in an unallocated cluster", "extended_l2=on", func(e, b uint64) (uint64, uint64) { return e &^ 0x00ff_ffff_ffff_fe00, b }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "disk.qcow2")
			clitest.Run(t, time.Minute, "qemu-img", "create", "-f", "qcow2", "-o", tt.opts, p, "1M")
			clitest.Run(t, time.Minute, "qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 4k", p)
			f, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			be := binary.BigEndian
			l2 := be.Uint64(f[be.Uint64(f[40:]):]) & 0x00ff_ffff_ffff_fe00
			e, b := tt.entry(be.Uint64(f[l2:]), be.Uint64(f[l2+8:]))
			be.PutUint64(f[l2:], e)
			if strings.Contains(tt.opts, "extended") {
				be.PutUint64(f[l2+8:], b)
			}
			if err := openAndRead(f); !errors.Is(err, qcow2.ErrCorrupt) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want a one-line %v", err, qcow2.ErrCorrupt)
			}
		})
	}
}

// patterned is a guest disk with data in runs and zeros elsewhere,
// generated rather than held in memory.
type patterned struct {
	size int64
	runs [][2]int64
}

func (g patterned) ReadAt(p []byte, off int64) (int, error) {
	n := int(max(0, min(int64(len(p)), g.size-off)))
	clear(p[:n])
	for i, r := range g.runs {
		for j := max(r[0], off); j < min(r[0]+r[1], off+int64(n)); j++ {
			p[j-off] = byte(i + 1 + int(j%7))
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// checker compares what is written to it with a guest disk.
type checker struct {
	g   patterned
	off int64
	bad bool
}

func (c *checker) Write(p []byte) (int, error) {
	want := make([]byte, len(p))
	c.g.ReadAt(want, c.off)
	c.bad = c.bad || !bytes.Equal(p, want)
	c.off += int64(len(p))
	return len(p), nil
}

// TestLayoutRoundTrip writes qcow2 files with Layout for guest disks with
// data runs across L2 tables and at the unaligned end, and reads them back.
func TestLayoutRoundTrip(t *testing.T) {
	t.Parallel()
	for _, g := range []patterned{
		{0, nil},
		{512, [][2]int64{{0, 512}}},
		{1<<20 + 512, [][2]int64{{100, 10}, {65536, 1}, {1 << 20, 512}}},
		{520 << 20, [][2]int64{{511 << 20, 2 << 20}, {519 << 20, 1 << 20}}}, // crosses the first L2 table's 512 MiB
	} {
		var es []qcow2.Extent
		for _, r := range g.runs {
			es = append(es, qcow2.Extent{Offset: r[0], Length: r[1], Kind: qcow2.Data})
		}
		l, err := qcow2.NewLayout(g.size, es)
		if err != nil {
			t.Fatal(err)
		}
		var file bytes.Buffer
		sum := &checker{g: g}
		if err := l.Write(&file, g, sum); err != nil {
			t.Fatal(err)
		}
		if int64(file.Len()) != l.Size() || sum.bad || sum.off != g.size {
			t.Fatalf("size %d: wrote %d bytes, Size says %d; sum stream %d bytes, differs %t", g.size, file.Len(), l.Size(), sum.off, sum.bad)
		}
		im, err := qcow2.Open(bytes.NewReader(file.Bytes()), int64(file.Len()))
		if err != nil {
			t.Fatal(err)
		}
		got := &checker{g: g}
		if n, err := io.Copy(got, io.NewSectionReader(im, 0, im.Size())); err != nil || n != g.size || got.bad {
			t.Fatalf("size %d: the qcow2 Layout wrote reads back %d bytes, differs %t (%v)", g.size, n, got.bad, err)
		}
	}
}
