package disk

import (
	"slices"
	"testing"
)

// TestMemCachePinned checks that eviction passes over pinned chunks (what
// readahead fetched and no read has taken), and drops one only when every
// chunk is pinned.
func TestMemCachePinned(t *testing.T) {
	t.Parallel()
	pinned := map[int]bool{0: true, 1: true}
	var evicted []int
	c := newMemCache(4 * 10)
	c.pinned = func(i int) bool { return pinned[i] }
	c.evicted = func(i int) { evicted = append(evicted, i) }
	for i := range 4 {
		if !c.put(i, make([]byte, 10)) {
			t.Fatalf("put(%d) did not cache it", i)
		}
	}
	c.get(2) // recent
	c.put(4, make([]byte, 10))
	c.put(5, make([]byte, 10))
	if !slices.Equal(evicted, []int{3, 2}) || !c.has(0) || !c.has(1) {
		t.Errorf("evicted %v, have 0: %t, 1: %t; want 3 and 2 evicted, the pinned 0 and 1 kept", evicted, c.has(0), c.has(1))
	}
	// All pinned: the least recently used goes all the same.
	for i := range 10 {
		pinned[i] = true
	}
	c.put(6, make([]byte, 10))
	if len(evicted) != 3 || c.used > c.limit {
		t.Errorf("evicted %v, %d bytes used of %d; want one more evicted", evicted, c.used, c.limit)
	}
	if c.put(7, make([]byte, 41)) {
		t.Error("a chunk larger than the cache was cached")
	}
}
