package toc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Layer annotations of zstd:chunked layers as containers/storage >= 1.54
// (podman >= 5.1) writes and reads them (go.podman.io/storage
// pkg/chunked/internal/minimal/compression.go). They are copied here rather
// than imported: the package that defines them is internal.
const (
	// AnnotationZstdChunkedManifestChecksum is "sha256:<hex>" of the
	// zstd-compressed TOC bytes (the skippable frame's payload).
	AnnotationZstdChunkedManifestChecksum = "io.github.containers.zstd-chunked.manifest-checksum"
	// AnnotationZstdChunkedManifestPosition is "offset:compressedLength:uncompressedLength:1",
	// the position of the TOC payload in the blob and the manifest type.
	AnnotationZstdChunkedManifestPosition = "io.github.containers.zstd-chunked.manifest-position"
	// AnnotationZstdChunkedTarSplitPosition is "offset:compressedLength:uncompressedLength"
	// of the tar-split payload.
	AnnotationZstdChunkedTarSplitPosition = "io.github.containers.zstd-chunked.tarsplit-position"

	// LegacyAnnotationZstdChunkedManifestChecksum and
	// LegacyAnnotationZstdChunkedManifestPosition are the keys of the format
	// before containers/storage 1.44 (Debian 12's podman and skopeo), which
	// has a 40-byte footer and no tar-split.
	LegacyAnnotationZstdChunkedManifestChecksum = "io.containers.zstd-chunked.manifest-checksum"
	LegacyAnnotationZstdChunkedManifestPosition = "io.containers.zstd-chunked.manifest-position"
)

// MediaTypeZstdLayer is the media type of zstd:chunked layers: plain OCI zstd.
const MediaTypeZstdLayer = "application/vnd.oci.image.layer.v1.tar+zstd"

// Framing of zstd:chunked blobs. The blob is a zstd stream of the exact
// layer tar, one frame per file chunk, followed by three skippable frames:
// the TOC, the tar-split, and the footer.
const (
	// SkippableFrameMagic starts a zstd skippable frame (little endian
	// 0x184D2A50), followed by a uint32 little-endian payload length.
	SkippableFrameMagic = 0x184D2A50
	// SkippableFrameHeaderSize is the magic plus the length.
	SkippableFrameHeaderSize = 8
	// ZstdChunkedFooterSize is the size of the footer payload, seven
	// little-endian uint64 fields and the 8-byte magic:
	//
	//	 0  TOC payload offset        32  tar-split payload offset
	//	 8  TOC compressed length     40  tar-split compressed length
	//	16  TOC uncompressed length   48  tar-split uncompressed length
	//	24  manifest type (1)         56  "GNUlInUx"
	ZstdChunkedFooterSize = 64
	// ManifestTypeCRFS is the only manifest type readers accept.
	ManifestTypeCRFS = 1
	// ChunkTypeZeros marks a chunk whose bytes are all zero; readers make a
	// hole instead of fetching it.
	ChunkTypeZeros = "zeros"
)

// ZstdChunkedFooterMagic ends the footer ("GNUlInUx"; the legacy 40-byte
// footer used "GnUlInUx").
var ZstdChunkedFooterMagic = [8]byte{'G', 'N', 'U', 'l', 'I', 'n', 'U', 'x'}

// ErrNotZstdChunked is returned for footers and annotations that are not
// those of a current zstd:chunked blob.
var ErrNotZstdChunked = errors.New("not a zstd:chunked blob")

// ZstdChunkedTOC is the TOC ("manifest") of a zstd:chunked layer, serialised
// as compact JSON and compressed as one zstd frame.
type ZstdChunkedTOC struct {
	Version int                `json:"version"`
	Entries []ZstdChunkedEntry `json:"entries"`
	// TarSplitDigest is the sha256 of the compressed tar-split payload.
	TarSplitDigest digest.Digest `json:"tarSplitDigest,omitempty"`
}

