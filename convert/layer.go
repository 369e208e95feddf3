package convert

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/tarstream"
	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/toc"
)

// Layer annotation keys written on converted layers, as in package toc.
const (
	AnnotationTOCDigest        = toc.AnnotationTOCDigest
	AnnotationUncompressedSize = toc.AnnotationUncompressedSize
)

// staleAnnotations describe a layer's compressed form; they are dropped when
// the layer is recompressed, like containers/image does.
var staleAnnotations = []string{
	AnnotationTOCDigest,
	AnnotationUncompressedSize,
	"containerd.io/uncompressed",
	"io.github.containers.zstd-chunked.manifest-checksum",
	"io.github.containers.zstd-chunked.manifest-position",
	"io.github.containers.zstd-chunked.tarsplit-position",
	"io.containers.zstd-chunked.manifest-checksum",
	"io.containers.zstd-chunked.manifest-position",
}

// Compression magics used to sniff a layer's real encoding.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// LayerResult describes what happened to one layer.
type LayerResult struct {
	// Source is the digest of the layer in the source image.
	Source v1.Hash `json:"source"`
	// Digest, Size and MediaType are those of the layer in the result.
	Digest    v1.Hash         `json:"digest"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
	// DiffID is the digest of the uncompressed layer, UncompressedSize its length.
	DiffID           v1.Hash `json:"diffID"`
	UncompressedSize int64   `json:"uncompressedSize,omitempty"`
	// TOCDigest is the digest of the layer's TOC: the eStargz TOC digest
	// annotation, or zstd:chunked's manifest-checksum.
	TOCDigest string `json:"tocDigest,omitempty"`
	// Chunks counts the chunks in the TOC.
	Chunks int `json:"chunks,omitempty"`
	// Kept is true when the layer was carried over unchanged; Reason says why.
	Kept   bool   `json:"kept,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// converted is a layer after conversion: the v1.Layer to put in the
// manifest, the annotations of its descriptor and what to report.
type converted struct {
	layer       v1.Layer
	annotations map[string]string
	result      LayerResult
}

// remember caches a conversion by source digest, so a layer shared by
// several images of an index is converted once.
func (c *converter) remember(key string, cl *converted) {
	if !strings.HasSuffix(key, ":") {
		c.done[key] = cl
	}
}

// digestPending is implemented by layers whose digest needs a pass over
// their content until they have been read once (image's disk: layers), and
// by images whose manifest does for that reason (image's disk: images). The
// converter reads such an image's layers before its manifest; it reads any
// other image's manifest first, to check it against image.MaxLayers and the
// other limits before looking at its layers.
type digestPending interface{ DigestPending() bool }

// setSource completes a layer converted before its source descriptor was
// known: it records the source digest and adds the descriptor's annotations.
func (cl *converted) setSource(desc v1.Descriptor) {
	cl.result.Source = desc.Digest
	ann := withoutStale(desc.Annotations)
	for k, v := range cl.annotations {
		ann[k] = v
	}
	cl.annotations = ann
}

// withoutStale copies annotations, leaving out those that describe the
// layer's old compressed form.
func withoutStale(in map[string]string) map[string]string {
	out := make(map[string]string, len(in)+2)
	for k, v := range in {
		out[k] = v
	}
	for _, k := range staleAnnotations {
		delete(out, k)
	}
	return out
}

// isTarLayer reports whether mt is a filesystem layer this package can read.
func isTarLayer(mt types.MediaType) bool {
	switch mt {
	case types.DockerLayer, types.DockerUncompressedLayer, types.OCILayer, types.OCIUncompressedLayer,
		types.OCILayerZStd:
		return true
	}
	return false
}

// convertLayer turns one source layer into a layer of the target format
// staged in the converter's directory, or keeps it when it already is one
// with correct annotations.
func (c *converter) convertLayer(ctx context.Context, l v1.Layer, desc v1.Descriptor, diffID v1.Hash, pos layerPos) (*converted, error) {
	keep := &converted{layer: l, annotations: desc.Annotations, result: LayerResult{
		Source: desc.Digest, Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType, DiffID: diffID, Kept: true,
	}}
	if !isTarLayer(desc.MediaType) {
		keep.result.Reason = "not a filesystem layer"
		return keep, nil
	}
	key := desc.Digest.String()
	if done, ok := c.done[key]; ok {
		return done, nil
	}

	prog := Progress{Platform: pos.platform, Layer: pos.index, Layers: pos.count, Digest: desc.Digest.String(), Total: desc.Size}
	var src io.Reader
	spec := formats[c.o.format]
	if c.o.force || !spec.claims(desc) {
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("reading layer %s: %w", desc.Digest, err)
		}
		defer rc.Close()
		src = newVerifyingReader(&progressReader{ctx: ctx, r: rc, report: c.o.progress, p: prog}, desc)
	} else {
		f, err := c.stage(ctx, l, desc, prog)
		if err != nil {
			return nil, fmt.Errorf("reading layer %s: %w", desc.Digest, err)
		}
		defer f.Close()
		if r, ok, err := c.checkExisting(ctx, spec, f, desc, diffID); err != nil {
			return nil, err
		} else if ok {
			keep.result.TOCDigest = r.TOCDigest.String()
			keep.result.UncompressedSize = r.Uncompressed
			keep.result.Chunks = r.Chunks
			keep.result.Reason = "already " + spec.name + " with correct annotations"
			c.remember(key, keep)
			return keep, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		src = f
	}

	out, err := os.CreateTemp(c.dir, "layer-*")
	if err != nil {
		return nil, fmt.Errorf("staging layer: %w", err)
	}
	defer out.Close()
	rd, err := decompress(src)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	blob, err := spec.write(ctx, bw, rd, WithFormat(c.o.format), WithChunkSize(c.o.chunkSize), WithCompressionLevel(c.o.level), WithWorkers(c.o.workers))
	if err == nil || isContentError(err) {
		// Read to the end, so that a wrong digest is reported as such
		// rather than as the broken tar it decompresses to.
		if derr := drain(src); derr != nil && (err == nil || errors.Is(derr, ErrCorruptLayer)) {
			err = derr
		}
	}
	if isContentError(err) && !errors.Is(err, ErrCorruptLayer) {
		err = fmt.Errorf("%w: %w", ErrCorruptLayer, err)
	}
	if err != nil {
		return nil, fmt.Errorf("converting layer %s: %w", desc.Digest, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("staging layer: %w", err)
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("staging layer: %w", err)
	}

	ann := withoutStale(desc.Annotations)
	for k, v := range blob.Annotations {
		ann[k] = v
	}
	fl := &fileLayer{path: out.Name(), mediaType: spec.mediaType}
	if fl.digest, err = v1.NewHash(blob.Digest.String()); err != nil {
		return nil, err
	}
	if fl.diffID, err = v1.NewHash(blob.DiffID.String()); err != nil {
		return nil, err
	}
	fl.size = blob.Size
	res := &converted{layer: fl, annotations: ann, result: LayerResult{
		Source: desc.Digest, Digest: fl.digest, Size: fl.size, MediaType: fl.mediaType, DiffID: fl.diffID,
		UncompressedSize: blob.Uncompressed, TOCDigest: blob.TOCDigest.String(), Chunks: blob.Chunks,
	}}
	c.remember(key, res)
	return res, nil
}

// stage copies the layer's compressed bytes to a temporary file, checking
// its digest, so that the format check and a conversion share one download.
func (c *converter) stage(ctx context.Context, l v1.Layer, desc v1.Descriptor, prog Progress) (*os.File, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	f, err := os.CreateTemp(c.dir, "source-*")
	if err != nil {
		return nil, fmt.Errorf("staging layer: %w", err)
	}
	os.Remove(f.Name()) // the open file keeps its data until closed
	vr := newVerifyingReader(&progressReader{ctx: ctx, r: rc, report: c.o.progress, p: prog}, desc)
	if _, err := io.Copy(f, vr); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// verifyingReader checks the size and sha256 digest of what it reads
// against the layer descriptor when it reaches EOF.
type verifyingReader struct {
	r    io.Reader
	desc v1.Descriptor
	h    digest.Digester
	n    int64
}

func newVerifyingReader(r io.Reader, desc v1.Descriptor) *verifyingReader {
	v := &verifyingReader{r: r, desc: desc}
	if desc.Digest.Algorithm == "sha256" {
		v.h = digest.Canonical.Digester()
	}
	return v
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if v.h != nil {
		v.h.Hash().Write(p[:n])
	}
	v.n += int64(n)
	if err == io.EOF {
		if v.desc.Size > 0 && v.n != v.desc.Size {
			return n, fmt.Errorf("got %d bytes, the manifest says %d: %w", v.n, v.desc.Size, ErrCorruptLayer)
		}
		if v.h != nil && v.h.Digest().String() != v.desc.Digest.String() {
			return n, fmt.Errorf("content digest %s does not match the manifest: %w", v.h.Digest(), ErrCorruptLayer)
		}
	}
	return n, err
}

// isContentError reports whether err means the layer's bytes are bad, as
// opposed to a failure to read or write them.
func isContentError(err error) bool {
	return errors.Is(err, ErrCorruptLayer) || errors.Is(err, tarstream.ErrInvalid) || errors.Is(err, tarstream.ErrNotTar) ||
		errors.Is(err, tarstream.ErrTrailingData)
}

// drain reads r to EOF, so that its size and digest checks run.
func drain(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// checkExisting reports whether the staged layer already is valid in the
// target format and matches its annotations and diff_id, so it can be kept.
func (c *converter) checkExisting(ctx context.Context, spec formatSpec, f *os.File, desc v1.Descriptor, diffID v1.Hash) (*validate.Report, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	r, err := spec.check(ctx, io.NewSectionReader(f, 0, st.Size()), desc)
	if errors.Is(err, validate.ErrInvalid) {
		return nil, false, nil // not valid: convert it again
	}
	if err != nil {
		return nil, false, err
	}
	return r, r.DiffID.String() == diffID.String(), nil
}

// decompress sniffs the layer's real encoding (media types lie) and returns
// the uncompressed tar stream.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorruptLayer, err)
		}
		return &decodeErrReader{zr}, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorruptLayer, err)
		}
		return &decodeErrReader{zr.IOReadCloser()}, nil
	}
	return br, nil
}

// decodeErrReader marks decompression failures as a corrupt layer.
type decodeErrReader struct{ r io.Reader }

func (d *decodeErrReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("%w: %w", ErrCorruptLayer, err)
	}
	return n, err
}

// fileLayer is a staged layer blob on local disk.
type fileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mediaType      types.MediaType
}

var _ v1.Layer = (*fileLayer)(nil)

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	r, err := decompress(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}
