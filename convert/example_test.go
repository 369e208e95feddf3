package convert_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/toc"
)

// diskTar is a layer as a KubeVirt containerDisk holds it: disk/ and one
// 256 KiB disk file in it.
func diskTar() []byte {
	data := bytes.Repeat([]byte("a sector of the disk\n"), (256<<10)/21+1)[:256<<10]
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/vm.qcow2", Mode: 0o444, Uid: 107, Gid: 107, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	return b.Bytes()
}

// Writing one layer as eStargz: the blob is gzip members, one per 64 KiB
// chunk, with the TOC at the end, and the annotations a reader needs.
func ExampleWriteEStargz() {
	var blob bytes.Buffer
	b, err := convert.WriteEStargz(context.Background(), &blob, bytes.NewReader(diskTar()), convert.WithChunkSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("annotated with the TOC digest:", b.Annotations[toc.AnnotationTOCDigest] == b.TOCDigest.String())

	ix, err := toc.Read(bytes.NewReader(blob.Bytes()), int64(blob.Len()), b.Annotations)
	if err != nil {
		log.Fatal(err)
	}
	f, _ := ix.Lookup("disk/vm.qcow2")
	fmt.Println(ix.Format, f.Name, f.Size, "bytes in", len(f.Chunks), "chunks")
	// Output:
	// annotated with the TOC digest: true
	// estargz disk/vm.qcow2 262144 bytes in 4 chunks
}

// Writing one layer as zstd:chunked: the tar stream is kept byte for byte
// (the DiffID does not change), in zstd frames that split the file at
// content-defined boundaries around the chunk size.
func ExampleWriteZstdChunked() {
	layer := diskTar()
	var blob bytes.Buffer
	b, err := convert.WriteZstdChunked(context.Background(), &blob, bytes.NewReader(layer), convert.WithChunkSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("uncompressed size kept:", b.Uncompressed == int64(len(layer)))
	ix, err := toc.Read(bytes.NewReader(blob.Bytes()), int64(blob.Len()), b.Annotations)
	if err != nil {
		log.Fatal(err)
	}
	f, _ := ix.Lookup("disk/vm.qcow2")
	fmt.Println(ix.Format, f.Name, f.Size, "bytes")
	// Output:
	// uncompressed size kept: true
	// zstd:chunked disk/vm.qcow2 262144 bytes
}

// Converting a whole image: every layer is converted, the config's DiffIDs
// updated, and the converted blobs are staged until Close.
func ExampleImage() {
	layer, err := tarball.LayerFromReader(bytes.NewReader(diskTar()))
	if err != nil {
		log.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		log.Fatal(err)
	}
	conv, err := convert.Image(context.Background(), img,
		convert.WithFormat(toc.FormatZstdChunked), convert.WithChunkSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	defer conv.Close() // removes the staged blobs: write conv.Image first (image.Write)
	diffID, err := layer.DiffID()
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range conv.Result.Images[0].Layers {
		fmt.Println(l.MediaType, "DiffID kept:", l.DiffID == diffID, "chunks > 1:", l.Chunks > 1)
	}
	// Output:
	// application/vnd.oci.image.layer.v1.tar+zstd DiffID kept: true chunks > 1: true
}
