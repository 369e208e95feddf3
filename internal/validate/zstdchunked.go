package validate

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	tstar "github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/lazydisk/lazydisk/toc"
)

// zcTarTypes maps tar type flags to TOC entry types, as
// containers/storage's NewFileMetadata does; other type flags (PAX global
// headers, GNU sparse files) have no TOC representation.
var zcTarTypes = map[byte]string{
	tar.TypeReg:     toc.ZstdTypeReg,
	tar.TypeLink:    toc.ZstdTypeLink,
	tar.TypeChar:    toc.ZstdTypeChar,
	tar.TypeBlock:   toc.ZstdTypeBlock,
	tar.TypeDir:     toc.ZstdTypeDir,
	tar.TypeFifo:    toc.ZstdTypeFifo,
	tar.TypeSymlink: toc.ZstdTypeSymlink,
}

// paxSchilyXattr prefixes the PAX records that hold extended attributes.
const paxSchilyXattr = "SCHILY.xattr."

// ZstdChunked checks a zstd:chunked blob (current containers/storage >= 1.54
// format) against its layer annotations.
//
// It makes every check containers/storage makes before and during a partial
// pull (annotations, TOC checksum, TOC JSON and entries, decoded by
// toc.DecodeZstdChunkedTOC as the reader decodes them, TOC size limit,
// tar-split digest, TOC entries equal to the tar-split headers, whole-file
// digests),
// and the ones it skips: the footer and the three trailing skippable frames,
// the TOC being one zstd frame, the reg/chunk tiling, every chunk decoding to
// exactly its chunkSize bytes with its chunkDigest, zeros chunks being zero,
// and the tar-split reproducing the decompressed stream byte for byte, so
// that a partial and a full pull give the same tar. The whole stream must
// decompress to a valid tar, whose digest and length the Report carries for
// the caller to compare with the config's diff_id.
//
// The TOC is held in memory (at most toc.MaxTOCSize compressed and
// uncompressed); the tar-split and the data are streamed.
func ZstdChunked(ctx context.Context, sr *io.SectionReader, annotations map[string]string) (*Report, error) {
	l, err := zstdChunkedLayout(sr.Size(), annotations)
	if err != nil {
		return nil, err
	}
	if err := checkZstdChunkedTrailer(sr, l); err != nil {
		return nil, err
	}
	t, err := readZstdChunkedTOC(sr, l)
	if err != nil {
		return nil, err
	}
	ix := indexZstdChunkedTOC(t)
	if err := checkTarSplit(ctx, sr, l, t.TarSplitDigest, ix); err != nil {
		return nil, err
	}

	// The two passes over the data run in parallel. A chunk error is
	// reported in preference to a stream error, as it says which file and
	// chunk are wrong, so only the stream pass is stopped early.
	rep := &Report{TOCDigest: l.tocDigest}
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	var streamErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		rep.DiffID, rep.Uncompressed, streamErr = checkZstdChunkedStream(sctx, sr, l, ix)
	})
	var chunkErr error
	rep.Files, rep.Chunks, chunkErr = checkChunks(ctx, sr, ix.files)
	if chunkErr != nil {
		stopStream()
	}
	wg.Wait()
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case chunkErr != nil:
		return nil, chunkErr
	case streamErr != nil:
		return nil, streamErr
	}
	return rep, nil
}

// zcLayout is where the annotations put the parts of a blob.
type zcLayout struct {
	tocDigest digest.Digest
	toc       toc.Position
	tarSplit  toc.Position
	// dataEnd is the end of the zstd stream of the tar, where the TOC's
	// skippable frame starts.
	dataEnd int64
	// footer is the offset of the footer's skippable frame.
	footer int64
}

