package verify_test

import (
	"context"
	"fmt"
	"os"

	"github.com/lazydisk/lazydisk/internal/imageref"
	"github.com/lazydisk/lazydisk/verify"
)

// A lazy reader checks the signature first and pins everything it reads to
// the digest Signature returns.
func ExampleSignature() {
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
	ref, err := imageref.Parse("docker://registry.example.com/vm/fedora:41")
	if err != nil {
		fmt.Println(err)
		return
	}
	digest, err := verify.Signature(ctx, ref, v, imageref.Options{})
	if err != nil {
		// errors.Is(err, verify.ErrNoSignature) or verify.ErrBadSignature
		fmt.Println(err)
		return
	}
	// Read registry.example.com/vm/fedora@digest from here on, never the tag:
	// the manifest by this digest, blobs by their digests, and each chunk
	// against its TOC digest.
	pinned := ref
	pinned.Name = ref.Name.Context().Digest(digest.String())
	fmt.Println(pinned)
}
