package image

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// ociLayoutFile is the content of the oci-layout file of an image layout.
const ociLayoutFile = `{"imageLayoutVersion":"1.0.0"}`

// DigestPending is implemented by layers whose Digest, DiffID and Size need a
// full read of their content until that content has been streamed once, such
// as the layer of a disk: image. Write streams such a layer before asking for
// its digest, so the content is read once instead of twice.
type DigestPending interface {
	DigestPending() bool
}

func readLayout(r Reference) (Artifact, error) {
	if _, err := os.Stat(filepath.Join(r.Path, "index.json")); err != nil {
		if _, derr := os.Stat(r.Path); errors.Is(derr, fs.ErrNotExist) {
			return Artifact{}, fmt.Errorf("%s: directory %s does not exist: %w", r, r.Path, ErrNotFound)
		}
		return Artifact{}, fmt.Errorf("%s: %s is not an OCI image layout (no readable index.json): %w", r, r.Path, err)
	}
	idx, err := layout.ImageIndexFromPath(r.Path)
	if err != nil {
		return Artifact{}, fmt.Errorf("reading %s: %w", r, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return Artifact{}, fmt.Errorf("reading index.json of %s: %w", r, err)
	}
	desc, err := pickEntry(r, im.Manifests)
	if err != nil {
		return Artifact{}, err
	}
	switch {
	case desc.MediaType.IsIndex():
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return Artifact{}, fmt.Errorf("reading %s: %w", r, err)
		}
		return Artifact{Index: child}, nil
	case desc.MediaType.IsImage():
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return Artifact{}, fmt.Errorf("reading %s: %w", r, err)
		}
		return Artifact{Image: img}, nil
	}
	return Artifact{}, fmt.Errorf("%s is a %s, not an image or an index: %w", r, desc.MediaType, ErrUnsupported)
}

// pickEntry finds the index.json entry r names: the one whose ref.name is
// r.Tag or, without a tag, the only entry that is not an attached artifact
// (see IsAttachedTag).
func pickEntry(r Reference, entries []v1.Descriptor) (v1.Descriptor, error) {
	if r.Tag == "" {
		entries = slices.DeleteFunc(slices.Clone(entries), func(d v1.Descriptor) bool {
			return IsAttachedTag(d.Annotations[AnnotationRefName])
		})
		switch len(entries) {
		case 1:
			return entries[0], nil
		case 0:
			return v1.Descriptor{}, fmt.Errorf("%s holds no image: %w", r, ErrNotFound)
		}
		return v1.Descriptor{}, fmt.Errorf("%s holds %d images; name one as oci:%s:TAG (tags: %s)", r, len(entries), r.Path, listOrNone(tagsOf(entries)))
	}
	for _, d := range entries {
		if d.Annotations[AnnotationRefName] == r.Tag {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s: no image tagged %q (tags: %s): %w", r, r.Tag, listOrNone(tagsOf(entries)), ErrNotFound)
}

func tagsOf(entries []v1.Descriptor) []string {
	var tags []string
	for _, d := range entries {
		if t, ok := d.Annotations[AnnotationRefName]; ok {
			tags = append(tags, t)
		} else {
			tags = append(tags, "untagged "+d.Digest.String())
		}
	}
	return tags
}

func writeLayout(ctx context.Context, r Reference, a Artifact, o options) error {
	dir := filepath.Clean(r.Path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return writeNewLayout(ctx, r, dir, a, o)
	case err != nil:
		return fmt.Errorf("writing %s: %w", r, err)
	case !fi.IsDir():
		return fmt.Errorf("writing %s: %s exists and is not a directory; choose another destination", r, dir)
	}

	raw, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if errors.Is(err, fs.ErrNotExist) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("writing %s: %w", r, err)
		}
		if len(entries) > 0 {
			return fmt.Errorf("writing %s: %s is not empty and not an OCI image layout (no oci-layout file); choose an empty or new directory", r, dir)
		}
		return writeEmptyDir(ctx, r, dir, a, o)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	var version struct {
		ImageLayoutVersion string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(raw, &version); err != nil || version.ImageLayoutVersion != "1.0.0" {
		return fmt.Errorf("writing %s: %s/oci-layout is not image layout version 1.0.0: %w", r, dir, ErrUnsupported)
	}
	raw, err = os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return fmt.Errorf("writing %s: reading the layout's index.json: %w", r, err)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(raw, &index); err != nil {
		return fmt.Errorf("writing %s: %s/index.json is not valid JSON: %w", r, dir, err)
	}
	if err := fillLayout(ctx, dir, &index, r.Tag, a, o); err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	return nil
}

// writeNewLayout builds the layout in a temporary directory beside dir and
// renames it into place, so dir appears complete or not at all.
func writeNewLayout(ctx context.Context, r Reference, dir string, a Artifact, o options) (rerr error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	defer func() {
		if rerr != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	if err := fillLayout(ctx, tmp, newIndex(), r.Tag, a, o); err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("writing %s: moving the finished layout into place: %w", r, err)
	}
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	return nil
}

// writeEmptyDir fills an existing empty directory; on failure it removes what
// it wrote, leaving the directory empty again.
func writeEmptyDir(ctx context.Context, r Reference, dir string, a Artifact, o options) error {
	if err := fillLayout(ctx, dir, newIndex(), r.Tag, a, o); err != nil {
		for _, name := range []string{"index.json", "oci-layout", "blobs"} {
			os.RemoveAll(filepath.Join(dir, name))
		}
		return fmt.Errorf("writing %s: %w", r, err)
	}
	return nil
}

func newIndex() *v1.IndexManifest {
	return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
}

// fillLayout writes a's blobs into the layout at dir, then oci-layout if
// missing, then index with a's descriptor in place of the entry for tag (or
// appended), atomically as dir/index.json.
func fillLayout(ctx context.Context, dir string, index *v1.IndexManifest, tag string, a Artifact, o options) error {
	w := &layoutWriter{dir: dir, jobs: o.jobsOrDefault(), seen: map[v1.Hash]bool{}}
	var desc v1.Descriptor
	var err error
	if a.Index != nil {
		desc, err = w.index(ctx, a.Index)
	} else {
		desc, err = w.image(ctx, a.Image)
	}
	if err != nil {
		return err
	}
	if err := w.syncBlobDirs(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(dir, "oci-layout", []byte(ociLayoutFile)); err != nil {
			return err
		}
	}

	entry := v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}
	if tag != "" {
		entry.Annotations = map[string]string{AnnotationRefName: tag}
	}
	sameTag := func(d v1.Descriptor) bool { return d.Annotations[AnnotationRefName] == tag }
	if i := slices.IndexFunc(index.Manifests, sameTag); i >= 0 {
		index.Manifests[i] = entry
		index.Manifests = append(index.Manifests[:i+1], slices.DeleteFunc(index.Manifests[i+1:], sameTag)...)
	} else {
		index.Manifests = append(index.Manifests, entry)
	}
	raw, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, "index.json", raw)
}

