package disk

import (
	"fmt"
	"testing"
)

// fakePrefetcher records what a detector asks for, with a budget like the
// fetcher's: bytes asked for and neither read nor released, counted in
// blocks of 64 KiB.
type fakePrefetcher struct {
	limit    int64
	unread   map[int64]bool // blocks fetched ahead and not read
	spans    [][2]int64
	released [][2]int64
}

const block = 64 << 10

func newFake(limit int64) *fakePrefetcher {
	return &fakePrefetcher{limit: limit, unread: map[int64]bool{}}
}

func (f *fakePrefetcher) ahead() int64 { return int64(len(f.unread)) * block }

func (f *fakePrefetcher) prefetch(off, end int64) bool {
	if f.ahead()+end-off > f.limit {
		return false
	}
	for b := off / block; b < (end+block-1)/block; b++ {
		f.unread[b] = true
	}
	f.spans = append(f.spans, [2]int64{off, end})
	return true
}

func (f *fakePrefetcher) release(off, end int64) {
	f.released = append(f.released, [2]int64{off, end})
	f.read(off, end)
}

// read takes [off, end) out of what was fetched ahead.
func (f *fakePrefetcher) read(off, end int64) {
	for b := off / block; b < (end+block-1)/block; b++ {
		delete(f.unread, b)
	}
}

// fetchedAhead is how far the spans reach, and whether they are contiguous
// from the first.
func (f *fakePrefetcher) fetchedAhead() (int64, bool) {
	if len(f.spans) == 0 {
		return 0, true
	}
	for i := 1; i < len(f.spans); i++ {
		if f.spans[i][0] != f.spans[i-1][1] {
			return f.spans[len(f.spans)-1][1], false
		}
	}
	return f.spans[len(f.spans)-1][1], true
}

const (
	testSize = 4 << 30
	mib      = 1 << 20
)

