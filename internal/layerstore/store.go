// Package layerstore is an additional layer store for containers/storage's
// overlay driver (podman, CRI-O, Buildah), served over FUSE: configured as
// additionallayerstores = ["ROOT:ref"], it answers
// ROOT/<base64(image reference)>/<digest>/ for every seekable layer of the
// image, where <digest> is the layer's TOC digest (current containers/storage)
// or its compressed digest (older releases), with
//
//	diff/  the layer's tree from its TOC, as containers/storage extracts it
//	info   the layer as containers/storage's Layer JSON
//	blob   the compressed layer, read by range requests
//	use    the reference count: creating it counts a user, removing the
//	       layer directory (rmdir) drops one; both answer ENOENT
//
// Regular files under diff/ are read lazily through the verified reader
// (package disk). An image the store cannot open (not seekable, unreachable,
// or, with a signature checker, unsigned) has no layer directories, so the
// runtime falls back to a normal pull. Images nobody uses are closed after
// an idle time, which frees their caches and connections.
//
// It does not pull, unpack or write layers, and it does not decide which
// signatures are good: callers pass disk options (disk.WithSignature).
package layerstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/fusefs"
	"github.com/lazydisk/lazydisk/toc"
)

// DefaultIdle is how long an image nobody uses stays open: 5 minutes.
const DefaultIdle = 5 * time.Minute

// Compression values of containers/storage's archive.Compression, as its
// Layer JSON ("compression") holds them.
const (
	compressionGzip = 2
	compressionZstd = 4
)

// Options configures New.
type Options struct {
	// Disk are the options images are opened with: registry access, caches,
	// the signature checker.
	Disk []disk.Option
	// Files chooses per-file reader options (readahead for disks); nil
	// uses Disk's.
	Files fusefs.FileOptions
	// Log receives lookups that fail and reads that fail. The default
	// discards.
	Log *slog.Logger
	// Idle is how long an image whose layers nobody uses stays open. The
	// default is DefaultIdle.
	Idle time.Duration
}

// Store is the root of the store's file system.
type Store struct {
	fs.Inode
	ctx    context.Context
	o      Options
	log    *slog.Logger
	mu     sync.Mutex
	images map[string]*imageState
}

var (
	_ fs.NodeLookuper  = (*Store)(nil)
	_ fs.NodeGetattrer = (*Store)(nil)
)

// New returns the store's root, to mount with fusefs.Mount (not read-only:
// the use protocol creates files and removes directories). ctx bounds every
// image it opens.
func New(ctx context.Context, o Options) *Store {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Idle <= 0 {
		o.Idle = DefaultIdle
	}
	return &Store{ctx: ctx, o: o, log: o.Log, images: map[string]*imageState{}}
}

// Run closes idle images until ctx is done, then every image.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(min(s.o.Idle/2, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			ims := s.images
			s.mu.Unlock()
			for _, st := range ims {
				st.release(true)
			}
			return
		case <-t.C:
			s.mu.Lock()
			ims := make([]*imageState, 0, len(s.images))
			for _, st := range s.images {
				ims = append(ims, st)
			}
			s.mu.Unlock()
			for _, st := range ims {
				st.releaseIdle(s.o.Idle)
			}
		}
	}
}

// Stats counts the requests and bytes of the images open now and of those
// closed before.
func (s *Store) Stats() disk.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out disk.Stats
	for _, st := range s.images {
		add(&out, st.stats())
	}
	return out
}

func add(a *disk.Stats, b disk.Stats) {
	a.Requests += b.Requests
	a.BytesFetched += b.BytesFetched
	a.TOCRequests += b.TOCRequests
	a.TOCBytes += b.TOCBytes
	a.ChunksFetched += b.ChunksFetched
	a.CacheHits += b.CacheHits
	a.DiskCacheHits += b.DiskCacheHits
	a.ZeroChunks += b.ZeroChunks
	a.Retries += b.Retries
}

