package testdisk

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

func TestBytes(t *testing.T) {
	t.Parallel()
	a, b := Bytes(4<<20+123, 1), Bytes(4<<20+123, 1)
	if len(a) != 4<<20+123 || !bytes.Equal(a, b) {
		t.Fatalf("Bytes is %d bytes, or differs between two calls with one seed", len(a))
	}
	if bytes.Equal(a, Bytes(4<<20+123, 2)) {
		t.Error("two seeds gave the same bytes")
	}
	// Each kind of run is there: a zero 4 KiB block, a text one, a random one.
	var zero, text, random bool
	for off := 0; off+4096 <= len(a); off += 4096 {
		blk := a[off : off+4096]
		switch {
		case bytes.Count(blk, []byte{0}) == len(blk):
			zero = true
		case bytes.Contains(blk, []byte("lazy disk")):
			text = true
		case bytes.Count(blk, []byte{0}) < 64:
			random = true
		}
	}
	if !zero || !text || !random {
		t.Errorf("runs found: zero %t, text %t, random %t; want all three", zero, text, random)
	}
}

func TestTar(t *testing.T) {
	t.Parallel()
	data := Bytes(100<<10, 3)
	tarb, err := Tar(data)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(tarb))
	for _, want := range []tar.Header{
		{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555},
		{Typeflag: tar.TypeReg, Name: Name, Mode: 0o444, Size: int64(len(data))},
	} {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != want.Typeflag || h.Name != want.Name || h.Mode != want.Mode || h.Size != want.Size || h.Uid != 107 || h.Gid != 107 {
			t.Errorf("header %+v, want %+v owned by 107:107", h, want)
		}
	}
	got, err := io.ReadAll(tr)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("the file's bytes differ from the data (%v)", err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the disk: %v, want io.EOF", err)
	}
}