// layoutWriter writes blobs into an image layout. Each blob goes to a
// temporary file that is checked against its digest, synced and renamed, so a
// blob path never holds partial content.
type layoutWriter struct {
	dir  string
	jobs int

	mu   sync.Mutex
	seen map[v1.Hash]bool // blobs written or claimed by this run
}

func (w *layoutWriter) image(ctx context.Context, img v1.Image) (v1.Descriptor, error) {
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("listing layers: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.jobs)
	for _, l := range layers {
		g.Go(func() error { return w.layer(gctx, l) })
	}
	if err := g.Wait(); err != nil {
		return v1.Descriptor{}, err
	}

	cfgName, err := img.ConfigName()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("computing config digest: %w", err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading config: %w", err)
	}
	if _, err := w.bytes(ctx, cfgName, cfg); err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing config: %w", err)
	}
	return w.manifest(ctx, img)
}

func (w *layoutWriter) index(ctx context.Context, ii v1.ImageIndex) (v1.Descriptor, error) {
	im, err := ii.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading index: %w", err)
	}
	for _, d := range im.Manifests {
		var got v1.Descriptor
		switch {
		case d.MediaType.IsIndex():
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("reading child index %s: %w", d.Digest, err)
			}
			got, err = w.index(ctx, child)
			if err != nil {
				return v1.Descriptor{}, err
			}
		case d.MediaType.IsImage():
			child, err := ii.Image(d.Digest)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("reading child image %s: %w", d.Digest, err)
			}
			got, err = w.image(ctx, child)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("writing child image %s: %w", d.Digest, err)
			}
		default:
			return v1.Descriptor{}, fmt.Errorf("index entry %s is a %s, not an image or an index: %w", d.Digest, d.MediaType, ErrUnsupported)
		}
		if got.Digest != d.Digest {
			return v1.Descriptor{}, fmt.Errorf("index entry %s: child manifest has digest %s", d.Digest, got.Digest)
		}
	}
	return w.manifest(ctx, ii)
}

// manifest writes the manifest of an image or index and returns its descriptor.
func (w *layoutWriter) manifest(ctx context.Context, m interface {
	MediaType() (types.MediaType, error)
	RawManifest() ([]byte, error)
}) (v1.Descriptor, error) {
	mt, err := m.MediaType()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading media type: %w", err)
	}
	raw, err := m.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading manifest: %w", err)
	}
	h, err := w.bytes(ctx, v1.Hash{}, raw)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing manifest: %w", err)
	}
	return v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: h}, nil
}

