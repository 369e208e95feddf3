// Package guest is the disk a guest sees in a disk file: for a qcow2 file,
// its guest (virtual) disk read through package qcow2; for a raw file, the
// file itself. It is what `read --guest` and `serve --guest` serve, with
// the allocation map that block status and sparse writes use.
//
// It does not detect formats other than qcow2 and raw (a file that is not
// qcow2 is raw, as qemu-img info would say of a containerDisk), and it does
// not write.
package guest

import (
	"fmt"
	"io"

	"github.com/lazydisk/lazydisk/qcow2"
)

// File is a disk file: any io.ReaderAt with a size.
type File interface {
	io.ReaderAt
	Size() int64
}

// ZeroMapper is a File that knows its zero runs without reading them, as
// a disk.File knows its zero chunks: a raw disk's View reports them.
type ZeroMapper interface {
	// Zeros returns the runs that cover [off, off+length), clamped to the
	// file's size.
	Zeros(off, length int64) []Extent
}

// skipper is a writer that can skip runs of zeros, as disk.Skipper.
type skipper interface {
	io.Writer
	Skip(n int64) error
}

// rangeWriter is a File that writes ranges of itself faster than reads
// would, as disk.File does.
type rangeWriter interface {
	WriteRange(w io.Writer, off, n int64) (int64, error)
}

// Format names of disk files.
const (
	FormatQcow2 = "qcow2"
	FormatRaw   = "raw"
)

// View is the guest disk of a disk file: an io.ReaderAt of Size bytes.
type View struct {
	f File
	q *qcow2.Image // nil for raw
}

// Open returns the guest view of f: through qcow2.Open when f starts with
// the qcow2 magic, otherwise f itself.
func Open(f File, opts ...qcow2.Option) (*View, error) {
	var magic [len(qcow2.Magic)]byte
	if n, err := f.ReadAt(magic[:], 0); n < len(magic) {
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the disk's format: %w", err)
		}
		return &View{f: f}, nil
	}
	if string(magic[:]) != qcow2.Magic {
		return &View{f: f}, nil
	}
	q, err := qcow2.Open(f, f.Size(), opts...)
	if err != nil {
		return nil, err
	}
	return &View{f: f, q: q}, nil
}

// Format is FormatQcow2 or FormatRaw.
func (v *View) Format() string {
	if v.q != nil {
		return FormatQcow2
	}
	return FormatRaw
}

// Qcow2 returns the qcow2 image, or nil for a raw disk.
func (v *View) Qcow2() *qcow2.Image { return v.q }

// Size is the guest disk's size in bytes.
func (v *View) Size() int64 {
	if v.q != nil {
		return v.q.Size()
	}
	return v.f.Size()
}

// ReadAt reads the guest disk.
func (v *View) ReadAt(p []byte, off int64) (int, error) {
	if v.q != nil {
		return v.q.ReadAt(p, off)
	}
	return v.f.ReadAt(p, off)
}

// Extent is a run of the guest disk: data, or zeros that need not be read.
type Extent struct {
	Offset, Length int64
	Zero           bool
}

// Extents returns the runs that cover [off, off+length) of the guest disk,
// clamped to its size: for qcow2, its zero and unallocated clusters are
// zero runs; for a raw ZeroMapper (a disk.File), its zero chunks. A raw File that does not
// know its zero runs is one data run.
func (v *View) Extents(off, length int64) ([]Extent, error) {
	var out []Extent
	add := func(o, n int64, zero bool) {
		if k := len(out) - 1; k >= 0 && out[k].Zero == zero {
			out[k].Length += n
			return
		}
		out = append(out, Extent{o, n, zero})
	}
	if v.q != nil {
		es, err := v.q.Extents(off, length)
		for _, e := range es {
			add(e.Offset, e.Length, e.Kind != qcow2.Data)
		}
		return out, err
	}
	if ze, ok := v.f.(ZeroMapper); ok {
		for _, e := range ze.Zeros(off, length) {
			add(e.Offset, e.Length, e.Zero)
		}
		return out, nil
	}
	if end := min(off+length, v.f.Size()); off < end {
		add(off, end-off, false)
	}
	return out, nil
}

// blockSize is what WriteRange reads at once, and readers is how many
// blocks it reads at once: decompressing qcow2 clusters and fetching
// chunks overlap with writing.
const (
	blockSize = 1 << 20
	readers   = 4
)

// WriteRange writes the guest bytes [off, off+n), cut at the end of the
// disk, to w in order. When w has a Skip(n int64) error method (a disk.Skipper), zero runs (Extents) are
// passed to its Skip. A raw File with its own WriteRange (a disk.File)
// writes the range itself. It returns the bytes written or skipped.
func (v *View) WriteRange(w io.Writer, off, n int64) (int64, error) {
	n = max(0, min(n, v.Size()-off))
	if v.q == nil {
		if rw, ok := v.f.(rangeWriter); ok {
			return rw.WriteRange(w, off, n)
		}
	}
	es, err := v.Extents(off, n)
	if err != nil {
		return 0, err
	}
	sk, skip := w.(skipper)
	var done int64
	for _, e := range es {
		var m int64
		switch {
		case e.Zero && skip:
			err = sk.Skip(e.Length)
			if err == nil {
				m = e.Length
			}
		case e.Zero:
			m, err = io.CopyN(w, zeroReader{}, e.Length)
		default:
			m, err = v.writeData(w, e.Offset, e.Length)
		}
		done += m
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// writeData writes the guest bytes [off, off+n) to w, reading up to
// readers blocks ahead in parallel.
func (v *View) writeData(w io.Writer, off, n int64) (int64, error) {
	type block struct {
		buf []byte
		err error
	}
	nblocks := (n + blockSize - 1) / blockSize
	results := make([]chan block, nblocks)
	for i := range results {
		results[i] = make(chan block, 1)
	}
	stop := make(chan struct{})
	defer close(stop)
	sem := make(chan struct{}, readers)
	go func() {
		for i := range nblocks {
			select {
			case sem <- struct{}{}:
			case <-stop:
				return
			}
			go func() {
				o := off + i*blockSize
				buf := make([]byte, min(blockSize, off+n-o))
				_, err := v.ReadAt(buf, o)
				if err == io.EOF {
					err = nil
				}
				results[i] <- block{buf, err}
			}()
		}
	}()
	var done int64
	for i := range nblocks {
		b := <-results[i]
		<-sem
		if b.err != nil {
			return done, b.err
		}
		m, err := w.Write(b.buf)
		done += int64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
