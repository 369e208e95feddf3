package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	intotov1 "github.com/in-toto/attestation/go/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/attach"
	"github.com/lazydisk/lazydisk/internal/built"
)

// Result says what Manifest signed.
type Result struct {
	// Reference is the reference given, Digest the digest it resolved to.
	Reference string  `json:"reference"`
	Digest    v1.Hash `json:"digest"`
	// Signed lists each signed manifest, children of an index first.
	Signed []Signed `json:"signed"`
}

// Signed is one signed manifest.
type Signed struct {
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	// Platform is the platform of an index entry, when it has one.
	Platform *v1.Platform `json:"platform,omitempty"`
	// Bundle is the digest of the bundle referrer written or, when Existing
	// says so, found.
	Bundle *v1.Hash `json:"bundle,omitempty"`
	// LegacyTag is the tag of the legacy signature image.
	LegacyTag string `json:"legacyTag,omitempty"`
	// Existing lists the forms in which a valid signature by the same key
	// with the same annotations was already attached, so none was added.
	Existing []SignatureFormat `json:"existing,omitempty"`
}

// Manifest signs the manifest or index ref names, in a registry or an OCI
// layout, with signer (see LoadPrivateKey), and attaches the signatures
// beside it in the forms WithSignatureFormat chooses. Tags are resolved first: the
// signatures cover the digest, not the tag. For an index, every image and
// index it lists is signed too unless WithRecursive(false) is given.
// Signing again with the same key and annotations adds nothing.
//
// It makes no request other than to the registry of ref.
func Manifest(ctx context.Context, ref image.Reference, signer signature.SignerVerifier, opts ...Option) (*Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	identity := o.identity
	switch {
	case identity != "":
		if _, err := name.ParseReference(identity); err != nil {
			return nil, fmt.Errorf("identity %q is not an image reference such as registry.example.com/vm/fedora: %w", identity, err)
		}
	case ref.Transport == image.Docker:
		identity = ref.Name.Context().Name()
	}
	kp, err := newKeypair(signer)
	if err != nil {
		return nil, err
	}
	st, err := attach.Open(ctx, ref, o.image...)
	if err != nil {
		return nil, err
	}
	top, err := st.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	var targets []target
	if o.recursive && top.MediaType.IsIndex() {
		if targets, err = children(ctx, st, top); err != nil {
			return nil, err
		}
	}
	targets = append(targets, target{Manifest: top})

	res := &Result{Reference: ref.String(), Digest: top.Digest}
	for _, t := range targets {
		s := Signed{Digest: t.Digest, MediaType: t.MediaType, Platform: t.platform}
		if o.format.bundle() {
			h, existed, err := signBundle(ctx, st, t.Manifest, kp, o)
			if err != nil {
				return res, fmt.Errorf("attaching a bundle signature to %s: %w", t.Digest, err)
			}
			s.Bundle = &h
			if existed {
				s.Existing = append(s.Existing, SignatureBundle)
			}
		}
		if o.format.legacy() {
			existed, err := signLegacy(ctx, st, t.Manifest, signer, identity, o)
			if err != nil {
				return res, fmt.Errorf("attaching a legacy signature to %s: %w", t.Digest, err)
			}
			s.LegacyTag = attach.SignatureTag(t.Digest)
			if existed {
				s.Existing = append(s.Existing, SignatureLegacy)
			}
		}
		res.Signed = append(res.Signed, s)
	}
	return res, nil
}

type target struct {
	attach.Manifest
	platform *v1.Platform
}

// children returns the manifests an index lists, depth first, each checked
// against its digest.
func children(ctx context.Context, st *attach.Store, idx attach.Manifest) ([]target, error) {
	im, err := v1.ParseIndexManifest(bytes.NewReader(idx.Raw))
	if err != nil {
		return nil, fmt.Errorf("parsing index %s: %w", idx.Digest, err)
	}
	var out []target
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		m, err := st.Manifest(ctx, d.Digest)
		if err != nil {
			return nil, err
		}
		if m.MediaType.IsIndex() {
			sub, err := children(ctx, st, m)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
		out = append(out, target{Manifest: m, platform: d.Platform})
	}
	return out, nil
}

