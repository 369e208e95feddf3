package disk_test

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
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/trust"
	"github.com/lazydisk/lazydisk/verify"
)

// seekableLayout converts a small disk file into a containerDisk in an OCI
// layout under dir and returns its
// reference. A registry reference is read the same way.
func seekableLayout(dir string) image.Reference {
	path := filepath.Join(dir, "fedora.qcow2")
	if err := os.WriteFile(path, []byte(strings.Repeat("QFI\xfb a sector of the disk\n", 40000)), 0o644); err != nil {
		log.Fatal(err)
	}
	src, _ := image.Parse("disk:" + path)
	ref, _ := image.Parse("oci:" + filepath.Join(dir, "out") + ":41")
	if _, err := lazydisk.Convert(context.Background(), src, ref,
		lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatEStargz), convert.WithChunkSize(64<<10))); err != nil {
		log.Fatal(err)
	}
	return ref
}

// Reading a few bytes of the disk in an image: only the chunks under them
// are fetched and checked against the TOC.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "disk")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ref := seekableLayout(dir)

	f, err := disk.Open(context.Background(), ref, disk.WithCacheSize(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	header := make([]byte, 4)
	if _, err := f.ReadAt(header, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d bytes of %s, %d chunks\n", f.Name(), f.Size(), f.Format(), f.Chunks())
	fmt.Printf("%q\n", header)
	fmt.Println("chunks fetched:", f.Stats().ChunksFetched)
	// Output:
	// disk/fedora.qcow2: 1040000 bytes of estargz, 16 chunks
	// "QFI\xfb"
	// chunks fetched: 1
}

// Reading only what a key signed: the signature is checked first, through
// the checker package verify provides (the reader itself does not link the
// signature verifier), and the manifest, the TOC and every chunk are then
// tied to the signed digest.
func ExampleWithSignature() {
	dir, err := os.MkdirTemp("", "disk")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	ref := seekableLayout(dir)
	privPEM, pubPEM, err := sign.GenerateKeyPair([]byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	signer, err := sign.LoadPrivateKey(privPEM, []byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	res, err := sign.Manifest(ctx, ref, signer)
	if err != nil {
		log.Fatal(err)
	}

	pub, err := verify.LoadPublicKey(pubPEM) // cosign.pub
	if err != nil {
		log.Fatal(err)
	}
	checker, err := verify.NewChecker(pub)
	if err != nil {
		log.Fatal(err)
	}
	f, err := disk.Open(ctx, ref, disk.WithSignature(checker))
	switch {
	case errors.Is(err, trust.ErrNoSignature), errors.Is(err, trust.ErrBadSignature):
		log.Fatal("not signed by this key: ", err)
	case err != nil:
		log.Fatal(err) // trust.ErrContentMismatch: the TOC does not match the signed manifest
	}
	defer f.Close()
	header := make([]byte, 4)
	if _, err := f.ReadAt(header, 0); err != nil {
		log.Fatal(err) // a corrupt chunk: trust.ErrContentMismatch and disk.ErrChunkDigest
	}
	signed, ok := f.Signed()
	fmt.Printf("%q signed: %t, by the digest signed: %t\n", header, ok, signed == res.Digest)
	// Output:
	// "QFI\xfb" signed: true, by the digest signed: true
}
