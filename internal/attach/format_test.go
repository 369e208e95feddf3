package attach_test

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v3/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/lazydisk/lazydisk/internal/attach"
	"github.com/lazydisk/lazydisk/internal/built"
)

// TestFormatFacts checks the copied format constants against the packages
// that define them, so that a cosign upgrade that changes one is noticed.
func TestFormatFacts(t *testing.T) {
	t.Parallel()
	bundleMT, err := sgbundle.MediaTypeString("0.3")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, got, want string }{
		{"SimpleSigningMediaType", string(attach.SimpleSigningMediaType), ctypes.SimpleSigningMediaType},
		{"SignatureAnnotation", attach.SignatureAnnotation, static.SignatureAnnotationKey},
		{"SimpleSigningType", attach.SimpleSigningType, sigpayload.CosignSignatureType},
		{"BundleMediaType", string(attach.BundleMediaType), bundleMT},
		{"InTotoPayloadType", attach.InTotoPayloadType, ctypes.IntotoPayloadType},
		{"CosignSignPredicateType", attach.CosignSignPredicateType, ctypes.CosignSignPredicateType},
		{"EmptyJSON digest", built.SHA256([]byte(attach.EmptyJSON)).String(), "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %q, cosign has %q", tt.name, tt.got, tt.want)
		}
	}
	if !attach.IsBundleMediaType(types.MediaType(bundleMT)) || attach.IsBundleMediaType(attach.SimpleSigningMediaType) {
		t.Error("IsBundleMediaType")
	}
	h := v1.Hash{Algorithm: "sha256", Hex: "ab"}
	if attach.SignatureTag(h) != "sha256-ab.sig" || attach.ReferrersTag(h) != "sha256-ab" {
		t.Errorf("tags %s %s", attach.SignatureTag(h), attach.ReferrersTag(h))
	}
}
