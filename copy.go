package lazydisk

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
)

// CopyResult says what Copy did. Its JSON form is what
// `lazydisk copy --format json` prints.
type CopyResult struct {
	// Source and Destination are the references read and written.
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// Digest and MediaType are those of the manifest or index copied,
	// the same at both ends.
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	// CopiedSignatures counts the signatures copied with it; nil when none
	// was.
	CopiedSignatures *sign.Copied `json:"copiedSignatures,omitempty"`
}

// Copy copies the image or index src names to dst as it is, so that its
// digest and the digests of the images an index lists stay the same, then
// the signatures attached to them (Sigstore bundle referrers and legacy
// .sig images; both ends registries or OCI layouts), as `lazydisk copy SRC
// DST` does. The image goes first, blobs before the manifest or index.json,
// so a failed copy leaves no half-written image at dst; signatures follow,
// as signatures of a digest dst already has. Of the options, only
// WithImageOptions and WithCopySignatures apply.
func Copy(ctx context.Context, src, dst image.Reference, opts ...Option) (*CopyResult, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := dst.CheckWritable(); err != nil {
		return nil, err
	}
	art, err := image.Read(ctx, src, o.image...)
	if err != nil {
		return nil, err
	}
	res := &CopyResult{Source: src.String(), Destination: dst.String()}
	digests, err := manifestDigests(art)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", src, err)
	}
	res.Digest = digests[0]
	if art.Index != nil {
		res.MediaType, err = art.Index.MediaType()
	} else {
		res.MediaType, err = art.Image.MediaType()
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", src, err)
	}
	if err := image.Write(ctx, dst, art, o.image...); err != nil {
		return nil, fmt.Errorf("writing %s: %w", dst, err)
	}
	if o.copySignatures && signable(src) && signable(dst) {
		n, err := sign.Copy(ctx, src, dst, digests, sign.WithImageOptions(o.image...))
		if err != nil {
			return nil, fmt.Errorf("copying the signatures of %s to %s: %w", src, dst, err)
		}
		if n.Bundles+n.Legacy > 0 {
			res.CopiedSignatures = &n
		}
	}
	return res, nil
}

// manifestDigests returns the digest of the image or index in a, then those
// of the manifests an index lists.
func manifestDigests(a image.Artifact) ([]v1.Hash, error) {
	if a.Index == nil {
		h, err := a.Image.Digest()
		return []v1.Hash{h}, err
	}
	h, err := a.Index.Digest()
	if err != nil {
		return nil, err
	}
	im, err := a.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := []v1.Hash{h}
	for _, d := range im.Manifests {
		out = append(out, d.Digest)
	}
	return out, nil
}
