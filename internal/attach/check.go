package attach

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/lazydisk/lazydisk/image"
)

// Legacy is one signature of the legacy form: a layer of the image tagged
// SignatureTag of the signed digest.
type Legacy struct {
	// Layer is the layer's digest.
	Layer v1.Hash
	// Payload is the layer's content, the signed bytes.
	Payload []byte
	// Signature is the decoded SignatureAnnotation.
	Signature []byte
	// Err is why the layer could not be read or decoded; the other fields
	// may be empty then.
	Err error
}

// Legacy returns the legacy signatures of the manifest h: the layers of the
// image tagged SignatureTag(h) (none when there is no such tag).
func (s *Store) Legacy(ctx context.Context, h v1.Hash) ([]Legacy, error) {
	art, err := s.Tagged(ctx, SignatureTag(h))
	if errors.Is(err, image.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if art.Image == nil {
		return []Legacy{{Err: fmt.Errorf("%w: the tag %s names an index, not a signature image", ErrInvalidSignature, SignatureTag(h))}}, nil
	}
	m, err := art.Image.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: reading the signature image %s: %w", s.ref, SignatureTag(h), err)
	}
	var out []Legacy
	for _, d := range m.Layers {
		if d.MediaType != SimpleSigningMediaType {
			continue
		}
		l := Legacy{Layer: d.Digest}
		if l.Signature, l.Err = base64.StdEncoding.DecodeString(d.Annotations[SignatureAnnotation]); l.Err != nil || len(l.Signature) == 0 {
			l.Err = fmt.Errorf("%w: layer %s has no base64 %s annotation", ErrInvalidSignature, d.Digest, SignatureAnnotation)
		} else {
			l.Payload, l.Err = s.Blob(ctx, d, MaxPayloadSize)
		}
		out = append(out, l)
	}
	return out, nil
}

// Bundle is one signature of the bundle form: a referrer of the signed
// digest whose layer is a Sigstore bundle.
type Bundle struct {
	// Referrer is the digest of the referrer manifest.
	Referrer v1.Hash
	// JSON is the bundle.
	JSON []byte
	// Err is why the referrer or its bundle could not be read.
	Err error
}

// Bundles returns the Sigstore bundles attached to the manifest h as
// referrers. Referrers without a bundle layer (other artifacts) are skipped.
func (s *Store) Bundles(ctx context.Context, h v1.Hash) ([]Bundle, error) {
	refs, err := s.Referrers(ctx, h)
	if err != nil {
		return nil, err
	}
	var out []Bundle
	for _, d := range refs {
		if !d.MediaType.IsImage() {
			continue
		}
		b := Bundle{Referrer: d.Digest}
		rm, err := s.Manifest(ctx, d.Digest)
		if err != nil {
			b.Err = err
			out = append(out, b)
			continue
		}
		m, err := v1.ParseManifest(bytes.NewReader(rm.Raw))
		if err != nil {
			b.Err = fmt.Errorf("%w: referrer %s is not an image manifest: %w", ErrInvalidSignature, d.Digest, err)
			out = append(out, b)
			continue
		}
		if m.Subject == nil || m.Subject.Digest != h {
			continue // a stale entry of the referrers tag schema
		}
		for _, l := range m.Layers {
			if IsBundleMediaType(l.MediaType) {
				b.JSON, b.Err = s.Blob(ctx, l, MaxPayloadSize)
				out = append(out, b)
				break
			}
		}
	}
	return out, nil
}

// CheckLegacy checks that l is a signature by v over a cosign payload for
// the manifest h and returns the payload's optional annotations.
func CheckLegacy(l Legacy, v signature.Verifier, h v1.Hash) (map[string]string, error) {
	if l.Err != nil {
		return nil, l.Err
	}
	if err := v.VerifySignature(bytes.NewReader(l.Signature), bytes.NewReader(l.Payload)); err != nil {
		return nil, fmt.Errorf("%w: the signature in layer %s does not verify with the key", ErrInvalidSignature, l.Layer)
	}
	var p sigpayload.SimpleContainerImage
	if err := json.Unmarshal(l.Payload, &p); err != nil {
		return nil, fmt.Errorf("%w: the payload of layer %s is not JSON: %w", ErrInvalidSignature, l.Layer, err)
	}
	if p.Critical.Type != SimpleSigningType {
		return nil, fmt.Errorf("%w: the payload of layer %s has type %q, not %q", ErrInvalidSignature, l.Layer, p.Critical.Type, SimpleSigningType)
	}
	if got := p.Critical.Image.DockerManifestDigest; got != h.String() {
		return nil, fmt.Errorf("%w: layer %s signs the manifest %s, not %s", ErrInvalidSignature, l.Layer, got, h)
	}
	return stringMap(p.Optional), nil
}