// TestDetector drives the stream detector with read patterns: what it
// fetches ahead, and what it leaves alone.
func TestDetector(t *testing.T) {
	t.Parallel()
	type read struct{ off, n int64 }
	seq := func(from, n, step int64) []read {
		var out []read
		for o := from; o < from+n; o += step {
			out = append(out, read{o, step})
		}
		return out
	}
	tests := []struct {
		name  string
		reads []read
		// check looks at what was fetched ahead.
		check func(t *testing.T, f *fakePrefetcher)
	}{
		{"one read", []read{{1 << 30, 4096}}, func(t *testing.T, f *fakePrefetcher) {
			if len(f.spans) != 0 {
				t.Errorf("fetched ahead %v", f.spans)
			}
		}},
		{"two adjacent reads", []read{{1 << 30, 4096}, {1<<30 + 4096, 4096}}, func(t *testing.T, f *fakePrefetcher) {
			if len(f.spans) != 0 {
				t.Errorf("fetched ahead %v", f.spans)
			}
		}},
		{"random reads far apart", []read{{100 * mib, 4096}, {3 << 30, 4096}, {1 << 30, 4096}, {2 << 30, 65536}, {50 * mib, 4096}, {900 * mib, 4096}}, func(t *testing.T, f *fakePrefetcher) {
			if len(f.spans) != 0 {
				t.Errorf("fetched ahead %v", f.spans)
			}
		}},
		{"sequential", seq(0, 64*mib, 256<<10), func(t *testing.T, f *fakePrefetcher) {
			// The front is at 64 MiB; the window has grown to 32 MiB.
			if end, ok := f.fetchedAhead(); !ok || end < 64*mib+16*mib || end > 64*mib+32*mib || f.spans[0][0] != 768<<10 {
				t.Errorf("fetched ahead %v", f.spans)
			}
			for _, s := range f.spans {
				if s[1]-s[0] != 4*mib {
					t.Errorf("segment %v is not 4 MiB", s)
				}
			}
		}},
		{"sequential with small gaps", func() []read {
			var out []read
			for o := int64(0); o < 32*mib; o += 320 << 10 {
				out = append(out, read{o, 256 << 10})
			}
			return out
		}(), func(t *testing.T, f *fakePrefetcher) {
			if end, ok := f.fetchedAhead(); !ok || end < 40*mib {
				t.Errorf("fetched ahead %v", f.spans)
			}
		}},
		{"out of order", func() []read {
			// qemu-img convert: 8 requests of 2 MiB in flight, answered
			// in a scrambled order.
			var out []read
			for base := int64(0); base < 64*mib; base += 16 * mib {
				for _, k := range []int64{1, 0, 3, 2, 7, 4, 6, 5} {
					out = append(out, read{base + k*2*mib, 2 * mib})
				}
			}
			return out
		}(), func(t *testing.T, f *fakePrefetcher) {
			if end, ok := f.fetchedAhead(); !ok || end < 64*mib+16*mib {
				t.Errorf("fetched ahead %v", f.spans)
			}
		}},
		{"two interleaved streams", func() []read {
			var out []read
			for o := int64(0); o < 32*mib; o += mib {
				out = append(out, read{o, mib}, read{2<<30 + o, mib})
			}
			return out
		}(), func(t *testing.T, f *fakePrefetcher) {
			var low, high bool
			for _, s := range f.spans {
				low = low || (s[0] >= 32*mib && s[0] < 64*mib)
				high = high || (s[0] >= 2<<30+32*mib && s[0] < 2<<30+64*mib)
			}
			if !low || !high {
				t.Errorf("fetched ahead %v; want ahead of both streams", f.spans)
			}
		}},
		{"to the end", seq(testSize-20*mib, 20*mib, mib), func(t *testing.T, f *fakePrefetcher) {
			if end, ok := f.fetchedAhead(); !ok || end != testSize {
				t.Errorf("fetched ahead %v; want up to the end, %d", f.spans, int64(testSize))
			}
		}},
		{"stale stream released", append(seq(0, 16*mib, mib), func() []read {
			var out []read
			for i := range int64(staleReads + 2) {
				out = append(out, read{1<<30 + i*64*mib, 4096})
			}
			return out
		}()...), func(t *testing.T, f *fakePrefetcher) {
			if len(f.spans) == 0 || len(f.released) != 1 || f.released[0][0] != 16*mib {
				t.Errorf("fetched %v, released %v; want the stream's readahead released from 16 MiB", f.spans, f.released)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(32 * mib)
			d := newDetector(32*mib, testSize, f)
			for _, r := range tt.reads {
				f.read(r.off, r.off+r.n)
				d.observe(r.off, r.off+r.n)
				if f.ahead() > f.limit {
					t.Fatalf("after a read at %d: %d bytes fetched ahead, more than the %d allowed", r.off, f.ahead(), f.limit)
				}
			}
			tt.check(t, f)
		})
	}
}

// TestDetectorBudget checks that the readahead stays within its bytes, and
// goes on once reads have taken some.
func TestDetectorBudget(t *testing.T) {
	t.Parallel()
	f := newFake(8 * mib)
	d := newDetector(32*mib, testSize, f)
	for o := int64(0); o < 4*mib; o += mib {
		f.read(o, o+mib)
		d.observe(o, o+mib)
	}
	// [3, 7) MiB at the third read, [7, 11) MiB at the fourth; the next
	// segment would take 11 MiB ahead.
	if end, ok := f.fetchedAhead(); !ok || end != 11*mib || f.ahead() != 7*mib {
		t.Fatalf("fetched ahead %v, %d bytes unread; want [3, 11) MiB, 7 MiB unread", f.spans, f.ahead())
	}
	for o := int64(4 * mib); o < 40*mib; o += mib {
		f.read(o, o+mib)
		d.observe(o, o+mib)
		if f.ahead() > f.limit {
			t.Fatalf("%d bytes fetched ahead, more than the %d allowed", f.ahead(), f.limit)
		}
	}
	if end, ok := f.fetchedAhead(); !ok || end <= 40*mib {
		t.Errorf("fetched ahead %v; want contiguous past the front at 40 MiB", f.spans)
	}
	if got := fmt.Sprint(f.released); got != "[]" {
		t.Errorf("released %s", got)
	}
}
