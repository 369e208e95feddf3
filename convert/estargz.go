package convert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"

	"github.com/lazydisk/lazydisk/internal/tarstream"
	"github.com/lazydisk/lazydisk/toc"
)

// Blob describes a seekable layer blob that a writer produced.
type Blob struct {
	// Digest and Size are those of the compressed blob.
	Digest digest.Digest
	Size   int64
	// DiffID is the digest of the uncompressed stream, Uncompressed its length.
	DiffID       digest.Digest
	Uncompressed int64
	// TOCDigest identifies the TOC: for eStargz the digest of the
	// uncompressed TOC JSON (the toc.digest annotation), for zstd:chunked the
	// digest of the compressed TOC (the manifest-checksum annotation).
	TOCDigest digest.Digest
	// TOCOffset and TOCSize locate the compressed TOC in the blob.
	TOCOffset, TOCSize int64
	// Chunks counts the file chunks listed in the TOC.
	Chunks int
	// Annotations are the layer annotations the format requires.
	Annotations map[string]string
}

// gzipCompressor compresses each member as one complete gzip stream with a
// fixed header (no name, MTIME 0, OS 255), so output depends on content only.
type gzipCompressor struct{ zw *gzip.Writer }

func newGzipCompressor(level int) func() (compressor, error) {
	return func() (compressor, error) {
		zw, err := gzip.NewWriterLevel(io.Discard, level)
		if err != nil {
			return nil, err
		}
		return &gzipCompressor{zw: zw}, nil
	}
}

func (g *gzipCompressor) compress(dst *bytes.Buffer, src []byte) error {
	dst.Reset()
	g.zw.Reset(dst)
	if _, err := g.zw.Write(src); err != nil {
		return err
	}
	return g.zw.Close()
}

// newBufferPool returns a pool of job buffers with room for a chunk and the
// tar padding and header that may follow it.
func newBufferPool(chunkSize int) *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, 0, chunkSize+2*tarstream.BlockSize)
		return &b
	}}
}

// readChunk fills b from a file's payload; a short payload is a truncated tar.
func readChunk(payload io.Reader, b []byte, name string) error {
	if _, err := io.ReadFull(payload, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: payload: %w", tarstream.ErrInvalid, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("reading %q: %w", name, err)
	}
	return nil
}

// skipNames are entries a previous eStargz conversion added; they are dropped
// so that converting an eStargz layer again gives a clean result.
var skipNames = map[string]bool{
	estargz.TOCTarName:         true,
	estargz.PrefetchLandmark:   true,
	estargz.NoPrefetchLandmark: true,
}

// WriteEStargz reads an uncompressed tar stream from r and writes it to w as
// an eStargz blob: a .no.prefetch.landmark entry first, every regular file
// split into chunks that each start a new gzip member, the TOC
// (stargz.index.json) in its own member, and the 51-byte footer. Header
// bytes, payloads and padding of the source are kept exactly; its
// end-of-archive marker is replaced by the one after the TOC. An existing
// TOC and landmarks in the source are dropped.
//
// Chunks are compressed in parallel; the output depends only on the input
// and on the chunk size and compression level, never on the worker count.
// Memory use is bounded by a few chunks per worker.
func WriteEStargz(ctx context.Context, w io.Writer, r io.Reader, opts ...Option) (*Blob, error) {
	o, err := makeOptions(append([]Option{WithFormat(toc.FormatEStargz)}, opts...))
	if err != nil {
		return nil, err
	}
	if o.format != toc.FormatEStargz {
		return nil, fmt.Errorf("WriteEStargz called with format %q", o.format)
	}
	ew := &estargzWriter{o: o, blob: sha256.New()}
	p, err := newPipeline(ctx, io.MultiWriter(w, ew.blob), o.workers, newGzipCompressor(o.level), newBufferPool(o.chunkSize))
	if err != nil {
		return nil, fmt.Errorf("creating gzip compressor: %w", err)
	}
	ew.frameStream = newFrameStream(p, o.chunkSize)
	if err := ew.writeEntries(r); err != nil {
		p.abort(err)
		return nil, err
	}
	tocOffset, err := p.close()
	if err != nil {
		return nil, err
	}
	return ew.finish(w, tocOffset)
}

