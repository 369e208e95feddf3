package toc

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// countingReaderAt counts ReadAt calls and bytes.
type countingReaderAt struct {
	r            io.ReaderAt
	calls, bytes int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	c.bytes += len(p)
	return c.r.ReadAt(p, off)
}

// referenceBlob builds an eStargz blob with the reference writer.
func referenceBlob(t *testing.T) ([]byte, *estargz.Blob) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := newTestTar(&tarBuf)
	tw.file("disk/disk.img", bytes.Repeat([]byte("lazydisk"), 300000))
	tw.close()
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarBuf.Bytes()), 0, int64(tarBuf.Len())), estargz.WithChunkSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	return blob, b
}

func TestFooterMatchesReference(t *testing.T) {
	t.Parallel()
	for _, off := range []int64{0, 1, 52360743, 1 << 40} {
		f := EStargzFooter(off)
		_, tocOff, _, err := new(estargz.GzipDecompressor).ParseFooter(f)
		if err != nil || tocOff != off || int64(len(f)) != estargz.FooterSize {
			t.Errorf("reference parser on our footer for %d: tocOffset %d, err %v", off, tocOff, err)
		}
		if back, err := ParseEStargzFooter(f); err != nil || back != off {
			t.Errorf("ParseEStargzFooter(EStargzFooter(%d)) = %d, %v", off, back, err)
		}
	}
}

func TestParseFooterRejects(t *testing.T) {
	t.Parallel()
	good := EStargzFooter(1234)
	bad := func(i int, c byte) []byte { b := append([]byte(nil), good...); b[i] = c; return b }
	for name, f := range map[string][]byte{
		"short":       good[:50],
		"magic":       bad(0, 0),
		"not hex":     bad(20, 'z'),
		"subfield":    bad(12, 'X'),
		"trailer":     bad(50, 1),
		"legacy size": good[4:],
	} {
		if _, err := ParseEStargzFooter(f); !errors.Is(err, ErrNotEStargz) {
			t.Errorf("%s: got %v, want ErrNotEStargz", name, err)
		}
	}
}

// TestReadEStargz reads the TOC of estargz.Build's output with Read.
func TestReadEStargz(t *testing.T) {
	t.Parallel()
	blob, ref := referenceBlob(t)
	// A tail large enough for the TOC: one read.
	cr := &countingReaderAt{r: bytes.NewReader(blob)}
	got, err := Read(cr, int64(len(blob)), nil, WithTail(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != ref.TOCDigest() {
		t.Errorf("TOC digest %s, reference writer says %s", got.Digest, ref.TOCDigest())
	}
	if cr.calls != 1 {
		t.Errorf("%d reads with a large tail, want 1", cr.calls)
	}
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatal(err)
	}
	if r.TOCDigest() != got.Digest || len(got.Files) == 0 {
		t.Errorf("reference reader TOC digest %s, ours %s (%d files)", r.TOCDigest(), got.Digest, len(got.Files))
	}
	// Footer only: two reads.
	cr = &countingReaderAt{r: bytes.NewReader(blob)}
	if _, err := Read(cr, int64(len(blob)), nil, WithTail(0)); err != nil || cr.calls != 2 {
		t.Errorf("footer-only tail: %d reads, err %v; want 2 reads", cr.calls, err)
	}
	// Damage.
	cut := append([]byte(nil), blob...)
	copy(cut[len(cut)-EStargzFooterSize+16:], "00000000ffffffff")
	if _, err := Read(bytes.NewReader(cut), int64(len(cut)), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("offset past the end: %v", err)
	}
	flipped := append([]byte(nil), blob...)
	flipped[got.TOCOffset+20] ^= 0xff
	if _, err := Read(bytes.NewReader(flipped), int64(len(flipped)), nil); !errors.Is(err, ErrInvalidTOC) {
		t.Errorf("corrupt TOC member: %v", err)
	}
}
