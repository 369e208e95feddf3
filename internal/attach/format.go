package attach

import (
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Legacy form: an image tagged sha256-<hex>.sig in the repository of the
// signed manifest, one layer per signature (cosign < 3 and
// containers/image's sigstoreSigned policies read this form).
const (
	// SimpleSigningMediaType is the media type of a layer of a legacy
	// signature image. The layer's content is the payload that was signed:
	//
	//	{"critical":{"identity":{"docker-reference":"HOST/REPO"},
	//	             "image":{"docker-manifest-digest":"sha256:<hex>"},
	//	             "type":"cosign container image signature"},
	//	 "optional":{ANNOTATIONS}}
	SimpleSigningMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation is the layer annotation that holds the standard
	// base64 of the signature over the layer's content.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// SimpleSigningType is critical.type of a legacy payload.
	SimpleSigningType = "cosign container image signature"
	// MaxPayloadSize bounds the payload and bundle blobs read: cosign's are
	// a few KiB.
	MaxPayloadSize = 4 << 20
)

// Bundle form: an OCI 1.1 referrer of the signed manifest (cosign >= 3's
// default). Its manifest has artifactType BundleMediaType, the empty config,
// one layer of BundleMediaType, a subject pointing at the signed manifest and
// the annotations below. The layer is a Sigstore bundle v0.3 (JSON) holding a
// DSSE envelope of payload type InTotoPayloadType over an in-toto Statement
// v1 whose subject digest is the signed manifest's digest, whose subject
// annotations are the signed annotations and whose predicateType is
// CosignSignPredicateType with an empty predicate.
const (
	// BundleMediaType is the media type of a Sigstore bundle v0.3 as JSON.
	BundleMediaType types.MediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// BundleMediaTypePrefix is shared by every Sigstore bundle media type.
	BundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// CosignSignPredicateType marks an in-toto statement as a cosign image
	// signature, as opposed to an attestation made with the same key.
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	// AnnotationBundleContent is "dsse-envelope" on a bundle referrer.
	AnnotationBundleContent = "dev.sigstore.bundle.content"
	// AnnotationBundlePredicateType repeats the statement's predicate type on
	// the referrer manifest, so that it can be filtered without fetching it.
	AnnotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
	// AnnotationCreated is when the referrer was made (RFC 3339, UTC).
	AnnotationCreated = "org.opencontainers.image.created"
	// EmptyMediaType and EmptyJSON are the OCI empty descriptor's media type
	// and content ("{}", sha256:44136fa3...), the config of an artifact.
	EmptyMediaType types.MediaType = "application/vnd.oci.empty.v1+json"
	EmptyJSON                      = "{}"
)

// SignatureTag is the tag of the legacy signature image of the manifest h:
// "sha256-<hex>.sig".
func SignatureTag(h v1.Hash) string { return fallbackTag(h) + ".sig" }

// ReferrersTag is the tag of the referrers index of the manifest h in the
// referrers tag schema: "sha256-<hex>".
func ReferrersTag(h v1.Hash) string { return fallbackTag(h) }

func fallbackTag(h v1.Hash) string { return h.Algorithm + "-" + h.Hex }

// IsBundleMediaType reports whether mt is a Sigstore bundle media type.
func IsBundleMediaType(mt types.MediaType) bool {
	return strings.HasPrefix(string(mt), BundleMediaTypePrefix)
}
