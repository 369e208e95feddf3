// Package fusefs shows a read-only tree of lazily read files over FUSE
// (github.com/hanwen/go-fuse/v2): the disk file of `lazydisk mount`, the
// layer tree of `mount --all`, and the layer directories of `lazydisk store`.
// A regular file's bytes come from an io.ReaderAt (a disk.File, which
// fetches and verifies chunks); a read that fails, such as one touching a
// chunk that does not match its digest, answers EIO for that read only and
// is logged. Contents and attributes never change, so the kernel page cache
// and attribute caching are on.
//
// It does not write, fetch or verify anything itself, and it does not
// decide what a tree holds: callers build the entries from a layer's TOC.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// CacheTimeout is how long the kernel may keep names and attributes: the
// tree never changes while it is mounted, so an hour.
const CacheTimeout = time.Hour

// Entry is one file of a tree.
type Entry struct {
	// Path is the file's path in the tree, relative, without "./". Parent
	// directories that have no entry of their own are made with mode 0755,
	// owned by root.
	Path string
	// Mode holds the file type (syscall.S_IFREG, S_IFDIR, S_IFLNK, ...) and
	// the permission bits.
	Mode     uint32
	Size     int64
	UID, GID uint32
	ModTime  time.Time
	// Rdev is the device number of character and block devices.
	Rdev uint32
	// Link is a symbolic link's target.
	Link string
	// Xattrs are the file's extended attributes.
	Xattrs map[string][]byte
	// Open returns the bytes of a regular file. It is called when the file
	// is first opened; an error fails that open with EIO.
	Open func() (io.ReaderAt, error)
	// Ino, when not zero, ties hard links together: the entries with the
	// same Ino are one file (the first entry's attributes and Open count).
	Ino uint64
}

// linkIno numbers the inodes of hard-linked files, unique in the process
// whatever trees share a mount; go-fuse numbers the others from 1<<63.
var linkIno atomic.Uint64

func init() { linkIno.Store(1 << 62) }

// Options configures New.
type Options struct {
	// Log receives the reads and opens that failed. The default discards.
	Log *slog.Logger
	// Writable mounts without MS_RDONLY, for trees whose nodes answer
	// create or rmdir themselves (the layer store's use protocol); files
	// still refuse writing.
	Writable bool
	// NoNegativeCache keeps the kernel from caching names that were not
	// found, for trees whose names appear later (the layer store's images).
	NoNegativeCache bool
}

// Tree is the root of a tree of entries, ready to mount.
type Tree struct {
	dirNode
	entries []Entry
	log     *slog.Logger
}

// New returns the tree of entries. Entries must not repeat a path, and a
// path's parents must be directories.
func New(entries []Entry, o Options) (*Tree, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seen := map[string]uint32{"": syscall.S_IFDIR}
	for _, e := range entries {
		p := clean(e.Path)
		if p == "" {
			continue
		}
		if _, dup := seen[p]; dup {
			return nil, fmt.Errorf("%s: listed twice", e.Path)
		}
		seen[p] = e.Mode & syscall.S_IFMT
	}
	for _, e := range entries {
		p := clean(e.Path)
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if m, ok := seen[d]; ok && m != syscall.S_IFDIR {
				return nil, fmt.Errorf("%s: its parent %s is not a directory", e.Path, d)
			}
		}
	}
	t := &Tree{entries: entries, log: log}
	t.attr = Entry{Mode: syscall.S_IFDIR | 0o755}
	for _, e := range entries {
		if clean(e.Path) == "" {
			t.attr = e
		}
	}
	return t, nil
}

func clean(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	return p
}

// OnAdd builds the inodes once the tree is mounted.
func (t *Tree) OnAdd(ctx context.Context) {
	// Parents before children, whatever the order of the entries.
	es := make([]Entry, 0, len(t.entries))
	for _, e := range t.entries {
		e.Path = clean(e.Path)
		if e.Path != "" {
			es = append(es, e)
		}
	}
	sort.SliceStable(es, func(i, j int) bool { return strings.Count(es[i].Path, "/") < strings.Count(es[j].Path, "/") })
	root := t.EmbeddedInode()
	links := map[uint64]*fs.Inode{}
	for _, e := range es {
		dir, base := path.Split(e.Path)
		parent := t.mkdirAll(ctx, root, strings.TrimSuffix(dir, "/"))
		if e.Ino != 0 {
			if in, ok := links[e.Ino]; ok {
				parent.AddChild(base, in, true)
				continue
			}
		}
		var node fs.InodeEmbedder
		switch e.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			if ch := parent.GetChild(base); ch != nil {
				// Made as a parent of an earlier entry: take this one's
				// attributes.
				if d, ok := ch.Operations().(*dirNode); ok {
					d.attr = e
				}
				continue
			}
			node = &dirNode{attr: e}
		case syscall.S_IFREG:
			node = &fileNode{attr: e, log: t.log}
		case syscall.S_IFLNK:
			node = &linkNode{attr: e}
		default:
			node = &specialNode{attr: e}
		}
		var ino uint64 // 0: go-fuse numbers it
		if e.Ino != 0 {
			ino = linkIno.Add(1)
		}
		in := parent.NewPersistentInode(ctx, node, fs.StableAttr{Mode: e.Mode & syscall.S_IFMT, Ino: ino})
		parent.AddChild(base, in, true)
		if e.Ino != 0 {
			links[e.Ino] = in
		}
	}
	// Hard links count their names.
	for _, in := range links {
		if f, ok := in.Operations().(*fileNode); ok {
			f.nlink = 0
		}
	}
	for _, e := range es {
		if in, ok := links[e.Ino]; ok && e.Ino != 0 {
			if f, ok := in.Operations().(*fileNode); ok {
				f.nlink++
			}
		}
	}
}

