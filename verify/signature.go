package verify

import (
	"context"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/attach"
)

// SignatureReport says which signatures were found for a manifest digest and
// what was made of each.
type SignatureReport struct {
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	// Verified are the valid signatures by the key, Rejected the others.
	Verified []Found `json:"verified"`
	Rejected []Found `json:"rejected,omitempty"`
}

// Found is one signature attached to a manifest.
type Found struct {
	// Format is "bundle" or "legacy".
	Format SignatureFormat `json:"format"`
	// Where is the referrer manifest's digest (bundle) or the signature
	// tag and layer digest (legacy).
	Where string `json:"where"`
	// Annotations are the signed annotations of a verified signature.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Reason says why a signature was rejected.
	Reason string `json:"reason,omitempty"`
}

// Signature checks that the manifest or index ref names (in a registry or
// an OCI layout) carries a valid signature by v over its digest, and returns
// that digest. Tags are resolved once; the digest returned is of the bytes
// the signature was checked against, so a caller that reads the manifest by
// this digest (and its children and blobs by their digests, and chunks
// against their TOC) reads only what the key signed.
//
// It fails with an error matching ErrNoSignature when no signature of the
// accepted forms (WithSignatureFormat) is attached, and ErrBadSignature when
// signatures are attached but none is valid by v for this digest with the
// annotations WithAnnotations requires. Other errors mean the manifest or
// its signatures could not be read. WithDeep and WithPlatform do not apply.
//
// Load v with LoadPublicKey. WithImageOptions says how to reach the
// registry; no other network access is made.
func Signature(ctx context.Context, ref image.Reference, v signature.Verifier, opts ...Option) (v1.Hash, error) {
	o, err := newOptions(opts)
	if err != nil {
		return v1.Hash{}, err
	}
	st, err := attach.Open(ctx, ref, o.image...)
	if err != nil {
		return v1.Hash{}, err
	}
	m, err := st.Resolve(ctx)
	if err != nil {
		return v1.Hash{}, err
	}
	if _, err := checkSignatures(ctx, st, m, v, o); err != nil {
		return v1.Hash{}, err
	}
	return m.Digest, nil
}

// checkSignatures looks for every signature of the accepted forms attached
// to m and checks each with v.
func checkSignatures(ctx context.Context, st *attach.Store, m attach.Manifest, v signature.Verifier, o options) (SignatureReport, error) {
	rep := SignatureReport{Digest: m.Digest, MediaType: m.MediaType}
	if v == nil {
		return rep, fmt.Errorf("no public key to verify with")
	}
	if o.format != SignatureLegacy {
		bundles, err := st.Bundles(ctx, m.Digest)
		if err != nil {
			return rep, fmt.Errorf("looking for bundle signatures of %s: %w", m.Digest, err)
		}
		for _, b := range bundles {
			f := Found{Format: SignatureBundle, Where: "referrer " + b.Referrer.String()}
			ann, err := attach.CheckBundle(b, v, m.Digest)
			rep.add(f, ann, err, o.annotations)
		}
	}
	if o.format != SignatureBundle {
		legacy, err := st.Legacy(ctx, m.Digest)
		if err != nil {
			return rep, fmt.Errorf("looking for legacy signatures of %s: %w", m.Digest, err)
		}
		for _, l := range legacy {
			f := Found{Format: SignatureLegacy, Where: attach.SignatureTag(m.Digest) + " layer " + l.Layer.String()}
			ann, err := attach.CheckLegacy(l, v, m.Digest)
			rep.add(f, ann, err, o.annotations)
		}
	}
	switch {
	case len(rep.Verified) > 0:
		return rep, nil
	case len(rep.Rejected) == 0:
		return rep, fmt.Errorf("%w for %s in %s: %s", ErrNoSignature, m.Digest, st.Reference(), lookedFor(o.format, m.Digest))
	}
	n := "1 signature"
	if len(rep.Rejected) > 1 {
		n = fmt.Sprintf("%d signatures", len(rep.Rejected))
	}
	return rep, fmt.Errorf("%w for %s in %s: %s found, none valid for this key; first: %s",
		ErrBadSignature, m.Digest, st.Reference(), n, rep.Rejected[0].Reason)
}

func (r *SignatureReport) add(f Found, ann map[string]string, err error, want map[string]string) {
	if err == nil {
		err = missingAnnotation(ann, want)
	}
	if err != nil {
		f.Reason = oneLine(err)
		r.Rejected = append(r.Rejected, f)
		return
	}
	f.Annotations = ann
	r.Verified = append(r.Verified, f)
}

func missingAnnotation(got, want map[string]string) error {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return fmt.Errorf("the signature is valid but lacks the annotation %s=%s", k, v)
		}
	}
	return nil
}

func lookedFor(f SignatureFormat, h v1.Hash) string {
	switch f {
	case SignatureBundle:
		return "no Sigstore bundle referrer; sign it with `lazydisk sign` or `cosign sign`"
	case SignatureLegacy:
		return fmt.Sprintf("no signature tag %s; sign it with `lazydisk sign --signature-format legacy`", attach.SignatureTag(h))
	}
	return fmt.Sprintf("no Sigstore bundle referrer and no signature tag %s; sign it with `lazydisk sign` or `cosign sign`", attach.SignatureTag(h))
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
