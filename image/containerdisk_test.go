package image_test

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// writeDisk writes a disk file of size random bytes and returns its path.
func writeDisk(t testing.TB, base string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), base)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func readDisk(t testing.TB, path string, o ...image.Option) v1.Image {
	t.Helper()
	a, err := image.Read(t.Context(), mustParse(t, "disk:"+path), o...)
	if err != nil {
		t.Fatalf("Read(disk:%s): %v", path, err)
	}
	if a.Image == nil || a.Index != nil {
		t.Fatalf("Read(disk:%s) = %+v, want an image", path, a)
	}
	return a.Image
}

// tarEntry is what a layer holds for one entry.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func listLayer(t testing.TB, l v1.Layer) []tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var entries []tarEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, tarEntry{hdr, data})
	}
}

func TestDiskImage(t *testing.T) {
	t.Parallel()
	const size = 5000 // not a multiple of 512: the tar pads it
	path, data := writeDisk(t, "fedora.qcow2", size)
	img := readDisk(t, path, anonymous())

	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest media types %s, config %s; want OCI", m.MediaType, m.Config.MediaType)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCIUncompressedLayer {
		t.Fatalf("manifest layers %+v; want one %s", m.Layers, types.OCIUncompressedLayer)
	}
	// USTAR: two headers, the padded file, two zero blocks.
	if want := int64(512 + 512 + 5120 + 1024); m.Layers[0].Size != want {
		t.Errorf("layer size %d, want %d", m.Layers[0].Size, want)
	}
	checkUncompressedImage(t, img)

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	entries := listLayer(t, layers[0])
	if len(entries) != 2 {
		t.Fatalf("layer has %d entries, want 2", len(entries))
	}
	want := []struct {
		name string
		typ  byte
		mode int64
	}{{"disk/", tar.TypeDir, 0o555}, {"disk/fedora.qcow2", tar.TypeReg, 0o444}}
	for i, e := range entries {
		h := e.hdr
		if h.Name != want[i].name || h.Typeflag != want[i].typ || h.Mode != want[i].mode || h.Uid != 107 || h.Gid != 107 {
			t.Errorf("entry %d: %s type %c mode %o uid %d gid %d; want %s type %c mode %o uid 107 gid 107",
				i, h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, want[i].name, want[i].typ, want[i].mode)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("entry %d: mtime %s, want the Unix epoch", i, h.ModTime)
		}
		if h.Format != tar.FormatUSTAR {
			t.Errorf("entry %d: format %s, want USTAR", i, h.Format)
		}
	}
	if !bytes.Equal(entries[1].data, data) {
		t.Errorf("disk file content differs from the source file")
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("config platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if !cfg.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("config created %s, want the Unix epoch", cfg.Created)
	}
	if len(cfg.History) != 1 || cfg.History[0].CreatedBy != "lazydisk disk:fedora.qcow2" || !cfg.History[0].Created.Equal(time.Unix(0, 0)) {
		t.Errorf("config history %+v", cfg.History)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != m.Layers[0].Digest {
		t.Errorf("config diff IDs %v, want [%s]", cfg.RootFS.DiffIDs, m.Layers[0].Digest)
	}

	// The same file gives the same digests, from the same image and a new one.
	first := digestOf(t, img)
	again := readDisk(t, path, anonymous())
	if d := digestOf(t, again); d != first {
		t.Errorf("second Read: digest %s, first %s", d, first)
	}
	l1, l2 := listLayer(t, layers[0]), listLayer(t, layers[0])
	if !bytes.Equal(l1[1].data, l2[1].data) {
		t.Errorf("two reads of the layer differ")
	}
}

func TestDiskPlatform(t *testing.T) {
	t.Parallel()
	path, _ := writeDisk(t, "disk.img", 100)
	o := []image.Option{anonymous(), image.WithPlatform(v1.Platform{Architecture: "arm64", Variant: "v8"})}
	cfg, err := readDisk(t, path, o...).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "arm64" || cfg.Variant != "v8" {
		t.Errorf("config platform %s/%s/%s, want linux/arm64/v8", cfg.OS, cfg.Architecture, cfg.Variant)
	}
	if d1, d2 := digestOf(t, readDisk(t, path, o...)), digestOf(t, readDisk(t, path, anonymous())); runtime.GOARCH != "arm64" && d1 == d2 {
		t.Errorf("images for two platforms have the same digest %s", d1)
	}
}

func TestDiskErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		path    string
		want    error
		wantMsg string
	}{
		{filepath.Join(dir, "missing.qcow2"), image.ErrNotFound, "does not exist"},
		{dir, nil, "disk:" + dir + " is not a regular file"},
		{os.DevNull, nil, "disk:" + os.DevNull + " is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			_, err := image.Read(t.Context(), mustParse(t, "disk:"+tt.path), anonymous())
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Read(disk:%s) = %v; want %v saying %q", tt.path, err, tt.want, tt.wantMsg)
			}
		})
	}
}

func TestDiskChangedFile(t *testing.T) {
	t.Parallel()
	path, _ := writeDisk(t, "disk.img", 1000)
	img := readDisk(t, path, anonymous())
	if err := os.WriteFile(path, []byte("something else"), 0o600); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := layers[0].Uncompressed(); err == nil || !strings.Contains(err.Error(), "changed since it was opened") {
		t.Errorf("reading a layer whose file changed: %v", err)
	}
}

// TestDiskSourceDateEpoch cannot run in parallel: it sets the environment.
func TestDiskSourceDateEpoch(t *testing.T) {
	path, _ := writeDisk(t, "disk.img", 100)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	img := readDisk(t, path, anonymous())
	want := time.Unix(1700000000, 0)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Created.Equal(want) {
		t.Errorf("config created %s, want %s", cfg.Created, want)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range listLayer(t, layers[0]) {
		if !e.hdr.ModTime.Equal(want) {
			t.Errorf("%s: mtime %s, want %s", e.hdr.Name, e.hdr.ModTime, want)
		}
	}

	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := image.Read(t.Context(), mustParse(t, "disk:"+path), anonymous()); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("Read with a bad SOURCE_DATE_EPOCH: %v", err)
	}
}

// TestDiskDestinations stores a disk image in a registry and a layout and
// reads it back.
func TestDiskDestinations(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	path, _ := writeDisk(t, "disk.img", 300_000)
	tests := []string{
		"docker://" + reg.Host + "/test/disk:v1",
		"oci:" + filepath.Join(t.TempDir(), "layout") + ":v1",
	}
	for _, ref := range tests {
		t.Run(ref, func(t *testing.T) {
			t.Parallel()
			img := readDisk(t, path, anonymous())
			r := mustParse(t, ref)
			if err := image.Write(t.Context(), r, image.Artifact{Image: img}, anonymous()); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got, err := image.Read(t.Context(), r, anonymous())
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if g, w := digestOf(t, got.Image), digestOf(t, img); g != w {
				t.Errorf("read digest %s, wrote %s", g, w)
			}
			checkUncompressedImage(t, got.Image)
		})
	}
}
