package disk

import "sync"

// Readahead (WithReadahead) finds sequential streams among a File's ReadAt
// calls and fetches the chunks ahead of each before they are asked for.
//
// A stream is a run of reads each of which starts near the front of the
// stream, the end of its furthest read so far: a little past it (a qcow2
// driver skips its metadata clusters), or up to streamBehind before it,
// because clients keep several requests of one stream in flight (qemu-img
// convert runs 8 coroutines, nbdcopy 64 requests per connection) and a
// server answers them concurrently, so they arrive out of order. Only reads
// near the front count towards making the stream sequential; the others
// merely belong to it. Several streams are followed at once, keyed by
// where each is expected to go on; the least recently continued one makes
// room for a new one, and one whose front comes to belong to another is
// merged into it.
//
// Once a stream has seqReads reads near its front, its window (from one
// segment, doubling each time it moves, up to the readahead) is kept
// fetched ahead of its front, one segment at a time, as long as the bytes
// fetched ahead and not yet read, all streams together, stay within the
// readahead, and the stream holds no more than its share of them. The segment is the size WriteRange reads ahead in, so that a
// run of missing chunks makes requests of up to WithMaxRequest each, in
// parallel. A stream that has not been continued for staleReads reads, or
// whose slot is taken, has ended: what was fetched ahead of it no longer
// counts against the readahead (it stays cached, for a read that still
// wants it).
const (
	// maxStreams is how many streams are followed at once.
	maxStreams = 16
	// streamGap is how far past a stream's front a read may start and
	// still continue it, and how near the front a read must start to make
	// the stream more sequential, unless four of the stream's largest
	// reads are more.
	streamGap = 1 << 20
	// streamBehind is how far before a stream's front a read may start and
	// still belong to it.
	streamBehind = 32 << 20
	// seqReads is how many reads make a stream sequential: an isolated
	// read, or two that happen to be near, fetch nothing ahead.
	seqReads = 3
	// staleReads is how many reads of other streams end a stream that
	// none of them continued.
	staleReads = 64
)

// stream is one sequential run of reads.
type stream struct {
	next   int64  // the end of the furthest read
	ahead  int64  // fetched, or being fetched, up to here
	window int64  // how far ahead of next to fetch
	span   int64  // its largest read
	reads  int    // reads near its front
	used   uint64 // the detector's clock when it was last continued; 0 for a free slot
}

// prefetcher fetches for reads to come (the fetcher).
type prefetcher interface {
	// prefetch starts fetching [off, end) and reports whether the bytes
	// fetched ahead had room for it.
	prefetch(off, end int64) bool
	// release stops counting what was fetched ahead in [off, end).
	release(off, end int64)
}

// detector follows the streams of a File's reads and asks for the segments
// ahead of them. Its methods may be called concurrently.
type detector struct {
	max, segment, size int64
	fetch              prefetcher

	mu      sync.Mutex
	clock   uint64
	streams [maxStreams]stream
}

func newDetector(max, size int64, fetch prefetcher) *detector {
	return &detector{max: max, segment: min(segmentSize, max), size: size, fetch: fetch}
}

// observe records a read of [off, end) and fetches ahead of its stream if
// the stream is sequential.
func (d *detector) observe(off, end int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock++
	for i := range d.streams {
		if s := &d.streams[i]; s.used != 0 && d.clock-s.used > staleReads {
			d.end(s)
		}
	}
	s := d.find(off)
	if s == nil {
		s = d.slot()
		d.end(s)
		*s = stream{next: end, ahead: end, window: d.segment, span: end - off, reads: 1, used: d.clock}
		d.merge(s)
		return
	}
	s.used = d.clock
	s.span = max(s.span, end-off)
	if off >= s.next-s.gap() {
		// Near the stream's front. A read further behind is one of its
		// requests that came late: it belongs, but does not make the
		// stream any more sequential.
		s.reads++
	}
	s.next = max(s.next, end)
	d.merge(s)
	s.ahead = max(s.ahead, s.next)
	if s.reads < seqReads {
		return
	}
	// Streams share the readahead: one may hold no more than its part
	// fetched ahead.
	n := int64(0)
	for i := range d.streams {
		if d.streams[i].used != 0 && d.streams[i].reads >= seqReads {
			n++
		}
	}
	window := min(s.window, max(d.max/n, d.segment))
	target := min(s.next+window, d.size)
	moved := false
	for s.ahead < target && (target-s.ahead >= d.segment || target == d.size) {
		e := min(s.ahead+d.segment, target)
		if !d.fetch.prefetch(s.ahead, e) {
			break
		}
		s.ahead, moved = e, true
	}
	if moved {
		s.window = min(2*s.window, d.max)
	}
}

// belongs reports whether a read at off, or a stream whose front is off,
// belongs to stream s.
func (s *stream) belongs(off int64) bool {
	return s.used != 0 && off >= s.next-streamBehind && off <= s.next+s.gap()
}

// gap is how far from the front of s a read may start and still continue
// it: streamGap, or four of its largest reads, as a client keeps several of
// them in flight and the later ones may come first.
func (s *stream) gap() int64 { return max(streamGap, 4*s.span) }

// merge folds into s the other streams whose front belongs to it: reads
// that overtook the others of a stream started them.
func (d *detector) merge(s *stream) {
	for i := range d.streams {
		t := &d.streams[i]
		if t == s || !s.belongs(t.next) {
			continue
		}
		s.next, s.ahead, s.span = max(s.next, t.next), max(s.ahead, t.ahead), max(s.span, t.span)
		s.window, s.reads = max(s.window, t.window), max(s.reads, t.reads)
		*t = stream{} // what it fetched ahead is s's now
	}
}

// end ends stream s and frees its slot.
func (d *detector) end(s *stream) {
	if s.used != 0 && s.ahead > s.next {
		d.fetch.release(s.next, s.ahead)
	}
	*s = stream{}
}

// find returns the stream a read at off belongs to, the one whose front is
// nearest to off, or nil.
func (d *detector) find(off int64) *stream {
	var best *stream
	var bestDist int64
	for i := range d.streams {
		s := &d.streams[i]
		if !s.belongs(off) {
			continue
		}
		dist := off - s.next
		if dist < 0 {
			dist = -dist
		}
		if best == nil || dist < bestDist {
			best, bestDist = s, dist
		}
	}
	return best
}

// slot returns a free slot, or the least recently continued stream's.
func (d *detector) slot() *stream {
	lru := &d.streams[0]
	for i := range d.streams {
		s := &d.streams[i]
		if s.used == 0 {
			return s
		}
		if s.used < lru.used {
			lru = s
		}
	}
	return lru
}
