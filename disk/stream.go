package disk

import (
	"fmt"
	"io"
)

// segmentSize is how much of the file one read of WriteRange covers.
const segmentSize = 4 << 20

// WriteRange writes the bytes [off, off+n) of the file, cut at its end, to
// w in order, reading ahead: several segments are fetched, decompressed and
// verified at once, as many as the File's concurrency. It returns the bytes
// written.
func (f *File) WriteRange(w io.Writer, off, n int64) (int64, error) {
	if off < 0 || n < 0 {
		return 0, fmt.Errorf("reading %s: negative range %d:%d", f.name, off, n)
	}
	end := min(off+n, f.size)
	if off >= end {
		return 0, nil
	}
	ahead := cap(f.fetch.sem) + 1
	type segment struct {
		buf  []byte
		n    int
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
		for o := off; o < end; o += segmentSize {
			select {
			case <-stop:
				return
			default:
			}
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			s := &segment{buf: buf[:min(segmentSize, end-o)], done: make(chan struct{})}
			go func(o int64) {
				s.n, s.err = f.readAt(s.buf, o, nil) // it reads ahead itself
				if s.err == io.EOF && s.n == len(s.buf) {
					s.err = nil
				}
				close(s.done)
			}(o)
			queue <- s
		}
	}()
	var written int64
	var err error
	for s := range queue {
		<-s.done
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
