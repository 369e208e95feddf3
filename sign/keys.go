package sign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/cosign/v3/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"
)

// PEM block types of cosign private keys: cosign >= 2.2 writes
// PrivateKeyPEMType; older keys have LegacyPrivateKeyPEMType. Both hold a
// go-securesystemslib "encrypted" JSON (scrypt and NaCl secretbox) around
// the PKCS #8 DER key. Public keys are PKIX "PUBLIC KEY" PEM blocks.
const (
	PrivateKeyPEMType       = "ENCRYPTED SIGSTORE PRIVATE KEY"
	LegacyPrivateKeyPEMType = "ENCRYPTED COSIGN PRIVATE KEY"
)

// GenerateKeyPair makes an ECDSA P-256 key pair in cosign's format, the
// same as `cosign generate-key-pair`: the private key encrypted with
// password (which may be empty) as a PrivateKeyPEMType PEM block, and the
// public key as a PKIX PEM block.
func GenerateKeyPair(password []byte) (privatePEM, publicPEM []byte, err error) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
	if err != nil {
		return nil, nil, fmt.Errorf("generating a key pair: %w", err)
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

// LoadPrivateKey decrypts a cosign private key (from GenerateKeyPair or
// `cosign generate-key-pair`) with password. It fails with ErrKeyPassword
// when the password is wrong and ErrInvalidKey when pemBytes is not a cosign
// private key. Only ECDSA and RSA keys can sign (cosign's default is ECDSA
// P-256).
func LoadPrivateKey(pemBytes, password []byte) (signature.SignerVerifier, error) {
	p, _ := pem.Decode(pemBytes)
	switch {
	case p == nil:
		return nil, fmt.Errorf("%w: not a PEM file", ErrInvalidKey)
	case p.Type == "PUBLIC KEY":
		return nil, fmt.Errorf("%w: this is a public key; sign with the private key (cosign.key)", ErrInvalidKey)
	case p.Type != PrivateKeyPEMType && p.Type != LegacyPrivateKeyPEMType:
		return nil, fmt.Errorf("%w: a %q PEM block is not a cosign private key; import it with `cosign import-key-pair`", ErrInvalidKey, p.Type)
	}
	sv, err := cosign.LoadPrivateKey(pemBytes, password, nil)
	if err != nil {
		if strings.Contains(err.Error(), "decrypt") {
			return nil, ErrKeyPassword
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if _, err := algorithm(pub); err != nil {
		return nil, err
	}
	return sv, nil
}

// algorithm returns the signing algorithm used with pub: sigstore's default
// for the key type and size (ECDSA P-256 with SHA-256 for cosign's keys).
func algorithm(pub crypto.PublicKey) (signature.AlgorithmDetails, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return signature.AlgorithmDetails{}, fmt.Errorf("%w: %T keys cannot sign here; use an ECDSA key (lazydisk keygen or cosign generate-key-pair)", ErrInvalidKey, pub)
	}
	ad, err := signature.GetDefaultAlgorithmDetails(pub)
	if err != nil {
		return signature.AlgorithmDetails{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if ad.GetHashType() == crypto.Hash(0) {
		return signature.AlgorithmDetails{}, errors.New("the key's algorithm has no hash")
	}
	return ad, nil
}
