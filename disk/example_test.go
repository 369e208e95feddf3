package disk_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/trust"
	"github.com/lazydisk/lazydisk/verify"
)

// Reading only what a key signed: the signature is checked first, and the
// manifest, the TOC and every chunk are then tied to the signed digest.
func ExampleWithSignature() {
	ctx := context.Background()
	pub, err := os.ReadFile("cosign.pub")
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := verify.LoadPublicKey(pub)
	if err != nil {
		fmt.Println(err)
		return
	}
	checker, err := verify.NewChecker(v)
	if err != nil {
		fmt.Println(err)
		return
	}
	ref, err := image.Parse("registry.example.com/vm/fedora:41")
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := disk.Open(ctx, ref, disk.WithSignature(checker))
	switch {
	case errors.Is(err, trust.ErrNoSignature), errors.Is(err, trust.ErrBadSignature):
		fmt.Println("not signed by this key:", err)
		return
	case err != nil:
		fmt.Println(err) // trust.ErrContentMismatch: the TOC does not match the signed manifest
		return
	}
	defer f.Close()
	header := make([]byte, 512)
	if _, err := f.ReadAt(header, 0); err != nil {
		fmt.Println(err) // a corrupt chunk: trust.ErrContentMismatch and disk.ErrChunkDigest
		return
	}
	signed, _ := f.Signed()
	fmt.Printf("%x... from %s\n", header[:4], signed)
}
