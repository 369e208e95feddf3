package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/trust"
)

// Image is every layer of a seekable image, for reading any of their files:
// what a whole file system view (lazydisk mount --all, lazydisk store) needs.
// Its methods may be called concurrently.
type Image struct {
	ctx      context.Context
	cancel   context.CancelFunc
	ref      string
	manifest v1.Hash
	signed   v1.Hash
	config   *v1.ConfigFile
	layers   []*Layer
	o        options
	sem      chan struct{}
	tocStats blob.Stats

	mu     sync.Mutex
	files  []*File
	closed bool
}

// Layer is one seekable layer of an Image: its descriptor, its TOC, and its
// blob.
type Layer struct {
	im    *Image
	desc  v1.Descriptor
	index *toc.Index
	blob  blob.Blob
}

// OpenImage opens the image r names as Open does, but reads the TOC of every
// layer, checks each against its TOC digest annotation (every layer must be
// seekable and annotated, unless WithInsecureSkipTOCDigest, and annotated
// with WithSignature), and opens no file yet. WithFile is ignored. Files
// opened from its layers share the limit of WithConcurrency on requests in
// flight.
//
// ctx is bound to the Image and its files: once it is done, reads fail with
// its error. It must outlive the Image.
func OpenImage(ctx context.Context, r image.Reference, opts ...Option) (_ *Image, err error) {
	ctx, cancel := context.WithCancel(ctx)
	o, err := newOptions(opts)
	if err != nil {
		cancel()
		return nil, err
	}
	im := &Image{ctx: ctx, cancel: cancel, ref: r.String(), o: o, sem: make(chan struct{}, o.concurrency)}
	defer func() {
		if err != nil {
			im.Close()
		}
	}()
	if r.Transport != image.Docker && r.Transport != image.OCI {
		return nil, fmt.Errorf("%s: images are read lazily from registries and oci: layouts only: %w", r, image.ErrUnsupported)
	}
	if o.signature != nil {
		if im.signed, err = o.signature.CheckSignature(ctx, r, o.image...); err != nil {
			return nil, err
		}
		if r.Transport == image.Docker {
			r.Name = r.Name.Context().Digest(im.signed.String())
		}
	}
	img, dgst, err := readImage(ctx, r, o, im.signed)
	if err != nil {
		return nil, err
	}
	im.manifest = dgst
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of %s: %w", r, err)
	}
	if im.config, err = img.ConfigFile(); err != nil {
		return nil, fmt.Errorf("reading the config of %s: %w", r, o.contentError(err))
	}
	for i, d := range m.Layers {
		b, err := blob.Open(ctx, r, d, o.image, blob.WithRetry(blob.RetryPolicy(o.retry)))
		if err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i, r, o.contentError(err))
		}
		l := &Layer{im: im, desc: d, blob: b}
		im.layers = append(im.layers, l)
		l.index, err = toc.Read(b, b.Size(), d.Annotations, toc.WithTail(o.tail))
		im.tocStats = addBlobStats(im.tocStats, b.Stats())
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s) of %s: %w", i, d.Digest, r, o.contentError(err))
		}
		switch {
		case l.index.Annotated == "" && o.signature != nil:
			return nil, fmt.Errorf("%w: layer %d (%s) of %s: %w, so the signature does not cover its TOC: annotate it with `lazydisk annotate` and sign the result",
				trust.ErrContentMismatch, i, d.Digest, r, ErrNoTOCDigest)
		case l.index.Annotated == "" && !o.skipTOCDigest:
			return nil, fmt.Errorf("layer %d (%s) of %s: %w: run `lazydisk annotate`, or accept an unanchored TOC with --insecure-skip-toc-digest",
				i, d.Digest, r, ErrNoTOCDigest)
		}
	}
	return im, nil
}

// Layers returns the image's layers, bottom first.
func (im *Image) Layers() []*Layer { return im.layers }

// Ref returns the image reference the image was opened from.
func (im *Image) Ref() string { return im.ref }

// Manifest returns the digest of the image manifest.
func (im *Image) Manifest() v1.Hash { return im.manifest }

// Signed returns the digest whose signature OpenImage checked, as
// File.Signed does.
func (im *Image) Signed() (v1.Hash, bool) { return im.signed, im.signed != (v1.Hash{}) }