type estargzWriter struct {
	frameStream
	o       options
	entries []*estargz.TOCEntry
	blob    hash.Hash
	chunks  int
	// names of the last user and group name written per id, as
	// estargz.Writer elides repeats.
	unames, gnames map[int]string
}

func (ew *estargzWriter) writeEntries(r io.Reader) error {
	if err := ew.writeLandmark(); err != nil {
		return err
	}
	sc := tarstream.NewScanner(r)
	skipped := false // the previous entry was dropped, and so is its padding
	for {
		e, err := sc.Next()
		if !skipped {
			if perr := ew.appendBytes(sc.PrevPad()); perr != nil {
				return perr
			}
		}
		if err == io.EOF {
			return ew.seal()
		}
		if err != nil {
			return err
		}
		if skipped = skipNames[tarstream.CleanName(e.Header.Name)]; skipped {
			continue
		}
		if err := ew.appendBytes(e.Raw); err != nil {
			return err
		}
		if err := ew.addEntry(e.Header, e.Payload); err != nil {
			return err
		}
	}
}

// writeLandmark writes .no.prefetch.landmark the way estargz.Build does:
// it tells stargz-snapshotter not to prefetch the layer, which for a
// multi-gigabyte disk would download all of it.
func (ew *estargzWriter) writeLandmark() error {
	payload := []byte{0x0f}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: estargz.NoPrefetchLandmark, Size: int64(len(payload))}
	raw, err := tarHeaderBytes(hdr)
	if err != nil {
		return err
	}
	if err := ew.appendBytes(raw); err != nil {
		return err
	}
	if err := ew.addEntry(hdr, bytes.NewReader(payload)); err != nil {
		return err
	}
	return ew.appendBytes(make([]byte, -len(payload)&(tarstream.BlockSize-1)))
}

// addEntry records hdr in the TOC and, for a regular file, streams its
// payload as chunks that each start a new member.
func (ew *estargzWriter) addEntry(h *tar.Header, payload io.Reader) error {
	ent := &estargz.TOCEntry{
		Name:        h.Name,
		Mode:        h.Mode,
		UID:         h.Uid,
		GID:         h.Gid,
		Uname:       nameIfChanged(&ew.unames, h.Uid, h.Uname),
		Gname:       nameIfChanged(&ew.gnames, h.Gid, h.Gname),
		ModTime3339: formatModtime(h),
		Xattrs:      xattrs(h),
	}
	switch h.Typeflag {
	case tar.TypeLink:
		ent.Type, ent.LinkName = "hardlink", h.Linkname
	case tar.TypeSymlink:
		ent.Type, ent.LinkName = "symlink", h.Linkname
	case tar.TypeDir:
		ent.Type = "dir"
	case tar.TypeReg, tar.TypeRegA:
		ent.Type, ent.Size = "reg", h.Size
	case tar.TypeChar:
		ent.Type, ent.DevMajor, ent.DevMinor = "char", int(h.Devmajor), int(h.Devminor)
	case tar.TypeBlock:
		ent.Type, ent.DevMajor, ent.DevMinor = "block", int(h.Devmajor), int(h.Devminor)
	case tar.TypeFifo:
		ent.Type = "fifo"
	default:
		// Global PAX headers and other non-file entries are kept in the
		// stream but have no TOC entry, as no reader can look them up.
		return ew.copyRaw(payload)
	}
	if ent.Type != "reg" || ent.Size == 0 {
		if ent.Type == "reg" {
			ent.Digest = digest.Canonical.FromBytes(nil).String()
		}
		ew.entries = append(ew.entries, ent)
		return nil
	}
	return ew.addChunks(ent, payload)
}