func zstdChunkedLayout(size int64, annotations map[string]string) (zcLayout, error) {
	var l zcLayout
	sum, ok := annotations[toc.AnnotationZstdChunkedManifestChecksum]
	if !ok {
		return l, fmt.Errorf("%w: no %s annotation", ErrInvalid, toc.AnnotationZstdChunkedManifestChecksum)
	}
	if _, ok := annotations[toc.AnnotationTOCDigest]; ok {
		return l, fmt.Errorf("%w: layer has both the zstd:chunked %s and the eStargz %s annotation; containers/storage refuses it",
			ErrInvalid, toc.AnnotationZstdChunkedManifestChecksum, toc.AnnotationTOCDigest)
	}
	d, err := digest.Parse(sum)
	if err != nil {
		return l, fmt.Errorf("%w: %s annotation: %w", ErrInvalid, toc.AnnotationZstdChunkedManifestChecksum, err)
	}
	l.tocDigest = d
	mp, ok := annotations[toc.AnnotationZstdChunkedManifestPosition]
	if !ok {
		return l, fmt.Errorf("%w: no %s annotation", ErrInvalid, toc.AnnotationZstdChunkedManifestPosition)
	}
	if l.toc, err = toc.ParseManifestPosition(mp); err != nil {
		return l, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	tp, ok := annotations[toc.AnnotationZstdChunkedTarSplitPosition]
	if !ok {
		return l, fmt.Errorf("%w: no %s annotation; containers/storage needs the tar-split for partial pulls", ErrInvalid, toc.AnnotationZstdChunkedTarSplitPosition)
	}
	if l.tarSplit, err = toc.ParseTarSplitPosition(tp); err != nil {
		return l, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if l.toc.Compressed > toc.MaxTOCSize || l.toc.Uncompressed > toc.MaxTOCSize {
		return l, fmt.Errorf("%w: TOC is %d bytes compressed, %d uncompressed, over the %d MiB limit (containers/storage would fall back to a full pull)",
			ErrInvalid, l.toc.Compressed, l.toc.Uncompressed, toc.MaxTOCSize>>20)
	}
	// The positions are non-negative int64s no larger than size, so the
	// sums below cannot overflow.
	if l.toc.Offset > size || l.tarSplit.Offset > size || l.tarSplit.Compressed > size {
		return l, fmt.Errorf("%w: position annotations point past the end of the %d-byte blob", ErrInvalid, size)
	}
	l.dataEnd = l.toc.Offset - toc.SkippableFrameHeaderSize
	if l.dataEnd < 0 || l.tarSplit.Offset <= 0 {
		return l, fmt.Errorf("%w: position annotations point before the start of the blob", ErrInvalid)
	}
	if want := l.toc.Offset + l.toc.Compressed + toc.SkippableFrameHeaderSize; l.tarSplit.Offset != want {
		return l, fmt.Errorf("%w: tar-split payload is at %d, want %d right after the TOC's skippable frame", ErrInvalid, l.tarSplit.Offset, want)
	}
	l.footer = l.tarSplit.Offset + l.tarSplit.Compressed
	if end := l.footer + toc.SkippableFrameHeaderSize + toc.ZstdChunkedFooterSize; end != size {
		return l, fmt.Errorf("%w: blob is %d bytes, but the annotations put its end (after the footer) at %d", ErrInvalid, size, end)
	}
	return l, nil
}

// checkZstdChunkedTrailer checks the three skippable frames' headers and the
// footer, which must repeat the annotations' positions.
func checkZstdChunkedTrailer(sr *io.SectionReader, l zcLayout) error {
	frames := []struct {
		what   string
		off    int64
		length int64
	}{
		{"TOC", l.dataEnd, l.toc.Compressed},
		{"tar-split", l.tarSplit.Offset - toc.SkippableFrameHeaderSize, l.tarSplit.Compressed},
		{"footer", l.footer, toc.ZstdChunkedFooterSize},
	}
	var h [toc.SkippableFrameHeaderSize]byte
	for _, f := range frames {
		if _, err := sr.ReadAt(h[:], f.off); err != nil {
			return fmt.Errorf("%w: reading the %s frame header at %d: %w", ErrInvalid, f.what, f.off, err)
		}
		if m := binary.LittleEndian.Uint32(h[:]); m != toc.SkippableFrameMagic {
			return fmt.Errorf("%w: %s frame at %d starts with %#08x, not the skippable frame magic %#08x", ErrInvalid, f.what, f.off, m, toc.SkippableFrameMagic)
		}
		if n := int64(binary.LittleEndian.Uint32(h[4:])); n != f.length {
			return fmt.Errorf("%w: %s skippable frame at %d holds %d bytes, the annotations say %d", ErrInvalid, f.what, f.off, n, f.length)
		}
	}
	b := make([]byte, toc.ZstdChunkedFooterSize)
	if _, err := sr.ReadAt(b, l.footer+toc.SkippableFrameHeaderSize); err != nil {
		return fmt.Errorf("%w: reading the footer: %w", ErrInvalid, err)
	}
	f, err := toc.ParseZstdChunkedFooter(b)
	if err != nil {
		return fmt.Errorf("%w: footer: %w", ErrInvalid, err)
	}
	for _, c := range []struct {
		field     string
		got, want uint64
	}{
		{"TOC offset", f.Offset, uint64(l.toc.Offset)},
		{"TOC compressed length", f.LengthCompressed, uint64(l.toc.Compressed)},
		{"TOC uncompressed length", f.LengthUncompressed, uint64(l.toc.Uncompressed)},
		{"manifest type", f.ManifestType, toc.ManifestTypeCRFS},
		{"tar-split offset", f.OffsetTarSplit, uint64(l.tarSplit.Offset)},
		{"tar-split compressed length", f.LengthCompressedTarSplit, uint64(l.tarSplit.Compressed)},
		{"tar-split uncompressed length", f.LengthUncompressedTarSplit, uint64(l.tarSplit.Uncompressed)},
	} {
		if c.got != c.want {
			return fmt.Errorf("%w: footer %s is %d, the annotations say %d", ErrInvalid, c.field, c.got, c.want)
		}
	}
	return nil
}

// readZstdChunkedTOC reads the TOC payload, checks it against the
// manifest-checksum and decodes it.
func readZstdChunkedTOC(sr *io.SectionReader, l zcLayout) (*toc.ZstdChunkedTOC, error) {
	payload := make([]byte, l.toc.Compressed)
	if _, err := sr.ReadAt(payload, l.toc.Offset); err != nil {
		return nil, fmt.Errorf("%w: reading the TOC: %w", ErrInvalid, err)
	}
	if err := checkDigest(l.tocDigest, bytes.NewReader(payload)); err != nil {
		return nil, fmt.Errorf("%w: compressed TOC does not match the %s annotation: %w", ErrInvalid, toc.AnnotationZstdChunkedManifestChecksum, err)
	}
	n, err := zstdFrameLen(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: TOC payload is not a zstd frame: %w", ErrInvalid, err)
	}
	if n != len(payload) {
		return nil, fmt.Errorf("%w: TOC payload is %d bytes but its zstd frame ends at %d; it must be exactly one frame", ErrInvalid, len(payload), n)
	}
	dec, err := zstd.NewReader(bytes.NewReader(payload), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	js, err := io.ReadAll(io.LimitReader(dec, l.toc.Uncompressed+1))
	if err != nil {
		return nil, fmt.Errorf("%w: decompressing the TOC: %w", ErrInvalid, err)
	}
	if int64(len(js)) != l.toc.Uncompressed {
		return nil, fmt.Errorf("%w: TOC decompresses to %d bytes or more, the manifest-position annotation says %d", ErrInvalid, len(js), l.toc.Uncompressed)
	}
	t, err := toc.DecodeZstdChunkedTOC(js, l.dataEnd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if t.TarSplitDigest == "" {
		return nil, fmt.Errorf("%w: TOC has no tarSplitDigest; containers/storage does not partially pull such layers", ErrInvalid)
	}
	return t, nil
}

// zcChunk is one chunk of a regular file: the compressed range [offset,
// end) decodes to size bytes with the given digest.
type zcChunk struct {
	offset, end, size int64
	digest            digest.Digest
	zeros             bool
}

// zcFile is a regular file with data.
type zcFile struct {
	name   string
	size   int64
	digest digest.Digest
	chunks []zcChunk
}

// zcIndex is what the TOC says, checked for consistency.
type zcIndex struct {
	// entries holds the non-chunk entries by name.
	entries map[string]*toc.ZstdChunkedEntry
	// files holds the regular files with data in TOC order, byName the same by name.
	files  []*zcFile
	byName map[string]*zcFile
}

// indexZstdChunkedTOC collects the regular files' chunks of a TOC that
// toc.DecodeZstdChunkedTOC checked (types, names, the reg/chunk tiling,
// digests, data ranges).
func indexZstdChunkedTOC(t *toc.ZstdChunkedTOC) *zcIndex {
	ix := &zcIndex{entries: map[string]*toc.ZstdChunkedEntry{}, byName: map[string]*zcFile{}}
	es := t.Entries
	for i := 0; i < len(es); {
		e := &es[i]
		j := i + 1
		if e.Type == toc.ZstdTypeReg {
			for j < len(es) && es[j].Type == toc.ZstdTypeChunk {
				j++
			}
			if f := zstdChunkedFile(es[i:j]); f != nil {
				ix.files = append(ix.files, f)
				ix.byName[f.name] = f
			}
		}
		ix.entries[e.Name] = e
		i = j
	}
	return ix
}

// zstdChunkedFile returns the chunks of a checked reg entry and the chunk
// entries after it, or nil for an empty file.
func zstdChunkedFile(es []toc.ZstdChunkedEntry) *zcFile {
	r := &es[0]
	if r.Size == 0 {
		return nil
	}
	d := digest.Digest(r.Digest)
	f := &zcFile{name: r.Name, size: r.Size, digest: d}
	if len(es) == 1 {
		f.chunks = []zcChunk{{offset: r.Offset, end: r.EndOffset, size: r.Size, digest: d}}
		return f
	}
	for k := range es {
		c := &es[k]
		end := r.EndOffset
		if k+1 < len(es) {
			end = es[k+1].Offset
		}
		f.chunks = append(f.chunks, zcChunk{offset: c.Offset, end: end, size: c.ChunkSize, digest: digest.Digest(c.ChunkDigest), zeros: c.ChunkType == toc.ChunkTypeZeros})
	}
	return f
}

// checkDigest reads r to its end and compares its digest with d.
func checkDigest(d digest.Digest, r io.Reader) error {
	if !d.Algorithm().Available() {
		return fmt.Errorf("digest algorithm %s is not available", d.Algorithm())
	}
	got, err := d.Algorithm().FromReader(r)
	if err != nil {
		return err
	}
	if got != d {
		return fmt.Errorf("digest is %s, want %s", got, d)
	}
	return nil
}

// checkTarSplit checks the tar-split payload against the TOC's
// tarSplitDigest and its headers against the TOC entries, like
// containers/storage's ensureTOCMatchesTarSplit.
func checkTarSplit(ctx context.Context, sr *io.SectionReader, l zcLayout, want digest.Digest, ix *zcIndex) error {
	if err := checkDigest(want, ctxReader{ctx, io.NewSectionReader(sr, l.tarSplit.Offset, l.tarSplit.Compressed)}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: compressed tar-split does not match the TOC's tarSplitDigest: %w", ErrInvalid, err)
	}
	ts, err := openTarSplit(ctx, sr, l)
	if err != nil {
		return err
	}
	defer ts.Close()
	pending := maps.Clone(ix.entries)
	err = asm.IterateHeaders(storage.NewJSONUnpacker(ts), func(hdr *tstar.Header) error {
		e, ok := pending[hdr.Name]
		if !ok {
			return fmt.Errorf("tar-split has an entry for %q that the TOC lacks or repeats", hdr.Name)
		}
		delete(pending, hdr.Name)
		return zstdChunkedEntryMatches(e, hdr)
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: tar-split and TOC disagree: %w", ErrInvalid, err)
	}
	if err := ts.finish(); err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: TOC has an entry for %q that the tar-split lacks", ErrInvalid, slices.Sorted(maps.Keys(pending))[0])
	}
	return nil
}

// tarSplitReader decompresses the tar-split payload; finish checks that
// nothing follows the last entry and that the length is the annotated one.
type tarSplitReader struct {
	dec  *zstd.Decoder
	n    int64
	want int64
}

func openTarSplit(ctx context.Context, sr *io.SectionReader, l zcLayout) (*tarSplitReader, error) {
	dec, err := zstd.NewReader(ctxReader{ctx, io.NewSectionReader(sr, l.tarSplit.Offset, l.tarSplit.Compressed)}, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return &tarSplitReader{dec: dec, want: l.tarSplit.Uncompressed}, nil
}

func (r *tarSplitReader) Read(p []byte) (int, error) {
	n, err := r.dec.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompressing the tar-split: %w", err)
	}
	return n, err
}

// finish reads what is left of the tar-split, which must be nothing, and
// checks its length against the annotation.
func (r *tarSplitReader) finish() error {
	rest, err := io.Copy(io.Discard, r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if rest != 0 {
		return fmt.Errorf("%w: tar-split has %d bytes after its last entry", ErrInvalid, rest)
	}
	if r.n != r.want {
		return fmt.Errorf("%w: tar-split decompresses to %d bytes, the tarsplit-position annotation says %d", ErrInvalid, r.n, r.want)
	}
	return nil
}

// Close releases the decoder.
func (r *tarSplitReader) Close() { r.dec.Close() }

// zstdChunkedEntryMatches compares a TOC entry with its tar header the way
// containers/storage's ensureFileMetadataAttributesMatch does.
func zstdChunkedEntryMatches(e *toc.ZstdChunkedEntry, hdr *tstar.Header) error {
	typ, ok := zcTarTypes[hdr.Typeflag]
	if !ok {
		return fmt.Errorf("%q has tar type %q, which zstd:chunked cannot represent", hdr.Name, hdr.Typeflag)
	}
	xattrs := map[string]string{}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxSchilyXattr); ok {
			xattrs[name] = base64.StdEncoding.EncodeToString([]byte(v))
		}
	}
	mismatch := func(field string, toc, tar any) error {
		return fmt.Errorf("%q: TOC %s is %v, tar header has %v", hdr.Name, field, toc, tar)
	}
	switch {
	case e.Type != typ:
		return mismatch("type", e.Type, typ)
	case e.Linkname != hdr.Linkname:
		return mismatch("linkName", e.Linkname, hdr.Linkname)
	case e.Mode != hdr.Mode:
		return mismatch("mode", fmt.Sprintf("%#o", e.Mode), fmt.Sprintf("%#o", hdr.Mode))
	case e.Size != hdr.Size:
		return mismatch("size", e.Size, hdr.Size)
	case e.UID != hdr.Uid:
		return mismatch("uid", e.UID, hdr.Uid)
	case e.GID != hdr.Gid:
		return mismatch("gid", e.GID, hdr.Gid)
	case !sameTime(e.ModTime, hdr.ModTime):
		return mismatch("modtime", e.ModTime, hdr.ModTime)
	case !sameTime(e.AccessTime, hdr.AccessTime):
		return mismatch("accesstime", e.AccessTime, hdr.AccessTime)
	case !sameTime(e.ChangeTime, hdr.ChangeTime):
		return mismatch("changetime", e.ChangeTime, hdr.ChangeTime)
	case e.Devmajor != hdr.Devmajor:
		return mismatch("devMajor", e.Devmajor, hdr.Devmajor)
	case e.Devminor != hdr.Devminor:
		return mismatch("devMinor", e.Devminor, hdr.Devminor)
	case !maps.Equal(e.Xattrs, xattrs):
		return mismatch("xattrs", e.Xattrs, xattrs)
	}
	return nil
}

// sameTime compares a TOC time with a tar header time, treating a missing
// time, the zero time and the Unix epoch as the same, as containers/storage
// does.
func sameTime(a *time.Time, b time.Time) bool {
	unset := func(t time.Time) bool { return t.IsZero() || t.Equal(time.Unix(0, 0)) }
	if a == nil || unset(*a) {
		return unset(b)
	}
	return a.Equal(b)
}

// checkChunks decodes every chunk of every file on its own and checks its
// length, its digest, that zeros chunks are zero, and each file's digest.
func checkChunks(ctx context.Context, sr *io.SectionReader, files []*zcFile) (nFiles, nChunks int, err error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return 0, 0, err
	}
	defer dec.Close()
	buf := make([]byte, 256<<10)
	for _, f := range files {
		fh := f.digest.Algorithm().Hash()
		for _, c := range f.chunks {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			w := io.Writer(fh)
			var ch hash.Hash // the chunk's own digest, when it is not the file's
			if len(f.chunks) > 1 {
				ch = c.digest.Algorithm().Hash()
				w = io.MultiWriter(fh, ch)
			}
			var zw zeroWriter
			if c.zeros {
				w = io.MultiWriter(w, &zw)
			}
			if err := dec.Reset(io.NewSectionReader(sr, c.offset, c.end-c.offset)); err != nil {
				return 0, 0, err
			}
			n, err := io.CopyBuffer(w, io.LimitReader(dec, c.size+1), buf)
			if err != nil {
				return 0, 0, fmt.Errorf("%w: %q: chunk at compressed [%d, %d) does not decode: %w", ErrInvalid, f.name, c.offset, c.end, err)
			}
			if n != c.size {
				return 0, 0, fmt.Errorf("%w: %q: chunk at compressed [%d, %d) decodes to %d bytes or more, the TOC says %d", ErrInvalid, f.name, c.offset, c.end, n, c.size)
			}
			if ch != nil && digest.NewDigest(c.digest.Algorithm(), ch) != c.digest {
				return 0, 0, fmt.Errorf("%w: %q: chunk at compressed [%d, %d) does not match its chunkDigest %s", ErrInvalid, f.name, c.offset, c.end, c.digest)
			}
			if zw.nonZero {
				return 0, 0, fmt.Errorf("%w: %q: zeros chunk at compressed [%d, %d) has non-zero bytes", ErrInvalid, f.name, c.offset, c.end)
			}
			nChunks++
		}
		if got := digest.NewDigest(f.digest.Algorithm(), fh); got != f.digest {
			return 0, 0, fmt.Errorf("%w: %q: chunks give file digest %s, the TOC says %s", ErrInvalid, f.name, got, f.digest)
		}
		nFiles++
	}
	return nFiles, nChunks, nil
}

type zeroWriter struct{ nonZero bool }

func (z *zeroWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != 0 {
			z.nonZero = true
			break
		}
	}
	return len(p), nil
}

// checkZstdChunkedStream decompresses the data part of the blob, checks that
// it is a valid tar whose file contents match the TOC digests and that the
// tar-split reproduces it byte for byte, and returns its digest and length.
func checkZstdChunkedStream(ctx context.Context, sr *io.SectionReader, l zcLayout, ix *zcIndex) (digest.Digest, int64, error) {
	dec, err := zstd.NewReader(ctxReader{ctx, io.NewSectionReader(sr, 0, l.dataEnd)})
	if err != nil {
		return "", 0, err
	}
	defer dec.Close()
	ts, err := openTarSplit(ctx, sr, l)
	if err != nil {
		return "", 0, err
	}
	defer ts.Close()

	d := digest.Canonical.Digester()
	cw := &countWriter{w: d.Hash()}
	cmp := &tarSplitComparer{stored: storage.NewJSONUnpacker(ts)}
	its, done, err := asm.NewInputTarStreamWithDone(io.TeeReader(zstdErrReader{dec}, cw), cmp, &digestPutter{files: ix.byName})
	if err != nil {
		return "", 0, err
	}
	tarErr := readTar(its)
	its.Close()
	// The disassembler's error is the cause (a decompression error, a
	// tar-split mismatch, a file digest mismatch) unless it only saw the
	// pipe closed after archive/tar gave up.
	splitErr := <-done
	switch {
	case splitErr != nil && (tarErr == nil || !errors.Is(splitErr, io.ErrClosedPipe)):
		return "", 0, fmt.Errorf("%w: %w", ErrInvalid, splitErr)
	case tarErr != nil:
		return "", 0, fmt.Errorf("%w: decompressed blob is not a valid tar: %w", ErrInvalid, tarErr)
	}
	if err := cmp.finish(); err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := ts.finish(); err != nil {
		return "", 0, err
	}
	return d.Digest(), cw.n, nil
}

// readTar reads r to its end as a tar stream.
func readTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return err
		}
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

