package qcow2

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Magic is the first four bytes of every qcow2 file: "QFI\xfb".
const Magic = "QFI\xfb"

// Header sizes: version 2 headers are 72 bytes; version 3 headers are at
// least 104 bytes (header_length at byte 100 says how long), and byte 104
// is the compression type when the header is longer than that.
const (
	headerV2Len    = 72
	headerV3MinLen = 104
)

// Incompatible feature bits (header bytes 72-79, version 3): a reader must
// refuse an image with a bit it does not know.
const (
	incompatDirty        = 1 << 0 // refcounts may be stale: harmless for reading
	incompatCorrupt      = 1 << 1 // qemu found the metadata corrupt
	incompatExternalData = 1 << 2 // guest data is in an external file
	incompatCompression  = 1 << 3 // compression_type (byte 104) is not deflate
	incompatExtendedL2   = 1 << 4 // 128-bit L2 entries with 32 subclusters
	incompatKnown        = incompatDirty | incompatCorrupt | incompatExternalData | incompatCompression | incompatExtendedL2
)

// Compression is the algorithm of an image's compressed clusters (header
// byte 104, version 3).
type Compression uint8

const (
	// Deflate is raw deflate (RFC 1951, no zlib header), the default.
	Deflate Compression = 0
	// Zstd is a zstd frame per cluster (qemu-img -o compression_type=zstd).
	Zstd Compression = 1
)

func (c Compression) String() string {
	switch c {
	case Deflate:
		return "deflate"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression type %d", uint8(c))
}

// Limits that keep a hostile header from making the reader allocate or
// loop without bound. qemu allows the same cluster sizes (512 B to 2 MiB)
// and an L1 table of at most 32 MiB.
const (
	minClusterBits = 9
	maxClusterBits = 21
	maxL1Bytes     = 32 << 20
	// maxHostOffset is one past the largest offset bits 9-55 of an L1 or L2
	// entry can name.
	maxHostOffset = 1 << 56
)

// Entry bit fields. L1 entries: bits 9-55 are the L2 table's offset. L2
// entries: bit 62 marks a compressed cluster; for a standard cluster bit 0
// is the zero flag and bits 9-55 the host cluster offset.
const (
	offsetMask     = 0x00ff_ffff_ffff_fe00
	l2Compressed   = 1 << 62
	l2ZeroFlag     = 1 << 0
	subclusters    = 32
	allocBitsMask  = 0xffff_ffff
	sectorSize     = 512
	extL2EntrySize = 16
)

// header is the parsed qcow2 header, checked against the file's size.
type header struct {
	version        uint32
	clusterBits    uint32
	size           int64 // virtual size
	l1Size         int64 // entries
	l1Offset       int64
	refcountOffset int64
	refcountLen    int64 // bytes
	incompat       uint64
	compression    Compression
	extendedL2     bool
}

func (h *header) clusterSize() int64 { return 1 << h.clusterBits }

// l2Entries is how many entries one L2 table (one cluster) holds.
func (h *header) l2Entries() int64 {
	if h.extendedL2 {
		return h.clusterSize() / extL2EntrySize
	}
	return h.clusterSize() / 8
}

// readHeader reads and checks the header at the start of r, a file of
// fileSize bytes.
func readHeader(r io.ReaderAt, fileSize int64) (*header, error) {
	var b [headerV3MinLen + 8]byte
	n, err := r.ReadAt(b[:], 0)
	if n < 4 {
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading qcow2 header: %w", err)
		}
		return nil, fmt.Errorf("%w: file has %d bytes", ErrNotQcow2, fileSize)
	}
	if string(b[:4]) != Magic {
		return nil, fmt.Errorf("%w: no QFI\\xfb magic at byte 0", ErrNotQcow2)
	}
	be := binary.BigEndian
	h := &header{version: be.Uint32(b[4:])}
	if h.version != 2 && h.version != 3 {
		return nil, fmt.Errorf("%w: version %d (only 2 and 3 are read)", ErrUnsupported, h.version)
	}
	hdrLen := int64(headerV2Len)
	if h.version == 3 {
		if n < headerV3MinLen {
			return nil, fmt.Errorf("%w: file ends inside the %d-byte version 3 header", ErrCorrupt, headerV3MinLen)
		}
		hdrLen = int64(be.Uint32(b[100:]))
		if hdrLen < headerV3MinLen {
			return nil, fmt.Errorf("%w: header_length %d is less than %d", ErrCorrupt, hdrLen, headerV3MinLen)
		}
	}
	if int64(n) < min(hdrLen, int64(len(b))) {
		return nil, fmt.Errorf("%w: file ends inside the %d-byte header", ErrCorrupt, hdrLen)
	}
	if be.Uint64(b[8:]) != 0 {
		return nil, fmt.Errorf("%w: refusing it, as KubeVirt does; flatten it first (qemu-img convert -O qcow2)", ErrBackingFile)
	}
	if m := be.Uint32(b[32:]); m != 0 {
		return nil, fmt.Errorf("%w (crypt_method %d)", ErrEncrypted, m)
	}
	h.clusterBits = be.Uint32(b[20:])
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: cluster_bits %d is outside %d-%d", ErrCorrupt, h.clusterBits, minClusterBits, maxClusterBits)
	}
	cs := h.clusterSize()
	if hdrLen > cs {
		return nil, fmt.Errorf("%w: header_length %d is larger than a cluster (%d bytes)", ErrCorrupt, hdrLen, cs)
	}
	size := be.Uint64(b[24:])
	if size > maxHostOffset {
		return nil, fmt.Errorf("%w: virtual size %d overflows", ErrCorrupt, size)
	}
	h.size = int64(size)
	h.l1Size = int64(be.Uint32(b[36:]))
	h.l1Offset = int64(be.Uint64(b[40:]) & (1<<63 - 1))
	if be.Uint64(b[40:]) >= maxHostOffset {
		return nil, fmt.Errorf("%w: L1 table offset %#x overflows", ErrCorrupt, be.Uint64(b[40:]))
	}
	rto := be.Uint64(b[48:])
	if rto >= maxHostOffset {
		return nil, fmt.Errorf("%w: refcount table offset %#x overflows", ErrCorrupt, rto)
	}
	h.refcountOffset = int64(rto)
	h.refcountLen = int64(be.Uint32(b[56:])) << h.clusterBits
	if h.version == 3 {
		h.incompat = be.Uint64(b[72:])
		if unknown := h.incompat &^ incompatKnown; unknown != 0 {
			return nil, fmt.Errorf("%w: unknown incompatible feature bits %#x", ErrUnsupported, unknown)
		}
		if h.incompat&incompatExternalData != 0 {
			return nil, fmt.Errorf("%w; only self-contained images are read", ErrExternalData)
		}
		if h.incompat&incompatCorrupt != 0 {
			return nil, fmt.Errorf("%w: the image is marked corrupt; repair it with qemu-img check -r all", ErrCorrupt)
		}
		if ro := be.Uint32(b[96:]); ro > 6 {
			return nil, fmt.Errorf("%w: refcount_order %d is above 6", ErrCorrupt, ro)
		}
		if hdrLen > headerV3MinLen {
			h.compression = Compression(b[104])
		}
		if h.compression != Deflate && h.incompat&incompatCompression == 0 {
			return nil, fmt.Errorf("%w: compression_type %d without its incompatible feature bit", ErrCorrupt, h.compression)
		}
		if h.compression != Deflate && h.compression != Zstd {
			return nil, fmt.Errorf("%w: %s", ErrUnsupported, h.compression)
		}
		if h.incompat&incompatExtendedL2 != 0 {
			if h.clusterBits < 14 {
				return nil, fmt.Errorf("%w: extended L2 entries with %d-byte clusters (16 KiB is the least)", ErrCorrupt, cs)
			}
			h.extendedL2 = true
		}
	}
	if err := h.checkTables(fileSize); err != nil {
		return nil, err
	}
	if err := checkExtensions(r, hdrLen, cs, fileSize); err != nil {
		return nil, err
	}
	return h, nil
}

