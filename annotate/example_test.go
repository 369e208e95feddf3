package annotate_test

import (
	"context"
	"fmt"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/annotate"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/toc"
)

// Restoring the annotations a copy stripped from a zstd:chunked image,
// computed from each layer's own footer and TOC, which BlobsOf reads with
// range reads. Nothing is recompressed: only a new manifest is written.
func ExampleImage() {
	dir, err := os.MkdirTemp("", "annotate")
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
	if _, err := lazydisk.Convert(ctx, src, ref, lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatZstdChunked))); err != nil {
		log.Fatal(err)
	}

	// The same layers in a manifest without their annotations, as a tool
	// that drops them would write it.
	art, err := image.Read(ctx, ref)
	if err != nil {
		log.Fatal(err)
	}
	layers, _ := art.Image.Layers()
	stripped := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	for _, l := range layers {
		// Only v1.Layer's methods: the layout's descriptor, with its
		// annotations, is not carried over.
		plain := struct{ v1.Layer }{l}
		if stripped, err = mutate.Append(stripped, mutate.Addendum{Layer: plain}); err != nil {
			log.Fatal(err)
		}
	}

	fixed, res, err := annotate.Image(ctx, stripped, annotate.BlobsOf(ref))
	if err != nil {
		log.Fatal(err)
	}
	l := res.Layers[0]
	fmt.Println(l.Format, "changed:", res.Changed)
	for _, k := range slices.Sorted(maps.Keys(l.Set)) {
		fmt.Println("set", k)
	}
	m, _ := fixed.Manifest()
	fmt.Println("annotations in the new manifest:", len(m.Layers[0].Annotations))
	// Output:
	// zstd:chunked changed: true
	// set io.github.containers.zstd-chunked.manifest-checksum
	// set io.github.containers.zstd-chunked.manifest-position
	// set io.github.containers.zstd-chunked.tarsplit-position
	// annotations in the new manifest: 3
}
