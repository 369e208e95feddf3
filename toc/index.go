package toc

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// Format names a seekable layer format.
type Format string

const (
	// FormatEStargz is eStargz (51-byte footer).
	FormatEStargz Format = "estargz"
	// FormatStargz is eStargz's predecessor, CRFS stargz (47-byte footer).
	FormatStargz Format = "stargz"
	// FormatZstdChunked is zstd:chunked as containers/storage >= 1.54 writes it.
	FormatZstdChunked Format = "zstd:chunked"
	// FormatZstdChunkedLegacy is zstd:chunked before containers/storage
	// 1.44: io.containers.* annotations, a 40-byte footer, no tar-split.
	FormatZstdChunkedLegacy Format = "zstd:chunked-legacy"
)

// MaxEntries bounds the number of TOC entries Read accepts (a 1 TiB disk
// in 256 KiB chunks has 4 Mi entries).
const MaxEntries = 8 << 20

// Legacy footers.
const (
	stargzFooterSize          = 47 // gzip header with extra "%016xSTARGZ", empty deflate, trailer
	legacyZstdFooterSize      = 40 // offset, length, raw length, type, "GnUlInUx"
	zstdFooterFrameSize       = SkippableFrameHeaderSize + ZstdChunkedFooterSize
	legacyZstdFooterFrameSize = SkippableFrameHeaderSize + legacyZstdFooterSize
)

var legacyZstdMagic = [8]byte{'G', 'n', 'U', 'l', 'I', 'n', 'U', 'x'}

// DefaultTail is how many bytes Read fetches from the end of a blob in its
// first read: the footer and, for most disk images, the whole TOC
// (eStargz: about 100 KiB per 2 GiB of disk at 256 KiB chunks).
const DefaultTail = 512 << 10

var (
	// ErrNotSeekable is returned for blobs that are not in a seekable
	// format: plain gzip or zstd layers.
	ErrNotSeekable = errors.New("layer is not seekable (no eStargz or zstd:chunked index); make it seekable with `lazydisk convert`")
	// ErrTOCDigest is returned when the TOC does not match the digest in
	// the layer's annotation.
	ErrTOCDigest = errors.New("TOC does not match the layer's TOC digest annotation")
	// ErrBothTOCs is returned for layers annotated as both eStargz and
	// zstd:chunked, which containers/storage refuses too.
	ErrBothTOCs = errors.New("layer carries both eStargz and zstd:chunked TOC annotations")
	// ErrInvalid is wrapped by errors about malformed footers and TOCs.
	ErrInvalid = errors.New("invalid seekable layer index")
)

// Index is a seekable layer's TOC in a form that does not depend on the
// format: files and, for regular files, the chunks a reader fetches.
type Index struct {
	Format Format
	// Digest identifies the TOC as the format's annotation does: eStargz
	// hashes the uncompressed JSON, zstd:chunked the compressed TOC.
	Digest digest.Digest
	// Annotated is the digest from the layer's annotation, "" if it had
	// none. Read fails when both are set and differ.
	Annotated digest.Digest
	// DataEnd is where chunk data ends in the blob (the TOC's offset).
	DataEnd int64
	// TOCOffset and TOCSize locate the compressed TOC in the blob.
	TOCOffset, TOCSize int64
	// TOCUncompressed is the length of the uncompressed TOC.
	TOCUncompressed int64
	// TarSplit locates zstd:chunked's tar-split, when the footer was read.
	TarSplit *Position
	// Files lists the TOC's entries in order, chunks folded into their file.
	Files  []File
	byName map[string]int
}

// File is one entry of the layer.
type File struct {
	// Name is the entry's cleaned path, relative, without "./".
	Name string
	// Type is reg, dir, symlink, hardlink, char, block or fifo.
	Type     string
	Size     int64
	Mode     int64
	UID, GID int
	ModTime  time.Time
	LinkName string
	// DevMajor and DevMinor are a character or block device's numbers.
	DevMajor, DevMinor int64
	// Xattrs are the entry's extended attributes (values decoded).
	Xattrs map[string][]byte
	// Digest is the sha256 of the whole file, when the TOC has it.
	Digest digest.Digest
	// Chunks tile a regular file's bytes in order.
	Chunks []Chunk
}

