package qcow2

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// The qcow2 files Layout writes: version 3, 64 KiB clusters, 16-bit
// refcounts, no compression, no extensions. Laid out in this order: the
// header cluster, the refcount table, the refcount blocks, the L1 table,
// the L2 tables, then the data clusters in guest order.
const (
	layoutClusterBits   = 16
	layoutRefcountOrder = 4
	layoutHeaderLen     = 112
	l1Copied            = 1 << 63 // refcount is 1: "copied" in L1 and L2 entries
)

// Layout is an uncompressed qcow2 file planned for a guest disk: its size
// is known before a byte is written, so it can be streamed into a tar
// entry. Only the guest clusters that hold data are allocated; the rest
// are unallocated and read as zeros.
type Layout struct {
	size int64 // virtual
	// runs are the data clusters, as [first, first+count) runs of guest
	// cluster indices in ascending order.
	runs                  [][2]int64
	nData, nL2, l1Entries int64
	l2Index               []int64 // the L1 indices that have an L2 table
	rtC, rbC, l1C         int64   // clusters
	total                 int64   // clusters
}

// NewLayout plans the qcow2 of a guest disk of size bytes whose data is in
// the Data extents of data (sorted, not overlapping); other extents and
// the gaps between them read as zeros.
func NewLayout(size int64, data []Extent) (*Layout, error) {
	if size < 0 || size > maxHostOffset/2 {
		return nil, fmt.Errorf("%w: guest size %d", ErrUnsupported, size)
	}
	const cs = 1 << layoutClusterBits
	l := &Layout{size: size}
	perL2 := int64(cs / 8)
	nCl := (size + cs - 1) / cs
	l.l1Entries = max(1, (nCl+perL2-1)/perL2)
	for _, e := range data {
		if e.Kind != Data || e.Length <= 0 {
			continue
		}
		if e.Offset < 0 || e.Offset+e.Length > size {
			return nil, fmt.Errorf("qcow2 layout: extent %d+%d is outside the %d-byte disk", e.Offset, e.Length, size)
		}
		first, end := e.Offset/cs, (e.Offset+e.Length+cs-1)/cs
		if k := len(l.runs) - 1; k >= 0 && first < l.runs[k][0]+l.runs[k][1] {
			if first < l.runs[k][0] {
				return nil, fmt.Errorf("qcow2 layout: extents are not sorted at %d", e.Offset)
			}
			first = l.runs[k][0] + l.runs[k][1]
		}
		if first >= end {
			continue
		}
		if k := len(l.runs) - 1; k >= 0 && first == l.runs[k][0]+l.runs[k][1] {
			l.runs[k][1] += end - first
		} else {
			l.runs = append(l.runs, [2]int64{first, end - first})
		}
		l.nData += end - first
		for j := first / perL2; j <= (end-1)/perL2; j++ {
			if n := len(l.l2Index); n == 0 || l.l2Index[n-1] < j {
				l.l2Index = append(l.l2Index, j)
			}
		}
	}
	l.nL2 = int64(len(l.l2Index))
	l.l1C = (l.l1Entries*8 + cs - 1) / cs
	perBlock := int64(cs * 8 >> layoutRefcountOrder)
	l.rtC, l.rbC = 1, 1
	for {
		l.total = 1 + l.rtC + l.rbC + l.l1C + l.nL2 + l.nData
		rb := (l.total + perBlock - 1) / perBlock
		rt := (rb*8 + cs - 1) / cs
		if rb == l.rbC && rt == l.rtC {
			break
		}
		l.rbC, l.rtC = rb, rt
	}
	return l, nil
}

// Size returns the qcow2 file's size in bytes.
func (l *Layout) Size() int64 { return l.total << layoutClusterBits }

// Cluster offsets of the parts of the file.
func (l *Layout) rtOff() int64   { return 1 << layoutClusterBits }
func (l *Layout) rbOff() int64   { return (1 + l.rtC) << layoutClusterBits }
func (l *Layout) l1Off() int64   { return (1 + l.rtC + l.rbC) << layoutClusterBits }
func (l *Layout) l2Off() int64   { return (1 + l.rtC + l.rbC + l.l1C) << layoutClusterBits }
func (l *Layout) dataOff() int64 { return (1 + l.rtC + l.rbC + l.l1C + l.nL2) << layoutClusterBits }

