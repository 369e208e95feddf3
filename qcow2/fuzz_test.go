package qcow2_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/lazydisk/lazydisk/qcow2"
)

// FuzzOpen feeds the header, extension and table parser arbitrary files:
// Open and every read must return a sentinel error or succeed, never panic
// or hang. The seed corpus in testdata/fuzz/FuzzOpen holds small images
// qemu-img made (512-byte clusters: deflate, zstd, version 2; made by
// testdata/mkfuzzseeds.sh); the hand-made image of TestTiny is added here.
func FuzzOpen(f *testing.F) {
	f.Add(tiny())
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := qcow2.Open(bytes.NewReader(b), int64(len(b)), qcow2.WithL2Cache(1), qcow2.WithClusterCache(1))
		if err != nil {
			checkSentinel(t, err)
			return
		}
		// Bounded work whatever the virtual size says: the first MiB and
		// the last, by extents and by bytes.
		buf := make([]byte, 64<<10)
		for _, off := range []int64{0, max(0, im.Size()-1<<20)} {
			n := min(int64(1<<20), im.Size()-off)
			es, err := im.Extents(off, n)
			if err != nil {
				checkSentinel(t, err)
				return
			}
			var sum int64
			for _, e := range es {
				if e.Length <= 0 {
					t.Fatalf("extent %+v", e)
				}
				sum += e.Length
			}
			if sum != n {
				t.Fatalf("extents cover %d bytes of %d", sum, n)
			}
			for o := off; o < off+n; o += int64(len(buf)) {
				if _, err := im.ReadAt(buf, o); err != nil && err != io.EOF {
					checkSentinel(t, err)
					return
				}
			}
		}
	})
}

func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{qcow2.ErrNotQcow2, qcow2.ErrUnsupported, qcow2.ErrBackingFile, qcow2.ErrEncrypted, qcow2.ErrExternalData, qcow2.ErrCorrupt} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error matches no sentinel: %v", err)
}
