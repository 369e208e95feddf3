package disk_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/lazydisk/lazydisk/disk"
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
	f, err := disk.Open(ctx, "registry.example.com/vm/fedora:41", disk.WithSignature(v))
	switch {
	case errors.Is(err, verify.ErrNoSignature), errors.Is(err, verify.ErrBadSignature):
		fmt.Println("not signed by this key:", err)
		return
	case err != nil:
		fmt.Println(err) // verify.ErrContentMismatch: the TOC does not match the signed manifest
		return
	}
	defer f.Close()
	header := make([]byte, 512)
	if _, err := f.ReadAt(header, 0); err != nil {
		fmt.Println(err) // a corrupt chunk: verify.ErrContentMismatch and disk.ErrChunkDigest
		return
	}
	signed, _ := f.Signed()
	fmt.Printf("%x... from %s\n", header[:4], signed)
}
