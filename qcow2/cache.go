package qcow2

import (
	"container/list"
	"sync"
)

// Option configures Open.
type Option func(*options)

type options struct {
	l2Cache, clusterCache int64
}

// Cache defaults. With 64 KiB clusters, 4 MiB of L2 tables map 32 GiB of
// guest disk, and 4 MiB of decompressed clusters are 64 clusters.
const (
	DefaultL2Cache      = 4 << 20
	DefaultClusterCache = 4 << 20
	// minClusterCache keeps a few decompressed clusters even with 2 MiB
	// clusters, so that small reads walking one cluster do not decompress
	// it each time.
	minClusterCache = 4
)

func defaults() options {
	return options{l2Cache: DefaultL2Cache, clusterCache: DefaultClusterCache}
}

// WithL2Cache bounds the memory kept for L2 tables, in bytes; at least one
// table is kept. The default is DefaultL2Cache (4 MiB).
func WithL2Cache(n int64) Option { return func(o *options) { o.l2Cache = n } }

// WithClusterCache bounds the memory kept for decompressed clusters, in
// bytes; at least four clusters are kept. The default is
// DefaultClusterCache (4 MiB).
func WithClusterCache(n int64) Option { return func(o *options) { o.clusterCache = n } }

// lru is a small least-recently-used map from file offsets to values, safe
// for concurrent use. Two readers missing the same key both load it; the
// second add wins, which is harmless for immutable tables and clusters.
type lru[V any] struct {
	mu  sync.Mutex
	max int
	ll  list.List
	m   map[int64]*list.Element
}

type lruItem[V any] struct {
	key int64
	v   V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, m: make(map[int64]*list.Element)}
}

func (c *lru[V]) get(k int64) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem[V]).v, true
	}
	var zero V
	return zero, false
}

func (c *lru[V]) add(k int64, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		e.Value.(*lruItem[V]).v = v
		c.ll.MoveToFront(e)
		return
	}
	c.m[k] = c.ll.PushFront(&lruItem[V]{k, v})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.m, e.Value.(*lruItem[V]).key)
	}
}