// signLegacy adds a layer with the cosign payload for m and its signature
// to the image tagged sha256-<hex>.sig, creating it if needed.
func signLegacy(ctx context.Context, st *attach.Store, m attach.Manifest, signer signature.SignerVerifier, identity string, o options) (existed bool, err error) {
	p := sigpayload.SimpleContainerImage{
		Critical: sigpayload.Critical{
			Identity: sigpayload.Identity{DockerReference: identity},
			Image:    sigpayload.Image{DockerManifestDigest: m.Digest.String()},
			Type:     attach.SimpleSigningType,
		},
	}
	if len(o.annotations) > 0 {
		p.Optional = make(map[string]any, len(o.annotations))
		for k, v := range o.annotations {
			p.Optional[k] = v
		}
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	existing, err := st.Legacy(ctx, m.Digest)
	if err != nil {
		return false, err
	}
	for _, l := range existing {
		if bytes.Equal(l.Payload, payload) {
			if _, err := attach.CheckLegacy(l, signer, m.Digest); err == nil {
				return true, nil
			}
		}
	}
	sig, err := signer.SignMessage(bytes.NewReader(payload), sigopts.WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("signing: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if len(existing) > 0 {
		art, err := st.Tagged(ctx, attach.SignatureTag(m.Digest))
		if err != nil {
			return false, err
		}
		if art.Image == nil {
			return false, fmt.Errorf("the tag %s names an index, not a signature image", attach.SignatureTag(m.Digest))
		}
		base = art.Image
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, attach.SimpleSigningMediaType),
		MediaType:   attach.SimpleSigningMediaType,
		Annotations: map[string]string{attach.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return false, err
	}
	return false, st.WriteTagged(ctx, attach.SignatureTag(m.Digest), image.Artifact{Image: img})
}

// signBundle attaches a Sigstore bundle over an in-toto statement naming m as
// a referrer of m.
func signBundle(ctx context.Context, st *attach.Store, m attach.Manifest, kp *keypair, o options) (v1.Hash, bool, error) {
	existing, err := st.Bundles(ctx, m.Digest)
	if err != nil {
		return v1.Hash{}, false, err
	}
	for _, b := range existing {
		if ann, err := attach.CheckBundle(b, kp.sv, m.Digest); err == nil && maps.Equal(ann, o.annotations) {
			return b.Referrer, true, nil
		}
	}
	subject := &intotov1.ResourceDescriptor{Digest: map[string]string{m.Digest.Algorithm: m.Digest.Hex}}
	if len(o.annotations) > 0 {
		a := make(map[string]any, len(o.annotations))
		for k, v := range o.annotations {
			a[k] = v
		}
		if subject.Annotations, err = structpb.NewStruct(a); err != nil {
			return v1.Hash{}, false, err
		}
	}
	statement, err := protojson.Marshal(&intotov1.Statement{
		Type:          intotov1.StatementTypeUri,
		Subject:       []*intotov1.ResourceDescriptor{subject},
		PredicateType: attach.CosignSignPredicateType,
		Predicate:     &structpb.Struct{},
	})
	if err != nil {
		return v1.Hash{}, false, err
	}
	// No transparency log, timestamp authority or certificate: offline.
	pb, err := sgsign.Bundle(&sgsign.DSSEData{Data: statement, PayloadType: attach.InTotoPayloadType}, kp, sgsign.BundleOptions{Context: ctx})
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("signing: %w", err)
	}
	bundleJSON, err := protojson.Marshal(pb)
	if err != nil {
		return v1.Hash{}, false, err
	}
	img, err := referrer(m, bundleJSON, o.now())
	if err != nil {
		return v1.Hash{}, false, err
	}
	h, err := img.Digest()
	if err != nil {
		return v1.Hash{}, false, err
	}
	return h, false, st.WriteReferrer(ctx, img)
}

// referrer builds the manifest cosign writes for a bundle: the empty
// config, the bundle as its one layer, m as its subject.
func referrer(m attach.Manifest, bundleJSON []byte, created time.Time) (v1.Image, error) {
	empty := []byte(attach.EmptyJSON)
	layer := static.NewLayer(bundleJSON, attach.BundleMediaType)
	ld, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	subject := m.Descriptor()
	man := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  string(attach.BundleMediaType),
		Config:        v1.Descriptor{MediaType: attach.EmptyMediaType, Digest: built.SHA256(empty), Size: int64(len(empty))},
		Layers:        []v1.Descriptor{{MediaType: attach.BundleMediaType, Digest: ld, Size: int64(len(bundleJSON))}},
		Subject:       &subject,
		Annotations: map[string]string{
			attach.AnnotationCreated:             created.UTC().Format(time.RFC3339),
			attach.AnnotationBundleContent:       "dsse-envelope",
			attach.AnnotationBundlePredicateType: attach.CosignSignPredicateType,
		},
	}
	raw, err := json.Marshal(&man)
	if err != nil {
		return nil, err
	}
	return (&built.Image{Manifest: raw, Config: empty, Layers: map[v1.Hash]v1.Layer{ld: layer}}).V1()
}

// keypair lets sigstore-go sign a bundle with a loaded cosign key (cosign's
// own adapter is internal to it).
type keypair struct {
	sv   signature.SignerVerifier
	pub  crypto.PublicKey
	alg  signature.AlgorithmDetails
	hint []byte
}

func newKeypair(sv signature.SignerVerifier) (*keypair, error) {
	if sv == nil {
		return nil, errors.New("no signer")
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, err
	}
	alg, err := algorithm(pub)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	sum := sha256.Sum256(der)
	return &keypair{sv: sv, pub: pub, alg: alg, hint: []byte(base64.StdEncoding.EncodeToString(sum[:]))}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}
func (k *keypair) GetHint() []byte                { return k.hint }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.pub }

func (k *keypair) GetKeyAlgorithm() string {
	switch k.alg.GetKeyType() {
	case signature.RSA:
		return "RSA"
	case signature.ED25519:
		return "ED25519"
	}
	return "ECDSA"
}

func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.pub)
	return string(b), err
}

func (k *keypair) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	hf := k.alg.GetHashType()
	h := hf.New()
	h.Write(data)
	digest := h.Sum(nil)
	sig, err := k.sv.SignMessage(bytes.NewReader(data), sigopts.WithContext(ctx), sigopts.WithDigest(digest), sigopts.WithCryptoSignerOpts(hf))
	return sig, digest, err
}
