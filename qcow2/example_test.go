package qcow2_test

import (
	"bytes"
	"fmt"

	"github.com/lazydisk/lazydisk/qcow2"
)

// A guest disk of 1 MiB with data at 64 KiB, written as an uncompressed
// qcow2 by Layout and read back by Open.
func Example() {
	guest := make([]byte, 1<<20)
	copy(guest[64<<10:], "hello from the guest")
	l, err := qcow2.NewLayout(int64(len(guest)), []qcow2.Extent{{Offset: 64 << 10, Length: 20, Kind: qcow2.Data}})
	if err != nil {
		panic(err)
	}
	var file bytes.Buffer
	if err := l.Write(&file, bytes.NewReader(guest), nil); err != nil {
		panic(err)
	}

	im, err := qcow2.Open(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 20)
	if _, err := im.ReadAt(buf, 64<<10); err != nil {
		panic(err)
	}
	es, _ := im.Extents(0, im.Size())
	fmt.Printf("file %d bytes, guest %d bytes, version %d\n", file.Len(), im.Size(), im.Version())
	fmt.Printf("%q\n", buf)
	for _, e := range es {
		fmt.Println(e.Offset, e.Length, e.Kind)
	}
	// Output:
	// file 393216 bytes, guest 1048576 bytes, version 3
	// "hello from the guest"
	// 0 65536 hole
	// 65536 65536 data
	// 131072 917504 hole
}
