package sign_test

import (
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/verify"
)

type key struct {
	signer   signature.SignerVerifier
	verifier signature.Verifier
}

func newKey(t *testing.T) key {
	t.Helper()
	priv, pub, err := sign.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := sign.LoadPrivateKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key{sv, v}
}
