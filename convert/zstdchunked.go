package convert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/lazydisk/lazydisk/internal/tarstream"
	"github.com/lazydisk/lazydisk/toc"
)

// DefaultZstdLevel is the default zstd level for zstd:chunked: 3, zstd's
// own default. containers/storage defaults to 10, which is several times
// slower for a few percent less output.
const DefaultZstdLevel = 3

// zstdCompressor encodes each job as one complete zstd frame with a
// content checksum; output depends only on the input and the level.
type zstdCompressor struct{ enc *zstd.Encoder }

func newZstdCompressor(level, chunkSize int) func() (compressor, error) {
	return func() (compressor, error) {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow(chunkSize)),
			zstd.WithEncoderCRC(true))
		if err != nil {
			return nil, err
		}
		return &zstdCompressor{enc: enc}, nil
	}
}

func (z *zstdCompressor) compress(dst *bytes.Buffer, src []byte) error {
	dst.Reset()
	dst.Write(z.enc.EncodeAll(src, dst.AvailableBuffer()))
	return nil
}

// zstdWindow is the encoder window for frames of at most chunkSize bytes:
// the next power of two. A frame never refers outside itself, so a larger
// window only costs memory (level 3's default, 8 MiB, is allocated per
// worker and per block).
func zstdWindow(chunkSize int) int {
	w := zstd.MinWindowSize
	for w < chunkSize {
		w <<= 1
	}
	return w
}

// crcTable is tar-split's checksum of file payloads.
var crcTable = crc64.MakeTable(crc64.ISO)

// WriteZstdChunked reads an uncompressed tar stream from r and writes it to
// w as a zstd:chunked blob in the format containers/storage >= 1.54 (podman
// >= 5.1) reads for partial pulls: a multi-frame zstd stream that
// decompresses to exactly the input tar, every file chunk in its own frame,
// followed by the TOC, the tar-split and the 64-byte footer in skippable
// frames. Files are cut into content-defined chunks on 4 KiB blocks
// (cdc.go), and runs of zero blocks into zeros chunks, which readers turn
// into holes without fetching them. eStargz TOC and landmark
// entries in the input are dropped; any other input is kept byte for byte,
// so its DiffID does not change.
//
// Blob.Annotations holds the three io.github.containers.zstd-chunked
// annotations the layer needs. Chunks are compressed in parallel; the
// output depends only on the input, the chunk size and the level.
func WriteZstdChunked(ctx context.Context, w io.Writer, r io.Reader, opts ...Option) (*Blob, error) {
	o, err := makeOptions(append([]Option{WithFormat(toc.FormatZstdChunked)}, opts...))
	if err != nil {
		return nil, err
	}
	if o.format != toc.FormatZstdChunked {
		return nil, fmt.Errorf("WriteZstdChunked called with format %q", o.format)
	}
	zw := &zstdChunkedWriter{o: o, cdc: newCDC(o.chunkSize), blob: sha256.New()}
	zw.packer = storage.NewJSONPacker(&zw.tarSplit)
	p, err := newPipeline(ctx, io.MultiWriter(w, zw.blob), o.workers, newZstdCompressor(o.level, zw.cdc.max), newBufferPool(zw.cdc.max))
	if err != nil {
		return nil, fmt.Errorf("creating zstd compressor: %w", err)
	}
	zw.frameStream = newFrameStream(p, zw.cdc.max)
	if err := zw.writeEntries(r); err != nil {
		p.abort(err)
		return nil, err
	}
	end, err := p.close()
	if err != nil {
		return nil, err
	}
	if zw.packErr != nil {
		return nil, fmt.Errorf("writing tar-split: %w", zw.packErr)
	}
	return zw.finish(w, end)
}

type zstdChunkedWriter struct {
	frameStream
	o       options
	cdc     cdc
	blob    hash.Hash
	entries []*toc.ZstdChunkedEntry
	// singles are reg entries of one-chunk files, whose chunk fields are
	// cleared at the end (the format lists chunk fields only with two or
	// more chunks).
	singles  []*toc.ZstdChunkedEntry
	chunks   int
	tarSplit bytes.Buffer
	packer   storage.Packer
	packErr  error
}

