package disk

import (
	"fmt"
	"io"
)

// segmentSize is how much of the file one read of WriteRange covers.
const segmentSize = 4 << 20

// Skipper is a writer that can pass over a run of zeros without being given
// them: a sparse file leaves a hole, a device known to read as zeros leaves
// the region alone. WriteRange hands zero chunks to Skip when w is one.
type Skipper interface {
	io.Writer
	// Skip advances the writer's position over n zero bytes.
	Skip(n int64) error
}

// WriteRange writes the bytes [off, off+n) of the file, cut at its end, to
// w in order, reading ahead: several segments are fetched, decompressed and
// verified at once, as many as the File's concurrency. When w is a Skipper,
// the runs of zero chunks (see Extents) are passed to its Skip instead. It
// returns the bytes written or skipped.
func (f *File) WriteRange(w io.Writer, off, n int64) (int64, error) {
	if off < 0 || n < 0 {
		return 0, fmt.Errorf("reading %s: negative range %d:%d", f.name, off, n)
	}
	end := min(off+n, f.size)
	if off >= end {
		return 0, nil
	}
	ahead := cap(f.fetch.sem) + 1
	skipper, _ := w.(Skipper)
	type segment struct {
		buf  []byte
		n    int
		skip int64 // a run of zeros for the Skipper, not read
		err  error
		done chan struct{}
	}
	free := make(chan []byte, ahead)
	for range ahead {
		free <- make([]byte, segmentSize)
	}
	queue := make(chan *segment, ahead)
	stop := make(chan struct{})
	go func() {
		defer close(queue)
		extents := []Extent{{Offset: off, Length: end - off}}
		if skipper != nil {
			extents = f.Extents(off, end-off)
		}
		for _, e := range extents {
			if e.Zero {
				s := &segment{skip: e.Length, done: make(chan struct{})}
				close(s.done)
				queue <- s
				continue
			}
			for o := e.Offset; o < e.Offset+e.Length; o += segmentSize {
				var buf []byte
				select {
				case buf = <-free:
				case <-stop:
					return
				}
				s := &segment{buf: buf[:min(segmentSize, e.Offset+e.Length-o)], done: make(chan struct{})}
				go func(o int64) {
					s.n, s.err = f.readAt(s.buf, o, nil) // it reads ahead itself
					if s.err == io.EOF && s.n == len(s.buf) {
						s.err = nil
					}
					close(s.done)
				}(o)
				queue <- s
			}
		}
	}()
	var written int64
	var err error
	for s := range queue {
		<-s.done
		if s.buf == nil {
			if err == nil {
				if err = skipper.Skip(s.skip); err == nil {
					written += s.skip
				} else {
					close(stop)
				}
			}
			continue
		}
		if err == nil {
			err = s.err
			var m int
			m, werr := w.Write(s.buf[:s.n])
			written += int64(m)
			if err == nil && werr != nil {
				err = werr
			}
			if err != nil {
				close(stop)
			}
		}
		free <- s.buf[:cap(s.buf)]
	}
	return written, err
}