// ConfigFile returns the image's config, read through the manifest.
func (im *Image) ConfigFile() *v1.ConfigFile { return im.config }

// TOCStats returns the requests and bytes OpenImage spent on footers and
// TOCs.
func (im *Image) TOCStats() Stats {
	return Stats{Requests: im.tocStats.Requests, BytesFetched: im.tocStats.Bytes, TOCRequests: im.tocStats.Requests, TOCBytes: im.tocStats.Bytes}
}

// Stats returns what the image's reads have cost so far: the requests and
// bytes of every layer (TOCs included) and the chunk counts of the files
// opened.
func (im *Image) Stats() Stats {
	st := Stats{TOCRequests: im.tocStats.Requests, TOCBytes: im.tocStats.Bytes}
	for _, l := range im.layers {
		b := l.blob.Stats()
		st.Requests += b.Requests
		st.BytesFetched += b.Bytes
		st.Retries += b.Retries
		st.RangeIgnored += b.RangeIgnored
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, f := range im.files {
		fs := f.Stats()
		st.ChunksFetched += fs.ChunksFetched
		st.CacheHits += fs.CacheHits
		st.DiskCacheHits += fs.DiskCacheHits
		st.ZeroChunks += fs.ZeroChunks
		st.ReadaheadChunks += fs.ReadaheadChunks
		st.ReadaheadHits += fs.ReadaheadHits
	}
	return st
}

// Close closes the files opened from the image and its layers' blobs.
func (im *Image) Close() error {
	im.mu.Lock()
	files := im.files
	im.files, im.closed = nil, true
	im.mu.Unlock()
	im.cancel()
	for _, f := range files {
		f.Close()
	}
	var errs []error
	for _, l := range im.layers {
		if l.blob != nil {
			errs = append(errs, l.blob.Close())
		}
	}
	return errors.Join(errs...)
}

// Descriptor returns the layer's descriptor in the manifest.
func (l *Layer) Descriptor() v1.Descriptor { return l.desc }

// Index returns the layer's TOC. Callers must not change it.
func (l *Layer) Index() *toc.Index { return l.index }

// Blob returns random access to the layer's compressed blob, by range
// requests. Its bytes are not verified; the digest of the whole is the
// layer's.
func (l *Layer) Blob() io.ReaderAt { return l.blob }

// Size returns the size of the layer's compressed blob.
func (l *Layer) Size() int64 { return l.blob.Size() }

// Open opens the regular file name of the layer, with the image's options
// overridden by opts (WithCacheSize, WithReadahead, WithCacheDir,
// WithMaxRequest; the others are ignored). Closing the File leaves the layer
// open; closing the Image closes the File.
func (l *Layer) Open(name string, opts ...Option) (*File, error) {
	o := l.im.o
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("a nil disk.Option")
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.cacheSize < 0 || o.readahead < 0 || o.maxRequest < 1 {
		return nil, fmt.Errorf("opening %s: cache size, readahead and request size must not be negative", name)
	}
	o.readahead = min(o.readahead, o.cacheSize/2)
	o.sem = l.im.sem
	tf, ok := l.index.Lookup(cleanPath(name))
	if !ok {
		return nil, fmt.Errorf("layer %s has no file /%s: %w", l.desc.Digest, cleanPath(name), ErrFileNotFound)
	}
	if tf.Type != "reg" {
		return nil, fmt.Errorf("/%s is a %s, not a regular file: %w", tf.Name, tf.Type, ErrFileNotFound)
	}
	l.im.mu.Lock()
	defer l.im.mu.Unlock()
	if l.im.closed {
		return nil, fmt.Errorf("opening /%s: the image is closed", tf.Name)
	}
	ctx, cancel := context.WithCancel(l.im.ctx)
	f, err := newFile(ctx, cancel, sharedBlob{l.blob}, l.index, tf.Name, o)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("/%s in layer %s: %w", tf.Name, l.desc.Digest, err)
	}
	f.ref, f.manifest, f.layer, f.tocStats, f.signed = l.im.ref, l.im.manifest, l.desc, l.im.tocStats, l.im.signed
	l.im.files = append(l.im.files, f)
	return f, nil
}

// sharedBlob is a layer's blob as its files see it: closing a file does not
// close it.
type sharedBlob struct{ blob.Blob }

func (sharedBlob) Close() error { return nil }
