package image_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// readIndexJSON returns the layout's index.json entries as tag -> digest,
// checking it with go-containerregistry's layout reader too.
func readIndexJSON(t *testing.T, dir string) map[string]string {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("layout reader: %v", err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("layout at %s does not validate: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range im.Manifests {
		got[d.Annotations[image.AnnotationRefName]] = d.Digest.String()
	}
	if len(got) != len(im.Manifests) {
		t.Errorf("index.json has %d entries for %d tags", len(im.Manifests), len(got))
	}
	return got
}

func TestLayoutRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		art  image.Artifact
	}{
		{"image", image.Artifact{Image: randomImage(t)}},
		{"index", image.Artifact{Index: randomIndex(t)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "parent", "layout")
			if err := image.Write(t.Context(), mustParse(t, "oci:"+dir+":v1"), tt.art, anonymous()); err != nil {
				t.Fatalf("Write: %v", err)
			}
			want := artifactDigest(t, tt.art)
			if got := readIndexJSON(t, dir); !maps.Equal(got, map[string]string{"v1": want.String()}) {
				t.Errorf("index.json = %v, want v1 -> %s", got, want)
			}
			for _, ref := range []string{"oci:" + dir + ":v1", "oci:" + dir} {
				got, err := image.Read(t.Context(), mustParse(t, ref), anonymous())
				if err != nil {
					t.Fatalf("Read(%s): %v", ref, err)
				}
				if d := artifactDigest(t, got); d != want {
					t.Errorf("Read(%s) digest %s, wrote %s", ref, d, want)
				}
				if got.Image != nil {
					if err := validate.Image(got.Image); err != nil {
						t.Errorf("read image does not validate: %v", err)
					}
				}
			}
			if leftovers := tempEntries(t, filepath.Dir(dir)); len(leftovers) > 0 {
				t.Errorf("temporary files left beside the layout: %v", leftovers)
			}
		})
	}
}

// tempEntries lists names under dir that look like temporary files.
func tempEntries(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".tmp-") {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestLayoutTags(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "layout")
	write := func(tag string, img v1.Image) {
		t.Helper()
		ref := "oci:" + dir
		if tag != "" {
			ref += ":" + tag
		}
		if err := image.Write(t.Context(), mustParse(t, ref), image.Artifact{Image: img}, anonymous()); err != nil {
			t.Fatalf("Write(%s): %v", ref, err)
		}
	}
	read := func(tag string) (image.Artifact, error) {
		return image.Read(t.Context(), mustParse(t, "oci:"+dir+":"+tag), anonymous())
	}
	a, b, c := randomImage(t), randomImage(t), randomImage(t)

	write("a", a)
	write("b", b)
	want := map[string]string{"a": digestOf(t, a).String(), "b": digestOf(t, b).String()}
	if got := readIndexJSON(t, dir); !maps.Equal(got, want) {
		t.Fatalf("after writing a and b, index.json = %v, want %v", got, want)
	}

	// Writing a again replaces its entry and keeps b.
	write("a", c)
	want["a"] = digestOf(t, c).String()
	if got := readIndexJSON(t, dir); !maps.Equal(got, want) {
		t.Fatalf("after replacing a, index.json = %v, want %v", got, want)
	}
	for tag, img := range map[string]v1.Image{"a": c, "b": b} {
		got, err := read(tag)
		if err != nil {
			t.Fatalf("Read %s: %v", tag, err)
		}
		if g, w := digestOf(t, got.Image), digestOf(t, img); g != w {
			t.Errorf("tag %s: digest %s, want %s", tag, g, w)
		}
	}

	// An untagged write adds the untagged entry, and a second one replaces it.
	write("", a)
	write("", b)
	want[""] = digestOf(t, b).String()
	if got := readIndexJSON(t, dir); !maps.Equal(got, want) {
		t.Fatalf("after untagged writes, index.json = %v, want %v", got, want)
	}

	_, err := image.Read(t.Context(), mustParse(t, "oci:"+dir), anonymous())
	if err == nil || !strings.Contains(err.Error(), "holds 3 images") || !strings.Contains(err.Error(), "a, b, untagged sha256:") {
		t.Errorf("Read of an untagged reference to a layout of 3 images: %v", err)
	}
	_, err = read("nope")
	if !errors.Is(err, image.ErrNotFound) || !strings.Contains(err.Error(), "tags: a, b") {
		t.Errorf("Read of a missing tag: %v; want ErrNotFound listing the tags", err)
	}
}

// failingImage wraps an image so that reading any layer fails after a few bytes.
type failingImage struct{ v1.Image }