// Write writes the qcow2 file, Size bytes, to w, reading the data clusters
// from guest in order. When sum is not nil, it is also given the whole
// guest disk in order (zeros where there is no data), to hash it.
func (l *Layout) Write(w io.Writer, guest io.ReaderAt, sum io.Writer) error {
	const cs = 1 << layoutClusterBits
	bw := bufio.NewWriterSize(w, cs)
	be := binary.BigEndian
	buf := make([]byte, cs)

	// Header.
	clear(buf)
	copy(buf, Magic)
	be.PutUint32(buf[4:], 3)
	be.PutUint32(buf[20:], layoutClusterBits)
	be.PutUint64(buf[24:], uint64(l.size))
	be.PutUint32(buf[36:], uint32(l.l1Entries))
	be.PutUint64(buf[40:], uint64(l.l1Off()))
	be.PutUint64(buf[48:], uint64(l.rtOff()))
	be.PutUint32(buf[56:], uint32(l.rtC))
	be.PutUint32(buf[96:], layoutRefcountOrder)
	be.PutUint32(buf[100:], layoutHeaderLen)
	// Bytes 112-119 are the end of the header extensions: zeros.
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	// Refcount table, then blocks: every cluster of the file has refcount 1.
	writeEntries := func(clusters, n int64, entry func(i int64) uint64, width int) error {
		per := int64(cs / width)
		for c := range clusters {
			clear(buf)
			for i := range per {
				if k := c*per + i; k < n {
					if width == 8 {
						be.PutUint64(buf[i*8:], entry(k))
					} else {
						be.PutUint16(buf[i*2:], uint16(entry(k)))
					}
				}
			}
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}
	if err := writeEntries(l.rtC, l.rbC, func(i int64) uint64 { return uint64(l.rbOff() + i*cs) }, 8); err != nil {
		return err
	}
	if err := writeEntries(l.rbC, l.total, func(int64) uint64 { return 1 }, 2); err != nil {
		return err
	}
	// L1 table.
	l1 := make(map[int64]int64, len(l.l2Index)) // L1 index -> L2 table offset
	for i, j := range l.l2Index {
		l1[j] = l.l2Off() + int64(i)*cs
	}
	if err := writeEntries(l.l1C, l.l1Entries, func(j int64) uint64 {
		if off, ok := l1[j]; ok {
			return uint64(off) | l1Copied
		}
		return 0
	}, 8); err != nil {
		return err
	}
	// L2 tables: data clusters get host offsets in guest order.
	perL2 := int64(cs / 8)
	next, r := l.dataOff(), 0
	for _, j := range l.l2Index {
		clear(buf)
		lo, hi := j*perL2, (j+1)*perL2
		for ; r < len(l.runs) && l.runs[r][0] < hi; r++ {
			a, b := max(l.runs[r][0], lo), min(l.runs[r][0]+l.runs[r][1], hi)
			for c := a; c < b; c++ {
				be.PutUint64(buf[(c-lo)*8:], uint64(next)|l1Copied)
				next += cs
			}
			if l.runs[r][0]+l.runs[r][1] > hi {
				break // the run goes on in the next table
			}
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	// Data clusters, and the guest disk in order for sum.
	zeros := make([]byte, cs)
	var done int64 // guest bytes given to sum
	sumZeros := func(to int64) error {
		for ; sum != nil && done < to; done += min(cs, to-done) {
			if _, err := sum.Write(zeros[:min(cs, to-done)]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, run := range l.runs {
		if err := sumZeros(run[0] * cs); err != nil {
			return err
		}
		for c := run[0]; c < run[0]+run[1]; c++ {
			off := c * cs
			n := min(cs, l.size-off)
			m, err := guest.ReadAt(buf[:n], off)
			if int64(m) < n {
				return fmt.Errorf("reading guest bytes at %d: %w", off, err)
			}
			clear(buf[n:])
			if _, err := bw.Write(buf); err != nil {
				return err
			}
			if sum != nil {
				sum.Write(buf[:n])
			}
			done = off + n
		}
	}
	if err := sumZeros(l.size); err != nil {
		return err
	}
	return bw.Flush()
}
