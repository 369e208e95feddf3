package verify_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/verify"
)

// Checking the whole chain of a signed seekable image: signature ->
// manifest -> TOC digest annotation -> TOC, and with WithDeep every chunk,
// blob and DiffID. The image here is a layout made by lazydisk.Convert; a
// registry works the same way (verify.WithImageOptions says how to reach it).
func ExampleImage() {
	dir, err := os.MkdirTemp("", "verify")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	path := filepath.Join(dir, "vm.raw")
	if err := os.WriteFile(path, []byte(strings.Repeat("a sector of the disk\n", 50000)), 0o644); err != nil {
		log.Fatal(err)
	}
	src, _ := image.Parse("disk:" + path)
	ref, _ := image.Parse("oci:" + filepath.Join(dir, "out") + ":v1")
	privPEM, pubPEM, err := sign.GenerateKeyPair([]byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	signer, err := sign.LoadPrivateKey(privPEM, []byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := lazydisk.Convert(ctx, src, ref,
		lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatEStargz)), lazydisk.WithSigner(signer)); err != nil {
		log.Fatal(err)
	}

	pub, err := verify.LoadPublicKey(pubPEM)
	if err != nil {
		log.Fatal(err)
	}
	rep, err := verify.Image(ctx, ref, pub, verify.WithDeep(true))
	if err != nil {
		log.Fatal(err)
	}
	l := rep.Images[0].Layers[0]
	fmt.Println("signatures verified:", len(rep.Signature.Verified))
	fmt.Println("layer:", l.Format, "TOC matches its annotation:", l.TOC == l.Annotated)
	fmt.Println("every chunk checked:", l.Deep.Chunks > 0, "ok:", rep.OK)

	// Another key: ErrBadSignature, exit code 4 of `lazydisk verify`.
	_, otherPEM, _ := sign.GenerateKeyPair([]byte("other"))
	other, _ := verify.LoadPublicKey(otherPEM)
	_, err = verify.Image(ctx, ref, other)
	fmt.Println("another key:", errors.Is(err, verify.ErrBadSignature))
	// Output:
	// signatures verified: 2
	// layer: estargz TOC matches its annotation: true
	// every chunk checked: true ok: true
	// another key: true
}
