package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestDiskHeadersLargeFile checks that a disk file of 8 GiB or more gets a
// PAX header, without writing such a file.
func TestDiskHeadersLargeFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size int64
		pax  bool
	}{
		{8<<30 - 1, false},
		{8 << 30, true},
		{20 << 30, true},
	}
	for _, tt := range tests {
		l := &diskLayer{base: "big.raw", fileSize: tt.size}
		dir, file := l.headers()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(dir); err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(file); err != nil {
			t.Fatalf("size %d: %v", tt.size, err)
		}
		tr := tar.NewReader(&buf)
		if _, err := tr.Next(); err != nil {
			t.Fatal(err)
		}
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("size %d: reading the file header back: %v", tt.size, err)
		}
		if hdr.Size != tt.size || hdr.Name != "disk/big.raw" {
			t.Errorf("header %s of %d bytes, want disk/big.raw of %d", hdr.Name, hdr.Size, tt.size)
		}
		if got := hdr.Format&tar.FormatPAX != 0; got != tt.pax {
			t.Errorf("size %d: PAX %t, want %t (format %s)", tt.size, got, tt.pax, hdr.Format)
		}
	}
}

func TestDiskLayerDigestPending(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := newContainerDisk(Reference{Transport: Disk, Path: path}, options{})
	if err != nil {
		t.Fatal(err)
	}
	l := img.layer
	if !l.DigestPending() {
		t.Fatal("digest known before any read")
	}

	// A read that stops early records nothing.
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, 100); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if !l.DigestPending() {
		t.Fatal("digest recorded from a partial read")
	}

	rc, err = l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	h, n, err := sha256Of(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if l.DigestPending() {
		t.Fatal("digest still pending after a complete read")
	}
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	if d.Hex != h || size != n {
		t.Errorf("recorded %s (%d bytes), read sha256:%s (%d bytes)", d, size, h, n)
	}
}

func sha256Of(r io.Reader) (string, int64, error) {
	h, n, err := v1.SHA256(r)
	return h.Hex, n, err
}
