package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Image is the guest disk of a qcow2 file: an io.ReaderAt of its virtual
// size. It is safe for concurrent use; reads of the file go to the
// io.ReaderAt given to Open, which must be safe for concurrent use too.
type Image struct {
	r        io.ReaderAt
	fileSize int64
	h        *header
	l1       []uint64
	// meta holds the metadata regions data clusters must not overlap,
	// sorted by offset: the header cluster, the L1 and refcount tables and
	// every L2 table.
	meta     []region
	l2s      *lru[[]byte]
	clusters *lru[[]byte]
	dec      decompressors
}

type region struct{ off, n int64 }

// Open reads and checks the header and the L1 table of the qcow2 file r of
// fileSize bytes, and every L2 table's place (not its entries: those are
// read and checked as reads reach them). Errors match ErrNotQcow2,
// ErrUnsupported, ErrBackingFile, ErrEncrypted, ErrExternalData or
// ErrCorrupt, or are the reader's.
func Open(r io.ReaderAt, fileSize int64, opts ...Option) (*Image, error) {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	h, err := readHeader(r, fileSize)
	if err != nil {
		return nil, err
	}
	cs := h.clusterSize()
	im := &Image{r: r, fileSize: fileSize, h: h}
	im.meta = append(im.meta, region{0, cs})
	if h.refcountLen > 0 {
		im.meta = append(im.meta, region{h.refcountOffset, h.refcountLen})
	}
	if h.l1Size > 0 {
		im.meta = append(im.meta, region{h.l1Offset, h.l1Size * 8})
		buf := make([]byte, h.l1Size*8)
		if _, err := r.ReadAt(buf, h.l1Offset); err != nil {
			return nil, fmt.Errorf("reading qcow2 L1 table: %w", err)
		}
		im.l1 = make([]uint64, h.l1Size)
		for i := range im.l1 {
			e := binary.BigEndian.Uint64(buf[i*8:])
			im.l1[i] = e
			l2 := int64(e & offsetMask)
			if l2 == 0 {
				continue
			}
			if int64(i)*cs*h.l2Entries() >= h.size {
				continue // past the virtual size: never read
			}
			if l2%cs != 0 {
				return nil, fmt.Errorf("%w: L1 entry %d: L2 table offset %#x is not cluster aligned", ErrCorrupt, i, l2)
			}
			if l2+cs > fileSize {
				return nil, fmt.Errorf("%w: L1 entry %d: L2 table at %#x is past the end of the file (%d bytes)", ErrCorrupt, i, l2, fileSize)
			}
			im.meta = append(im.meta, region{l2, cs})
		}
	}
	slices.SortFunc(im.meta, func(a, b region) int { return int(min(max(a.off-b.off, -1), 1)) })
	for i := 1; i < len(im.meta); i++ {
		if p, q := im.meta[i-1], im.meta[i]; p.off+p.n > q.off {
			return nil, fmt.Errorf("%w: metadata at %#x (%d bytes) overlaps metadata at %#x", ErrCorrupt, p.off, p.n, q.off)
		}
	}
	im.l2s = newLRU[[]byte](max(1, int(o.l2Cache/cs)))
	im.clusters = newLRU[[]byte](max(minClusterCache, int(o.clusterCache/cs)))
	im.dec = decompressors{kind: h.compression, clusterSize: cs}
	return im, nil
}

// Size returns the guest disk's (virtual) size in bytes.
func (im *Image) Size() int64 { return im.h.size }

// Version returns the qcow2 version, 2 or 3.
func (im *Image) Version() int { return int(im.h.version) }

// ClusterSize returns the cluster size in bytes.
func (im *Image) ClusterSize() int64 { return im.h.clusterSize() }

// Compression returns the algorithm of the image's compressed clusters.
func (im *Image) Compression() Compression { return im.h.compression }

// ExtendedL2 says whether the image has extended L2 entries (subclusters).
func (im *Image) ExtendedL2() bool { return im.h.extendedL2 }

// Kind is what a range of the guest disk is made of.
type Kind uint8

const (
	// Data is stored in the file, compressed or not.
	Data Kind = iota
	// Zero reads as zeros by a zero flag or zero subcluster bit.
	Zero
	// Hole is not allocated: it reads as zeros, as there is no backing file.
	Hole
)

func (k Kind) String() string {
	switch k {
	case Data:
		return "data"
	case Zero:
		return "zero"
	case Hole:
		return "hole"
	}
	return "unknown"
}