// ZstdChunkedEntry is one TOC entry (containers/storage minimal.FileMetadata).
// A regular file is a "reg" entry with the file's metadata, whole-file
// digest, Offset of its first frame and EndOffset of its last, followed by a
// "chunk" entry for each further chunk. With two or more chunks, the reg
// entry also carries chunk 0's ChunkSize, ChunkDigest and ChunkType; with
// one chunk it carries no chunk fields.
type ZstdChunkedEntry struct {
	Type        string            `json:"type"`
	Name        string            `json:"name"`
	Linkname    string            `json:"linkName,omitempty"`
	Mode        int64             `json:"mode,omitempty"`
	Size        int64             `json:"size,omitempty"`
	UID         int               `json:"uid,omitempty"`
	GID         int               `json:"gid,omitempty"`
	ModTime     *time.Time        `json:"modtime,omitempty"`
	AccessTime  *time.Time        `json:"accesstime,omitempty"`
	ChangeTime  *time.Time        `json:"changetime,omitempty"`
	Devmajor    int64             `json:"devMajor,omitempty"`
	Devminor    int64             `json:"devMinor,omitempty"`
	Xattrs      map[string]string `json:"xattrs,omitempty"`
	Digest      string            `json:"digest,omitempty"`
	Offset      int64             `json:"offset,omitempty"`
	EndOffset   int64             `json:"endOffset,omitempty"`
	ChunkSize   int64             `json:"chunkSize,omitempty"`
	ChunkOffset int64             `json:"chunkOffset,omitempty"`
	ChunkDigest string            `json:"chunkDigest,omitempty"`
	ChunkType   string            `json:"chunkType,omitempty"`
}

// ZstdChunkedFooter is the decoded 64-byte footer.
type ZstdChunkedFooter struct {
	Offset, LengthCompressed, LengthUncompressed, ManifestType           uint64
	OffsetTarSplit, LengthCompressedTarSplit, LengthUncompressedTarSplit uint64
}

// MarshalBinary encodes the footer payload (without the skippable frame header).
func (f ZstdChunkedFooter) MarshalBinary() ([]byte, error) {
	b := make([]byte, ZstdChunkedFooterSize)
	for i, v := range []uint64{f.Offset, f.LengthCompressed, f.LengthUncompressed, f.ManifestType,
		f.OffsetTarSplit, f.LengthCompressedTarSplit, f.LengthUncompressedTarSplit} {
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
	copy(b[56:], ZstdChunkedFooterMagic[:])
	return b, nil
}

// ParseZstdChunkedFooter decodes a footer payload.
func ParseZstdChunkedFooter(b []byte) (ZstdChunkedFooter, error) {
	if len(b) != ZstdChunkedFooterSize || string(b[56:]) != string(ZstdChunkedFooterMagic[:]) {
		return ZstdChunkedFooter{}, fmt.Errorf("%w: no 64-byte GNUlInUx footer", ErrNotZstdChunked)
	}
	var v [7]uint64
	for i := range v {
		v[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return ZstdChunkedFooter{v[0], v[1], v[2], v[3], v[4], v[5], v[6]}, nil
}

// SkippableFrame wraps payload in a zstd skippable frame.
func SkippableFrame(payload []byte) []byte {
	b := make([]byte, SkippableFrameHeaderSize, SkippableFrameHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(b, SkippableFrameMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(payload)))
	return append(b, payload...)
}

// Position locates a compressed section of a blob, as the position
// annotations state it.
type Position struct {
	Offset, Compressed, Uncompressed int64
}

// String formats p for a tarsplit-position annotation; the
// manifest-position annotation appends ":1".
func (p Position) String() string {
	return fmt.Sprintf("%d:%d:%d", p.Offset, p.Compressed, p.Uncompressed)
}

// ParseManifestPosition parses a manifest-position annotation and checks
// that its manifest type is 1.
func ParseManifestPosition(s string) (Position, error) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return Position{}, fmt.Errorf("%w: manifest-position %q is not offset:length:length:type", ErrNotZstdChunked, s)
	}
	if f[3] != strconv.Itoa(ManifestTypeCRFS) {
		return Position{}, fmt.Errorf("%w: manifest type %q, want %d", ErrNotZstdChunked, f[3], ManifestTypeCRFS)
	}
	return parsePosition(s, f[:3])
}

// ParseTarSplitPosition parses a tarsplit-position annotation.
func ParseTarSplitPosition(s string) (Position, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return Position{}, fmt.Errorf("%w: tarsplit-position %q is not offset:length:length", ErrNotZstdChunked, s)
	}
	return parsePosition(s, f)
}

func parsePosition(s string, f []string) (Position, error) {
	var v [3]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || n < 0 {
			return Position{}, fmt.Errorf("%w: position %q has a bad number %q", ErrNotZstdChunked, s, f[i])
		}
		v[i] = n
	}
	return Position{Offset: v[0], Compressed: v[1], Uncompressed: v[2]}, nil
}