func (ew *estargzWriter) copyRaw(payload io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := payload.Read(buf)
		if aerr := ew.appendBytes(buf[:n]); aerr != nil {
			return aerr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (ew *estargzWriter) addChunks(reg *estargz.TOCEntry, payload io.Reader) error {
	fileHash := sha256.New()
	size := reg.Size
	ent := reg
	for off := int64(0); off < size; {
		n := min(int64(ew.o.chunkSize), size-off)
		j, err := ew.startChunk(int(n))
		if err != nil {
			return err
		}
		if err := readChunk(payload, j.data, reg.Name); err != nil {
			return err
		}
		ent.ChunkOffset = off
		if n == int64(ew.o.chunkSize) {
			ent.ChunkSize = n
		}
		chunkEnt, last := ent, off+n == size
		j.prepare = func(data []byte) {
			chunkEnt.ChunkDigest = digest.Canonical.FromBytes(data[:n]).String()
		}
		j.written = func(o, _ int64, data []byte) {
			chunkEnt.Offset = o
			fileHash.Write(data[:n])
			if last {
				reg.Digest = digest.NewDigest(digest.SHA256, fileHash).String()
			}
		}
		ew.entries = append(ew.entries, ent)
		ew.chunks++
		off += n
		ent = &estargz.TOCEntry{Name: reg.Name, Type: "chunk"}
	}
	return nil
}

// finish writes the TOC member and the footer after all chunks are out.
func (ew *estargzWriter) finish(w io.Writer, tocOffset int64) (*Blob, error) {
	tocJSON, err := json.MarshalIndent(&estargz.JTOC{Version: 1, Entries: ew.entries}, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding TOC: %w", err)
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: estargz.TOCTarName, Size: int64(len(tocJSON))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(tocJSON); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	c, err := newGzipCompressor(ew.o.level)()
	if err != nil {
		return nil, err
	}
	var tocMember bytes.Buffer
	if err := c.compress(&tocMember, tarBuf.Bytes()); err != nil {
		return nil, err
	}
	footer := toc.EStargzFooter(tocOffset)
	out := io.MultiWriter(w, ew.blob)
	if _, err := out.Write(tocMember.Bytes()); err != nil {
		return nil, fmt.Errorf("writing TOC: %w", err)
	}
	if _, err := out.Write(footer); err != nil {
		return nil, fmt.Errorf("writing footer: %w", err)
	}
	ew.diffID.Write(tarBuf.Bytes())
	b := &Blob{
		Digest:       digest.NewDigest(digest.SHA256, ew.blob),
		Size:         tocOffset + int64(tocMember.Len()) + int64(len(footer)),
		DiffID:       digest.NewDigest(digest.SHA256, ew.diffID),
		Uncompressed: ew.uncompressed + int64(tarBuf.Len()),
		TOCDigest:    digest.Canonical.FromBytes(tocJSON),
		TOCOffset:    tocOffset,
		TOCSize:      int64(tocMember.Len()),
		Chunks:       ew.chunks,
	}
	b.Annotations = map[string]string{
		toc.AnnotationTOCDigest:        b.TOCDigest.String(),
		toc.AnnotationUncompressedSize: strconv.FormatInt(b.Uncompressed, 10),
	}
	return b, nil
}

func tarHeaderBytes(h *tar.Header) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	// WriteHeader writes the header blocks at once; the payload is the
	// caller's to write.
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func nameIfChanged(m *map[int]string, id int, name string) string {
	if name == "" {
		return ""
	}
	if *m == nil {
		*m = make(map[int]string)
	}
	if (*m)[id] == name {
		return ""
	}
	(*m)[id] = name
	return name
}

func timeIfNotZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func formatModtime(h *tar.Header) string {
	t := h.ModTime
	if t.IsZero() || t.Unix() == 0 {
		return ""
	}
	return t.UTC().Round(time.Second).Format(time.RFC3339)
}

func xattrs(h *tar.Header) map[string][]byte {
	const prefix = "SCHILY.xattr."
	var x map[string][]byte
	for k, v := range h.PAXRecords {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			if x == nil {
				x = make(map[string][]byte)
			}
			x[k[len(prefix):]] = []byte(v)
		}
	}
	return x
}