// Chunk is a piece of a file that can be fetched and decompressed alone.
type Chunk struct {
	// Offset and Size place the chunk in the (uncompressed) file.
	Offset, Size int64
	// CompressedOffset and CompressedSize are the blob range to fetch. For
	// eStargz the range may hold more than the chunk (tar padding and the
	// next headers); decompress Size bytes of it.
	CompressedOffset, CompressedSize int64
	// Digest is the sha256 of the chunk's bytes, "" if the TOC has none.
	Digest digest.Digest
	// Zero is set for zstd:chunked zeros chunks, which need no fetching.
	Zero bool
}

// Lookup returns the file with the given name ("disk/x.img", "./disk/x.img"
// and "/disk/x.img" are the same), following hard links.
func (ix *Index) Lookup(name string) (*File, bool) {
	for range 32 { // bounded: a hard link to a hard link ...
		i, ok := ix.byName[cleanName(name)]
		if !ok {
			return nil, false
		}
		f := &ix.Files[i]
		if f.Type != "hardlink" {
			return f, true
		}
		name = f.LinkName
	}
	return nil, false
}

// ChunksFor returns the chunks that cover the bytes [off, off+n) of f,
// clamped to the file's size.
func (f *File) ChunksFor(off, n int64) []Chunk {
	if off < 0 || n <= 0 || off >= f.Size {
		return nil
	}
	end := min(off+n, f.Size)
	first := sort.Search(len(f.Chunks), func(i int) bool { return f.Chunks[i].Offset+f.Chunks[i].Size > off })
	last := first
	for last < len(f.Chunks) && f.Chunks[last].Offset < end {
		last++
	}
	return f.Chunks[first:last]
}

// ReadOption configures Read.
type ReadOption func(*readOptions)

type readOptions struct{ tail int64 }

// WithTail sets how many bytes the first read fetches from the end of the
// blob. The default is DefaultTail (512 KiB); Read reads once more only if
// the TOC starts before that.
func WithTail(n int64) ReadOption { return func(o *readOptions) { o.tail = n } }

// Read reads the index of the blob of size bytes in ra, a layer whose
// descriptor has the given annotations. The format is taken from the
// annotations, or from the footer when there are none; a TOC digest in the
// annotations must match. It makes one ReadAt when the tail covers the TOC
// (or, for annotated zstd:chunked, exactly the TOC) and at most two otherwise.
func Read(ra io.ReaderAt, size int64, annotations map[string]string, opts ...ReadOption) (*Index, error) {
	o := readOptions{tail: DefaultTail}
	for _, opt := range opts {
		opt(&o)
	}
	_, esgzAnn := annotations[AnnotationTOCDigest]
	zstdAnn, hasZstd := annotations[AnnotationZstdChunkedManifestChecksum]
	if esgzAnn && hasZstd {
		return nil, ErrBothTOCs
	}
	if hasZstd {
		pos, err := ParseManifestPosition(annotations[AnnotationZstdChunkedManifestPosition])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		ix, err := readZstdAt(ra, size, pos, FormatZstdChunked)
		if err != nil {
			return nil, err
		}
		return ix, checkAnnotated(ix, zstdAnn)
	}
	if legacy, ok := annotations[LegacyAnnotationZstdChunkedManifestChecksum]; ok {
		pos, err := ParseManifestPosition(annotations[LegacyAnnotationZstdChunkedManifestPosition])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		ix, err := readZstdAt(ra, size, pos, FormatZstdChunkedLegacy)
		if err != nil {
			return nil, err
		}
		return ix, checkAnnotated(ix, legacy)
	}
	ix, err := readTail(ra, size, o.tail)
	if err != nil {
		return nil, err
	}
	want := annotations[AnnotationTOCDigest]
	if ix.Format == FormatZstdChunked || ix.Format == FormatZstdChunkedLegacy {
		want = "" // found by its footer; its annotations are missing
	}
	return ix, checkAnnotated(ix, want)
}

func checkAnnotated(ix *Index, want string) error {
	if want == "" {
		return nil
	}
	d, err := digest.Parse(want)
	if err != nil {
		return fmt.Errorf("%w: TOC digest annotation %q: %w", ErrInvalid, want, err)
	}
	ix.Annotated = d
	if d != ix.Digest {
		return fmt.Errorf("%w: the TOC hashes to %s, the annotation says %s", ErrTOCDigest, ix.Digest, d)
	}
	return nil
}

