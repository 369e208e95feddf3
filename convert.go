package lazydisk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/guest"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/trust"
	"github.com/lazydisk/lazydisk/verify"
)

// ConvertResult says what Convert did. Its JSON form is what
// `lazydisk convert --format json` prints.
type ConvertResult struct {
	// Destination is the reference written.
	Destination string `json:"destination"`
	// Result is the conversion: the digest written, and per image and
	// layer what was converted or kept.
	convert.Result
	// CopiedSignatures counts the source's signatures copied to the
	// destination; nil when none was.
	CopiedSignatures *sign.Copied `json:"copiedSignatures,omitempty"`
	// Signed is what WithSigner signed; nil without it, and when a skipped
	// destination was already signed with its key.
	Signed *sign.Result `json:"signed,omitempty"`
	// Disk is what WithDiskFormat did to the disk, with the guest disk's
	// sha256 read from the source and read back from the destination; nil
	// without it.
	Disk *DiskResult `json:"disk,omitempty"`
	// Skipped is true when WithSkipIfConverted found the destination
	// already converted from the same source digest: nothing was written,
	// Digest is the destination's and Images is empty.
	Skipped bool `json:"skipped,omitempty"`
	// SourceDigest is the digest of what the source resolved to, recorded
	// at the destination with WithSkipIfConverted; empty without it.
	SourceDigest string `json:"sourceDigest,omitempty"`
}

// DiskResult is a disk re-encoded by WithDiskFormat.
type DiskResult struct {
	image.DiskConversion
	// GuestSHA256Before is the guest disk's sha256 read from the source
	// (DiskConversion.GuestSHA256), GuestSHA256After read back from the
	// destination through the lazy reader. Convert fails unless they match.
	GuestSHA256Before string `json:"guestSHA256Before"`
	GuestSHA256After  string `json:"guestSHA256After"`
}

// AnnotationSourceDigest is the annotation, on the top manifest or index
// Convert writes with WithSkipIfConverted, whose value is the digest
// ("sha256:<hex>") of the image or index the source reference resolved to
// when it was converted.
const AnnotationSourceDigest = "io.github.lazydisk.source.digest"

// Convert converts the image or index src names into seekable layers and
// writes the result to dst, as `lazydisk convert SRC DST` does: it reads src
// (for an index, every image, or the one WithPlatform picks), converts every
// filesystem layer (convert.Image, convert.Index), writes the result to dst
// (blobs first, the manifest or index last), copies the signatures of the
// source's manifests that the conversion kept byte for byte
// (WithCopySignatures), and signs the result with WithSigner.
//
// dst must be a registry or an OCI layout; it is checked before anything is
// read. Errors name the step that failed ("writing DST", "copying the
// signatures of SRC to DST", "signing DST") and wrap the cause, so that
// errors.Is finds image's, convert's and sign's sentinels.
func Convert(ctx context.Context, src, dst image.Reference, opts ...Option) (*ConvertResult, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := o.check(src, dst); err != nil {
		return nil, err
	}
	art, err := image.Read(ctx, src, o.readOptions()...)
	if err != nil {
		return nil, err
	}
	var srcDigest v1.Hash
	if o.skipConverted {
		if srcDigest, err = artifactDigest(art); err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		res, err := o.skipIfConverted(ctx, dst, srcDigest)
		if err != nil || res != nil {
			return res, err
		}
	}
	conv, err := o.convertArtifact(ctx, src, art)
	if err != nil {
		return nil, err
	}
	defer conv.Close()
	res, err := o.write(ctx, dst, art, conv, srcDigest)
	if err != nil {
		return nil, err
	}
	if err := o.signatures(ctx, src, dst, art, res); err != nil {
		return nil, err
	}
	return res, nil
}

// check refuses, before anything is read, a destination that cannot be
// written and a disk format for a source that is not a disk file.
func (o options) check(src, dst image.Reference) error {
	if err := dst.CheckWritable(); err != nil {
		return err
	}
	if o.diskFormat != image.DiskKeep && src.Transport != image.Disk {
		return fmt.Errorf("%w: re-encoding the disk (--disk-format %s) needs a disk: source, not %s", ErrDiskFormat, o.diskFormat, src)
	}
	return nil
}

// readOptions are the options the source is read with.
func (o options) readOptions() []image.Option {
	readOpts := o.image[:len(o.image):len(o.image)]
	if o.platform != nil {
		readOpts = append(readOpts, image.WithPlatform(*o.platform))
	}
	if o.diskFormat != image.DiskKeep {
		readOpts = append(readOpts, image.WithDiskFormat(o.diskFormat))
	}
	return readOpts
}