func (s *Store) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	return 0
}

// Lookup answers ROOT/<base64(ref)>.
func (s *Store) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if ch := s.GetChild(name); ch != nil {
		return ch, 0
	}
	raw, err := base64.StdEncoding.DecodeString(name)
	if err != nil {
		return nil, syscall.ENOENT
	}
	ref, err := image.Parse(string(raw))
	if err != nil || ref.Transport != image.Docker {
		s.log.Debug("not an image reference", "name", name, "ref", string(raw))
		return nil, syscall.ENOENT
	}
	s.mu.Lock()
	st, ok := s.images[ref.String()]
	if !ok {
		st = &imageState{s: s, ref: ref}
		s.images[ref.String()] = st
	}
	s.mu.Unlock()
	in := s.NewPersistentInode(ctx, &refNode{st: st}, fs.StableAttr{Mode: syscall.S_IFDIR})
	s.AddChild(name, in, false)
	out.Mode = syscall.S_IFDIR | 0o755
	return s.GetChild(name), 0
}

// imageState is one image reference: its image while open, and how many
// users its layers have.
type imageState struct {
	s   *Store
	ref image.Reference

	mu       sync.Mutex
	im       *disk.Image
	uses     int
	lastUse  time.Time
	closed   disk.Stats // of the images closed before
	failedAt time.Time
	err      error
}

// image returns the open image, opening it if needed. A failure is kept
// for a few seconds, so that a lookup storm does not hammer the registry.
func (st *imageState) image() (*disk.Image, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lastUse = time.Now()
	if st.im != nil {
		return st.im, nil
	}
	if st.err != nil && time.Since(st.failedAt) < 5*time.Second {
		return nil, st.err
	}
	im, err := disk.OpenImage(st.s.ctx, st.ref, st.s.o.Disk...)
	if err != nil {
		st.err, st.failedAt = err, time.Now()
		st.s.log.Warn("image not exposed", "ref", st.ref.String(), "err", err)
		return nil, err
	}
	st.im, st.err = im, nil
	st.s.log.Info("opened image", "ref", st.ref.String(), "manifest", im.Manifest().String(), "layers", len(im.Layers()))
	return im, nil
}

func (st *imageState) stats() disk.Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := st.closed
	if st.im != nil {
		add(&out, st.im.Stats())
	}
	return out
}

func (st *imageState) use(delta int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.uses = max(st.uses+delta, 0)
	st.lastUse = time.Now()
}

func (st *imageState) releaseIdle(idle time.Duration) {
	st.mu.Lock()
	ok := st.im != nil && st.uses == 0 && time.Since(st.lastUse) >= idle
	st.mu.Unlock()
	if ok {
		st.release(false)
	}
}

// release closes the image; reads reopen it.
func (st *imageState) release(final bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.im == nil {
		return
	}
	add(&st.closed, st.im.Stats())
	st.im.Close()
	st.im = nil
	if !final {
		st.s.log.Info("closed idle image", "ref", st.ref.String())
	}
}

// layer finds the layer named by d, a TOC digest or a compressed digest.
func (st *imageState) layer(d digest.Digest) (*disk.Image, int, error) {
	im, err := st.image()
	if err != nil {
		return nil, 0, err
	}
	for i, l := range im.Layers() {
		if l.Index().Digest == d || l.Descriptor().Digest.String() == d.String() {
			return im, i, nil
		}
	}
	return nil, 0, fmt.Errorf("%s has no layer %s", st.ref, d)
}

// refNode is ROOT/<base64(ref)>/.
type refNode struct {
	fs.Inode
	st *imageState
}

var (
	_ fs.NodeLookuper  = (*refNode)(nil)
	_ fs.NodeRmdirer   = (*refNode)(nil)
	_ fs.NodeGetattrer = (*refNode)(nil)
)

func (r *refNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	return 0
}

