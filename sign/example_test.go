package sign_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/verify"
)

// Signing an image in an OCI layout with a new cosign key pair, in both
// forms, and checking the signature. In a registry, the same calls write a
// Sigstore bundle referrer and a sha256-<hex>.sig tag beside the image.
func ExampleManifest() {
	dir, err := os.MkdirTemp("", "sign")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	ref, err := image.Parse("oci:" + filepath.Join(dir, "layout") + ":v1")
	if err != nil {
		log.Fatal(err)
	}
	img, err := random.Image(1024, 1)
	if err != nil {
		log.Fatal(err)
	}
	if err := image.Write(ctx, ref, image.Artifact{Image: img}); err != nil {
		log.Fatal(err)
	}

	// cosign.key and cosign.pub, as `cosign generate-key-pair` writes them.
	privPEM, pubPEM, err := sign.GenerateKeyPair([]byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	signer, err := sign.LoadPrivateKey(privPEM, []byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	res, err := sign.Manifest(ctx, ref, signer,
		sign.WithAnnotations(map[string]string{"env": "prod"}),
		sign.WithIdentity("registry.example.com/vm/fedora"))
	if err != nil {
		log.Fatal(err)
	}
	s := res.Signed[0]
	fmt.Println("bundle referrer:", s.Bundle != nil)
	fmt.Println("legacy tag:", strings.HasPrefix(s.LegacyTag, "sha256-") && strings.HasSuffix(s.LegacyTag, ".sig"))

	pub, err := verify.LoadPublicKey(pubPEM)
	if err != nil {
		log.Fatal(err)
	}
	digest, err := verify.Signature(ctx, ref, pub, verify.WithAnnotations(map[string]string{"env": "prod"}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified:", digest == res.Digest)
	// Output:
	// bundle referrer: true
	// legacy tag: true
	// verified: true
}
