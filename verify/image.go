package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/attach"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/toc"
)

// Report is what Image checked, step by step.
type Report struct {
	Reference string `json:"reference"`
	// Signature is the first step; the others follow only once it passed.
	Signature SignatureReport `json:"signature"`
	// Images are the images checked: the image, or those of an index.
	Images []ImageReport `json:"images"`
	Deep   bool          `json:"deep"`
	// OK is set when every step passed.
	OK bool `json:"ok"`
}

// ImageReport covers one image manifest.
type ImageReport struct {
	// Digest is the manifest digest; the manifest was read by it and checked.
	Digest   v1.Hash      `json:"digest"`
	Platform *v1.Platform `json:"platform,omitempty"`
	// Config is the config digest, read by it and checked.
	Config v1.Hash       `json:"config"`
	Layers []LayerReport `json:"layers"`
	// Error is a problem with the manifest or config itself.
	Error string `json:"error,omitempty"`
}

// LayerReport covers one layer.
type LayerReport struct {
	Index     int             `json:"index"`
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	Size      int64           `json:"size"`
	// Seekable is set for eStargz and zstd:chunked layers; Format says which.
	Seekable bool   `json:"seekable"`
	Format   string `json:"format,omitempty"`
	// Annotated is the TOC digest annotation; TOC the digest of the TOC
	// fetched, set only when they match.
	Annotated string `json:"annotated,omitempty"`
	TOC       string `json:"tocDigest,omitempty"`
	// Requests and Bytes count the reads made for the TOC.
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytesFetched"`
	// Deep is set when WithDeep checked the whole layer.
	Deep *DeepReport `json:"deep,omitempty"`
	// Error says what did not match; empty when the layer passed.
	Error string `json:"error,omitempty"`
}

// DeepReport is what WithDeep found in a whole layer.
type DeepReport struct {
	// Files and Chunks count the regular files and chunks checked against
	// the TOC (zero for layers that are not seekable).
	Files  int `json:"files"`
	Chunks int `json:"chunks"`
	// DiffID is the digest of the uncompressed layer, which matched the
	// config's when Error is empty.
	DiffID v1.Hash `json:"diffID"`
}

// Image checks the whole chain for the image or index ref names: the
// signature (as Signature does), then each image manifest read by digest,
// its config, and every layer: a seekable layer (eStargz, zstd:chunked) must
// carry a TOC digest annotation and its TOC, read with range requests, must
// match it; with WithDeep each layer is also fetched whole and every chunk,
// the blob digest and the DiffID checked. Layers that are not seekable are
// reported (with WithDeep, their blob and DiffID are checked too).
//
// The report is returned with the error, filled as far as checking got. The
// error matches ErrNoSignature, ErrBadSignature or ErrContentMismatch for
// the three kinds of failure; other errors mean something could not be read.
func Image(ctx context.Context, ref image.Reference, v signature.Verifier, opts ...Option) (*Report, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	rep := &Report{Reference: ref.String(), Deep: o.deep}
	st, err := attach.Open(ctx, ref, o.image...)
	if err != nil {
		return rep, err
	}
	top, err := st.Resolve(ctx)
	if err != nil {
		return rep, err
	}
	if rep.Signature, err = checkSignatures(ctx, st, top, v, o); err != nil {
		return rep, err
	}
	images, err := imagesOf(ctx, st, top, nil, o.platform)
	if err != nil {
		return rep, err
	}
	if len(images) == 0 {
		return rep, fmt.Errorf("%s has no image for %s: %w", ref, o.platform, image.ErrNoPlatform)
	}
	var failures []string
	for _, im := range images {
		ir, err := checkImage(ctx, st, im, o)
		if err != nil {
			return rep, err
		}
		if ir.Error != "" {
			failures = append(failures, fmt.Sprintf("image %s: %s", im.Digest, ir.Error))
		}
		for _, l := range ir.Layers {
			if l.Error != "" {
				failures = append(failures, fmt.Sprintf("layer %d of %s: %s", l.Index, im.Digest, l.Error))
			}
		}
		rep.Images = append(rep.Images, ir)
	}
	if len(failures) > 0 {
		more := ""
		if len(failures) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(failures)-1)
		}
		return rep, fmt.Errorf("%w: %s%s", ErrContentMismatch, failures[0], more)
	}
	rep.OK = true
	return rep, nil
}