// pack adds a tar-split entry once everything before it is written, so
// that entries keep stream order whichever goroutine computed them.
func (zw *zstdChunkedWriter) pack(e storage.Entry) {
	if _, err := zw.packer.AddEntry(e); err != nil && zw.packErr == nil {
		zw.packErr = err
	}
}

func (zw *zstdChunkedWriter) writeEntries(r io.Reader) error {
	sc := tarstream.NewScanner(r)
	skipped := false
	for {
		e, err := sc.Next()
		var seg []byte
		if !skipped {
			seg = append(seg, sc.PrevPad()...)
		}
		if err == io.EOF {
			seg = append(seg, sc.Trailer()...)
			if err := zw.segment(seg); err != nil {
				return err
			}
			return zw.seal()
		}
		if err != nil {
			return err
		}
		if skipped = skipNames[tarstream.CleanName(e.Header.Name)]; skipped {
			continue
		}
		if err := zw.segment(append(seg, e.Raw...)); err != nil {
			return err
		}
		if err := zw.addEntry(e.Header, e.Payload); err != nil {
			return err
		}
	}
}

// segment writes raw tar bytes (padding and headers) and records them as a
// tar-split segment.
func (zw *zstdChunkedWriter) segment(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := zw.appendBytes(b); err != nil {
		return err
	}
	zw.onWritten(func() { zw.pack(storage.Entry{Type: storage.SegmentType, Payload: b}) })
	return nil
}

// fileEntry is the tar-split record of one tar entry.
func fileEntry(h *tar.Header, crc []byte) storage.Entry {
	e := storage.Entry{Type: storage.FileType, Size: h.Size, Payload: crc}
	e.SetName(h.Name)
	return e
}

func (zw *zstdChunkedWriter) addEntry(h *tar.Header, payload io.Reader) error {
	ent, err := zstdEntry(h)
	if err != nil {
		return err
	}
	zw.entries = append(zw.entries, ent)
	if ent.Type == "reg" && h.Size > 0 {
		return zw.addChunks(h, ent, payload)
	}
	// Header-only entries: tar-split records a checksum of what the tar
	// reader returns, which for these types is nothing.
	var crc []byte
	if h.Size > 0 {
		c := crc64.New(crcTable)
		if _, err := io.Copy(c, payload); err != nil {
			return err
		}
		crc = c.Sum(nil)
	}
	fe := fileEntry(h, crc)
	zw.onWritten(func() { zw.pack(fe) })
	return nil
}

// zstdEntry is the TOC entry containers/storage writes for h
// (minimal.NewFileMetadata).
func zstdEntry(h *tar.Header) (*toc.ZstdChunkedEntry, error) {
	typ, ok := zstdTypes[h.Typeflag]
	if !ok {
		return nil, fmt.Errorf("tar entry %q has type %q, which zstd:chunked cannot represent: %w", h.Name, h.Typeflag, ErrUnsupportedEntry)
	}
	ent := &toc.ZstdChunkedEntry{
		Type: typ, Name: h.Name, Linkname: h.Linkname, Mode: h.Mode, Size: h.Size,
		UID: h.Uid, GID: h.Gid, Devmajor: h.Devmajor, Devminor: h.Devminor,
		ModTime: timeIfNotZero(h.ModTime), AccessTime: timeIfNotZero(h.AccessTime), ChangeTime: timeIfNotZero(h.ChangeTime),
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if ent.Xattrs == nil {
				ent.Xattrs = map[string]string{}
			}
			ent.Xattrs[name] = base64.StdEncoding.EncodeToString([]byte(v))
		}
	}
	return ent, nil
}

var zstdTypes = map[byte]string{
	tar.TypeReg: "reg", tar.TypeLink: "hardlink", tar.TypeChar: "char", tar.TypeBlock: "block",
	tar.TypeDir: "dir", tar.TypeFifo: "fifo", tar.TypeSymlink: "symlink",
}

