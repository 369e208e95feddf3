package convert

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
)

// A compressor turns one member's uncompressed bytes into one independently
// decodable unit (a gzip member, a zstd frame). Each worker owns one.
type compressor interface {
	compress(dst *bytes.Buffer, src []byte) error
}

// job is one unit of the output stream: a gzip member or a zstd frame.
type job struct {
	data []byte
	// shared data is read-only and not the pool's (zero chunks).
	shared bool
	out    bytes.Buffer
	// prepare, if set, runs on the worker after compression, in parallel
	// with other jobs (for example to hash a chunk).
	prepare func(data []byte)
	// written, if set, runs on the single writer goroutine in stream order
	// once the job's output is written at offset off (compressed length n).
	written func(off, n int64, data []byte)
	done    chan struct{}
	err     error
}

// pipeline compresses jobs on several workers and writes their outputs in
// submission order. At most 2*workers+1 jobs are alive at once, which bounds
// memory to a few multiples of the job size.
type pipeline struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	jobs   chan *job
	order  chan *job
	pool   *sync.Pool
	wg     sync.WaitGroup
	wdone  chan struct{}
	off    int64
	werr   error
}

func newPipeline(ctx context.Context, w io.Writer, workers int, newCompressor func() (compressor, error), pool *sync.Pool) (*pipeline, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	p := &pipeline{
		ctx:    ctx,
		cancel: cancel,
		jobs:   make(chan *job, workers),
		order:  make(chan *job, 2*workers),
		pool:   pool,
		wdone:  make(chan struct{}),
	}
	comps := make([]compressor, workers)
	for i := range comps {
		c, err := newCompressor()
		if err != nil {
			cancel(err)
			return nil, err
		}
		comps[i] = c
	}
	for _, c := range comps {
		p.wg.Add(1)
		go p.work(c)
	}
	go p.write(w)
	return p, nil
}

func (p *pipeline) work(c compressor) {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case j, ok := <-p.jobs:
			if !ok {
				return
			}
			j.err = c.compress(&j.out, j.data)
			if j.err == nil && j.prepare != nil {
				j.prepare(j.data)
			}
			close(j.done)
		}
	}
}

func (p *pipeline) write(w io.Writer) {
	defer close(p.wdone)
	for j := range p.order {
		select {
		case <-p.ctx.Done():
			p.werr = context.Cause(p.ctx)
			return
		case <-j.done:
		}
		if j.err != nil {
			p.fail(j.err)
			return
		}
		n, err := w.Write(j.out.Bytes())
		if err != nil {
			p.fail(fmt.Errorf("writing output: %w", err))
			return
		}
		if j.written != nil {
			j.written(p.off, int64(n), j.data)
		}
		p.off += int64(n)
		p.release(j)
	}
}

func (p *pipeline) fail(err error) {
	p.werr = err
	p.cancel(err)
}

// newJob returns a job whose data buffer comes from the pool, empty with
// at least the pool's capacity.
func (p *pipeline) newJob() *job {
	b := p.pool.Get().(*[]byte)
	return &job{data: (*b)[:0], done: make(chan struct{})}
}

func (p *pipeline) release(j *job) {
	if j.shared {
		j.data = nil
		return
	}
	b := j.data[:0]
	p.pool.Put(&b)
	j.data = nil
}

// submit queues j. It blocks while the pipeline is full and fails once the
// pipeline has failed or the context is done.
func (p *pipeline) submit(j *job) error {
	select {
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	case p.order <- j:
	}
	select {
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	case p.jobs <- j:
	}
	return nil
}

// close waits for every submitted job to be written and returns the number
// of bytes written. After an error it stops all goroutines before returning.
func (p *pipeline) close() (int64, error) {
	close(p.order)
	close(p.jobs)
	<-p.wdone
	p.wg.Wait()
	if p.werr != nil {
		return p.off, p.werr
	}
	if err := context.Cause(p.ctx); err != nil {
		return p.off, err
	}
	p.cancel(nil)
	return p.off, nil
}

// abort stops the pipeline after a producer error.
func (p *pipeline) abort(err error) {
	p.cancel(err)
	close(p.order)
	close(p.jobs)
	<-p.wdone
	p.wg.Wait()
}
