package verify

import (
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
)

// ErrInvalidKey means a public key file is not a PEM public key.
var ErrInvalidKey = errors.New("invalid public key")

// LoadPublicKey reads a PKIX "PUBLIC KEY" PEM block, such as cosign.pub from
// `cosign generate-key-pair` or `lazydisk keygen`, into a verifier with the
// algorithm cosign uses for the key (ECDSA P-256 with SHA-256 for cosign's
// keys; Ed25519 keys as Ed25519ph, as cosign loads them).
func LoadPublicKey(pemBytes []byte) (signature.Verifier, error) {
	p, _ := pem.Decode(pemBytes)
	switch {
	case p == nil:
		return nil, fmt.Errorf("%w: not a PEM file", ErrInvalidKey)
	case p.Type != "PUBLIC KEY":
		return nil, fmt.Errorf("%w: a %q PEM block is not a public key; verify with the public key (cosign.pub)", ErrInvalidKey, p.Type)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	v, err := signature.LoadDefaultVerifier(pub, sigopts.WithED25519ph())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return v, nil
}