// addChunks streams a regular file's payload as chunks, each in its own
// frame with nothing else in it: content-defined data chunks (cdc.go) and
// zeros chunks for runs of zero blocks of at least zeroRunMin. Zero runs
// are counted, not buffered, so a sparse disk costs no memory.
func (zw *zstdChunkedWriter) addChunks(h *tar.Header, reg *toc.ZstdChunkedEntry, payload io.Reader) error {
	c := &fileChunker{zw: zw, h: h, reg: reg, fileHash: sha256.New(), crc: crc64.New(crcTable)}
	blk := make([]byte, cdcBlock)
	for off := int64(0); off < h.Size; {
		b := blk[:min(int64(cdcBlock), h.Size-off)]
		if err := readChunk(payload, b, h.Name); err != nil {
			return err
		}
		off += int64(len(b))
		if isZero(b) {
			c.zeros += int64(len(b))
			continue
		}
		if err := c.flushZeros(); err != nil {
			return err
		}
		if err := c.addData(b); err != nil {
			return err
		}
	}
	if err := c.flushZeros(); err != nil {
		return err
	}
	if err := c.endData(true); err != nil {
		return err
	}
	if c.n == 1 {
		zw.singles = append(zw.singles, reg)
	}
	return nil
}

// fileChunker cuts one file into chunks.
type fileChunker struct {
	zw  *zstdChunkedWriter
	h   *tar.Header
	reg *toc.ZstdChunkedEntry
	// cur is the open data chunk, start the file offset of the next chunk.
	cur   *job
	start int64
	// zeros counts zero bytes read but not yet placed in a chunk.
	zeros         int64
	n             int
	fileHash, crc hash.Hash
}

// addData appends a data block to the open data chunk and ends the chunk
// where the boundary rule says.
func (c *fileChunker) addData(b []byte) error {
	if c.cur == nil {
		j, err := c.zw.startChunk(0)
		if err != nil {
			return err
		}
		c.cur = j
	}
	c.cur.data = append(c.cur.data, b...)
	if c.zw.cdc.ends(len(c.cur.data), b) {
		return c.endData(false)
	}
	return nil
}

// flushZeros places the pending zero bytes: a long run becomes zeros
// chunks, a short one is data like any other block.
func (c *fileChunker) flushZeros() error {
	if c.zeros < zeroRunMin {
		for c.zeros > 0 {
			n := min(c.zeros, cdcBlock)
			c.zeros -= n
			if err := c.addData(zeroBlock[:n]); err != nil {
				return err
			}
		}
		return nil
	}
	if err := c.endData(false); err != nil {
		return err
	}
	for c.zeros > 0 {
		n := min(c.zeros, maxZeroChunk)
		c.zeros -= n
		if err := c.zw.seal(); err != nil {
			return err
		}
		j := &job{data: zeroBlock[:n], shared: true, done: make(chan struct{})}
		c.zw.cur = j
		if err := c.finish(j, c.zeros == 0 && c.start+n == c.h.Size); err != nil {
			return err
		}
	}
	return nil
}

// endData ends the open data chunk, if any; last says it ends the file.
func (c *fileChunker) endData(last bool) error {
	j := c.cur
	if j == nil {
		return nil
	}
	c.cur = nil
	return c.finish(j, last || c.start+int64(len(j.data)) == c.h.Size && c.zeros == 0)
}

// finish records the chunk in job j in the TOC and closes its frame.
func (c *fileChunker) finish(j *job, last bool) error {
	ent := c.reg
	if c.n > 0 {
		ent = &toc.ZstdChunkedEntry{Type: "chunk", Name: c.h.Name}
		c.zw.entries = append(c.zw.entries, ent)
	}
	n := int64(len(j.data))
	ent.ChunkOffset, ent.ChunkSize = c.start, n
	reg, h, fileHash, crc := c.reg, c.h, c.fileHash, c.crc
	j.prepare = func(data []byte) {
		ent.ChunkDigest = digest.Canonical.FromBytes(data).String()
		if isZero(data) {
			ent.ChunkType = toc.ChunkTypeZeros
		}
	}
	j.written = func(o, cn int64, data []byte) {
		ent.Offset = o
		fileHash.Write(data)
		crc.Write(data)
		if last {
			reg.Digest = digest.NewDigest(digest.SHA256, fileHash).String()
			reg.EndOffset = o + cn
			c.zw.pack(fileEntry(h, crc.Sum(nil)))
		}
	}
	c.start += n
	c.n++
	c.zw.chunks++
	// Close the frame: a chunk's frame holds only its bytes.
	return c.zw.seal()
}