// Extent is a range of the guest disk of one Kind.
type Extent struct {
	Offset, Length int64
	Kind           Kind
}

// piece is the mapping of a run of guest bytes within one cluster.
type piece struct {
	kind Kind
	n    int64 // bytes from the asked offset
	// host is the file offset of the asked guest offset, for uncompressed data.
	host int64
	// comp is the compressed cluster's L2 entry, when it is compressed.
	comp uint64
}

// lookup maps the guest bytes from off (< Size) to the end of their
// cluster, or less: the longest run with one mapping.
func (im *Image) lookup(off int64) (piece, error) {
	h := im.h
	cs := h.clusterSize()
	cluster := off >> h.clusterBits
	inCluster := off & (cs - 1)
	rest := min(cs-inCluster, h.size-off)
	perL2 := h.l2Entries()
	l1i := cluster / perL2
	l2Off := int64(im.l1[l1i] & offsetMask)
	if l2Off == 0 {
		// The whole L2 table's span is unallocated.
		end := min((l1i+1)*perL2*cs, h.size)
		return piece{kind: Hole, n: end - off}, nil
	}
	l2, err := im.l2Table(l2Off)
	if err != nil {
		return piece{}, err
	}
	idx := cluster % perL2
	var entry, bitmap uint64
	if h.extendedL2 {
		entry = binary.BigEndian.Uint64(l2[idx*16:])
		bitmap = binary.BigEndian.Uint64(l2[idx*16+8:])
	} else {
		entry = binary.BigEndian.Uint64(l2[idx*8:])
	}
	if entry&l2Compressed != 0 {
		return piece{kind: Data, n: rest, comp: entry}, nil
	}
	host := int64(entry & offsetMask)
	if host != 0 {
		if err := im.checkDataCluster(host, off); err != nil {
			return piece{}, err
		}
	}
	if !h.extendedL2 {
		switch {
		case entry&l2ZeroFlag != 0:
			return piece{kind: Zero, n: rest}, nil
		case host == 0:
			return piece{kind: Hole, n: rest}, nil
		}
		return piece{kind: Data, n: rest, host: host + inCluster}, nil
	}
	alloc, zero := uint32(bitmap), uint32(bitmap>>32)
	if alloc&zero != 0 {
		return piece{}, fmt.Errorf("%w: guest offset %d: subclusters both allocated and zero (bitmap %#x)", ErrCorrupt, off, bitmap)
	}
	if host == 0 && alloc != 0 {
		return piece{}, fmt.Errorf("%w: guest offset %d: allocated subclusters in an unallocated cluster (bitmap %#x)", ErrCorrupt, off, bitmap)
	}
	sc := cs / subclusters
	kindOf := func(i int64) Kind {
		switch {
		case zero>>i&1 != 0:
			return Zero
		case alloc>>i&1 != 0:
			return Data
		}
		return Hole
	}
	first := inCluster / sc
	k := kindOf(first)
	last := first + 1
	for last < subclusters && kindOf(last) == k {
		last++
	}
	p := piece{kind: k, n: min(last*sc-inCluster, rest)}
	if k == Data {
		p.host = host + inCluster
	}
	return p, nil
}

// checkDataCluster refuses a data cluster at host that is unaligned, past
// the end of the file or on metadata.
func (im *Image) checkDataCluster(host, guest int64) error {
	cs := im.h.clusterSize()
	if host%cs != 0 {
		return fmt.Errorf("%w: guest offset %d: data cluster offset %#x is not cluster aligned", ErrCorrupt, guest, host)
	}
	if host >= im.fileSize {
		return fmt.Errorf("%w: guest offset %d: data cluster at %#x is past the end of the file (%d bytes)", ErrCorrupt, guest, host, im.fileSize)
	}
	i, _ := slices.BinarySearchFunc(im.meta, host, func(r region, t int64) int { return int(min(max(r.off-t, -1), 1)) })
	for _, j := range []int{i - 1, i} {
		if j >= 0 && j < len(im.meta) && overlaps(host, cs, im.meta[j].off, im.meta[j].n) {
			return fmt.Errorf("%w: guest offset %d: data cluster at %#x overlaps metadata at %#x", ErrCorrupt, guest, host, im.meta[j].off)
		}
	}
	return nil
}

