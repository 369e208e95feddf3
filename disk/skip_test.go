package disk_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// skipper is a disk.Skipper that records what it is given.
type skipper struct {
	bytes.Buffer
	skips, skipped int64
	fail           error
}

func (s *skipper) Skip(n int64) error {
	if s.fail != nil {
		return s.fail
	}
	s.skips++
	s.skipped += n
	s.Write(make([]byte, n))
	return nil
}

// TestWriteRangeSkipper: WriteRange hands a Skipper exactly the zero chunks
// (never reading them) and writes the rest, so the bytes are the disk's.
func TestWriteRangeSkipper(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	data := diskOnce()
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			ref, _ := pushDisk(t, reg, "skip/"+string(format), format, data, nil)
			f := open(t, ref)
			for _, r := range [][2]int64{{0, f.Size()}, {12345, 3 << 20}, {f.Size() - 70000, 70000}} {
				var zeros, runs int64
				for _, e := range f.Extents(r[0], r[1]) {
					if e.Zero {
						zeros += e.Length
						runs++
					}
				}
				var s skipper
				n, err := f.WriteRange(&s, r[0], r[1])
				end := min(r[0]+r[1], f.Size())
				if err != nil || n != end-r[0] || !bytes.Equal(s.Bytes(), data[r[0]:end]) {
					t.Errorf("WriteRange(%d, %d) to a Skipper = %d, %v; equal %t", r[0], r[1], n, err, bytes.Equal(s.Bytes(), data[r[0]:end]))
				}
				if s.skipped != zeros || s.skips != runs {
					t.Errorf("WriteRange(%d, %d): %d bytes skipped in %d calls, want the %d zero-chunk bytes in %d runs", r[0], r[1], s.skipped, s.skips, zeros, runs)
				}
			}
			if f.Stats().ZeroChunks != 0 {
				t.Errorf("%d zero chunks were read; a Skipper should be given them instead", f.Stats().ZeroChunks)
			}
			// A failing Skip ends the copy with its error.
			boom := errors.New("boom")
			if _, err := f.WriteRange(&skipper{fail: boom}, 0, f.Size()); !errors.Is(err, boom) {
				t.Errorf("WriteRange with a failing Skip: %v, want boom", err)
			}
		})
	}
}
