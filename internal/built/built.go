// Package built assembles go-containerregistry images and indexes from
// serialized manifests, for code that rewrites a manifest (new layers,
// new annotations) and keeps everything else. It does no I/O of its own:
// layers and children come from the maps the caller fills.
package built

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is an OCI image manifest with its config and layers by digest.
type Image struct {
	Manifest, Config []byte
	Layers           map[v1.Hash]v1.Layer
}

// V1 returns the image as a v1.Image.
func (b *Image) V1() (v1.Image, error) { return partial.CompressedToImage(core{b}) }

type core struct{ b *Image }

func (c core) RawConfigFile() ([]byte, error)      { return c.b.Config, nil }
func (c core) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (c core) RawManifest() ([]byte, error)        { return c.b.Manifest, nil }
func (c core) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := c.b.Layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no layer %s in the image", h)
}

// Rewrite returns img with manifest m in place of its own: the same config
// and layers, which m must list by the same digests. m is serialized as is.
func Rewrite(img v1.Image, m *v1.Manifest) (v1.Image, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != len(m.Layers) {
		return nil, fmt.Errorf("the new manifest lists %d layers, the image has %d", len(m.Layers), len(layers))
	}
	bi := &Image{Layers: make(map[v1.Hash]v1.Layer, len(layers))}
	for i, l := range layers {
		bi.Layers[m.Layers[i].Digest] = l
	}
	if bi.Config, err = img.RawConfigFile(); err != nil {
		return nil, err
	}
	if bi.Manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return bi.V1()
}

// Index is an OCI image index with its children by digest.
type Index struct {
	Manifest []byte
	Images   map[v1.Hash]v1.Image
	Indexes  map[v1.Hash]v1.ImageIndex
}

var _ v1.ImageIndex = (*Index)(nil)

func (b *Index) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }
func (b *Index) Digest() (v1.Hash, error)            { return SHA256(b.Manifest), nil }
func (b *Index) Size() (int64, error)                { return int64(len(b.Manifest)), nil }
func (b *Index) RawManifest() ([]byte, error)        { return b.Manifest, nil }
func (b *Index) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(b.Manifest))
}
func (b *Index) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := b.Images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("no image %s in the index", h)
}
func (b *Index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	if idx, ok := b.Indexes[h]; ok {
		return idx, nil
	}
	return nil, fmt.Errorf("no index %s in the index", h)
}

// SHA256 is the digest of b.
func SHA256(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// Entry keeps an index entry's platform and annotations but points it at
// the descriptor of its rewritten manifest.
func Entry(old, nd v1.Descriptor) v1.Descriptor {
	return v1.Descriptor{MediaType: nd.MediaType, Size: nd.Size, Digest: nd.Digest, Platform: old.Platform, Annotations: old.Annotations}
}