// l2Table returns the L2 table at off, from the cache or the file.
func (im *Image) l2Table(off int64) ([]byte, error) {
	if t, ok := im.l2s.get(off); ok {
		return t, nil
	}
	t := make([]byte, im.h.clusterSize())
	if _, err := im.r.ReadAt(t, off); err != nil {
		return nil, fmt.Errorf("reading qcow2 L2 table at %#x: %w", off, err)
	}
	im.l2s.add(off, t)
	return t, nil
}

// ReadAt reads the guest disk's bytes at off. It returns io.EOF when the
// read reaches the end of the disk, as io.ReaderAt asks.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2: negative offset %d", off)
	}
	var eof error
	if off >= im.h.size {
		return 0, io.EOF
	}
	if rest := im.h.size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	// Uncompressed data of neighbouring clusters that are neighbours in the
	// file too is read with one call.
	var pendAt, pendLen int
	var pendHost int64
	flush := func() error {
		if pendLen == 0 {
			return nil
		}
		err := im.readHost(p[pendAt:pendAt+pendLen], pendHost)
		pendLen = 0
		return err
	}
	done := 0
	for done < len(p) {
		pc, err := im.lookup(off + int64(done))
		if err != nil {
			return done, err
		}
		n := int(min(pc.n, int64(len(p)-done)))
		dst := p[done : done+n]
		switch {
		case pc.kind != Data:
			clear(dst)
		case pc.comp != 0:
			c, err := im.compressed(pc.comp, off+int64(done))
			if err != nil {
				return done, err
			}
			copy(dst, c[(off+int64(done))&(im.h.clusterSize()-1):])
		case pendLen > 0 && pendAt+pendLen == done && pendHost+int64(pendLen) == pc.host:
			pendLen += n
		default:
			if err := flush(); err != nil {
				return done, err
			}
			pendAt, pendLen, pendHost = done, n, pc.host
		}
		done += n
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return done, eof
}

// readHost reads file bytes at off into p; bytes past the end of the file
// read as zeros (a last cluster may be written only in part).
func (im *Image) readHost(p []byte, off int64) error {
	n, err := im.r.ReadAt(p, off)
	if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) >= im.fileSize) {
		return fmt.Errorf("reading qcow2 data at %#x: %w", off, err)
	}
	clear(p[n:])
	return nil
}

// compressed returns the decompressed cluster of the compressed L2 entry,
// from the cache or the file. guest is for errors.
func (im *Image) compressed(entry uint64, guest int64) ([]byte, error) {
	x := 62 - (im.h.clusterBits - 8)
	host := int64(entry & (1<<x - 1))
	sectors := int64(entry>>x) & (1<<(62-x) - 1)
	if c, ok := im.clusters.get(host); ok {
		return c, nil
	}
	n := (sectors+1)*sectorSize - host&(sectorSize-1)
	if host < im.h.clusterSize() {
		return nil, fmt.Errorf("%w: guest offset %d: compressed cluster at %#x is in the header", ErrCorrupt, guest, host)
	}
	if host >= im.fileSize {
		return nil, fmt.Errorf("%w: guest offset %d: compressed cluster at %#x is past the end of the file (%d bytes)", ErrCorrupt, guest, host, im.fileSize)
	}
	n = min(n, im.fileSize-host) // the last one's sector count may run past the end
	src := make([]byte, n)
	if err := im.readHost(src, host); err != nil {
		return nil, err
	}
	c := make([]byte, im.h.clusterSize())
	if err := im.dec.decompress(c, src); err != nil {
		return nil, fmt.Errorf("%w: guest offset %d: compressed cluster at %#x: %w", ErrCorrupt, guest, host, err)
	}
	im.clusters.add(host, c)
	return c, nil
}

// Extents returns the extents that cover [off, off+length) of the guest
// disk, clamped to its size, merging neighbours of the same kind. It reads
// L2 tables, never data.
func (im *Image) Extents(off, length int64) ([]Extent, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("qcow2: negative extent range %d:%d", off, length)
	}
	end := min(off+length, im.h.size)
	if length > im.h.size { // off+length may overflow
		end = im.h.size
	}
	var out []Extent
	for off < end {
		pc, err := im.lookup(off)
		if err != nil {
			return out, err
		}
		n := min(pc.n, end-off)
		if k := len(out) - 1; k >= 0 && out[k].Kind == pc.kind {
			out[k].Length += n
		} else {
			out = append(out, Extent{Offset: off, Length: n, Kind: pc.kind})
		}
		off += n
	}
	return out, nil
}