// mkdirAll returns the directory inode at dir, making the missing ones.
func (t *Tree) mkdirAll(ctx context.Context, root *fs.Inode, dir string) *fs.Inode {
	in := root
	if dir == "" {
		return in
	}
	for _, name := range strings.Split(dir, "/") {
		ch := in.GetChild(name)
		if ch == nil {
			ch = in.NewPersistentInode(ctx, &dirNode{attr: Entry{Mode: syscall.S_IFDIR | 0o755}}, fs.StableAttr{Mode: syscall.S_IFDIR})
			in.AddChild(name, ch, true)
		}
		in = ch
	}
	return in
}

// fill sets out from e.
func fill(e *Entry, nlink uint32, out *fuse.Attr) {
	out.Mode = e.Mode
	out.Size = uint64(e.Size)
	out.Blocks = (uint64(e.Size) + 511) / 512
	out.Blksize = 4096
	out.Owner = fuse.Owner{Uid: e.UID, Gid: e.GID}
	out.Rdev = e.Rdev
	out.Nlink = nlink
	if !e.ModTime.IsZero() {
		out.SetTimes(&e.ModTime, &e.ModTime, &e.ModTime)
	}
}

// xattrs answers getxattr and listxattr from e's attributes.
func getxattr(e *Entry, attr string, dest []byte) (uint32, syscall.Errno) {
	v, ok := e.Xattrs[attr]
	if !ok {
		return 0, fs.ENOATTR
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func listxattr(e *Entry, dest []byte) (uint32, syscall.Errno) {
	names := make([]string, 0, len(e.Xattrs))
	for k := range e.Xattrs {
		names = append(names, k)
	}
	sort.Strings(names)
	var b []byte
	for _, k := range names {
		b = append(append(b, k...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

type dirNode struct {
	fs.Inode
	attr Entry
}

var (
	_ fs.NodeGetattrer   = (*dirNode)(nil)
	_ fs.NodeGetxattrer  = (*dirNode)(nil)
	_ fs.NodeListxattrer = (*dirNode)(nil)
)

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fill(&d.attr, 2, &out.Attr)
	out.Mode = syscall.S_IFDIR | d.attr.Mode&0o7777
	return 0
}

func (d *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(&d.attr, attr, dest)
}

func (d *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(&d.attr, dest)
}

// fileNode is a regular file read through its Entry's ReaderAt.
type fileNode struct {
	fs.Inode
	attr  Entry
	log   *slog.Logger
	nlink uint32

	mu sync.Mutex
	r  io.ReaderAt
}

var (
	_ fs.NodeGetattrer   = (*fileNode)(nil)
	_ fs.NodeOpener      = (*fileNode)(nil)
	_ fs.NodeReader      = (*fileNode)(nil)
	_ fs.NodeGetxattrer  = (*fileNode)(nil)
	_ fs.NodeListxattrer = (*fileNode)(nil)
)

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fill(&f.attr, max(f.nlink, 1), &out.Attr)
	return 0
}

func (f *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(&f.attr, attr, dest)
}

func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(&f.attr, dest)
}

// Open refuses writing and keeps the kernel's page cache of the file: its
// bytes never change.
func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	if _, err := f.reader(); err != nil {
		f.log.Error("opening a file failed", "path", f.attr.Path, "err", err)
		return nil, 0, syscall.EIO
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *fileNode) reader() (io.ReaderAt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.r != nil {
		return f.r, nil
	}
	if f.attr.Open == nil {
		return nil, errors.New("the file has no contents to read")
	}
	r, err := f.attr.Open()
	if err != nil {
		return nil, err
	}
	f.r = r
	return r, nil
}

// Read answers EIO when the bytes cannot be read, such as when a chunk does
// not match its digest; the next read tries again.
func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	r, err := f.reader()
	if err == nil {
		var n int
		n, err = r.ReadAt(dest, off)
		if err == nil || errors.Is(err, io.EOF) {
			return fuse.ReadResultData(dest[:n]), 0
		}
	}
	f.log.Error("read failed", "path", f.attr.Path, "offset", off, "length", len(dest), "err", err)
	return nil, syscall.EIO
}

type linkNode struct {
	fs.Inode
	attr Entry
}

var (
	_ fs.NodeGetattrer  = (*linkNode)(nil)
	_ fs.NodeReadlinker = (*linkNode)(nil)
)

func (l *linkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fill(&l.attr, 1, &out.Attr)
	out.Size = uint64(len(l.attr.Link))
	return 0
}

func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.attr.Link), 0
}

// specialNode is a device or FIFO: attributes only.
type specialNode struct {
	fs.Inode
	attr Entry
}

var (
	_ fs.NodeGetattrer   = (*specialNode)(nil)
	_ fs.NodeGetxattrer  = (*specialNode)(nil)
	_ fs.NodeListxattrer = (*specialNode)(nil)
)

func (s *specialNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fill(&s.attr, 1, &out.Attr)
	return 0
}

func (s *specialNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(&s.attr, attr, dest)
}

func (s *specialNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(&s.attr, dest)
}
