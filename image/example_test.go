package image_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/lazydisk/lazydisk/image"
)

// Every lazydisk command and package takes the same reference syntax.
func ExampleParse() {
	for _, s := range []string{
		"quay.io/containerdisks/fedora:41",
		"docker://registry.example.com/vm/fedora@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"oci:out:latest",
		"docker-archive:fedora.tar:fedora:41",
		"disk:fedora.qcow2",
	} {
		r, err := image.Parse(s)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%-14s %s\n", r.Transport, r)
	}
	_, err := image.Parse("oci-archive:x.tar")
	fmt.Println(err)
	// Output:
	// docker         docker://quay.io/containerdisks/fedora:41
	// docker         docker://registry.example.com/vm/fedora@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
	// oci            oci:out:latest
	// docker-archive docker-archive:fedora.tar:fedora:41
	// disk           disk:fedora.qcow2
	// "oci-archive:x.tar": the oci-archive: transport is not supported; use docker://, oci:, docker-archive: or disk: (unsupported)
}

// Writing an image to an OCI layout and reading it back. Registries work the
// same way; image.WithKeychain, WithTransport, WithPlainHTTP and the other
// options say how to reach them.
func ExampleWrite() {
	dir, err := os.MkdirTemp("", "layout")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	img, err := random.Image(1024, 2)
	if err != nil {
		log.Fatal(err)
	}
	ref, err := image.Parse("oci:" + filepath.Join(dir, "out") + ":v1")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := image.Write(ctx, ref, image.Artifact{Image: img}, image.WithJobs(2)); err != nil {
		log.Fatal(err)
	}
	got, err := image.Read(ctx, ref)
	if err != nil {
		log.Fatal(err)
	}
	want, _ := img.Digest()
	have, _ := got.Image.Digest()
	fmt.Println("same digest:", have == want)
	// Output:
	// same digest: true
}

// Picking one platform's image out of an index.
func ExampleSelectPlatform() {
	amd, _ := random.Image(100, 1)
	arm, _ := random.Image(100, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	img, err := image.SelectPlatform(idx, v1.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		log.Fatal(err)
	}
	got, _ := img.Digest()
	want, _ := arm.Digest()
	fmt.Println("picked arm64:", got == want)
	_, err = image.SelectPlatform(idx, v1.Platform{OS: "linux", Architecture: "s390x"})
	fmt.Println(err)
	// Output:
	// picked arm64: true
	// no image for platform linux/s390x in the index (it has [linux/amd64 linux/arm64]): platform not found
}