// zstdErrReader names decompression errors of the data stream.
type zstdErrReader struct{ r io.Reader }

func (z zstdErrReader) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompressing the data stream: %w", err)
	}
	return n, err
}

// tarSplitComparer is a tar-split Packer that receives the entries
// tar-split makes of the decompressed stream and compares them with the
// stored tar-split: header and padding bytes must be equal (however the two
// split them into segments), files must come in the same order with the
// same name, size and CRC-64.
type tarSplitComparer struct {
	stored  storage.Unpacker
	pending []byte // stored segment bytes not matched yet
	offset  int64  // of the next byte in the tar
}

func (c *tarSplitComparer) AddEntry(e storage.Entry) (int, error) {
	switch e.Type {
	case storage.SegmentType:
		p := e.Payload
		for len(p) > 0 {
			if len(c.pending) == 0 {
				s, err := c.nextStored()
				if err != nil {
					return 0, err
				}
				if s == nil {
					return 0, fmt.Errorf("tar-split ends at tar offset %d, before the tar stream does", c.offset)
				}
				if s.Type != storage.SegmentType {
					return 0, fmt.Errorf("tar-split has file %q at tar offset %d, where the tar stream has header bytes", s.GetName(), c.offset)
				}
				c.pending = s.Payload
			}
			n := min(len(p), len(c.pending))
			if !bytes.Equal(p[:n], c.pending[:n]) {
				return 0, fmt.Errorf("tar-split header bytes differ from the tar stream's at tar offset %d", c.offset)
			}
			p, c.pending, c.offset = p[n:], c.pending[n:], c.offset+int64(n)
		}
	case storage.FileType:
		if len(c.pending) > 0 {
			return 0, fmt.Errorf("tar-split has header bytes at tar offset %d, where the tar stream has the data of %q", c.offset, e.GetName())
		}
		s, err := c.nextStored()
		if err != nil {
			return 0, err
		}
		switch {
		case s == nil:
			return 0, fmt.Errorf("tar-split ends at tar offset %d, before the tar stream does", c.offset)
		case s.Type != storage.FileType:
			return 0, fmt.Errorf("tar-split has header bytes at tar offset %d, where the tar stream has the data of %q", c.offset, e.GetName())
		case s.GetName() != e.GetName() || s.Size != e.Size:
			return 0, fmt.Errorf("tar-split has %q (%d bytes) at tar offset %d, the tar stream has %q (%d bytes)", s.GetName(), s.Size, c.offset, e.GetName(), e.Size)
		case !bytes.Equal(s.Payload, e.Payload):
			return 0, fmt.Errorf("tar-split CRC-64 of %q does not match the tar stream's data", e.GetName())
		}
		c.offset += e.Size
	default:
		return 0, fmt.Errorf("unexpected tar-split entry type %d", e.Type)
	}
	return 0, nil
}

