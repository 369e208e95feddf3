package convert

import (
	"crypto/sha256"
	"hash"
)

// frameStream is what both writers share: it groups the uncompressed
// stream into jobs (gzip members or zstd frames), submits them to the
// pipeline and hashes the uncompressed stream in order for the DiffID.
type frameStream struct {
	p *pipeline
	// cur is the open job that header and padding bytes go into.
	cur *job
	// limit is the size past which an open header job is sealed, to bound
	// memory when a layer has many entries without payload.
	limit int
	// events run in stream order after the open job is written.
	events       []func()
	diffID       hash.Hash
	uncompressed int64
}

func newFrameStream(p *pipeline, limit int) frameStream {
	return frameStream{p: p, limit: limit, diffID: sha256.New()}
}

// appendBytes adds header or padding bytes to the open job, starting a new
// one when there is none or it has grown past the limit.
func (s *frameStream) appendBytes(b []byte) error {
	for len(b) > 0 {
		if s.cur == nil {
			s.cur = s.p.newJob()
		}
		n := min(len(b), s.limit-len(s.cur.data))
		if n <= 0 {
			if err := s.seal(); err != nil {
				return err
			}
			continue
		}
		s.cur.data = append(s.cur.data, b[:n]...)
		b = b[n:]
	}
	return nil
}

// onWritten queues f to run, in stream order, once everything appended so
// far is written. It needs an open job or one that was just sealed: with
// neither, f runs after the next job.
func (s *frameStream) onWritten(f func()) { s.events = append(s.events, f) }

// startChunk seals the open job and opens one for a chunk of n bytes,
// which the caller fills.
func (s *frameStream) startChunk(n int) (*job, error) {
	if err := s.seal(); err != nil {
		return nil, err
	}
	j := s.p.newJob()
	j.data = j.data[:n]
	s.cur = j
	return j, nil
}

// seal submits the open job, if any, with the queued events.
func (s *frameStream) seal() error {
	j := s.cur
	if j == nil {
		return nil
	}
	s.cur = nil
	if len(j.data) == 0 {
		s.p.release(j)
		return nil
	}
	s.uncompressed += int64(len(j.data))
	chunkDone, events := j.written, s.events
	s.events = nil
	j.written = func(off, n int64, data []byte) {
		if chunkDone != nil {
			chunkDone(off, n, data)
		}
		s.diffID.Write(data)
		for _, e := range events {
			e()
		}
	}
	return s.p.submit(j)
}
