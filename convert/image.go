package convert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/built"
)

// Progress reports how far the reading of one source layer has come.
type Progress struct {
	// Platform is the image's platform ("linux/amd64") inside an index.
	Platform string
	// Layer is the layer's index in its image, Layers how many there are.
	Layer, Layers int
	// Digest is the source layer's digest.
	Digest string
	// Read counts source (compressed) bytes read so far, of Total.
	Read, Total int64
	// Done is set on the last report for the layer.
	Done bool
}

// Result describes a conversion.
type Result struct {
	// Digest and MediaType are those of the result's top manifest or index.
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	// Images has one entry per converted image manifest.
	Images []ImageResult `json:"images"`
	// Dropped lists index entries left out of the result, such as
	// attestation manifests that describe the source image.
	Dropped []v1.Descriptor `json:"dropped,omitempty"`
}

// ImageResult describes one converted image manifest.
type ImageResult struct {
	Digest   v1.Hash       `json:"digest"`
	Platform *v1.Platform  `json:"platform,omitempty"`
	Layers   []LayerResult `json:"layers"`
}

// Converted is the result of a conversion: exactly one of Image and Index is
// set. Its converted blobs are staged in a temporary directory until Close,
// so write it to its destination first.
type Converted struct {
	Image   v1.Image
	Index   v1.ImageIndex
	Result  Result
	staging *staging
}

// Close removes the staged blobs.
func (c *Converted) Close() error {
	if c == nil {
		return nil
	}
	return c.staging.remove()
}

// Image converts every filesystem layer of img to the format WithFormat
// chooses (eStargz by default).
func Image(ctx context.Context, img v1.Image, opts ...Option) (*Converted, error) {
	c, err := newConverter(opts)
	if err != nil {
		return nil, err
	}
	out, res, err := c.image(ctx, img, "")
	if err != nil {
		c.cleanup()
		return nil, err
	}
	return c.result(out, nil, res, nil)
}

// Index converts every image of idx like Image. Nested indexes are
// converted recursively; attestation manifests, which describe the source
// images, are dropped and listed in the result.
func Index(ctx context.Context, idx v1.ImageIndex, opts ...Option) (*Converted, error) {
	c, err := newConverter(opts)
	if err != nil {
		return nil, err
	}
	var res Result
	out, err := c.index(ctx, idx, &res)
	if err != nil {
		c.cleanup()
		return nil, err
	}
	return c.result(nil, out, res.Images, res.Dropped)
}

type converter struct {
	o      options
	staged *staging
	dir    string // staged.dir
	done   map[string]*converted
	depth  int // of the index being converted
}

// layerPos places a layer for progress reports.
type layerPos struct {
	platform     string
	index, count int
}

func newConverter(opts []Option) (*converter, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	st, err := newStaging(o.tmpDir)
	if err != nil {
		return nil, err
	}
	return &converter{o: o, staged: st, dir: st.dir, done: map[string]*converted{}}, nil
}

func (c *converter) cleanup() { c.staged.remove() }

func (c *converter) result(img v1.Image, idx v1.ImageIndex, images []ImageResult, dropped []v1.Descriptor) (*Converted, error) {
	out := &Converted{Image: img, Index: idx, staging: c.staged}
	var d partial.Describable = img
	if idx != nil {
		d = idx
	}
	var err error
	if out.Result.Digest, err = d.Digest(); err != nil {
		c.cleanup()
		return nil, err
	}
	if out.Result.MediaType, err = d.MediaType(); err != nil {
		c.cleanup()
		return nil, err
	}
	out.Result.Images, out.Result.Dropped = images, dropped
	return out, nil
}