func (i failingImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	for n, l := range ls {
		ls[n] = failingLayer{l}
	}
	return ls, nil
}

type failingLayer struct{ v1.Layer }

func (l failingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, 100), errReader{}), rc}, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("injected read failure") }

func TestLayoutWriteFailure(t *testing.T) {
	t.Parallel()
	broken := image.Artifact{Image: failingImage{randomImage(t)}}

	t.Run("new directory", func(t *testing.T) {
		t.Parallel()
		parent := t.TempDir()
		dir := filepath.Join(parent, "layout")
		err := image.Write(t.Context(), mustParse(t, "oci:"+dir+":v1"), broken, anonymous())
		if err == nil || !strings.Contains(err.Error(), "injected read failure") {
			t.Fatalf("Write with a failing layer: %v", err)
		}
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("failed Write left %v in %s", entries, parent)
		}
	})

	t.Run("existing layout", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "layout")
		good := randomImage(t)
		if err := image.Write(t.Context(), mustParse(t, "oci:"+dir+":v1"), image.Artifact{Image: good}, anonymous()); err != nil {
			t.Fatal(err)
		}
		before, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range []string{"v1", "v2"} {
			err := image.Write(t.Context(), mustParse(t, "oci:"+dir+":"+tag), broken, anonymous())
			if err == nil {
				t.Fatalf("Write %s with a failing layer succeeded", tag)
			}
		}
		after, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Errorf("index.json changed by failed writes:\n%s\n%s", before, after)
		}
		got, err := image.Read(t.Context(), mustParse(t, "oci:"+dir+":v1"), anonymous())
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got.Image); err != nil {
			t.Errorf("v1 after failed writes: %v", err)
		}
		if leftovers := tempEntries(t, dir); len(leftovers) > 0 {
			t.Errorf("temporary files left in the layout: %v", leftovers)
		}
	})

	t.Run("empty directory", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := image.Write(t.Context(), mustParse(t, "oci:"+dir), broken, anonymous()); err == nil {
			t.Fatal("Write with a failing layer succeeded")
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("failed Write left %v in the empty directory", entries)
		}
	})

	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "layout")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := image.Write(ctx, mustParse(t, "oci:"+dir), image.Artifact{Image: randomImage(t)}, anonymous())
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Write with a canceled context: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("canceled Write created %s", dir)
		}
	})
}

func TestLayoutDestinations(t *testing.T) {
	t.Parallel()
	img := image.Artifact{Image: randomImage(t)}

	t.Run("empty directory", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := image.Write(t.Context(), mustParse(t, "oci:"+dir), img, anonymous()); err != nil {
			t.Fatal(err)
		}
		if got := readIndexJSON(t, dir); !maps.Equal(got, map[string]string{"": digestOf(t, img.Image).String()}) {
			t.Errorf("index.json = %v", got)
		}
	})

	t.Run("directory that is not a layout", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := image.Write(t.Context(), mustParse(t, "oci:"+dir+":v1"), img, anonymous())
		if err == nil || !strings.Contains(err.Error(), "not empty and not an OCI image layout") {
			t.Fatalf("Write into a non-layout directory: %v", err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("Write touched a non-layout directory: %v", entries)
		}
	})

	t.Run("regular file", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		err := image.Write(t.Context(), mustParse(t, "oci:"+file), img, anonymous())
		if err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("Write onto a file: %v", err)
		}
	})
}

func TestLayoutReadErrors(t *testing.T) {
	t.Parallel()
	notLayout := t.TempDir()
	tests := []struct {
		name    string
		ref     string
		want    error
		wantMsg string
	}{
		{"missing directory", "oci:" + filepath.Join(t.TempDir(), "nope"), image.ErrNotFound, "does not exist"},
		{"not a layout", "oci:" + notLayout + ":v1", nil, "is not an OCI image layout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := image.Read(t.Context(), mustParse(t, tt.ref), anonymous())
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Read(%s) = %v, want %v mentioning %q", tt.ref, err, tt.want, tt.wantMsg)
			}
		})
	}
}

// TestRegistryToLayout copies an index from the registry into a layout.
func TestRegistryToLayout(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	idx := randomIndex(t)
	src := mustParse(t, reg.Host+"/test/copy:v1")
	if err := image.Write(t.Context(), src, image.Artifact{Index: idx}, anonymous()); err != nil {
		t.Fatal(err)
	}
	a, err := image.Read(t.Context(), src, anonymous())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := image.Write(t.Context(), mustParse(t, "oci:"+dir+":copy"), a, anonymous()); err != nil {
		t.Fatal(err)
	}
	if got := readIndexJSON(t, dir); !maps.Equal(got, map[string]string{"copy": digestOf(t, idx).String()}) {
		t.Errorf("index.json = %v", got)
	}
}

