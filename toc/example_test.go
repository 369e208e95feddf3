package toc_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/toc"
)

// Reading a seekable layer's index from the end of the blob, and mapping a
// byte range of the disk file to the chunks to fetch. Any io.ReaderAt works:
// a file, a byte slice, or a registry blob read with range requests.
func ExampleRead() {
	data := bytes.Repeat([]byte("a sector of the disk\n"), 20000)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/vm.raw", Mode: 0o444, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	var blob bytes.Buffer
	b, err := convert.WriteEStargz(context.Background(), &blob, &layer, convert.WithChunkSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}

	// The layer's annotations carry the TOC digest Read checks the TOC against.
	ix, err := toc.Read(bytes.NewReader(blob.Bytes()), int64(blob.Len()), b.Annotations)
	if err != nil {
		log.Fatal(err)
	}
	f, ok := ix.Lookup("/disk/vm.raw")
	if !ok {
		log.Fatal("no disk file")
	}
	fmt.Println(ix.Format, f.Name, f.Size)
	fmt.Println("TOC checked against the annotation:", ix.Annotated == ix.Digest)
	for _, c := range f.ChunksFor(100_000, 100_000) {
		fmt.Printf("bytes %d-%d: fetch %d compressed bytes\n", c.Offset, c.Offset+c.Size, c.CompressedSize)
	}
	// Output:
	// estargz disk/vm.raw 420000
	// TOC checked against the annotation: true
	// bytes 65536-131072: fetch 223 compressed bytes
	// bytes 131072-196608: fetch 223 compressed bytes
	// bytes 196608-262144: fetch 223 compressed bytes
}
