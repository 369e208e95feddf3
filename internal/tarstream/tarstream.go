// Package tarstream walks a tar stream losslessly: for every entry it gives the
// header blocks exactly as they appear in the source, the payload as a stream,
// and the padding that follows it, and at the end the trailer. Concatenating
// those pieces in order reproduces the source byte for byte, which is what a
// writer needs to keep a layer's DiffID stable or to place chunk boundaries at
// payload offsets.
//
// It does not buffer payloads, rewrite headers, or support GNU/PAX sparse
// entries (their physical bytes differ from the logical file; containerDisk
// and Docker layers never use them).
package tarstream

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/vbatts/tar-split/archive/tar"
)

// BlockSize is the tar block size: headers are one or more blocks and every
// payload is padded to a multiple of it.
const BlockSize = 512

// maxTrailer bounds what may follow the end-of-archive marker: record fill
// is at most a few KiB in practice.
const maxTrailer = 1 << 20

var (
	// ErrUnsafePath is returned for entry names or hard link targets that are
	// absolute or escape the root with "..".
	ErrUnsafePath = errors.New("unsafe path in tar entry")
	// ErrSparse is returned for sparse entries, which cannot be reproduced
	// from their logical content.
	ErrSparse = errors.New("sparse tar entries are not supported")
	// ErrNotTar is returned when the stream does not start with a tar header.
	ErrNotTar = errors.New("not a tar stream")
	// ErrInvalid is returned for a malformed or truncated tar stream.
	ErrInvalid = errors.New("invalid tar stream")
	// ErrTrailingData is returned when more than 1 MiB follows the
	// end-of-archive marker.
	ErrTrailingData = errors.New("unexpected data after the end of the tar archive")
)

// Entry is one tar entry. Raw, then Payload (Header.Size bytes for regular
// files, nothing for header-only types), then Pad reproduce it exactly.
type Entry struct {
	// Header is the parsed header.
	Header *tar.Header
	// Raw holds the header blocks as found in the source, including any
	// PAX or GNU long-name extension blocks before the real header.
	Raw []byte
	// Payload reads the entry's data. It must be read to EOF (or the entry
	// skipped by calling Next) before the next entry.
	Payload io.Reader
}

// Scanner reads entries from a tar stream.
type Scanner struct {
	src     io.Reader
	tr      *tar.Reader
	prev    *Entry
	pad     []byte
	trailer []byte
	done    bool
	nEntry  int
}

// NewScanner returns a scanner over the uncompressed tar stream r.
func NewScanner(r io.Reader) *Scanner {
	tr := tar.NewReader(r)
	tr.RawAccounting = true
	return &Scanner{src: r, tr: tr}
}

// Next returns the next entry, or io.EOF after the last one. The padding of
// the previous entry is available from PrevPad after Next returns.
func (s *Scanner) Next() (*Entry, error) {
	if s.done {
		return nil, io.EOF
	}
	// Drain what the caller left of the previous payload, so the raw
	// accounting below only sees padding and header blocks.
	if s.prev != nil {
		if _, err := io.Copy(io.Discard, s.prev.Payload); err != nil {
			return nil, err
		}
	}
	padLen := 0
	if s.prev != nil {
		padLen = int(padding(s.prev.Header))
	}
	hdr, err := s.tr.Next()
	raw := s.tr.RawBytes()
	if len(raw) < padLen {
		padLen = len(raw)
	}
	s.pad = append(s.pad[:0], raw[:padLen]...)
	raw = raw[padLen:]
	if err == io.EOF {
		if s.nEntry == 0 && len(raw) == 0 {
			return nil, fmt.Errorf("%w: empty stream", ErrNotTar)
		}
		s.done = true
		s.prev = nil
		// What remains is the end-of-archive marker plus any zero fill up to
		// the record size; keep all of it.
		rest, rerr := io.ReadAll(io.LimitReader(s.src, maxTrailer+1))
		if rerr != nil {
			return nil, rerr
		}
		if len(rest) > maxTrailer {
			return nil, ErrTrailingData
		}
		s.trailer = append(append([]byte(nil), raw...), rest...)
		return nil, io.EOF
	}
	if err != nil {
		if s.nEntry == 0 && errors.Is(err, tar.ErrHeader) {
			return nil, fmt.Errorf("%w: %w", ErrNotTar, err)
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) {
			return nil, fmt.Errorf("%w: reading header: %w", ErrInvalid, err)
		}
		return nil, fmt.Errorf("reading tar header: %w", err)
	}
	if err := checkHeader(hdr); err != nil {
		return nil, err
	}
	s.nEntry++
	e := &Entry{Header: hdr, Raw: append([]byte(nil), raw...), Payload: payloadReader{s.tr}}
	s.prev = e
	return e, nil
}

// PrevPad returns the padding bytes that followed the previous entry's
// payload, as found in the source. It is valid until the next call to Next.
func (s *Scanner) PrevPad() []byte { return s.pad }

// Trailer returns the end-of-archive bytes (normally 1024 zero bytes, plus
// any record fill) once Next has returned io.EOF.
func (s *Scanner) Trailer() []byte { return s.trailer }

// payloadReader turns a truncated payload into io.ErrUnexpectedEOF, so that a
// short stream is never mistaken for a complete file.
type payloadReader struct{ tr *tar.Reader }

func (p payloadReader) Read(b []byte) (int, error) {
	n, err := p.tr.Read(b)
	if err == io.ErrUnexpectedEOF {
		return n, fmt.Errorf("%w: payload: %w", ErrInvalid, err)
	}
	return n, err
}

// padding is the number of bytes that follow hdr's payload to reach a block
// boundary. Only types with a payload have one.
func padding(hdr *tar.Header) int64 {
	if !hasPayload(hdr) {
		return 0
	}
	return -hdr.Size & (BlockSize - 1)
}

// hasPayload reports whether the tar reader exposes a payload for hdr; the
// other types are header-only whatever their size field says.
func hasPayload(hdr *tar.Header) bool {
	switch hdr.Typeflag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return false
	}
	return hdr.Size > 0
}

func checkHeader(hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return fmt.Errorf("%w: %q", ErrSparse, hdr.Name)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("%w: %q", ErrSparse, hdr.Name)
		}
	}
	if err := CheckName(hdr.Name); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeLink {
		if err := CheckName(hdr.Linkname); err != nil {
			return fmt.Errorf("hard link %q: %w", hdr.Name, err)
		}
	}
	return nil
}

// CheckName rejects entry names that are absolute or contain a ".."
// element. A leading "./" is fine.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrUnsafePath)
	}
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("%w: %q is absolute", ErrUnsafePath, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return fmt.Errorf("%w: %q contains \"..\"", ErrUnsafePath, name)
		}
	}
	return nil
}

// CleanName is the canonical form of an entry name, as eStargz readers and
// containers/storage use it: relative, no "./" prefix, no trailing slash.
func CleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}