// nextStored returns the next stored entry that is not an empty segment, or
// nil at the end.
func (c *tarSplitComparer) nextStored() (*storage.Entry, error) {
	for {
		s, err := c.stored.Next()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the tar-split: %w", err)
		}
		switch s.Type {
		case storage.SegmentType:
			if len(s.Payload) == 0 {
				continue
			}
		case storage.FileType:
		default:
			return nil, fmt.Errorf("tar-split entry %d has unknown type %d", s.Position, s.Type)
		}
		return s, nil
	}
}

// finish reports stored entries beyond the end of the tar stream.
func (c *tarSplitComparer) finish() error {
	if len(c.pending) > 0 {
		return fmt.Errorf("tar-split has %d more bytes than the tar stream", len(c.pending))
	}
	s, err := c.nextStored()
	if err != nil {
		return err
	}
	if s != nil {
		return fmt.Errorf("tar-split has entries after the end of the tar stream at %d", c.offset)
	}
	return nil
}

// digestPutter is a tar-split FilePutter that checks each file's data in
// the tar stream against its TOC digest and returns its CRC-64.
type digestPutter struct {
	files map[string]*zcFile
	buf   [64 << 10]byte
}

func (p *digestPutter) Put(name string, r io.Reader) (int64, []byte, error) {
	f, ok := p.files[name]
	if !ok {
		return 0, nil, fmt.Errorf("tar stream has data for %q, which the TOC does not list as a regular file with data", name)
	}
	crc := crc64.New(storage.CRCTable)
	h := f.digest.Algorithm().Hash()
	n, err := io.CopyBuffer(io.MultiWriter(crc, h), r, p.buf[:])
	if err != nil {
		return n, nil, err
	}
	if n != f.size {
		return n, nil, fmt.Errorf("tar stream has %d bytes of %q, the TOC says %d", n, name, f.size)
	}
	if got := digest.NewDigest(f.digest.Algorithm(), h); got != f.digest {
		return n, nil, fmt.Errorf("data of %q in the tar stream has digest %s, the TOC says %s", name, got, f.digest)
	}
	return n, crc.Sum(nil), nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// zstdFrameLen returns the length of the zstd frame at the start of b, from
// its header and block headers, without decoding it.
func zstdFrameLen(b []byte) (int, error) {
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		return 0, err
	}
	if h.Skippable {
		return 0, errors.New("skippable frame")
	}
	n := h.HeaderSize
	for last := false; !last; {
		if len(b) < n+3 {
			return 0, io.ErrUnexpectedEOF
		}
		bh := uint32(b[n]) | uint32(b[n+1])<<8 | uint32(b[n+2])<<16
		n += 3
		last = bh&1 == 1
		switch size := int(bh >> 3); (bh >> 1) & 3 {
		case 0, 2: // raw, compressed
			n += size
		case 1: // RLE: one byte repeated size times
			n++
		default:
			return 0, errors.New("reserved block type")
		}
	}
	if h.HasCheckSum {
		n += 4
	}
	if len(b) < n {
		return 0, io.ErrUnexpectedEOF
	}
	return n, nil
}
