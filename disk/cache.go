package disk

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// memCache keeps verified chunks, by index, up to a number of bytes, and
// drops the least recently used first, passing over pinned chunks (those
// fetched ahead of a read) unless every chunk is pinned. The fetcher's lock
// guards it.
type memCache struct {
	limit, used int64
	order       *list.List // of *memEntry, most recent first
	byIndex     map[int]*list.Element
	// pinned, if set, reports whether chunk i is to be kept if possible.
	pinned func(i int) bool
	// evicted, if set, is told of each chunk dropped to make room.
	evicted func(i int)
}

type memEntry struct {
	i    int
	data []byte
}

func newMemCache(limit int64) *memCache {
	return &memCache{limit: limit, order: list.New(), byIndex: map[int]*list.Element{}}
}

func (c *memCache) get(i int) ([]byte, bool) {
	e, ok := c.byIndex[i]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*memEntry).data, true
}

// has reports whether chunk i is cached, without making it recent.
func (c *memCache) has(i int) bool {
	_, ok := c.byIndex[i]
	return ok
}

// put caches chunk i and reports whether it did: a chunk larger than the
// cache is not kept.
func (c *memCache) put(i int, data []byte) bool {
	if int64(len(data)) > c.limit {
		return false
	}
	if e, ok := c.byIndex[i]; ok {
		c.order.MoveToFront(e)
		return true
	}
	c.byIndex[i] = c.order.PushFront(&memEntry{i, data})
	c.used += int64(len(data))
	for c.used > c.limit {
		e := c.order.Back()
		for n := c.order.Len(); n > 1 && c.pinned != nil && c.pinned(e.Value.(*memEntry).i); n-- {
			c.order.MoveToFront(e)
			e = c.order.Back()
		}
		old := e.Value.(*memEntry)
		c.order.Remove(e)
		delete(c.byIndex, old.i)
		c.used -= int64(len(old.data))
		if c.evicted != nil {
			c.evicted(old.i)
		}
	}
	return true
}

// dirCache keeps verified chunks in a directory, as DIR/ALG/HEX[:2]/HEX,
// written atomically. What it returns is verified again: the directory is
// outside lazydisk's control.
type dirCache struct{ dir string }

func openDirCache(dir string) (*dirCache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	return &dirCache{dir: dir}, nil
}

func (c *dirCache) path(d digest.Digest) string {
	hex := d.Encoded()
	return filepath.Join(c.dir, d.Algorithm().String(), hex[:2], hex)
}

// get returns the chunk with digest d and size bytes, if the directory has
// it intact; a damaged file is removed.
func (c *dirCache) get(d digest.Digest, size int64) ([]byte, bool) {
	if d.Validate() != nil {
		return nil, false
	}
	p := c.path(d)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, false
	}
	if int64(len(data)) != size || d.Algorithm().FromBytes(data) != d {
		os.Remove(p)
		return nil, false
	}
	return data, true
}

// put stores data, already verified to have digest d, unless it is there.
func (c *dirCache) put(d digest.Digest, data []byte) error {
	if d.Validate() != nil {
		return nil
	}
	p := c.path(d)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "chunk-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