// readTail reads the end of the blob and finds the format by its footer.
func readTail(ra io.ReaderAt, size, tail int64) (*Index, error) {
	if size < stargzFooterSize {
		return nil, ErrNotSeekable
	}
	tail = min(max(tail, zstdFooterFrameSize), size)
	buf := make([]byte, tail)
	if err := readFull(ra, buf, size-tail); err != nil {
		return nil, fmt.Errorf("reading the end of the blob: %w", err)
	}
	start := size - tail
	// section returns [off, off+n) of the blob, from buf when it is there.
	section := func(off, n int64) ([]byte, error) {
		if off < 0 || n < 0 || off+n > size {
			return nil, fmt.Errorf("%w: section [%d, %d) is outside the %d-byte blob", ErrInvalid, off, off+n, size)
		}
		if n > MaxTOCSize {
			return nil, fmt.Errorf("%w: compressed TOC is %d bytes, over the %d MiB limit", ErrInvalid, n, MaxTOCSize>>20)
		}
		if off >= start {
			return buf[off-start : off-start+n], nil
		}
		// Fetch only what the tail lacks.
		b := make([]byte, n)
		head := min(n, start-off)
		if err := readFull(ra, b[:head], off); err != nil {
			return nil, fmt.Errorf("reading the TOC: %w", err)
		}
		copy(b[head:], buf)
		return b, nil
	}
	if tail >= zstdFooterFrameSize {
		if f, ok := zstdFooter(buf[tail-zstdFooterFrameSize:]); ok {
			ix, err := readZstdSection(section, size, Position{Offset: int64(f.Offset), Compressed: int64(f.LengthCompressed), Uncompressed: int64(f.LengthUncompressed)}, FormatZstdChunked)
			if err == nil {
				ix.TarSplit = &Position{Offset: int64(f.OffsetTarSplit), Compressed: int64(f.LengthCompressedTarSplit), Uncompressed: int64(f.LengthUncompressedTarSplit)}
			}
			return ix, err
		}
	}
	if tail >= legacyZstdFooterFrameSize {
		if pos, ok := legacyZstdFooter(buf[tail-legacyZstdFooterFrameSize:]); ok {
			return readZstdSection(section, size, pos, FormatZstdChunkedLegacy)
		}
	}
	if tail >= EStargzFooterSize {
		if off, err := ParseEStargzFooter(buf[tail-EStargzFooterSize:]); err == nil {
			return readGzipTOC(section, size, off, EStargzFooterSize, FormatEStargz)
		}
	}
	if off, ok := stargzFooter(buf[tail-stargzFooterSize:]); ok {
		return readGzipTOC(section, size, off, stargzFooterSize, FormatStargz)
	}
	return nil, ErrNotSeekable
}

// zstdFooter parses a 72-byte skippable frame holding the 64-byte footer.
func zstdFooter(b []byte) (ZstdChunkedFooter, bool) {
	if binary.LittleEndian.Uint32(b) != SkippableFrameMagic || binary.LittleEndian.Uint32(b[4:]) != ZstdChunkedFooterSize {
		return ZstdChunkedFooter{}, false
	}
	f, err := ParseZstdChunkedFooter(b[SkippableFrameHeaderSize:])
	return f, err == nil && f.ManifestType == ManifestTypeCRFS
}

// legacyZstdFooter parses the 40-byte footer of legacy zstd:chunked.
func legacyZstdFooter(b []byte) (Position, bool) {
	if binary.LittleEndian.Uint32(b) != SkippableFrameMagic || binary.LittleEndian.Uint32(b[4:]) != legacyZstdFooterSize {
		return Position{}, false
	}
	p := b[SkippableFrameHeaderSize:]
	if !bytes.Equal(p[32:], legacyZstdMagic[:]) || binary.LittleEndian.Uint64(p[24:]) != ManifestTypeCRFS {
		return Position{}, false
	}
	return Position{Offset: int64(binary.LittleEndian.Uint64(p)), Compressed: int64(binary.LittleEndian.Uint64(p[8:])),
		Uncompressed: int64(binary.LittleEndian.Uint64(p[16:]))}, true
}

