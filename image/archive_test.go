package image_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lazydisk/lazydisk/image"
)

func TestDockerArchive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := randomImage(t), randomImage(t)
	tagA, err := name.NewTag("test/a:v1")
	if err != nil {
		t.Fatal(err)
	}
	tagB, err := name.NewTag("registry.example.com/test/b:v2")
	if err != nil {
		t.Fatal(err)
	}
	single := filepath.Join(dir, "single.tar")
	if err := tarball.WriteToFile(single, tagA, a); err != nil {
		t.Fatal(err)
	}
	multi := filepath.Join(dir, "multi.tar")
	if err := tarball.MultiRefWriteToFile(multi, map[name.Reference]v1.Image{tagA: a, tagB: b}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		ref     string
		want    v1.Image
		wantErr error
		wantMsg string
	}{
		{ref: "docker-archive:" + single, want: a},
		{ref: "docker-archive:" + single + ":test/a:v1", want: a},
		{ref: "docker-archive:" + multi + ":test/a:v1", want: a},
		{ref: "docker-archive:" + multi + ":registry.example.com/test/b:v2", want: b},
		{ref: "docker-archive:" + multi, wantMsg: "holds 2 images; name one"},
		{ref: "docker-archive:" + multi + ":test/c:v1", wantErr: image.ErrNotFound, wantMsg: "has no image test/c:v1"},
		{ref: "docker-archive:" + filepath.Join(dir, "missing.tar"), wantErr: image.ErrNotFound, wantMsg: "does not exist"},
		{ref: "docker-archive:" + dir, wantMsg: "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.ref, "docker-archive:"+dir), func(t *testing.T) {
			t.Parallel()
			got, err := image.Read(t.Context(), mustParse(t, tt.ref), anonymous())
			if tt.want == nil {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("Read(%s) = %v; want %v mentioning %q", tt.ref, err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read(%s): %v", tt.ref, err)
			}
			// docker save stores the config and layers as they are; the manifest is rebuilt.
			gotCfg, err := got.Image.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			wantCfg, err := tt.want.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			if gotCfg != wantCfg {
				t.Errorf("config %s, want %s", gotCfg, wantCfg)
			}
			gotLayers, err := got.Image.Layers()
			if err != nil {
				t.Fatal(err)
			}
			wantLayers, err := tt.want.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(gotLayers) != len(wantLayers) {
				t.Fatalf("%d layers, want %d", len(gotLayers), len(wantLayers))
			}
			for i := range gotLayers {
				if g, w := digestOf(t, gotLayers[i]), digestOf(t, wantLayers[i]); g != w {
					t.Errorf("layer %d: %s, want %s", i, g, w)
				}
			}
		})
	}
}

func TestSourceOnlyDestinations(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"docker-archive:out.tar", "docker-archive:out.tar:x/y:z", "disk:out.qcow2"} {
		t.Run(ref, func(t *testing.T) {
			t.Parallel()
			err := image.Write(t.Context(), mustParse(t, ref), image.Artifact{Image: randomImage(t)}, anonymous())
			if !errors.Is(err, image.ErrUnsupported) || !strings.Contains(err.Error(), "is only supported as a source") {
				t.Errorf("Write(%s) = %v; want ErrUnsupported", ref, err)
			}
		})
	}
}

func TestWriteArtifactCheck(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "layout")
	for _, a := range []image.Artifact{{}, {Image: randomImage(t), Index: randomIndex(t)}} {
		if err := image.Write(t.Context(), mustParse(t, "oci:"+dir), a, anonymous()); err == nil {
			t.Errorf("Write of %+v: no error", a)
		}
	}
}
