package attach

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/built"
)

// Manifest is a manifest or index as stored, with the digest of its bytes.
type Manifest struct {
	Digest    v1.Hash
	MediaType types.MediaType
	Raw       []byte
}

// Descriptor returns m's descriptor.
func (m Manifest) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Raw))}
}

// Store reads and writes the manifests and attached artifacts of the
// repository (docker://) or layout (oci:) a reference points into.
type Store struct {
	ref image.Reference
	o   []image.Option
	// Registry: the repository as the user named it, and as go-containerregistry
	// is to reach it (scheme policy applied) with its options.
	repo, remoteRepo name.Repository
	ropts            []remote.Option
}

// Open returns the store ref points into. For registries, ctx is bound to
// the store and bounds every request it makes; it must outlive the Store.
func Open(ctx context.Context, ref image.Reference, o ...image.Option) (*Store, error) {
	s := &Store{ref: ref, o: o}
	switch ref.Transport {
	case image.Docker:
		n, ropts, err := image.RemoteOptions(ctx, ref.Name, o...)
		if err != nil {
			return nil, err
		}
		s.repo, s.remoteRepo, s.ropts = ref.Name.Context(), n.Context(), ropts
		return s, nil
	case image.OCI:
		return s, nil
	}
	return nil, fmt.Errorf("%s: signatures are stored in registries (docker://) and OCI layouts (oci:) only: %w", ref, image.ErrUnsupported)
}

// Reference is the reference the store was opened with.
func (s *Store) Reference() image.Reference { return s.ref }

// At returns a reference to the manifest h in the store: REPO@h for a
// registry, and for a layout the reference the store was opened with (blobs
// of a layout are found by digest whatever the tag).
func (s *Store) At(h v1.Hash) image.Reference {
	if s.ref.Transport == image.Docker {
		return image.Reference{Transport: image.Docker, Name: s.repo.Digest(h.String())}
	}
	return s.ref
}

func (s *Store) tagged(tag string) image.Reference {
	if s.ref.Transport == image.Docker {
		return image.Reference{Transport: image.Docker, Name: s.repo.Tag(tag)}
	}
	return image.Reference{Transport: image.OCI, Path: s.ref.Path, Tag: tag}
}

// Resolve returns the manifest or index the store's reference names, with
// the digest of the bytes received (for a digest reference, checked
// against it).
func (s *Store) Resolve(ctx context.Context) (Manifest, error) {
	if s.ref.Transport == image.Docker {
		n, _, err := image.RemoteOptions(ctx, s.ref.Name, s.o...)
		if err != nil {
			return Manifest{}, err
		}
		desc, err := remote.Get(n, s.ropts...)
		if err != nil {
			return Manifest{}, image.RegistryError("reading", s.ref, "", err)
		}
		m := Manifest{Digest: built.SHA256(desc.Manifest), MediaType: desc.MediaType, Raw: desc.Manifest}
		if d, ok := s.ref.Name.(name.Digest); ok && d.DigestStr() != m.Digest.String() {
			return Manifest{}, fmt.Errorf("%s: the registry sent a manifest with digest %s: %w", s.ref, m.Digest, ErrDigestMismatch)
		}
		return m, nil
	}
	art, err := image.Read(ctx, s.ref, s.o...)
	if err != nil {
		return Manifest{}, err
	}
	var m interface {
		RawManifest() ([]byte, error)
		MediaType() (types.MediaType, error)
	} = art.Image
	if art.Index != nil {
		m = art.Index
	}
	raw, err := m.RawManifest()
	if err != nil {
		return Manifest{}, fmt.Errorf("reading the manifest of %s: %w", s.ref, err)
	}
	mt, err := m.MediaType()
	if err != nil {
		return Manifest{}, fmt.Errorf("reading the manifest of %s: %w", s.ref, err)
	}
	return Manifest{Digest: built.SHA256(raw), MediaType: mt, Raw: raw}, nil
}