type platformImage struct {
	attach.Manifest
	platform *v1.Platform
}

// imagesOf returns m if it is an image, or the images an index lists
// (recursively), each read by digest; only those for platform if it is set.
func imagesOf(ctx context.Context, st *attach.Store, m attach.Manifest, p *v1.Platform, want *v1.Platform) ([]platformImage, error) {
	if !m.MediaType.IsIndex() {
		if want != nil && p != nil && !p.Satisfies(*want) {
			return nil, nil
		}
		return []platformImage{{Manifest: m, platform: p}}, nil
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(m.Raw))
	if err != nil {
		return nil, fmt.Errorf("%w: index %s cannot be parsed: %w", ErrContentMismatch, m.Digest, err)
	}
	var out []platformImage
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		if want != nil && !d.MediaType.IsIndex() && (d.Platform == nil || !d.Platform.Satisfies(*want)) {
			continue
		}
		child, err := st.Manifest(ctx, d.Digest)
		if errors.Is(err, attach.ErrDigestMismatch) {
			return nil, fmt.Errorf("%w: %w", ErrContentMismatch, err)
		}
		if err != nil {
			return nil, err
		}
		sub, err := imagesOf(ctx, st, child, d.Platform, want)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// checkImage checks one image; mismatches go into the report, errors
// reading what should be there are returned.
func checkImage(ctx context.Context, st *attach.Store, im platformImage, o options) (ImageReport, error) {
	ir := ImageReport{Digest: im.Digest, Platform: im.platform}
	m, err := v1.ParseManifest(bytes.NewReader(im.Raw))
	if err != nil {
		ir.Error = "the manifest cannot be parsed: " + oneLine(err)
		return ir, nil
	}
	ir.Config = m.Config.Digest
	rawCfg, err := st.Blob(ctx, m.Config, 64<<20)
	if errors.Is(err, attach.ErrDigestMismatch) {
		ir.Error = oneLine(err)
		return ir, nil
	}
	if err != nil {
		return ir, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		ir.Error = "the config cannot be parsed: " + oneLine(err)
		return ir, nil
	}
	if im.platform == nil && o.platform != nil {
		// A single image, not picked from an index by its platform.
		have := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		if !have.Satisfies(*o.platform) {
			return ir, fmt.Errorf("the image is for %s, not %s: %w", have.String(), o.platform.String(), image.ErrNoPlatform)
		}
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		ir.Error = fmt.Sprintf("the config lists %d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
		return ir, nil
	}
	for i, d := range m.Layers {
		lr, err := checkLayer(ctx, st.At(im.Digest), i, d, cfg.RootFS.DiffIDs[i], o)
		if err != nil {
			return ir, fmt.Errorf("layer %d of %s: %w", i, im.Digest, err)
		}
		ir.Layers = append(ir.Layers, lr)
	}
	return ir, nil
}

func checkLayer(ctx context.Context, ref image.Reference, i int, d v1.Descriptor, diffID v1.Hash, o options) (LayerReport, error) {
	lr := LayerReport{Index: i, Digest: d.Digest, MediaType: d.MediaType, Size: d.Size}
	if !d.MediaType.IsLayer() && !strings.Contains(string(d.MediaType), "layer") {
		lr.Error = fmt.Sprintf("media type %s is not a layer", d.MediaType)
		return lr, nil
	}
	b, err := blob.Open(ctx, ref, d, o.image)
	if err != nil {
		return lr, err
	}
	defer b.Close()
	ix, err := toc.Read(b, b.Size(), d.Annotations)
	st := b.Stats()
	lr.Requests, lr.Bytes = st.Requests, st.Bytes
	var format toc.Format
	switch {
	case errors.Is(err, toc.ErrNotSeekable):
	case errors.Is(err, toc.ErrTOCDigest), errors.Is(err, toc.ErrInvalid), errors.Is(err, toc.ErrBothTOCs),
		errors.Is(err, blob.ErrSizeMismatch), errors.Is(err, io.ErrUnexpectedEOF):
		lr.Seekable = true
		lr.Error = oneLine(err)
		return lr, nil
	case err != nil:
		return lr, err
	default:
		lr.Seekable, lr.Format, format = true, string(ix.Format), ix.Format
		lr.Annotated = ix.Annotated.String()
		if ix.Annotated == "" {
			lr.Error = fmt.Sprintf("a seekable %s layer without a TOC digest annotation: the signature does not cover its TOC; add it with `lazydisk annotate` and sign again", ix.Format)
			return lr, nil
		}
		lr.TOC = ix.Digest.String()
	}
	if o.deep {
		dr, msg, err := deepCheck(ctx, b, d, diffID, format, o)
		if err != nil {
			return lr, err
		}
		lr.Deep, lr.Error = dr, msg
	}
	return lr, nil
}

// deepCheck stages the whole blob in a temporary file, hashing it, then
// checks every chunk against the TOC (seekable layers) and the DiffID. It
// returns what did not match as msg; err is for failures to read.
func deepCheck(ctx context.Context, b blob.Blob, d v1.Descriptor, diffID v1.Hash, format toc.Format, o options) (*DeepReport, string, error) {
	f, err := os.CreateTemp(o.tmpDir, "lazydisk-verify-*")
	if err != nil {
		return nil, "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	hasher, err := v1.Hasher(d.Digest.Algorithm)
	if err != nil {
		return nil, fmt.Sprintf("the layer digest %s cannot be checked: %s", d.Digest, oneLine(err)), nil
	}
	const piece = 8 << 20
	buf := make([]byte, piece)
	for off := int64(0); off < b.Size(); {
		n, err := b.ReadAt(buf[:min(piece, b.Size()-off)], off)
		if n > 0 {
			hasher.Write(buf[:n])
			if _, werr := f.Write(buf[:n]); werr != nil {
				return nil, "", werr
			}
			off += int64(n)
			if o.progress != nil {
				o.progress(Progress{Layer: d.Digest, Read: off, Total: b.Size(), Done: off >= b.Size()})
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, "", err
		}
		if n == 0 {
			return nil, "", io.ErrUnexpectedEOF
		}
	}
	blobDigest := v1.Hash{Algorithm: d.Digest.Algorithm, Hex: fmt.Sprintf("%x", hasher.Sum(nil))}
	sr := io.NewSectionReader(f, 0, b.Size())
	dr := &DeepReport{}
	var rep *validate.Report
	switch format {
	case toc.FormatEStargz:
		rep, err = validate.EStargz(ctx, sr, digest.Digest(d.Annotations[toc.AnnotationTOCDigest]))
	case toc.FormatZstdChunked:
		rep, err = validate.ZstdChunked(ctx, sr, d.Annotations)
	default:
		rep = &validate.Report{}
		rep.DiffID, err = uncompressedDigest(sr, d.MediaType)
	}
	if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	if err != nil {
		return dr, oneLine(err), nil
	}
	dr.Files, dr.Chunks = rep.Files, rep.Chunks
	if dr.DiffID, err = v1.NewHash(rep.DiffID.String()); err != nil {
		return dr, "the layer's DiffID cannot be computed", nil
	}
	switch {
	case blobDigest != d.Digest:
		return dr, fmt.Sprintf("the blob has the digest %s, the signed manifest says %s", blobDigest, d.Digest), nil
	case dr.DiffID != diffID:
		return dr, fmt.Sprintf("the layer decompresses to DiffID %s, the config says %s", dr.DiffID, diffID), nil
	}
	return dr, "", nil
}

// uncompressedDigest decompresses a layer that is not seekable by its media
// type and returns the digest of the result.
func uncompressedDigest(r io.Reader, mt types.MediaType) (digest.Digest, error) {
	var rc io.Reader = r
	switch s := string(mt); {
	case strings.Contains(s, "gzip"):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return "", fmt.Errorf("decompressing the layer: %w", err)
		}
		defer zr.Close()
		rc = zr
	case strings.Contains(s, "zstd"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return "", fmt.Errorf("decompressing the layer: %w", err)
		}
		defer zr.Close()
		rc = zr
	}
	dg := digest.SHA256.Digester()
	if _, err := io.Copy(dg.Hash(), rc); err != nil {
		return "", fmt.Errorf("decompressing the layer: %w", err)
	}
	return dg.Digest(), nil
}
