// Package annotate adds or repairs the layer annotations that lazy readers
// need on eStargz and zstd:chunked images that other tools produced, or
// whose annotations a registry copy stripped. It reads each layer's footer
// and TOC with range reads, computes the annotations from them (and, for an
// eStargz layer without its uncompressed-size annotation, from one
// streaming pass over the layer), and returns an image with a new manifest
// whose blobs are the same: nothing is recompressed or re-uploaded.
//
// It does not convert layers that are not seekable; it reports them.
package annotate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/built"
	"github.com/lazydisk/lazydisk/toc"
)

// Blob is random access to a layer blob.
type Blob interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Opener opens the blob a layer descriptor names.
type Opener func(ctx context.Context, desc v1.Descriptor) (Blob, error)

// ErrNothingSeekable is returned when no layer of an image is eStargz or
// zstd:chunked, so there is nothing to annotate.
var ErrNothingSeekable = errors.New("no layer is seekable (eStargz or zstd:chunked); make the image seekable with `lazydisk convert`")

// LayerResult says what annotate found and changed on one layer.
type LayerResult struct {
	Index    int     `json:"index"`
	Digest   v1.Hash `json:"digest"`
	Seekable bool    `json:"seekable"`
	Format   string  `json:"format,omitempty"`
	// Set holds annotations added or corrected, Removed the keys dropped.
	Set     map[string]string `json:"set,omitempty"`
	Removed []string          `json:"removed,omitempty"`
	// DiffID is the digest of the uncompressed layer, when a pass over
	// the layer was needed (an eStargz layer without a valid
	// uncompressed-size annotation).
	DiffID string `json:"diffID,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Changed reports whether the layer's annotations change.
func (l LayerResult) Changed() bool { return len(l.Set) > 0 || len(l.Removed) > 0 }

// ImageResult describes one image.
type ImageResult struct {
	Source   v1.Hash       `json:"source"`
	Digest   v1.Hash       `json:"digest"`
	Platform *v1.Platform  `json:"platform,omitempty"`
	Layers   []LayerResult `json:"layers"`
	Changed  bool          `json:"changed"`
}

// Result describes an annotated image or index.
type Result struct {
	Digest  v1.Hash       `json:"digest"`
	Images  []ImageResult `json:"images"`
	Changed bool          `json:"changed"`
}

// Image computes the annotations of img's seekable layers and returns img
// with them. When nothing changes it returns img itself. When no layer is
// seekable it returns img, the result and ErrNothingSeekable.
func Image(ctx context.Context, img v1.Image, open Opener) (v1.Image, *ImageResult, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, fmt.Errorf("reading manifest: %w", err)
	}
	if err := image.CheckManifest(m); err != nil {
		return nil, nil, err
	}
	src, err := img.Digest()
	if err != nil {
		return nil, nil, err
	}
	res := &ImageResult{Source: src, Digest: src}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading config: %w", err)
	}
	seekable := false
	nm := *m
	nm.Layers = append([]v1.Descriptor(nil), m.Layers...)
	for i, d := range m.Layers {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		lr, ann, err := layer(ctx, open, i, d)
		if err != nil {
			return nil, nil, err
		}
		if lr.DiffID != "" && i < len(cfg.RootFS.DiffIDs) && cfg.RootFS.DiffIDs[i].String() != lr.DiffID {
			lr.Note = fmt.Sprintf("the config's diff_id %s differs from the layer's %s: the image is inconsistent, convert it again", cfg.RootFS.DiffIDs[i], lr.DiffID)
		}
		seekable = seekable || lr.Seekable
		res.Layers = append(res.Layers, lr)
		if lr.Changed() {
			res.Changed = true
			nm.Layers[i].Annotations = ann
		}
	}
	if !seekable {
		return img, res, ErrNothingSeekable
	}
	if !res.Changed {
		return img, res, nil
	}
	out, err := rewrite(img, &nm)
	if err != nil {
		return nil, nil, err
	}
	if res.Digest, err = out.Digest(); err != nil {
		return nil, nil, err
	}
	return out, res, nil
}

// rewrite returns img with manifest m, as an OCI manifest: Docker schema 2
// manifests cannot carry layer annotations.
func rewrite(img v1.Image, m *v1.Manifest) (v1.Image, error) {
	m.MediaType = types.OCIManifestSchema1
	if m.Config.MediaType == types.DockerConfigJSON {
		m.Config.MediaType = types.OCIConfigJSON
	}
	for i := range m.Layers {
		switch m.Layers[i].MediaType {
		case types.DockerLayer:
			m.Layers[i].MediaType = types.OCILayer
		case types.DockerUncompressedLayer:
			m.Layers[i].MediaType = types.OCIUncompressedLayer
		}
	}
	return built.Rewrite(img, m)
}

// layer reads one layer's index and returns what its annotations should be.
func layer(ctx context.Context, open Opener, i int, d v1.Descriptor) (LayerResult, map[string]string, error) {
	lr := LayerResult{Index: i, Digest: d.Digest}
	_, esgz := d.Annotations[toc.AnnotationTOCDigest]
	_, zstd := d.Annotations[toc.AnnotationZstdChunkedManifestChecksum]
	if esgz && zstd {
		return lr, nil, fmt.Errorf("layer %d (%s): %w; refusing to guess which is right", i, d.Digest, toc.ErrBothTOCs)
	}
	b, err := open(ctx, d)
	if err != nil {
		return lr, nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
	}
	defer b.Close()
	// The footer says what the layer is; the annotations are what we fix.
	ix, err := toc.Read(b, b.Size(), nil)
	if errors.Is(err, toc.ErrNotSeekable) {
		lr.Note = "not seekable; make it seekable with `lazydisk convert`"
		return lr, nil, nil
	}
	if err != nil {
		return lr, nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
	}
	lr.Seekable, lr.Format = true, string(ix.Format)
	want := map[string]string{}
	var drop []string
	switch ix.Format {
	case toc.FormatEStargz, toc.FormatStargz:
		want[toc.AnnotationTOCDigest] = ix.Digest.String()
		size := d.Annotations[toc.AnnotationUncompressedSize]
		if _, err := strconv.ParseInt(size, 10, 64); err != nil || d.Annotations[toc.AnnotationTOCDigest] != ix.Digest.String() {
			n, diffID, err := uncompressed(ctx, b)
			if err != nil {
				return lr, nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
			}
			size, lr.DiffID = strconv.FormatInt(n, 10), diffID
			if _, ok := d.Annotations[annotationUncompressed]; ok {
				want[annotationUncompressed] = diffID // BuildKit's DiffID annotation
			}
		}
		want[toc.AnnotationUncompressedSize] = size
		drop = []string{toc.AnnotationZstdChunkedManifestChecksum, toc.AnnotationZstdChunkedManifestPosition, toc.AnnotationZstdChunkedTarSplitPosition,
			toc.LegacyAnnotationZstdChunkedManifestChecksum, toc.LegacyAnnotationZstdChunkedManifestPosition}
	case toc.FormatZstdChunked:
		want[toc.AnnotationZstdChunkedManifestChecksum] = ix.Digest.String()
		want[toc.AnnotationZstdChunkedManifestPosition] = fmt.Sprintf("%s:%d", toc.Position{Offset: ix.TOCOffset, Compressed: ix.TOCSize, Uncompressed: ix.TOCUncompressed}, toc.ManifestTypeCRFS)
		if ix.TarSplit != nil {
			want[toc.AnnotationZstdChunkedTarSplitPosition] = ix.TarSplit.String()
		}
		drop = []string{toc.AnnotationTOCDigest, toc.AnnotationUncompressedSize}
	case toc.FormatZstdChunkedLegacy:
		want[toc.LegacyAnnotationZstdChunkedManifestChecksum] = ix.Digest.String()
		want[toc.LegacyAnnotationZstdChunkedManifestPosition] = fmt.Sprintf("%s:%d", toc.Position{Offset: ix.TOCOffset, Compressed: ix.TOCSize, Uncompressed: ix.TOCUncompressed}, toc.ManifestTypeCRFS)
		drop = []string{toc.AnnotationTOCDigest, toc.AnnotationUncompressedSize}
		lr.Note = "legacy zstd:chunked (no tar-split): podman >= 5.1 pulls it whole; convert it for partial pulls"
	}
	ann := make(map[string]string, len(d.Annotations)+len(want))
	for k, v := range d.Annotations {
		ann[k] = v
	}
	for k, v := range want {
		if ann[k] != v {
			if lr.Set == nil {
				lr.Set = map[string]string{}
			}
			lr.Set[k] = v
			ann[k] = v
		}
	}
	for _, k := range drop {
		if _, ok := ann[k]; ok {
			lr.Removed = append(lr.Removed, k)
			delete(ann, k)
		}
	}
	return lr, ann, nil
}

// annotationUncompressed is BuildKit's layer annotation for the DiffID.
const annotationUncompressed = "containerd.io/uncompressed"

// uncompressed decompresses the whole eStargz blob once, for its length
// and its digest (the DiffID).
func uncompressed(ctx context.Context, b Blob) (int64, string, error) {
	zr, err := gzip.NewReader(io.NewSectionReader(b, 0, b.Size()))
	if err != nil {
		return 0, "", fmt.Errorf("decompressing to measure the uncompressed size: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, &ctxReader{ctx, zr})
	if err != nil {
		return 0, "", fmt.Errorf("decompressing to measure the uncompressed size: %w", err)
	}
	return n, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Index annotates every image of idx (nested indexes too) and returns the
// index with the new manifests.
func Index(ctx context.Context, idx v1.ImageIndex, open Opener) (v1.ImageIndex, *Result, error) {
	res := &Result{}
	out, err := index(ctx, idx, open, res)
	if err != nil {
		return nil, nil, err
	}
	if !anySeekable(res.Images) {
		return nil, nil, ErrNothingSeekable
	}
	if res.Digest, err = out.Digest(); err != nil {
		return nil, nil, err
	}
	return out, res, nil
}

func index(ctx context.Context, idx v1.ImageIndex, open Opener, res *Result) (v1.ImageIndex, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if err := image.CheckIndex(im); err != nil {
		return nil, err
	}
	bx := &built.Index{Images: map[v1.Hash]v1.Image{}, Indexes: map[v1.Hash]v1.ImageIndex{}}
	nim := *im
	nim.MediaType = types.OCIImageIndex
	nim.Manifests = nil
	changed := false
	for _, d := range im.Manifests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var child partial.Describable
		switch {
		case d.MediaType.IsIndex():
			sub, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			out, err := index(ctx, sub, open, res)
			if err != nil {
				return nil, err
			}
			dg, err := out.Digest()
			if err != nil {
				return nil, err
			}
			bx.Indexes[dg] = out
			child = out
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			out, r, err := Image(ctx, img, open)
			if errors.Is(err, ErrNothingSeekable) {
				err = nil // an attestation, or an image without seekable layers
			}
			if err != nil {
				if d.Platform != nil {
					return nil, fmt.Errorf("%s: %w", d.Platform, err)
				}
				return nil, err
			}
			r.Platform = d.Platform
			res.Images = append(res.Images, *r)
			res.Changed = res.Changed || r.Changed
			bx.Images[r.Digest] = out
			child = out
		default:
			nim.Manifests = append(nim.Manifests, d)
			continue
		}
		nd, err := partial.Descriptor(child)
		if err != nil {
			return nil, err
		}
		changed = changed || nd.Digest != d.Digest
		nim.Manifests = append(nim.Manifests, built.Entry(d, *nd))
	}
	if !changed {
		return idx, nil
	}
	if bx.Manifest, err = json.Marshal(&nim); err != nil {
		return nil, err
	}
	return bx, nil
}

func anySeekable(images []ImageResult) bool {
	for _, img := range images {
		for _, l := range img.Layers {
			if l.Seekable {
				return true
			}
		}
	}
	return false
}
