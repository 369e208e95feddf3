package image_test

import (
	"bytes"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/lazydisk/lazydisk/image"
)

// anonymous returns options that read no credentials from the machine
// running the tests.
func anonymous() image.Option {
	return image.WithKeychain(authn.NewMultiKeychain())
}

func mustParse(t testing.TB, s string) image.Reference {
	t.Helper()
	r, err := image.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return r
}

func randomImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// randomIndex returns an index of two images for linux/amd64 and linux/arm64.
func randomIndex(t testing.TB) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img := randomImage(t)
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg.OS, cfg.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return mutate.AppendManifests(empty.Index, adds...)
}

func digestOf(t testing.TB, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// artifactDigest returns the digest of whichever of a's fields is set.
func artifactDigest(t testing.TB, a image.Artifact) v1.Hash {
	t.Helper()
	if (a.Image == nil) == (a.Index == nil) {
		t.Fatalf("artifact has Image %v and Index %v; want exactly one", a.Image, a.Index)
	}
	if a.Image != nil {
		return digestOf(t, a.Image)
	}
	return digestOf(t, a.Index)
}

// checkUncompressedImage checks an image of uncompressed layers as a puller
// would (go-containerregistry's validate package assumes gzip layers): every
// blob hashes to its descriptor, and the config's diff IDs are the layers'.
func checkUncompressedImage(t testing.TB, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if h, n, _ := v1.SHA256(bytes.NewReader(rawCfg)); h != m.Config.Digest || n != m.Config.Size {
		t.Errorf("config blob is %s (%d bytes), manifest says %s (%d bytes)", h, n, m.Config.Digest, m.Config.Size)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		t.Fatalf("config has %d diff IDs for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for i, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		h, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if h != d.Digest || n != d.Size || h != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d is %s (%d bytes); manifest says %s (%d bytes), config %s", i, h, n, d.Digest, d.Size, cfg.RootFS.DiffIDs[i])
		}
	}
}