func (c *converter) image(ctx context.Context, img v1.Image, platform string) (v1.Image, []ImageResult, error) {
	// The manifest is checked against the limits before anything it lists
	// is looked at: go-containerregistry's Layers() parses the manifest
	// again for each layer, so its cost grows with the square of the
	// layers. The manifest of a local disk (disk:) is only known once its
	// single layer has been read, below.
	var m *v1.Manifest
	var err error
	if dp, ok := img.(digestPending); !ok || !dp.DigestPending() {
		if m, err = img.Manifest(); err != nil {
			return nil, nil, fmt.Errorf("reading manifest: %w", err)
		}
		if err := image.CheckManifest(m); err != nil {
			return nil, nil, err
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("reading layers: %w", err)
	}
	// A layer whose digest is only known once it has been read (a local
	// disk file) is converted before the manifest is asked for, so the
	// source is read once instead of twice.
	early := map[int]*converted{}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if dp, ok := l.(digestPending); !ok || !dp.DigestPending() {
			continue
		}
		mt, err := l.MediaType()
		if err != nil {
			return nil, nil, err
		}
		desc := v1.Descriptor{MediaType: mt}
		if desc.Size, err = l.Size(); err != nil {
			return nil, nil, err
		}
		if early[i], err = c.convertLayer(ctx, l, desc, v1.Hash{}, layerPos{platform: platform, index: i, count: len(layers)}); err != nil {
			return nil, nil, err
		}
	}
	if m == nil {
		if m, err = img.Manifest(); err != nil {
			return nil, nil, fmt.Errorf("reading manifest: %w", err)
		}
	}
	if m.MediaType.IsSchema1() || m.Config.MediaType.IsSchema1() {
		return nil, nil, fmt.Errorf("docker schema 1 images are not supported: %w", ErrNotImage)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(layers) != len(m.Layers) {
		return nil, nil, fmt.Errorf("config lists %d diff_ids for %d layers: %w", len(cfg.RootFS.DiffIDs), len(m.Layers), ErrNotImage)
	}
	res := ImageResult{}
	if cfg.OS != "" {
		res.Platform = &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
	}
	bi := &built.Image{Layers: map[v1.Hash]v1.Layer{}}
	newM := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Annotations:   m.Annotations,
		Subject:       m.Subject,
		Layers:        make([]v1.Descriptor, len(m.Layers)),
	}
	diffIDs := make([]v1.Hash, len(m.Layers))
	changed := false
	for i, desc := range m.Layers {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		cl, ok := early[i]
		if ok {
			cl.setSource(desc)
		} else if cl, err = c.convertLayer(ctx, layers[i], desc, cfg.RootFS.DiffIDs[i], layerPos{platform: platform, index: i, count: len(m.Layers)}); err != nil {
			return nil, nil, err
		}
		r := cl.result
		newM.Layers[i] = v1.Descriptor{MediaType: r.MediaType, Size: r.Size, Digest: r.Digest, Annotations: cl.annotations, URLs: desc.URLs}
		diffIDs[i] = r.DiffID
		changed = changed || !r.Kept
		bi.Layers[r.Digest] = cl.layer
		res.Layers = append(res.Layers, r)
	}
	if !changed && m.MediaType == types.OCIManifestSchema1 {
		// Nothing to do: keep the source manifest byte for byte.
		d, err := img.Digest()
		if err != nil {
			return nil, nil, err
		}
		res.Digest = d
		return img, []ImageResult{res}, nil
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading config: %w", err)
	}
	if changed {
		if rawCfg, err = setDiffIDs(rawCfg, diffIDs); err != nil {
			return nil, nil, err
		}
	}
	bi.Config = rawCfg
	newM.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawCfg)), Digest: built.SHA256(rawCfg)}
	if m.Config.MediaType != types.DockerConfigJSON && m.Config.MediaType != "" {
		newM.Config.MediaType = m.Config.MediaType
	}
	if bi.Manifest, err = json.Marshal(&newM); err != nil {
		return nil, nil, err
	}
	out, err := bi.V1()
	if err != nil {
		return nil, nil, err
	}
	if res.Digest, err = out.Digest(); err != nil {
		return nil, nil, err
	}
	return out, []ImageResult{res}, nil
}