// Manifest fetches the manifest or index with digest h and checks that its
// bytes have that digest.
func (s *Store) Manifest(ctx context.Context, h v1.Hash) (Manifest, error) {
	var m Manifest
	if s.ref.Transport == image.Docker {
		desc, err := remote.Get(s.remoteRepo.Digest(h.String()), s.ropts...)
		if err != nil {
			return Manifest{}, image.RegistryError("reading", s.At(h), "", err)
		}
		m = Manifest{MediaType: desc.MediaType, Raw: desc.Manifest}
	} else {
		raw, err := s.readLayoutBlob(h, MaxManifestSize)
		if err != nil {
			return Manifest{}, err
		}
		var probe struct {
			MediaType types.MediaType `json:"mediaType"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return Manifest{}, fmt.Errorf("%s: manifest %s is not JSON: %w", s.ref, h, err)
		}
		m = Manifest{MediaType: probe.MediaType, Raw: raw}
	}
	if m.Digest = built.SHA256(m.Raw); m.Digest != h {
		return Manifest{}, fmt.Errorf("%s: manifest %s has the digest %s: %w", s.ref, h, m.Digest, ErrDigestMismatch)
	}
	return m, nil
}

// MaxManifestSize bounds the manifests Manifest reads from a layout, as
// go-containerregistry bounds those from registries.
const MaxManifestSize = 100 << 20

// Blob reads a small blob (a config, a signature payload, a bundle) of the
// manifest owner, at most max bytes, and checks its digest.
func (s *Store) Blob(ctx context.Context, desc v1.Descriptor, max int64) ([]byte, error) {
	if desc.Size > max {
		return nil, fmt.Errorf("%s: blob %s is %d bytes, more than the %d expected", s.ref, desc.Digest, desc.Size, max)
	}
	var b []byte
	if s.ref.Transport == image.Docker {
		l, err := remote.Layer(s.remoteRepo.Digest(desc.Digest.String()), s.ropts...)
		if err != nil {
			return nil, image.RegistryError("reading", s.ref, "blob "+desc.Digest.String(), err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, image.RegistryError("reading", s.ref, "blob "+desc.Digest.String(), err)
		}
		defer rc.Close()
		if b, err = io.ReadAll(io.LimitReader(rc, max+1)); err != nil {
			return nil, image.RegistryError("reading", s.ref, "blob "+desc.Digest.String(), err)
		}
	} else {
		var err error
		if b, err = s.readLayoutBlob(desc.Digest, max); err != nil {
			return nil, err
		}
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: blob %s is more than %d bytes", s.ref, desc.Digest, max)
	}
	if got := built.SHA256(b); got != desc.Digest {
		return nil, fmt.Errorf("%s: blob %s has the digest %s: %w", s.ref, desc.Digest, got, ErrDigestMismatch)
	}
	return b, nil
}

func (s *Store) readLayoutBlob(h v1.Hash, max int64) ([]byte, error) {
	if _, err := v1.NewHash(h.String()); err != nil {
		return nil, fmt.Errorf("%s: %w", s.ref, err)
	}
	f, err := os.Open(filepath.Join(s.ref.Path, "blobs", h.Algorithm, h.Hex))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s has no blob %s: %w", s.ref, h, image.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.ref, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s of %s: %w", h, s.ref, err)
	}
	return b, nil
}

// Image returns the image with manifest digest h, whose layers are read from
// the store. Its manifest is checked against h when it is read.
func (s *Store) Image(ctx context.Context, h v1.Hash) (v1.Image, error) {
	if s.ref.Transport == image.Docker {
		img, err := remote.Image(s.remoteRepo.Digest(h.String()), s.ropts...)
		if err != nil {
			return nil, image.RegistryError("reading", s.At(h), "", err)
		}
		return img, nil
	}
	m, err := s.Manifest(ctx, h)
	if err != nil {
		return nil, err
	}
	mf, err := v1.ParseManifest(bytes.NewReader(m.Raw))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", s.ref, h, err)
	}
	cfg, err := s.Blob(ctx, mf.Config, MaxManifestSize)
	if err != nil {
		return nil, err
	}
	img, err := partial.CompressedToImage(&layoutImage{s: s, m: m, mf: mf, cfg: cfg})
	if err != nil {
		return nil, fmt.Errorf("reading image %s of %s: %w", h, s.ref, err)
	}
	return img, nil
}

// layoutImage is an image of a layout found by digest alone, which
// go-containerregistry's layout package cannot read unless index.json lists it.
type layoutImage struct {
	s   *Store
	m   Manifest
	mf  *v1.Manifest
	cfg []byte
}

func (l *layoutImage) RawManifest() ([]byte, error)        { return l.m.Raw, nil }
func (l *layoutImage) MediaType() (types.MediaType, error) { return l.m.MediaType, nil }
func (l *layoutImage) RawConfigFile() ([]byte, error)      { return l.cfg, nil }
func (l *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range l.mf.Layers {
		if d.Digest == h {
			return &layoutBlob{path: filepath.Join(l.s.ref.Path, "blobs", h.Algorithm, h.Hex), desc: d}, nil
		}
	}
	if l.mf.Config.Digest == h {
		return &layoutBlob{path: filepath.Join(l.s.ref.Path, "blobs", h.Algorithm, h.Hex), desc: l.mf.Config}, nil
	}
	return nil, fmt.Errorf("%s: image %s has no blob %s", l.s.ref, l.m.Digest, h)
}

// layoutBlob is a blob file of a layout.
type layoutBlob struct {
	path string
	desc v1.Descriptor
}

func (b *layoutBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *layoutBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *layoutBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
func (b *layoutBlob) Compressed() (io.ReadCloser, error)  { return os.Open(b.path) }

// Tagged returns the image tagged tag beside the store's image, or an error
// matching image.ErrNotFound.
func (s *Store) Tagged(ctx context.Context, tag string) (image.Artifact, error) {
	return image.Read(ctx, s.tagged(tag), s.o...)
}

// WriteTagged stores a under tag, replacing what the tag named.
func (s *Store) WriteTagged(ctx context.Context, tag string, a image.Artifact) error {
	return image.Write(ctx, s.tagged(tag), a, s.o...)
}

// Referrers lists the referrers of the manifest h: from the registry's
// referrers API, or else the index tagged ReferrersTag(h); none when there
// is no such index. Entries are not filtered by artifactType, which some
// registries report wrongly; callers look at each manifest.
func (s *Store) Referrers(ctx context.Context, h v1.Hash) ([]v1.Descriptor, error) {
	if s.ref.Transport == image.Docker {
		idx, err := remote.Referrers(s.remoteRepo.Digest(h.String()), s.ropts...)
		if err != nil {
			return nil, image.RegistryError("reading", s.At(h), "referrers of "+h.String(), err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, image.RegistryError("reading", s.At(h), "referrers of "+h.String(), err)
		}
		return im.Manifests, nil
	}
	im, _, err := s.layoutReferrers(ctx, h)
	if err != nil || im == nil {
		return nil, err
	}
	return im.Manifests, nil
}

// layoutReferrers reads the referrers index of h in a layout: nil when there
// is none.
func (s *Store) layoutReferrers(ctx context.Context, h v1.Hash) (*v1.IndexManifest, v1.ImageIndex, error) {
	art, err := s.Tagged(ctx, ReferrersTag(h))
	if errors.Is(err, image.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if art.Index == nil {
		return nil, nil, fmt.Errorf("%s: the referrers tag %s names an image, not an index", s.ref, ReferrersTag(h))
	}
	im, err := art.Index.IndexManifest()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading the referrers index of %s: %w", s.ref, h, err)
	}
	return im, art.Index, nil
}

// WriteReferrer stores img, whose manifest has a subject, as a referrer of
// that subject: by digest, and in the referrers index tagged
// ReferrersTag(subject) when the registry has no referrers API (go-containerregistry
// maintains that index) or the store is a layout.
func (s *Store) WriteReferrer(ctx context.Context, img v1.Image) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("parsing a referrer manifest: %w", err)
	}
	if m.Subject == nil {
		return errors.New("a referrer manifest needs a subject")
	}
	h := built.SHA256(raw)
	if s.ref.Transport == image.Docker {
		return image.Write(ctx, s.At(h), image.Artifact{Image: img}, s.o...)
	}
	desc := v1.Descriptor{MediaType: m.MediaType, Digest: h, Size: int64(len(raw)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if desc.MediaType == "" {
		desc.MediaType = types.OCIManifestSchema1
	}
	if desc.ArtifactType == "" {
		desc.ArtifactType = string(m.Config.MediaType)
	}
	im, old, err := s.layoutReferrers(ctx, m.Subject.Digest)
	if err != nil {
		return err
	}
	bx := &built.Index{Images: map[v1.Hash]v1.Image{h: img}, Indexes: map[v1.Hash]v1.ImageIndex{}}
	if im == nil {
		im = &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	}
	for _, d := range im.Manifests {
		if d.Digest == h {
			return nil // already attached
		}
		switch {
		case d.MediaType.IsIndex():
			if bx.Indexes[d.Digest], err = old.ImageIndex(d.Digest); err != nil {
				return fmt.Errorf("%s: reading referrer %s: %w", s.ref, d.Digest, err)
			}
		default:
			if bx.Images[d.Digest], err = old.Image(d.Digest); err != nil {
				return fmt.Errorf("%s: reading referrer %s: %w", s.ref, d.Digest, err)
			}
		}
	}
	im.Manifests = append(im.Manifests, desc)
	if bx.Manifest, err = json.Marshal(im); err != nil {
		return err
	}
	return s.WriteTagged(ctx, ReferrersTag(m.Subject.Digest), image.Artifact{Index: bx})
}