// stargzFooter parses the legacy 47-byte stargz footer.
func stargzFooter(b []byte) (int64, bool) {
	if len(b) != stargzFooterSize || b[0] != 0x1f || b[1] != 0x8b || b[3]&0x04 == 0 ||
		binary.LittleEndian.Uint16(b[10:]) != 22 || string(b[28:34]) != "STARGZ" {
		return 0, false
	}
	off, err := strconv.ParseInt(string(b[12:28]), 16, 64)
	return off, err == nil && off >= 0
}

// readZstdAt reads a zstd:chunked TOC whose position the annotations give:
// one read of exactly the TOC.
func readZstdAt(ra io.ReaderAt, size int64, pos Position, f Format) (*Index, error) {
	return readZstdSection(func(off, n int64) ([]byte, error) {
		if off < 0 || n < 0 || off+n > size {
			return nil, fmt.Errorf("%w: TOC position [%d, %d) is outside the %d-byte blob", ErrInvalid, off, off+n, size)
		}
		if n > MaxTOCSize {
			return nil, fmt.Errorf("%w: compressed TOC is %d bytes, over the %d MiB limit", ErrInvalid, n, MaxTOCSize>>20)
		}
		b := make([]byte, n)
		if err := readFull(ra, b, off); err != nil {
			return nil, fmt.Errorf("reading the TOC: %w", err)
		}
		return b, nil
	}, size, pos, f)
}

func readZstdSection(section func(off, n int64) ([]byte, error), size int64, pos Position, f Format) (*Index, error) {
	if pos.Uncompressed > MaxTOCSize {
		return nil, fmt.Errorf("%w: TOC is %d bytes, over the %d MiB limit", ErrInvalid, pos.Uncompressed, MaxTOCSize>>20)
	}
	payload, err := section(pos.Offset, pos.Compressed)
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(MaxTOCSize)))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(payload, make([]byte, 0, max(0, min(pos.Uncompressed, 4<<20))))
	if err != nil {
		return nil, fmt.Errorf("%w: decompressing the TOC: %w", ErrInvalid, err)
	}
	// The data ends where the TOC's skippable frame starts.
	dataEnd := pos.Offset - SkippableFrameHeaderSize
	t, err := DecodeZstdChunkedTOC(raw, dataEnd)
	if err != nil {
		return nil, err
	}
	ix := &Index{Format: f, Digest: digest.Canonical.FromBytes(payload), TOCOffset: pos.Offset, TOCSize: pos.Compressed,
		TOCUncompressed: int64(len(raw)), DataEnd: dataEnd}
	if err := ix.addZstdEntries(t.Entries); err != nil {
		return nil, err
	}
	return ix, nil
}

// readGzipTOC reads an eStargz or stargz TOC member at off.
func readGzipTOC(section func(off, n int64) ([]byte, error), size, off, footer int64, f Format) (*Index, error) {
	member, err := section(off, size-footer-off)
	if err != nil {
		return nil, err
	}
	t, dgst, err := decodeTOC(member)
	if err != nil {
		return nil, err
	}
	ix := &Index{Format: f, Digest: dgst, TOCOffset: off, TOCSize: size - footer - off, DataEnd: off}
	if err := ix.addEStargzEntries(t.Entries); err != nil {
		return nil, err
	}
	return ix, nil
}

