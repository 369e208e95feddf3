package lazydisk_test

import (
	"context"
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
)

// Converting a local disk file into a signed, seekable containerDisk in an
// OCI layout, as `lazydisk convert --zstd-chunked --sign-key cosign.key
// disk:vm.qcow2 oci:DIR:v1` does. A registry reference works the same way
// (lazydisk.WithImageOptions says how to reach it).
func ExampleConvert() {
	dir, err := os.MkdirTemp("", "convert")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "vm.qcow2")
	if err := os.WriteFile(path, []byte(strings.Repeat("a sector of the disk\n", 50000)), 0o644); err != nil {
		log.Fatal(err)
	}
	src, err := image.Parse("disk:" + path)
	if err != nil {
		log.Fatal(err)
	}
	dst, err := image.Parse("oci:" + filepath.Join(dir, "out") + ":v1")
	if err != nil {
		log.Fatal(err)
	}
	privPEM, _, err := sign.GenerateKeyPair([]byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	signer, err := sign.LoadPrivateKey(privPEM, []byte("password"))
	if err != nil {
		log.Fatal(err)
	}

	res, err := lazydisk.Convert(context.Background(), src, dst,
		lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatZstdChunked)),
		lazydisk.WithSigner(signer, sign.WithSignatureFormat(sign.SignatureBundle)))
	if err != nil {
		log.Fatal(err)
	}
	l := res.Images[0].Layers[0]
	fmt.Println("wrote", strings.TrimPrefix(res.Destination, "oci:"+dir+"/"))
	fmt.Println(l.MediaType, l.UncompressedSize > l.Size)
	fmt.Println("signed the result:", res.Signed.Digest == res.Digest, res.Signed.Signed[0].Bundle != nil)
	// Output:
	// wrote out:v1
	// application/vnd.oci.image.layer.v1.tar+zstd true
	// signed the result: true true
}

// Copying a signed image from one OCI layout to another as it is, with its
// signatures, as `lazydisk copy oci:A:v1 oci:B:v1` does; an offline
// registry (docker://...) works the same way.
func ExampleCopy() {
	dir, err := os.MkdirTemp("", "copy")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "vm.img")
	if err := os.WriteFile(path, []byte(strings.Repeat("a sector of the disk\n", 5000)), 0o644); err != nil {
		log.Fatal(err)
	}
	src, _ := image.Parse("disk:" + path)
	a, _ := image.Parse("oci:" + filepath.Join(dir, "a") + ":v1")
	b, _ := image.Parse("oci:" + filepath.Join(dir, "b") + ":v1")
	privPEM, _, err := sign.GenerateKeyPair([]byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	signer, err := sign.LoadPrivateKey(privPEM, []byte("password"))
	if err != nil {
		log.Fatal(err)
	}
	conv, err := lazydisk.Convert(context.Background(), src, a,
		lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatEStargz)), lazydisk.WithSigner(signer))
	if err != nil {
		log.Fatal(err)
	}

	res, err := lazydisk.Copy(context.Background(), a, b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same digest:", res.Digest == conv.Digest)
	fmt.Printf("signatures: %d bundle, %d legacy\n", res.CopiedSignatures.Bundles, res.CopiedSignatures.Legacy)
	// Output:
	// same digest: true
	// signatures: 1 bundle, 1 legacy
}