// Lookup answers ROOT/<base64(ref)>/<digest>.
func (r *refNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if ch := r.GetChild(name); ch != nil {
		if _, _, err := r.st.layer(digest.Digest(name)); err != nil {
			// The image is gone or no longer verifies: say so.
			return nil, syscall.ENOENT
		}
		return ch, 0
	}
	d, err := digest.Parse(name)
	if err != nil {
		return nil, syscall.ENOENT
	}
	im, i, err := r.st.layer(d)
	if err != nil {
		r.st.s.log.Debug("layer not found", "ref", r.st.ref.String(), "digest", name, "err", err)
		return nil, syscall.ENOENT
	}
	node, err := r.st.layerNode(im, i)
	if err != nil {
		r.st.s.log.Warn("layer not exposed", "ref", r.st.ref.String(), "digest", name, "err", err)
		return nil, syscall.EIO
	}
	in := r.NewPersistentInode(ctx, node, fs.StableAttr{Mode: syscall.S_IFDIR})
	r.AddChild(name, in, false)
	out.Mode = syscall.S_IFDIR | 0o755
	return r.GetChild(name), 0
}

// Rmdir of a layer directory is containers/storage releasing it.
func (r *refNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	r.st.use(-1)
	r.st.s.log.Debug("layer released", "ref", r.st.ref.String(), "digest", name)
	return syscall.ENOENT
}

// layerNode is ROOT/<base64(ref)>/<digest>/.
type layerNode struct {
	*fusefs.Tree
	st *imageState
}

var _ fs.NodeCreater = (*layerNode)(nil)

// Create of "use" is containers/storage taking the layer.
func (l *layerNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if name == "use" {
		l.st.use(1)
		l.st.s.log.Debug("layer used", "ref", l.st.ref.String())
		return nil, nil, 0, syscall.ENOENT
	}
	return nil, nil, 0, syscall.EROFS
}

// Info is containers/storage's Layer JSON for an additional layer.
type Info struct {
	CompressedDigest   digest.Digest `json:"compressed-diff-digest,omitempty"`
	CompressedSize     int64         `json:"compressed-size,omitempty"`
	UncompressedDigest digest.Digest `json:"diff-digest,omitempty"`
	UncompressedSize   int64         `json:"diff-size,omitempty"`
	TOCDigest          digest.Digest `json:"toc-digest,omitempty"`
	Compression        int           `json:"compression,omitempty"`
	UIDs               []uint32      `json:"uidset,omitempty"`
	GIDs               []uint32      `json:"gidset,omitempty"`
	Created            time.Time     `json:"created"`
}

// layerInfo returns the info of layer i of im.
func layerInfo(im *disk.Image, i int) Info {
	l := im.Layers()[i]
	d := l.Descriptor()
	in := Info{
		CompressedDigest: digest.Digest(d.Digest.String()),
		CompressedSize:   d.Size,
		TOCDigest:        l.Index().Digest,
		Compression:      compressionGzip,
	}
	if l.Index().Format == toc.FormatZstdChunked {
		in.Compression = compressionZstd
	}
	if cf := im.ConfigFile(); cf != nil {
		if i < len(cf.RootFS.DiffIDs) {
			in.UncompressedDigest = digest.Digest(cf.RootFS.DiffIDs[i].String())
		}
		in.Created = cf.Created.Time
	}
	if n, err := parseSize(d.Annotations[toc.AnnotationUncompressedSize]); err == nil {
		in.UncompressedSize = n
	}
	uids, gids := map[uint32]bool{}, map[uint32]bool{}
	for _, f := range l.Index().Files {
		uids[uint32(f.UID)], gids[uint32(f.GID)] = true, true
	}
	for u := range uids {
		in.UIDs = append(in.UIDs, u)
	}
	for g := range gids {
		in.GIDs = append(in.GIDs, g)
	}
	slices.Sort(in.UIDs)
	slices.Sort(in.GIDs)
	return in
}

func parseSize(s string) (int64, error) {
	var n int64
	if s == "" {
		return 0, errors.New("empty")
	}
	_, err := fmt.Sscan(s, &n)
	return n, err
}

