package sign_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/sigstore/cosign/v3/pkg/cosign"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/verify"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"", "secret"} {
		priv, pub, err := sign.GenerateKeyPair([]byte(pw))
		if err != nil {
			t.Fatal(err)
		}
		// cosign reads our keys.
		if _, err := cosign.LoadPrivateKey(priv, []byte(pw), nil); err != nil {
			t.Errorf("cosign cannot load our key: %v", err)
		}
		sv, err := sign.LoadPrivateKey(priv, []byte(pw))
		if err != nil {
			t.Fatalf("password %q: %v", pw, err)
		}
		if _, err := sv.PublicKey(); err != nil {
			t.Fatal(err)
		}
		if _, err := sign.LoadPrivateKey(priv, []byte(pw+"x")); !errors.Is(err, sign.ErrKeyPassword) {
			t.Errorf("wrong password: %v, want ErrKeyPassword", err)
		}
		if _, err := sign.LoadPrivateKey(pub, []byte(pw)); !errors.Is(err, sign.ErrInvalidKey) {
			t.Errorf("public key as private: %v, want ErrInvalidKey", err)
		}
	}
	// We read cosign's keys.
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.LoadPrivateKey(kb.PrivateBytes, []byte("pw")); err != nil {
		t.Errorf("cosign's key: %v", err)
	}
	if _, err := sign.LoadPrivateKey([]byte("not a key"), nil); !errors.Is(err, sign.ErrInvalidKey) {
		t.Errorf("garbage: %v, want ErrInvalidKey", err)
	}
}

func TestParseFormat(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"both", "bundle", "legacy"} {
		if f, err := sign.ParseSignatureFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	if _, err := sign.ParseSignatureFormat("any"); err == nil {
		t.Error("ParseFormat(any) succeeded")
	}
}

// TestCopyMerges signs the same image in a layout and in a registry with
// different keys, then copies the layout's signatures to the registry: both
// keys' signatures must verify there, and copying again adds nothing.
func TestCopyMerges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := testregistry.Start(t)
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	layout, err := image.Parse("oci:" + filepath.Join(t.TempDir(), "l") + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	remote, err := image.Parse("docker://" + reg.Host + "/copy/img:v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []image.Reference{layout, remote} {
		if err := image.Write(ctx, r, image.Artifact{Image: img}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := newKey(t), newKey(t)
	res, err := sign.Manifest(ctx, layout, a.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Manifest(ctx, remote, b.signer); err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Signature(ctx, remote, a.verifier); !errors.Is(err, verify.ErrBadSignature) {
		t.Fatalf("before copying: %v, want ErrBadSignature", err)
	}
	n, err := sign.Copy(ctx, layout, remote, []v1.Hash{res.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if n.Bundles != 1 || n.Legacy != 1 {
		t.Errorf("copied %+v, want 1 and 1", n)
	}
	for name, k := range map[string]key{"a": a, "b": b} {
		for _, f := range []verify.SignatureFormat{verify.SignatureBundle, verify.SignatureLegacy} {
			if _, err := verify.Signature(ctx, remote, k.verifier, verify.WithSignatureFormat(f)); err != nil {
				t.Errorf("key %s, %s: %v", name, f, err)
			}
		}
	}
	if n, err = sign.Copy(ctx, layout, remote, []v1.Hash{res.Digest}); err != nil || n.Legacy != 0 {
		t.Errorf("copying again: %+v, %v", n, err)
	}
	rep, err := verify.Image(ctx, remote, a.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Signature.Verified) != 2 || len(rep.Signature.Rejected) != 2 {
		t.Errorf("after copying twice: %d verified, %d rejected; want 2 and 2 (key b's)", len(rep.Signature.Verified), len(rep.Signature.Rejected))
	}
}
