package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/trust"
)

// diskDir is where a KubeVirt containerDisk keeps its disk.
const diskDir = "disk"

// Open opens a file of the image r names (a registry reference such as
// "registry.example/vm/fedora:41" or "docker://...", or "oci:DIR[:TAG]", as
// image.Parse reads them): by default the single regular file under /disk/. It reads the manifest and the
// TOC of the layers from the top down to the one holding the file, and checks
// that layer's TOC against its TOC digest annotation. No chunk is fetched
// until it is read.
//
// ctx is bound to the File: once it is done, reads fail with its error. It
// must outlive the File.
func Open(ctx context.Context, r image.Reference, opts ...Option) (f *File, err error) {
	// Close cancels what the File's requests run under.
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if r.Transport != image.Docker && r.Transport != image.OCI {
		return nil, fmt.Errorf("%s: disks are read lazily from registries and oci: layouts only: %w", r, image.ErrUnsupported)
	}
	var signed v1.Hash
	if o.signature != nil {
		if signed, err = o.signature.CheckSignature(ctx, r, o.image...); err != nil {
			return nil, err
		}
		if r.Transport == image.Docker {
			r.Name = r.Name.Context().Digest(signed.String())
		}
	}
	img, dgst, err := readImage(ctx, r, o, signed)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of %s: %w", r, err)
	}
	if err := image.CheckManifest(m); err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	want := cleanPath(o.file)
	var tocStats blob.Stats
	// Layers are searched from the top: the first that has the file, or
	// removes it, decides.
	for i := len(m.Layers) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := m.Layers[i]
		b, err := blob.Open(ctx, r, d, o.image, blob.WithRetry(blob.RetryPolicy(o.retry)))
		if err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i, r, o.contentError(err))
		}
		ix, err := toc.Read(b, b.Size(), d.Annotations, toc.WithTail(o.tail))
		st := b.Stats()
		tocStats = addBlobStats(tocStats, st)
		if err != nil {
			b.Close()
			err = o.contentError(err)
			if errors.Is(err, toc.ErrNotSeekable) {
				return nil, fmt.Errorf("layer %d (%s) of %s, above or holding the disk: %w", i, d.Digest, r, err)
			}
			return nil, fmt.Errorf("layer %d (%s) of %s: %w", i, d.Digest, r, err)
		}
		name, found, err := findFile(ix, want)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("layer %d of %s: %w", i, r, err)
		}
		if !found {
			b.Close()
			continue
		}
		if ix.Annotated == "" && o.signature != nil {
			b.Close()
			return nil, fmt.Errorf("%w: layer %d (%s) of %s holds %s, but %w, so the signature does not cover its TOC: annotate it with `lazydisk annotate` and sign the result",
				trust.ErrContentMismatch, i, d.Digest, r, name, ErrNoTOCDigest)
		}
		if ix.Annotated == "" && !o.skipTOCDigest {
			b.Close()
			return nil, fmt.Errorf("layer %d (%s) of %s holds %s, but %w: run `lazydisk annotate`, or accept an unanchored TOC with --insecure-skip-toc-digest",
				i, d.Digest, r, name, ErrNoTOCDigest)
		}
		f, err := newFile(ctx, cancel, b, ix, name, o)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("%s in layer %d of %s: %w", name, i, r, err)
		}
		f.ref, f.manifest, f.layer, f.tocStats, f.signed = r.String(), dgst, d, tocStats, signed
		return f, nil
	}
	if want == "" {
		return nil, fmt.Errorf("%s has no regular file under /%s/ (name one with --file): %w", r, diskDir, ErrFileNotFound)
	}
	return nil, fmt.Errorf("%s has no file /%s: %w", r, want, ErrFileNotFound)
}