// layerNode builds the directory of layer i of im: diff/, info, blob. The
// files read through the image state, which reopens the image after it was
// closed for being idle and finds the layer again by its digest.
func (st *imageState) layerNode(im *disk.Image, i int) (*layerNode, error) {
	l := im.Layers()[i]
	info, err := json.Marshal(layerInfo(im, i))
	if err != nil {
		return nil, err
	}
	ld := l.Descriptor().Digest.String()
	entries := []fusefs.Entry{{Path: "diff", Mode: syscall.S_IFDIR | 0o755}}
	for _, e := range fusefs.LayerEntries(l, st.s.o.Files) {
		if e.Path == "" || e.Path == "." {
			entries[0] = e // the layer's own root entry
			entries[0].Path = "diff"
			continue
		} else {
			e.Path = path.Join("diff", e.Path)
		}
		if e.Open != nil {
			name := e.Path[len("diff/"):]
			var opts []disk.Option
			if st.s.o.Files != nil {
				if f, ok := l.Index().Lookup(name); ok {
					opts = st.s.o.Files(f)
				}
			}
			e.Open = func() (io.ReaderAt, error) { return &lazyFile{st: st, layer: ld, name: name, opts: opts}, nil }
		}
		entries = append(entries, e)
	}
	entries = append(entries,
		fusefs.Entry{Path: "info", Mode: syscall.S_IFREG | 0o444, Size: int64(len(info)),
			Open: func() (io.ReaderAt, error) { return bytes.NewReader(info), nil }},
		fusefs.Entry{Path: "blob", Mode: syscall.S_IFREG | 0o444, Size: l.Size(),
			Open: func() (io.ReaderAt, error) { return &lazyBlob{st: st, layer: ld}, nil }},
	)
	tree, err := fusefs.New(entries, fusefs.Options{Log: st.s.log})
	if err != nil {
		return nil, err
	}
	return &layerNode{Tree: tree, st: st}, nil
}

// findLayer returns the layer with compressed digest ld of the open image.
func (st *imageState) findLayer(ld string) (*disk.Layer, error) {
	im, err := st.image()
	if err != nil {
		return nil, err
	}
	for _, l := range im.Layers() {
		if l.Descriptor().Digest.String() == ld {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%s no longer has layer %s", st.ref, ld)
}

// lazyFile reads a file of a layer through whatever image is open now.
type lazyFile struct {
	st    *imageState
	layer string
	name  string
	opts  []disk.Option

	mu sync.Mutex
	f  *disk.File
	im *disk.Image // the image f is from
}

func (lf *lazyFile) ReadAt(p []byte, off int64) (int, error) {
	f, err := lf.file()
	if err != nil {
		return 0, err
	}
	return f.ReadAt(p, off)
}

func (lf *lazyFile) file() (*disk.File, error) {
	lf.st.mu.Lock()
	cur := lf.st.im
	lf.st.mu.Unlock()
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f != nil && lf.im == cur {
		lf.st.touch()
		return lf.f, nil
	}
	l, err := lf.st.findLayer(lf.layer)
	if err != nil {
		return nil, err
	}
	f, err := l.Open(lf.name, lf.opts...)
	if err != nil {
		return nil, err
	}
	lf.st.mu.Lock()
	lf.im = lf.st.im
	lf.st.mu.Unlock()
	lf.f = f
	return f, nil
}

func (st *imageState) touch() {
	st.mu.Lock()
	st.lastUse = time.Now()
	st.mu.Unlock()
}

// lazyBlob reads the layer's compressed blob through the open image.
type lazyBlob struct {
	st    *imageState
	layer string
}

func (lb *lazyBlob) ReadAt(p []byte, off int64) (int, error) {
	l, err := lb.st.findLayer(lb.layer)
	if err != nil {
		return 0, err
	}
	return l.Blob().ReadAt(p, off)
}
