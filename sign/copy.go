package sign

import (
	"context"
	"encoding/base64"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/attach"
)

// Copied counts the signatures Copy copied.
type Copied struct {
	Bundles int `json:"bundles"`
	Legacy  int `json:"legacy"`
}

// Copy copies the signatures attached to the manifests digests from the
// store src points into (a registry repository or an OCI layout) to the one
// dst points into: every bundle referrer, byte for byte, and the layers of
// each legacy signature image, added to the image dst already has under that
// tag. Signatures stay valid only for the same digests, so copy an image
// unchanged (as lazydisk convert does for an image that needs no conversion)
// before its signatures. Nothing is checked: signatures are copied whether
// or not they verify, as a registry copy would. Of the options, only
// WithImageOptions applies.
func Copy(ctx context.Context, src, dst image.Reference, digests []v1.Hash, opts ...Option) (Copied, error) {
	var n Copied
	o, err := makeOptions(opts)
	if err != nil {
		return n, err
	}
	from, err := attach.Open(ctx, src, o.image...)
	if err != nil {
		return n, err
	}
	to, err := attach.Open(ctx, dst, o.image...)
	if err != nil {
		return n, err
	}
	for _, h := range digests {
		bundles, err := from.Bundles(ctx, h)
		if err != nil {
			return n, err
		}
		for _, b := range bundles {
			img, err := from.Image(ctx, b.Referrer)
			if err != nil {
				return n, err
			}
			if err := to.WriteReferrer(ctx, img); err != nil {
				return n, fmt.Errorf("copying the signature referrer %s of %s: %w", b.Referrer, h, err)
			}
			n.Bundles++
		}
		k, err := copyLegacy(ctx, from, to, h)
		if err != nil {
			return n, fmt.Errorf("copying the legacy signatures of %s: %w", h, err)
		}
		n.Legacy += k
	}
	return n, nil
}

func copyLegacy(ctx context.Context, from, to *attach.Store, h v1.Hash) (int, error) {
	tag := attach.SignatureTag(h)
	srcSigs, err := from.Legacy(ctx, h)
	if err != nil || len(srcSigs) == 0 {
		return 0, err
	}
	src, err := from.Tagged(ctx, tag)
	if err != nil {
		return 0, err
	}
	dstSigs, err := to.Legacy(ctx, h)
	if err != nil {
		return 0, err
	}
	if len(dstSigs) == 0 {
		return len(srcSigs), to.WriteTagged(ctx, tag, src)
	}
	dst, err := to.Tagged(ctx, tag)
	if err != nil {
		return 0, err
	}
	if dst.Image == nil || src.Image == nil {
		return 0, fmt.Errorf("the tag %s names an index, not a signature image", tag)
	}
	have := map[string]bool{}
	for _, l := range dstSigs {
		have[l.Layer.String()+" "+base64.StdEncoding.EncodeToString(l.Signature)] = true
	}
	m, err := src.Image.Manifest()
	if err != nil {
		return 0, err
	}
	img, added := dst.Image, 0
	for _, d := range m.Layers {
		key := d.Digest.String() + " " + d.Annotations[attach.SignatureAnnotation]
		if d.MediaType != attach.SimpleSigningMediaType || have[key] {
			continue
		}
		have[key] = true
		layer, err := src.Image.LayerByDigest(d.Digest)
		if err != nil {
			return 0, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: d.MediaType, Annotations: d.Annotations}); err != nil {
			return 0, err
		}
		added++
	}
	if added == 0 {
		return 0, nil
	}
	return added, to.WriteTagged(ctx, tag, image.Artifact{Image: img})
}