// setDiffIDs replaces rootfs.diff_ids in a raw config and keeps every other
// field, including ones this program does not know.
func setDiffIDs(raw []byte, diffIDs []v1.Hash) ([]byte, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("parsing config: %w", err)
	}
	rootfs, err := json.Marshal(v1.RootFS{Type: "layers", DiffIDs: diffIDs})
	if err != nil {
		return nil, err
	}
	cfg["rootfs"] = rootfs
	return json.Marshal(cfg)
}

func (c *converter) index(ctx context.Context, idx v1.ImageIndex, res *Result) (v1.ImageIndex, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index: %w", err)
	}
	if err := image.CheckIndex(im); err != nil {
		return nil, err
	}
	if c.depth++; c.depth > image.MaxIndexDepth {
		return nil, fmt.Errorf("%w: indexes nest more than %d deep (image.MaxIndexDepth)", image.ErrLimit, image.MaxIndexDepth)
	}
	defer func() { c.depth-- }()
	bx := &built.Index{Images: map[v1.Hash]v1.Image{}, Indexes: map[v1.Hash]v1.ImageIndex{}}
	newIM := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Annotations:   im.Annotations,
		Subject:       im.Subject,
	}
	for _, desc := range im.Manifests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch {
		case isAttestation(desc):
			res.Dropped = append(res.Dropped, desc)
			continue
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("reading index %s: %w", desc.Digest, err)
			}
			out, err := c.index(ctx, child, res)
			if err != nil {
				return nil, err
			}
			nd, err := partial.Descriptor(out)
			if err != nil {
				return nil, err
			}
			bx.Indexes[nd.Digest] = out
			newIM.Manifests = append(newIM.Manifests, built.Entry(desc, *nd))
		case desc.MediaType.IsImage():
			child, err := idx.Image(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("reading image %s: %w", desc.Digest, err)
			}
			platform := ""
			if desc.Platform != nil {
				platform = desc.Platform.String()
			}
			out, r, err := c.image(ctx, child, platform)
			if err != nil {
				if platform != "" {
					return nil, fmt.Errorf("%s: %w", platform, err)
				}
				return nil, err
			}
			if desc.Platform != nil {
				r[0].Platform = desc.Platform
			}
			nd, err := partial.Descriptor(out)
			if err != nil {
				return nil, err
			}
			bx.Images[nd.Digest] = out
			newIM.Manifests = append(newIM.Manifests, built.Entry(desc, *nd))
			res.Images = append(res.Images, r...)
		default:
			return nil, fmt.Errorf("index entry %s has media type %q, which is neither an image nor an index: %w", desc.Digest, desc.MediaType, ErrNotImage)
		}
	}
	var err2 error
	if bx.Manifest, err2 = json.Marshal(&newIM); err2 != nil {
		return nil, err2
	}
	return bx, nil
}

// isAttestation matches BuildKit's attestation manifests, which reference the
// digest of the image they describe and would be stale after conversion.
func isAttestation(d v1.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest"
}

// progressReader reports bytes read at most every 100 ms, and at the end.
type progressReader struct {
	ctx    context.Context
	r      io.Reader
	report func(Progress)
	p      Progress
	last   time.Time
}

func (pr *progressReader) Read(b []byte) (int, error) {
	if err := pr.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := pr.r.Read(b)
	pr.p.Read += int64(n)
	if pr.report != nil {
		if err == io.EOF {
			pr.finish()
		} else if now := time.Now(); now.Sub(pr.last) >= 100*time.Millisecond {
			pr.last = now
			pr.report(pr.p)
		}
	}
	return n, err
}

func (pr *progressReader) finish() {
	if pr.report != nil && !pr.p.Done {
		pr.p.Done = true
		pr.report(pr.p)
	}
}