// layer writes one layer. A layer whose digest is known up front is skipped
// when this run or an earlier one already stored it; any other layer is
// streamed first and its digest checked afterwards.
func (w *layoutWriter) layer(ctx context.Context, l v1.Layer) error {
	mt, err := l.MediaType()
	if err != nil {
		return fmt.Errorf("reading layer media type: %w", err)
	}
	if !mt.IsDistributable() {
		return nil // foreign layers are fetched from their URLs, not stored
	}
	h, size, known, err := knownDigest(l)
	if err != nil {
		return err
	}
	if known && (w.claim(h) || w.has(h, size)) {
		return nil
	}
	label := "layer " + h.String()
	if !known {
		label = "layer (digest not yet computed)"
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("opening %s: %w", label, err)
	}
	got, err := w.stream(ctx, rc, h, size)
	cerr := rc.Close() // a streamed layer finalizes its digest on Close
	if err != nil {
		return fmt.Errorf("writing %s: %w", label, err)
	}
	if cerr != nil {
		return fmt.Errorf("reading %s: %w", label, cerr)
	}
	if !known {
		h, err := l.Digest()
		if err != nil {
			return fmt.Errorf("computing digest of layer %s: %w", got, err)
		}
		if h != got {
			return fmt.Errorf("layer content has digest %s but the layer says %s", got, h)
		}
	}
	return nil
}

// knownDigest returns a layer's digest and size when they are available
// without reading the layer.
func knownDigest(l v1.Layer) (v1.Hash, int64, bool, error) {
	if p, ok := l.(DigestPending); ok && p.DigestPending() {
		return v1.Hash{}, -1, false, nil
	}
	h, err := l.Digest()
	if errors.Is(err, stream.ErrNotComputed) {
		return v1.Hash{}, -1, false, nil
	}
	if err != nil {
		return v1.Hash{}, 0, false, fmt.Errorf("reading layer digest: %w", err)
	}
	size, err := l.Size()
	if err != nil {
		return v1.Hash{}, 0, false, fmt.Errorf("reading size of layer %s: %w", h, err)
	}
	return h, size, true, nil
}

// claim records that this run writes h and reports whether it already did.
func (w *layoutWriter) claim(h v1.Hash) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen[h] {
		return true
	}
	w.seen[h] = true
	return false
}

// has reports whether the layout already holds blob h with the given size.
func (w *layoutWriter) has(h v1.Hash, size int64) bool {
	fi, err := os.Stat(w.blobPath(h))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

func (w *layoutWriter) blobPath(h v1.Hash) string {
	return filepath.Join(w.dir, "blobs", h.Algorithm, h.Hex)
}

// bytes writes a small blob; want may be zero to name it by its sha256.
func (w *layoutWriter) bytes(ctx context.Context, want v1.Hash, data []byte) (v1.Hash, error) {
	if want != (v1.Hash{}) && (w.claim(want) || w.has(want, int64(len(data)))) {
		return want, nil
	}
	return w.stream(ctx, bytes.NewReader(data), want, int64(len(data)))
}

// stream copies r into the blob store. When want is set, the content must
// hash to it and, when size >= 0, have that size. It returns the digest.
func (w *layoutWriter) stream(ctx context.Context, r io.Reader, want v1.Hash, size int64) (v1.Hash, error) {
	alg := want.Algorithm
	if alg == "" {
		alg = "sha256"
	}
	hasher, err := v1.Hasher(alg)
	if err != nil {
		return v1.Hash{}, err
	}
	dir := filepath.Join(w.dir, "blobs", alg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return v1.Hash{}, err
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return v1.Hash{}, err
	}
	renamed := false
	defer func() {
		f.Close()
		if !renamed {
			os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(io.MultiWriter(f, hasher), ctxReader{ctx, r})
	if err != nil {
		return v1.Hash{}, err
	}
	got := v1.Hash{Algorithm: alg, Hex: hex.EncodeToString(hasher.Sum(nil))}
	if want != (v1.Hash{}) && got != want {
		return v1.Hash{}, fmt.Errorf("content has digest %s, want %s", got, want)
	}
	if size >= 0 && n != size {
		return v1.Hash{}, fmt.Errorf("content of %s is %d bytes, want %d", got, n, size)
	}
	if err := f.Chmod(0o644); err != nil {
		return v1.Hash{}, err
	}
	if err := f.Sync(); err != nil {
		return v1.Hash{}, err
	}
	if err := f.Close(); err != nil {
		return v1.Hash{}, err
	}
	if err := os.Rename(f.Name(), w.blobPath(got)); err != nil {
		return v1.Hash{}, err
	}
	renamed = true
	w.mu.Lock()
	w.seen[got] = true
	w.mu.Unlock()
	return got, nil
}

// syncBlobDirs makes the renames of the written blobs durable before
// index.json refers to them.
func (w *layoutWriter) syncBlobDirs() error {
	algs, err := os.ReadDir(filepath.Join(w.dir, "blobs"))
	if err != nil {
		return err
	}
	for _, a := range algs {
		if err := syncDir(filepath.Join(w.dir, "blobs", a.Name())); err != nil {
			return err
		}
	}
	return syncDir(filepath.Join(w.dir, "blobs"))
}

// writeFileAtomic replaces dir/name with data: temporary file, fsync,
// rename, fsync of dir.
func writeFileAtomic(dir, name string, data []byte) (rerr error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops a copy once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