// addEStargzEntries folds eStargz entries into files. A chunk's compressed
// range runs to the next chunk's offset or to the TOC.
func (ix *Index) addEStargzEntries(entries []*estargz.TOCEntry) error {
	if len(entries) > MaxEntries {
		return fmt.Errorf("%w: %d TOC entries, over the limit of %d", ErrInvalid, len(entries), MaxEntries)
	}
	ix.byName = make(map[string]int, len(entries))
	var cur *File
	for _, e := range entries {
		switch e.Type {
		case "chunk":
			if cur == nil || cur.Type != "reg" || (e.Name != "" && cleanName(e.Name) != cur.Name) {
				return fmt.Errorf("%w: chunk of %q does not follow its file", ErrInvalid, e.Name)
			}
			if err := cur.addChunk(e.ChunkOffset, e.ChunkSize, e.Offset, e.ChunkDigest, false); err != nil {
				return err
			}
			continue
		case "reg", "dir", "symlink", "hardlink", "char", "block", "fifo":
		default:
			return fmt.Errorf("%w: entry %q has unknown type %q", ErrInvalid, e.Name, e.Type)
		}
		if e.InnerOffset != 0 {
			return fmt.Errorf("%w: %q uses innerOffset (several chunks per gzip member), which lazydisk does not read", ErrInvalid, e.Name)
		}
		f, err := ix.addFile(e.Name, e.Type, e.Size, e.Mode, e.UID, e.GID, e.ModTime3339, e.LinkName, e.Digest)
		if err != nil {
			return err
		}
		f.DevMajor, f.DevMinor = int64(e.DevMajor), int64(e.DevMinor)
		if len(e.Xattrs) > 0 {
			f.Xattrs = maps.Clone(e.Xattrs)
		}
		cur = f
		if e.Type == "reg" && e.Size > 0 {
			dg := e.ChunkDigest
			if dg == "" && (e.ChunkSize == 0 || e.ChunkSize == e.Size) {
				dg = e.Digest // a one-chunk file without chunk digest (old stargz)
			}
			if err := cur.addChunk(e.ChunkOffset, e.ChunkSize, e.Offset, dg, false); err != nil {
				return err
			}
		}
	}
	return ix.finish(func(f *File, i int) int64 {
		if i+1 < len(f.Chunks) {
			return f.Chunks[i+1].CompressedOffset
		}
		return -1 // the next data in the blob
	})
}

// addZstdEntries folds zstd:chunked entries into files. A chunk's frame
// runs to the next chunk's offset, the last one to the file's endOffset.
func (ix *Index) addZstdEntries(entries []ZstdChunkedEntry) error {
	if len(entries) > MaxEntries {
		return fmt.Errorf("%w: %d TOC entries, over the limit of %d", ErrInvalid, len(entries), MaxEntries)
	}
	ix.byName = make(map[string]int, len(entries))
	ends := map[string]int64{}
	var cur *File
	for _, e := range entries {
		if e.Type == "chunk" {
			if cur == nil || cur.Type != "reg" || cleanName(e.Name) != cur.Name {
				return fmt.Errorf("%w: chunk of %q does not follow its file", ErrInvalid, e.Name)
			}
			if err := cur.addChunk(e.ChunkOffset, e.ChunkSize, e.Offset, e.ChunkDigest, e.ChunkType == ChunkTypeZeros); err != nil {
				return err
			}
			continue
		}
		mt := ""
		if e.ModTime != nil {
			mt = e.ModTime.Format(time.RFC3339Nano)
		}
		f, err := ix.addFile(e.Name, e.Type, e.Size, e.Mode, e.UID, e.GID, mt, e.Linkname, e.Digest)
		if err != nil {
			return err
		}
		f.DevMajor, f.DevMinor = e.Devmajor, e.Devminor
		for k, v := range e.Xattrs {
			// containers/storage writes xattr values in base64.
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return fmt.Errorf("%w: %q has xattr %q that is not base64", ErrInvalid, e.Name, k)
			}
			if f.Xattrs == nil {
				f.Xattrs = map[string][]byte{}
			}
			f.Xattrs[k] = b
		}
		cur = f
		if e.Type == "reg" && e.Size > 0 {
			size, dg := e.ChunkSize, e.ChunkDigest
			if size == 0 { // one chunk: the whole file
				size, dg = e.Size, e.Digest
			}
			if err := cur.addChunk(0, size, e.Offset, dg, e.ChunkType == ChunkTypeZeros); err != nil {
				return err
			}
			ends[cur.Name] = e.EndOffset
		}
	}
	return ix.finish(func(f *File, i int) int64 {
		if i+1 < len(f.Chunks) {
			return f.Chunks[i+1].CompressedOffset
		}
		return ends[f.Name]
	})
}

func (ix *Index) addFile(name, typ string, size, mode int64, uid, gid int, modTime, link, dgst string) (*File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if typ == "hardlink" {
		if err := checkName(link); err != nil {
			return nil, err
		}
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: %q has negative size %d", ErrInvalid, name, size)
	}
	f := File{Name: cleanName(name), Type: typ, Size: size, Mode: mode, UID: uid, GID: gid, LinkName: link}
	if typ == "hardlink" {
		f.LinkName = cleanName(link)
	}
	if modTime != "" {
		t, err := time.Parse(time.RFC3339Nano, modTime)
		if err != nil {
			return nil, fmt.Errorf("%w: %q has a bad modification time %q", ErrInvalid, name, modTime)
		}
		f.ModTime = t
	}
	if dgst != "" {
		d, err := digest.Parse(dgst)
		if err != nil {
			return nil, fmt.Errorf("%w: %q has a bad digest: %w", ErrInvalid, name, err)
		}
		f.Digest = d
	}
	ix.Files = append(ix.Files, f)
	ix.byName[f.Name] = len(ix.Files) - 1 // a later entry of the same name wins, as in tar
	return &ix.Files[len(ix.Files)-1], nil
}

