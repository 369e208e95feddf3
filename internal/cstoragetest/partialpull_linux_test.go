package cstoragetest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/zstdfixture"
	"github.com/lazydisk/lazydisk/toc"
)

// layerTar is a small containerDisk-like layer: a directory and a disk
// image with random, text and zero regions.
func layerTar(t *testing.T) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	var disk []byte
	for i := range 12 {
		switch i % 3 {
		case 0:
			b := make([]byte, 48<<10)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			disk = append(disk, b...)
		case 1:
			disk = append(disk, make([]byte, 96<<10)...)
		case 2:
			disk = append(disk, bytes.Repeat([]byte("lazydisk zstd:chunked "), 3000)...)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range []struct {
		hdr  tar.Header
		data []byte
	}{
		{tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "disk/disk.img", Mode: 0o444, Uid: 107, Gid: 107}, disk},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "disk/link.img", Linkname: "disk.img", Mode: 0o777}, nil},
	} {
		e.hdr.ModTime, e.hdr.Size = mtime, int64(len(e.data))
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdChunked compresses tarb with containers/storage's writer at level 3.
func zstdChunked(t *testing.T, tarb []byte) ([]byte, map[string]string) {
	t.Helper()
	blob, ann, err := zstdfixture.CStorage(tarb, 3)
	if err != nil {
		t.Fatal(err)
	}
	return blob, ann
}

// TestMain fails the run if a store is still mounted when the tests are
// done; PartialPull unmounts and reports a leftover mount itself, but a
// test that expects an error would not notice.
func TestMain(m *testing.M) {
	code := m.Run()
	left, err := mountsBelow(os.TempDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, mp := range left {
		if rel, _ := filepath.Rel(os.TempDir(), mp); strings.HasPrefix(rel, tempPrefix) {
			fmt.Fprintf(os.Stderr, "FAIL: still mounted after the tests: %s\n", mp)
			code = 1
		}
	}
	os.Exit(code)
}

func TestPartialPull(t *testing.T) {
	Skip(t)
	tarb := layerTar(t)
	blob, ann := zstdChunked(t, tarb)
	diffID := digest.Canonical.FromBytes(tarb)
	// A byte in the middle of the disk image's data is inside a chunk frame.
	corrupt := bytes.Clone(blob)
	pos, err := toc.ParseManifestPosition(ann[toc.AnnotationZstdChunkedManifestPosition])
	if err != nil {
		t.Fatal(err)
	}
	corrupt[pos.Offset/2] ^= 0x40

	tests := []struct {
		name string
		blob []byte
		ok   bool
	}{
		{"reference writer", blob, true},
		{"corrupted chunk", corrupt, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := PartialPull(t, bytes.NewReader(tt.blob), int64(len(tt.blob)), digest.Canonical.FromBytes(tt.blob), ann)
			if res.Fallback {
				t.Fatalf("c/storage fell back to a full pull: %v", err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatalf("corrupted blob accepted: %+v", res)
				}
				t.Logf("rejected as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("PartialPull: %v", err)
			}
			if res.UncompressedDigest != diffID {
				t.Errorf("UncompressedDigest = %s, want the tar's %s", res.UncompressedDigest, diffID)
			}
			if want := digest.Digest(ann[toc.AnnotationZstdChunkedManifestChecksum]); res.TOCDigest != want {
				t.Errorf("TOCDigest = %s, want the manifest-checksum %s", res.TOCDigest, want)
			}
			if res.Size != int64(len(tarb)) {
				t.Errorf("Size = %d, want %d", res.Size, len(tarb))
			}
		})
	}
}

func TestPartialPullReportsFallback(t *testing.T) {
	t.Parallel()
	Skip(t)
	tarb := layerTar(t)
	blob, _ := zstdChunked(t, tarb)
	// Without TOC annotations c/storage can only pull the whole blob.
	res, err := PartialPull(t, bytes.NewReader(blob), int64(len(blob)), digest.Canonical.FromBytes(blob), map[string]string{})
	if err == nil || !res.Fallback {
		t.Fatalf("PartialPull = %+v, %v; want a fallback error", res, err)
	}
	if !strings.Contains(err.Error(), "no TOC found") {
		t.Errorf("err = %v, want c/storage's \"no TOC found\"", err)
	}
}