// write writes the converted image or index to dst (recording srcDigest
// with WithSkipIfConverted) and, for a re-encoded disk, reads the guest
// disk back from dst to check it.
func (o options) write(ctx context.Context, dst image.Reference, art image.Artifact, conv *convert.Converted, srcDigest v1.Hash) (*ConvertResult, error) {
	if o.skipConverted {
		if err := recordSource(conv, srcDigest); err != nil {
			return nil, err
		}
	}
	if o.onWrite != nil {
		o.onWrite()
	}
	if err := image.Write(ctx, dst, image.Artifact{Image: conv.Image, Index: conv.Index}, o.image...); err != nil {
		return nil, fmt.Errorf("writing %s: %w", dst, err)
	}
	res := &ConvertResult{Destination: dst.String(), Result: conv.Result}
	if o.skipConverted {
		res.SourceDigest = srcDigest.String()
	}
	if dc, ok := image.DiskConversionOf(art.Image); ok {
		var err error
		if res.Disk, err = o.checkGuest(ctx, dst, res, dc); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// checkGuest reads the guest disk of the image written at dst back through
// the lazy reader, as a consumer would, and checks its sha256 against the
// source's.
func (o options) checkGuest(ctx context.Context, dst image.Reference, res *ConvertResult, dc image.DiskConversion) (*DiskResult, error) {
	at := dst
	if dst.Transport == image.Docker {
		at.Name = dst.Name.Context().Digest(res.Digest.String())
	}
	f, err := disk.Open(ctx, at, disk.WithImageOptions(o.image...), disk.WithFile(dc.File))
	if err != nil {
		return nil, fmt.Errorf("reading the disk back from %s: %w", dst, err)
	}
	defer f.Close()
	v, err := guest.Open(f)
	if err != nil {
		return nil, fmt.Errorf("reading the guest disk back from %s: %w", dst, err)
	}
	h := sha256.New()
	if _, err := v.WriteRange(h, 0, v.Size()); err != nil {
		return nil, fmt.Errorf("reading the guest disk back from %s: %w", dst, err)
	}
	r := &DiskResult{DiskConversion: dc, GuestSHA256Before: dc.GuestSHA256, GuestSHA256After: hex.EncodeToString(h.Sum(nil))}
	if r.GuestSHA256Before == "" || r.GuestSHA256Before != r.GuestSHA256After || v.Size() != dc.VirtualSize {
		return r, fmt.Errorf("%w: %s in %s: sha256 %s (%d bytes), the source's guest disk %s (%d bytes)",
			ErrGuestMismatch, dc.File, dst, r.GuestSHA256After, v.Size(), r.GuestSHA256Before, dc.VirtualSize)
	}
	return r, nil
}

// artifactDigest is the digest of the index or image a reference resolved to.
func artifactDigest(art image.Artifact) (v1.Hash, error) {
	if art.Index != nil {
		return art.Index.Digest()
	}
	return art.Image.Digest()
}

// skipIfConverted returns the result of a skipped conversion when dst
// exists and records srcDigest, signing it first if the signer does not
// verify it; nil when dst must be converted.
func (o options) skipIfConverted(ctx context.Context, dst image.Reference, srcDigest v1.Hash) (*ConvertResult, error) {
	have, err := image.Read(ctx, dst, o.image...)
	if errors.Is(err, image.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s to see whether it is converted: %w", dst, err)
	}
	var anns map[string]string
	var dgst v1.Hash
	var mt types.MediaType
	if have.Index != nil {
		m, err := have.Index.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dst, err)
		}
		anns, mt = m.Annotations, m.MediaType
		dgst, err = have.Index.Digest()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dst, err)
		}
	} else {
		m, err := have.Image.Manifest()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dst, err)
		}
		anns, mt = m.Annotations, m.MediaType
		dgst, err = have.Image.Digest()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dst, err)
		}
	}
	if anns[AnnotationSourceDigest] != srcDigest.String() {
		return nil, nil
	}
	res := &ConvertResult{Destination: dst.String(), Skipped: true, SourceDigest: srcDigest.String()}
	res.Digest, res.MediaType = dgst, mt
	if o.signer == nil {
		return res, nil
	}
	at := dst
	if dst.Transport == image.Docker {
		at.Name = dst.Name.Context().Digest(dgst.String())
	}
	switch _, err := verify.Signature(ctx, at, o.signer, verify.WithImageOptions(o.image...)); {
	case err == nil:
		return res, nil
	case errors.Is(err, trust.ErrNoSignature), errors.Is(err, trust.ErrBadSignature):
		// Converted by a run that did not sign it (or with another key): sign it now.
	default:
		return nil, fmt.Errorf("checking the signature of %s: %w", dst, err)
	}
	signOpts := append([]sign.Option{sign.WithImageOptions(o.image...)}, o.sign...)
	if res.Signed, err = sign.Manifest(ctx, at, o.signer, signOpts...); err != nil {
		return nil, fmt.Errorf("signing %s: %w", dst, err)
	}
	return res, nil
}