// lazyLayer is a layer whose digest costs a full read until it has been
// streamed once, like the layer of a disk: image. It counts reads.
type lazyLayer struct {
	data  []byte
	reads atomic.Int32

	mu     sync.Mutex
	digest v1.Hash
}

func (l *lazyLayer) DigestPending() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.digest == v1.Hash{}
}

func (l *lazyLayer) Digest() (v1.Hash, error) {
	if l.DigestPending() {
		rc, _ := l.Compressed()
		io.Copy(io.Discard, rc)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.digest, nil
}

func (l *lazyLayer) DiffID() (v1.Hash, error)             { return l.Digest() }
func (l *lazyLayer) Size() (int64, error)                 { return int64(len(l.data)), nil }
func (l *lazyLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
func (l *lazyLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

func (l *lazyLayer) Compressed() (io.ReadCloser, error) {
	l.reads.Add(1)
	return io.NopCloser(&recordAtEOF{r: bytes.NewReader(l.data), l: l}), nil
}

type recordAtEOF struct {
	r *bytes.Reader
	l *lazyLayer
}

func (r *recordAtEOF) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		h, _, _ := v1.SHA256(bytes.NewReader(r.l.data))
		r.l.mu.Lock()
		r.l.digest = h
		r.l.mu.Unlock()
	}
	return n, err
}

// lazyImage is a one-layer image that asks its layer for a digest only when
// its config or manifest is needed.
type lazyImage struct{ layer *lazyLayer }

func (i lazyImage) Layers() ([]v1.Layer, error)             { return []v1.Layer{i.layer}, nil }
func (i lazyImage) MediaType() (types.MediaType, error)     { return types.OCIManifestSchema1, nil }
func (i lazyImage) Size() (int64, error)                    { return partial.Size(i) }
func (i lazyImage) ConfigName() (v1.Hash, error)            { return partial.ConfigName(i) }
func (i lazyImage) ConfigFile() (*v1.ConfigFile, error)     { return partial.ConfigFile(i) }
func (i lazyImage) Digest() (v1.Hash, error)                { return partial.Digest(i) }
func (i lazyImage) Manifest() (*v1.Manifest, error)         { return partial.Manifest(i) }
func (i lazyImage) LayerByDigest(v1.Hash) (v1.Layer, error) { return i.layer, nil }
func (i lazyImage) LayerByDiffID(v1.Hash) (v1.Layer, error) { return i.layer, nil }

func (i lazyImage) RawConfigFile() ([]byte, error) {
	h, err := i.layer.DiffID()
	if err != nil {
		return nil, err
	}
	return json.Marshal(v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{h}}})
}

func (i lazyImage) RawManifest() ([]byte, error) {
	cfg, err := i.RawConfigFile()
	if err != nil {
		return nil, err
	}
	ch, cs, err := v1.SHA256(bytes.NewReader(cfg))
	if err != nil {
		return nil, err
	}
	lh, err := i.layer.Digest()
	if err != nil {
		return nil, err
	}
	return json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: cs, Digest: ch},
		Layers:        []v1.Descriptor{{MediaType: types.OCIUncompressedLayer, Size: int64(len(i.layer.data)), Digest: lh}},
	})
}

// TestLayoutReadsPendingLayerOnce checks that a layer whose digest is still
// pending is streamed once, not once for its digest and once for its content.
func TestLayoutReadsPendingLayerOnce(t *testing.T) {
	t.Parallel()
	layer := &lazyLayer{data: bytes.Repeat([]byte("lazydisk"), 1000)}
	img := lazyImage{layer}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := image.Write(t.Context(), mustParse(t, "oci:"+dir+":v1"), image.Artifact{Image: img}, anonymous()); err != nil {
		t.Fatal(err)
	}
	if n := layer.reads.Load(); n != 1 {
		t.Errorf("layer read %d times, want 1", n)
	}
	got, err := image.Read(t.Context(), mustParse(t, "oci:"+dir+":v1"), anonymous())
	if err != nil {
		t.Fatal(err)
	}
	checkUncompressedImage(t, got.Image)
	if g, w := digestOf(t, got.Image), digestOf(t, img); g != w {
		t.Errorf("read digest %s, wrote %s", g, w)
	}
}