// addChunk appends a chunk; size 0 means "to the end of the file".
func (f *File) addChunk(off, size, compressedOff int64, dgst string, zero bool) error {
	if size == 0 {
		size = f.Size - off
	}
	next := int64(0)
	if n := len(f.Chunks); n > 0 {
		next = f.Chunks[n-1].Offset + f.Chunks[n-1].Size
	}
	if off != next || size <= 0 || off+size > f.Size {
		return fmt.Errorf("%w: %q: chunk [%d, %d) does not continue the file at %d (size %d)", ErrInvalid, f.Name, off, off+size, next, f.Size)
	}
	if compressedOff <= 0 {
		return fmt.Errorf("%w: %q: chunk at %d has no blob offset", ErrInvalid, f.Name, off)
	}
	c := Chunk{Offset: off, Size: size, CompressedOffset: compressedOff, Zero: zero}
	if dgst != "" {
		d, err := digest.Parse(dgst)
		if err != nil {
			return fmt.Errorf("%w: %q: chunk at %d has a bad digest: %w", ErrInvalid, f.Name, off, err)
		}
		c.Digest = d
	}
	f.Chunks = append(f.Chunks, c)
	return nil
}

// finish checks that chunks tile their files and computes compressed
// sizes. end returns where chunk i of f ends in the blob, or -1 for "at the
// next chunk in blob order, or the end of the data".
func (ix *Index) finish(end func(f *File, i int) int64) error {
	type ref struct{ f, c int }
	var all []ref
	for fi := range ix.Files {
		f := &ix.Files[fi]
		if f.Type == "reg" && f.Size > 0 {
			if n := len(f.Chunks); n == 0 || f.Chunks[n-1].Offset+f.Chunks[n-1].Size != f.Size {
				return fmt.Errorf("%w: the chunks of %q do not cover its %d bytes", ErrInvalid, f.Name, f.Size)
			}
		}
		for ci := range f.Chunks {
			all = append(all, ref{fi, ci})
		}
	}
	sort.SliceStable(all, func(a, b int) bool {
		return ix.Files[all[a].f].Chunks[all[a].c].CompressedOffset < ix.Files[all[b].f].Chunks[all[b].c].CompressedOffset
	})
	for k, r := range all {
		f := &ix.Files[r.f]
		c := &f.Chunks[r.c]
		e := end(f, r.c)
		if e < 0 {
			e = ix.DataEnd
			if k+1 < len(all) {
				e = ix.Files[all[k+1].f].Chunks[all[k+1].c].CompressedOffset
			}
		}
		if k+1 < len(all) && ix.Files[all[k+1].f].Chunks[all[k+1].c].CompressedOffset == c.CompressedOffset {
			return fmt.Errorf("%w: two chunks start at blob offset %d", ErrInvalid, c.CompressedOffset)
		}
		if e <= c.CompressedOffset || e > ix.DataEnd {
			return fmt.Errorf("%w: %q: chunk at %d has blob range [%d, %d) outside the data (ends at %d)", ErrInvalid, f.Name, c.Offset, c.CompressedOffset, e, ix.DataEnd)
		}
		c.CompressedSize = e - c.CompressedOffset
	}
	return nil
}

// readFull reads len(b) bytes at off: io.EOF is fine only with all of them.
func readFull(ra io.ReaderAt, b []byte, off int64) error {
	n, err := ra.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("got %d of %d bytes at offset %d: %w", n, len(b), off, err)
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// checkName rejects names that escape the layer.
func checkName(name string) error {
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return fmt.Errorf("%w: entry name %q contains \"..\"", ErrInvalid, name)
		}
	}
	if cleanName(name) == "" && name != "." && name != "./" && name != "/" {
		return fmt.Errorf("%w: empty entry name", ErrInvalid)
	}
	return nil
}