// dsseSignedBy reports whether one of sigs is v's signature of the DSSE
// pre-authentication encoding of the payload:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in decimal.
func dsseSignedBy(payloadType string, payload []byte, sigs []*protodsse.Signature, v signature.Verifier) bool {
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d ", len(payloadType), payloadType, len(payload))
	pae = append(pae, payload...)
	for _, s := range sigs {
		if v.VerifySignature(bytes.NewReader(s.GetSig()), bytes.NewReader(pae)) == nil {
			return true
		}
	}
	return false
}

// CheckBundle checks that b is a Sigstore bundle signed by v over a cosign
// signature statement (predicate type CosignSignPredicateType) whose subject
// is the manifest h, and returns the subject's annotations. No transparency
// log entry or timestamp is required: the key is the trust root.
func CheckBundle(b Bundle, v signature.Verifier, h v1.Hash) (map[string]string, error) {
	if b.Err != nil {
		return nil, b.Err
	}
	var bb sgbundle.Bundle
	if err := bb.UnmarshalJSON(b.JSON); err != nil {
		return nil, fmt.Errorf("%w: referrer %s holds no valid bundle: %w", ErrInvalidSignature, b.Referrer, err)
	}
	// A bundle signed by another key is the usual failure: say so, rather
	// than what sigstore-go says ("accepted signatures do not match
	// threshold").
	if env := bb.GetDsseEnvelope(); env != nil && !dsseSignedBy(env.GetPayloadType(), env.GetPayload(), env.GetSignatures(), v) {
		return nil, fmt.Errorf("%w: the bundle in referrer %s is not signed by this key", ErrInvalidSignature, b.Referrer)
	}
	key := root.NewExpiringKey(v, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	sv, err := sgverify.NewVerifier(tm, sgverify.WithNoObserverTimestamps())
	if err != nil {
		return nil, err
	}
	want, err := hex.DecodeString(h.Hex)
	if err != nil || h.Algorithm != "sha256" {
		return nil, fmt.Errorf("%w: cannot check a signature over the digest %s", ErrInvalidSignature, h)
	}
	res, err := sv.Verify(&bb, sgverify.NewPolicy(sgverify.WithArtifactDigest(h.Algorithm, want), sgverify.WithKey()))
	if err != nil {
		return nil, fmt.Errorf("%w: the bundle in referrer %s: %s", ErrInvalidSignature, b.Referrer, oneLine(err))
	}
	st := res.Statement
	if st == nil {
		return nil, fmt.Errorf("%w: the bundle in referrer %s signs no in-toto statement", ErrInvalidSignature, b.Referrer)
	}
	if st.GetPredicateType() != CosignSignPredicateType {
		return nil, fmt.Errorf("%w: the bundle in referrer %s is an attestation of type %q, not a signature (%s)",
			ErrInvalidSignature, b.Referrer, st.GetPredicateType(), CosignSignPredicateType)
	}
	for _, sub := range st.GetSubject() {
		if sub.GetDigest()[h.Algorithm] == h.Hex {
			return stringMap(sub.GetAnnotations().AsMap()), nil
		}
	}
	return nil, fmt.Errorf("%w: the bundle in referrer %s does not name %s as its subject", ErrInvalidSignature, b.Referrer, h)
}

// stringMap keeps string values as they are and writes others as JSON.
func stringMap(m map[string]any) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
			continue
		}
		b, _ := json.Marshal(v)
		out[k] = string(b)
	}
	return out
}

func oneLine(err error) string {
	return string(bytes.Join(bytes.Fields([]byte(err.Error())), []byte(" ")))
}