// recordSource adds AnnotationSourceDigest to the top manifest or index of
// conv, and updates its result's digests.
func recordSource(conv *convert.Converted, srcDigest v1.Hash) error {
	anns := map[string]string{AnnotationSourceDigest: srcDigest.String()}
	old := conv.Result.Digest
	var err error
	if conv.Index != nil {
		conv.Index = mutate.Annotations(conv.Index, anns).(v1.ImageIndex)
		conv.Result.Digest, err = conv.Index.Digest()
	} else {
		conv.Image = mutate.Annotations(conv.Image, anns).(v1.Image)
		conv.Result.Digest, err = conv.Image.Digest()
		for i := range conv.Result.Images {
			if conv.Result.Images[i].Digest == old {
				conv.Result.Images[i].Digest = conv.Result.Digest
			}
		}
	}
	if err != nil {
		return fmt.Errorf("recording the source digest: %w", err)
	}
	return nil
}

// signatures copies the signatures of src that stay valid at dst and signs
// the result, as the options ask, noting both in res.
func (o options) signatures(ctx context.Context, src, dst image.Reference, art image.Artifact, res *ConvertResult) error {
	if o.copySignatures && signable(src) && signable(dst) {
		if keep := keptDigests(art, res.Result); len(keep) > 0 {
			n, err := sign.Copy(ctx, src, dst, keep, sign.WithImageOptions(o.image...))
			if err != nil {
				return fmt.Errorf("copying the signatures of %s to %s: %w", src, dst, err)
			}
			if n.Bundles+n.Legacy > 0 {
				res.CopiedSignatures = &n
			}
		}
	}
	if o.signer == nil {
		return nil
	}
	at := dst
	if dst.Transport == image.Docker {
		at.Name = dst.Name.Context().Digest(res.Digest.String())
	}
	signOpts := append([]sign.Option{sign.WithImageOptions(o.image...)}, o.sign...)
	signed, err := sign.Manifest(ctx, at, o.signer, signOpts...)
	if err != nil {
		return fmt.Errorf("signing %s: %w", dst, err)
	}
	res.Signed = signed
	return nil
}

// convertArtifact converts what src held: an index whole, or the image of
// it for the chosen platform, or an image (checked against the platform,
// unless it was built from a disk: file for that platform).
func (o options) convertArtifact(ctx context.Context, src image.Reference, art image.Artifact) (*convert.Converted, error) {
	switch {
	case art.Index != nil && o.platform != nil:
		img, err := image.SelectPlatform(art.Index, *o.platform)
		if err != nil {
			return nil, err
		}
		return convert.Image(ctx, img, o.convert...)
	case art.Index != nil:
		return convert.Index(ctx, art.Index, o.convert...)
	case o.platform != nil && src.Transport != image.Disk:
		if err := image.CheckPlatform(art.Image, *o.platform); err != nil {
			return nil, err
		}
	}
	return convert.Image(ctx, art.Image, o.convert...)
}

// signable reports whether signatures can be attached in r's store.
func signable(r image.Reference) bool {
	return r.Transport == image.Docker || r.Transport == image.OCI
}

// keptDigests returns the digests of the source's manifests that the
// conversion kept byte for byte: their signatures stay valid at DST.
func keptDigests(src image.Artifact, res convert.Result) []v1.Hash {
	in := map[v1.Hash]bool{}
	if src.Image != nil {
		if h, err := src.Image.Digest(); err == nil {
			in[h] = true
		}
	}
	if src.Index != nil {
		if h, err := src.Index.Digest(); err == nil {
			in[h] = true
		}
		if im, err := src.Index.IndexManifest(); err == nil {
			for _, d := range im.Manifests {
				in[d.Digest] = true
			}
		}
	}
	var keep []v1.Hash
	seen := map[v1.Hash]bool{}
	for _, h := range append([]v1.Hash{res.Digest}, imageDigests(res)...) {
		if in[h] && !seen[h] {
			seen[h] = true
			keep = append(keep, h)
		}
	}
	return keep
}

func imageDigests(res convert.Result) []v1.Hash {
	out := make([]v1.Hash, len(res.Images))
	for i, img := range res.Images {
		out[i] = img.Digest
	}
	return out
}
