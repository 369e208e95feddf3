// Package toc holds the facts of the seekable layer formats lazydisk writes
// and reads (annotation keys, footers, TOC types of eStargz and
// zstd:chunked) and reads a layer's table of contents from the end of its
// blob with as few reads as possible (Read) into one format-neutral Index:
// files, their chunks, and the chunks that cover a byte range.
//
// This package does not fetch blobs or verify chunk contents; callers pass
// an io.ReaderAt over a local file, a layout blob or range requests, and
// check each chunk they fetch against its digest.
package toc

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// Layer annotations of eStargz layers.
const (
	// AnnotationTOCDigest is the sha256 digest of the uncompressed TOC JSON.
	// stargz-snapshotter refuses to mount a layer without it, and
	// containers/storage uses it to choose the partial-pull path.
	AnnotationTOCDigest = estargz.TOCJSONDigestAnnotation
	// AnnotationUncompressedSize is the length of the decompressed blob in
	// decimal bytes (TOC entry included).
	AnnotationUncompressedSize = estargz.StoreUncompressedSizeAnnotation
)

// EStargzFooterSize is the size of the eStargz footer, an empty gzip member
// at the end of the blob:
//
//	10 bytes  gzip header 1f 8b 08 04 00000000 00 ff (FEXTRA, MTIME 0, OS 255)
//	 2 bytes  XLEN = 26, little endian
//	26 bytes  extra subfield: 'S' 'G', LEN = 22 (LE), "%016xSTARGZ" (TOC offset)
//	 5 bytes  empty stored final deflate block 01 00 00 ff ff
//	 8 bytes  CRC32 = 0, ISIZE = 0
const EStargzFooterSize = 51

// MaxTOCSize bounds the compressed and uncompressed TOC we accept:
// containers/storage refuses TOCs over 150 MiB, so no valid layer has one.
const MaxTOCSize = 150 << 20

var (
	// ErrNotEStargz is returned when a blob does not end in an eStargz footer.
	ErrNotEStargz = errors.New("not an eStargz blob")
	// ErrInvalidTOC is returned for a TOC that cannot be read or is too
	// large; it matches ErrInvalid too.
	ErrInvalidTOC = fmt.Errorf("%w: eStargz TOC", ErrInvalid)
)

// EStargzFooter returns the footer for a TOC that starts at tocOffset.
func EStargzFooter(tocOffset int64) []byte {
	sub := fmt.Sprintf("%016xSTARGZ", tocOffset)
	extra := make([]byte, 4, 4+len(sub))
	extra[0], extra[1] = 'S', 'G'
	binary.LittleEndian.PutUint16(extra[2:], uint16(len(sub)))
	return estargz.CreateGzipFooter(append(extra, sub...))
}

// ParseEStargzFooter returns the TOC offset from a 51-byte footer. It
// checks every fixed byte, as containers/storage reads the offset at fixed
// positions.
func ParseEStargzFooter(footer []byte) (int64, error) {
	if len(footer) != EStargzFooterSize {
		return 0, fmt.Errorf("%w: footer is %d bytes, want %d", ErrNotEStargz, len(footer), EStargzFooterSize)
	}
	want := EStargzFooter(0)
	// Bytes 16..32 hold the hex offset; everything else is fixed.
	if !bytes.Equal(footer[:16], want[:16]) || !bytes.Equal(footer[32:], want[32:]) {
		return 0, fmt.Errorf("%w: no eStargz footer at the end of the blob", ErrNotEStargz)
	}
	off, err := strconv.ParseInt(string(footer[16:32]), 16, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("%w: footer holds a bad TOC offset %q", ErrNotEStargz, footer[16:32])
	}
	return off, nil
}

// decodeTOC decompresses the TOC member, a tar entry stargz.index.json.
func decodeTOC(member []byte) (*estargz.JTOC, digest.Digest, error) {
	zr, err := gzip.NewReader(bytes.NewReader(member))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalidTOC, err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalidTOC, err)
	}
	if h.Name != estargz.TOCTarName {
		return nil, "", fmt.Errorf("%w: TOC entry is named %q, want %q", ErrInvalidTOC, h.Name, estargz.TOCTarName)
	}
	if h.Size > MaxTOCSize {
		return nil, "", fmt.Errorf("%w: TOC JSON is %d bytes, over the %d MiB limit", ErrInvalidTOC, h.Size, MaxTOCSize>>20)
	}
	raw, err := io.ReadAll(tr)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalidTOC, err)
	}
	var t estargz.JTOC
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalidTOC, err)
	}
	return &t, digest.Canonical.FromBytes(raw), nil
}