// isZero reports whether b is all zero bytes.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// compressOne compresses the TOC or the tar-split as one frame, with a
// window that fits it up to zstd's default of 8 MiB.
func (zw *zstdChunkedWriter) compressOne(dst *bytes.Buffer, data []byte) error {
	c, err := newZstdCompressor(zw.o.level, min(len(data), 8<<20))()
	if err != nil {
		return err
	}
	return c.compress(dst, data)
}

// finish writes the TOC, tar-split and footer frames after the last chunk.
func (zw *zstdChunkedWriter) finish(w io.Writer, end int64) (*Blob, error) {
	var tsZ bytes.Buffer
	if err := zw.compressOne(&tsZ, zw.tarSplit.Bytes()); err != nil {
		return nil, err
	}
	for _, e := range zw.singles {
		e.ChunkOffset, e.ChunkSize, e.ChunkDigest, e.ChunkType = 0, 0, "", ""
	}
	t := toc.ZstdChunkedTOC{Version: 1, Entries: make([]toc.ZstdChunkedEntry, len(zw.entries)), TarSplitDigest: digest.Canonical.FromBytes(tsZ.Bytes())}
	for i, e := range zw.entries {
		t.Entries[i] = *e
	}
	tocJSON, err := json.Marshal(&t)
	if err != nil {
		return nil, fmt.Errorf("encoding TOC: %w", err)
	}
	var tocZ bytes.Buffer
	if err := zw.compressOne(&tocZ, tocJSON); err != nil {
		return nil, err
	}
	tocPos := toc.Position{Offset: end + toc.SkippableFrameHeaderSize, Compressed: int64(tocZ.Len()), Uncompressed: int64(len(tocJSON))}
	tsPos := toc.Position{Offset: tocPos.Offset + tocPos.Compressed + toc.SkippableFrameHeaderSize, Compressed: int64(tsZ.Len()), Uncompressed: int64(zw.tarSplit.Len())}
	footer, _ := toc.ZstdChunkedFooter{
		Offset: uint64(tocPos.Offset), LengthCompressed: uint64(tocPos.Compressed), LengthUncompressed: uint64(tocPos.Uncompressed),
		ManifestType:   toc.ManifestTypeCRFS,
		OffsetTarSplit: uint64(tsPos.Offset), LengthCompressedTarSplit: uint64(tsPos.Compressed), LengthUncompressedTarSplit: uint64(tsPos.Uncompressed),
	}.MarshalBinary()
	out := io.MultiWriter(w, zw.blob)
	size := end
	for _, frame := range [][]byte{toc.SkippableFrame(tocZ.Bytes()), toc.SkippableFrame(tsZ.Bytes()), toc.SkippableFrame(footer)} {
		if _, err := out.Write(frame); err != nil {
			return nil, fmt.Errorf("writing TOC: %w", err)
		}
		size += int64(len(frame))
	}
	tocDigest := digest.Canonical.FromBytes(tocZ.Bytes())
	return &Blob{
		Digest:       digest.NewDigest(digest.SHA256, zw.blob),
		Size:         size,
		DiffID:       digest.NewDigest(digest.SHA256, zw.diffID),
		Uncompressed: zw.uncompressed,
		TOCDigest:    tocDigest,
		TOCOffset:    end,
		TOCSize:      size - end,
		Chunks:       zw.chunks,
		Annotations: map[string]string{
			toc.AnnotationZstdChunkedManifestChecksum: tocDigest.String(),
			toc.AnnotationZstdChunkedManifestPosition: tocPos.String() + ":" + fmt.Sprint(toc.ManifestTypeCRFS),
			toc.AnnotationZstdChunkedTarSplitPosition: tsPos.String(),
		},
	}, nil
}