// checkTables checks the L1 table's size and place, and the refcount
// table's place, against the virtual size and the file.
func (h *header) checkTables(fileSize int64) error {
	cs := h.clusterSize()
	span := cs * h.l2Entries() // guest bytes one L1 entry covers
	need := (h.size + span - 1) / span
	if h.l1Size < need {
		return fmt.Errorf("%w: L1 table has %d entries, the virtual size %d needs %d", ErrCorrupt, h.l1Size, h.size, need)
	}
	if h.l1Size*8 > maxL1Bytes {
		return fmt.Errorf("%w: L1 table of %d entries is larger than 32 MiB", ErrCorrupt, h.l1Size)
	}
	if h.l1Size > 0 {
		if h.l1Offset%cs != 0 || h.l1Offset < cs {
			return fmt.Errorf("%w: L1 table offset %#x is not a cluster after the header", ErrCorrupt, h.l1Offset)
		}
		if h.l1Offset+h.l1Size*8 > fileSize {
			return fmt.Errorf("%w: L1 table at %#x (%d bytes) ends past the end of the file (%d bytes)", ErrCorrupt, h.l1Offset, h.l1Size*8, fileSize)
		}
	}
	if h.refcountLen > 0 {
		if h.refcountOffset%cs != 0 || h.refcountOffset < cs || h.refcountOffset+h.refcountLen > fileSize {
			return fmt.Errorf("%w: refcount table at %#x (%d bytes) is unaligned or past the end of the file (%d bytes)", ErrCorrupt, h.refcountOffset, h.refcountLen, fileSize)
		}
		if h.l1Size > 0 && overlaps(h.l1Offset, h.l1Size*8, h.refcountOffset, h.refcountLen) {
			return fmt.Errorf("%w: L1 table at %#x overlaps the refcount table at %#x", ErrCorrupt, h.l1Offset, h.refcountOffset)
		}
	}
	return nil
}

// Header extension types that matter to a reader.
const (
	extEnd          = 0x00000000
	extExternalData = 0x44415441 // "DATA": the external data file's name
)

// checkExtensions walks the header extensions (type, length, data padded
// to 8 bytes) that follow the header in the first cluster.
func checkExtensions(r io.ReaderAt, off, cs, fileSize int64) error {
	var b [8]byte
	for off+8 <= cs {
		if off+8 > fileSize {
			return fmt.Errorf("%w: file ends inside the header extensions", ErrCorrupt)
		}
		if _, err := r.ReadAt(b[:], off); err != nil {
			return fmt.Errorf("reading qcow2 header extension at %d: %w", off, err)
		}
		typ, n := binary.BigEndian.Uint32(b[:]), int64(binary.BigEndian.Uint32(b[4:]))
		switch typ {
		case extEnd:
			return nil
		case extExternalData:
			return fmt.Errorf("%w; only self-contained images are read", ErrExternalData)
		}
		off += 8 + (n+7)&^7
	}
	if off > cs {
		return fmt.Errorf("%w: header extensions run past the first cluster", ErrCorrupt)
	}
	return nil
}

func overlaps(a, an, b, bn int64) bool { return a < b+bn && b < a+an }