// readImage reads the image r names (the one for o's platform when r names
// an index) and returns it with the digest of its manifest, computed from the
// manifest's bytes. The bytes of an index and of the manifest picked from it
// are checked against the digests that name them, so that a signature over
// signed (the top digest, when it is not zero) covers the image read: a layout
// whose tag moved after the signature was checked, or whose blobs were
// changed, is refused.
func readImage(ctx context.Context, r image.Reference, o options, signed v1.Hash) (v1.Image, v1.Hash, error) {
	art, err := image.Read(ctx, r, o.image...)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	var top interface{ RawManifest() ([]byte, error) } = art.Image
	if art.Index != nil {
		top = art.Index
	}
	raw, err := top.RawManifest()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading the manifest of %s: %w", r, err)
	}
	topDigest := sha256Of(raw)
	if signed != (v1.Hash{}) && topDigest != signed {
		return nil, v1.Hash{}, fmt.Errorf("%w: %s is now %s, not the signed %s", trust.ErrContentMismatch, r, topDigest, signed)
	}
	if art.Index == nil {
		if o.platformSet {
			if err := image.CheckPlatform(art.Image, *o.platform); err != nil {
				return nil, v1.Hash{}, fmt.Errorf("%s: %w", r, err)
			}
		}
		return art.Image, topDigest, nil
	}
	img, err := image.SelectPlatform(art.Index, *o.platform)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%s: %w", r, err)
	}
	if raw, err = img.RawManifest(); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading the manifest of %s for %s: %w", r, o.platform, err)
	}
	dgst := sha256Of(raw)
	im, err := art.Index.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading the index %s: %w", r, err)
	}
	if err := image.CheckIndex(im); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%s: %w", r, err)
	}
	for _, d := range im.Manifests {
		if d.Digest == dgst {
			return img, dgst, nil
		}
	}
	err = fmt.Errorf("the manifest of %s for %s hashes to %s, which the index does not list", r, o.platform, dgst)
	if signed != (v1.Hash{}) {
		err = fmt.Errorf("%w: %w", trust.ErrContentMismatch, err)
	}
	return nil, v1.Hash{}, err
}

func sha256Of(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// contentError marks err, from reading a layer's footer and TOC, as content
// that does not match the signed manifest when it says so and a signature
// was checked.
func (o options) contentError(err error) error {
	if o.signature != nil && (errors.Is(err, toc.ErrTOCDigest) || errors.Is(err, toc.ErrInvalid) || errors.Is(err, blob.ErrSizeMismatch)) {
		return fmt.Errorf("%w: %w", trust.ErrContentMismatch, err)
	}
	return err
}

// findFile finds want in ix (or, when want is "", the single regular file
// under disk/) and reports whether the layer decides about it: found with a
// name, or removed by a whiteout (an error).
func findFile(ix *toc.Index, want string) (string, bool, error) {
	if want != "" {
		f, ok := ix.Lookup(want)
		if !ok {
			if whiteout(ix, want) {
				return "", false, fmt.Errorf("/%s is deleted by a whiteout: %w", want, ErrFileNotFound)
			}
			return "", false, nil
		}
		if f.Type != "reg" {
			return "", false, fmt.Errorf("/%s is a %s, not a regular file: %w", want, f.Type, ErrFileNotFound)
		}
		return f.Name, true, nil
	}
	var regs []string
	for _, f := range ix.Files {
		dir, base := path.Split(f.Name)
		if path.Clean(dir) != diskDir || strings.HasPrefix(base, ".wh.") {
			continue
		}
		if g, ok := ix.Lookup(f.Name); ok && g.Type == "reg" {
			regs = append(regs, f.Name)
		}
	}
	switch len(regs) {
	case 0:
		return "", false, nil
	case 1:
		return regs[0], true, nil
	}
	return "", false, fmt.Errorf("/%s/ holds %d files (%s); name one with --file", diskDir, len(regs), strings.Join(regs, ", "))
}

// whiteout reports whether ix removes name from the layers below: a
// ".wh.NAME" entry beside it, or an opaque marker in a directory above it.
func whiteout(ix *toc.Index, name string) bool {
	dir, base := path.Split(name)
	if _, ok := ix.Lookup(dir + ".wh." + base); ok {
		return true
	}
	for d := path.Clean(dir); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := ix.Lookup(d + "/.wh..wh..opq"); ok {
			return true
		}
	}
	return false
}

func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func addBlobStats(a, b blob.Stats) blob.Stats {
	return blob.Stats{Requests: a.Requests + b.Requests, Bytes: a.Bytes + b.Bytes, RangeIgnored: a.RangeIgnored + b.RangeIgnored, Retries: a.Retries + b.Retries}
}

// Layer returns the descriptor of the layer the file is read from.
func (f *File) Layer() v1.Descriptor { return f.layer }

// Manifest returns the digest of the image manifest the file was found by.
func (f *File) Manifest() v1.Hash { return f.manifest }

// Signed returns the digest of the manifest or index whose signature Open
// checked (WithSignature), and false when none was checked. For an index it
// is the index's digest; Manifest is then the digest of the image in it.
func (f *File) Signed() (v1.Hash, bool) { return f.signed, f.signed != (v1.Hash{}) }
