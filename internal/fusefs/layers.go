package fusefs

import (
	"io"
	"path"
	"strings"
	"syscall"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/toc"
)

// Whiteout names in layer tars (the OCI image spec's layer changesets).
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	// OverlayOpaque is the xattr overlayfs reads to hide the lower layers
	// of a directory; containers/storage sets it where a layer has an opaque
	// marker.
	OverlayOpaque = "trusted.overlay.opaque"
)

// FileOptions chooses the reader options of each regular file a tree
// opens, by its TOC entry; nil opens every file with the image's options.
type FileOptions func(f *toc.File) []disk.Option

// LayerEntries returns the tree of one layer as containers/storage's
// overlay driver extracts it: whiteout files become character devices 0:0,
// opaque markers the xattr trusted.overlay.opaque=y on their directory, hard
// links share an inode, and modes, owners, times, device numbers and xattrs
// are the TOC's.
func LayerEntries(l *disk.Layer, fo FileOptions) []Entry {
	ix := l.Index()
	var out []Entry
	opaque := map[string]bool{}
	inos := map[string]uint64{}
	for i := range ix.Files {
		f := &ix.Files[i]
		dir, base := path.Split(f.Name)
		if base == opaqueMarker {
			opaque[path.Clean(dir)] = true
			continue
		}
		if name, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
			out = append(out, Entry{Path: dir + name, Mode: syscall.S_IFCHR, UID: uint32(f.UID), GID: uint32(f.GID), ModTime: f.ModTime})
			continue
		}
		e := entryOf(l, f, fo)
		if f.Type == "hardlink" {
			t, ok := ix.Lookup(f.Name)
			if !ok {
				continue
			}
			e = entryOf(l, t, fo)
			e.Path = f.Name
			e.Ino = inoFor(inos, t.Name)
		} else if f.Type == "reg" {
			e.Ino = inoFor(inos, f.Name)
		}
		out = append(out, e)
	}
	for i := range out {
		if out[i].Mode&syscall.S_IFMT == syscall.S_IFDIR && opaque[path.Clean(out[i].Path)] {
			out[i].Xattrs = withXattr(out[i].Xattrs, OverlayOpaque, "y")
			delete(opaque, path.Clean(out[i].Path))
		}
	}
	for dir := range opaque { // a marker in a directory the layer does not list
		out = append(out, Entry{Path: dir, Mode: syscall.S_IFDIR | 0o755, Xattrs: map[string][]byte{OverlayOpaque: []byte("y")}})
	}
	return out
}

// MergedEntries returns the tree of an image's layers stacked, bottom
// first: each layer's whiteouts remove what the layers below have at that
// path (opaque markers, everything below their directory), and its files
// replace theirs. Hard links share an inode within their layer.
func MergedEntries(im *disk.Image, fo FileOptions) []Entry {
	tree := map[string]Entry{}
	var order []string
	remove := func(p string) {
		delete(tree, p)
		prefix := p + "/"
		for k := range tree {
			if strings.HasPrefix(k, prefix) {
				delete(tree, k)
			}
		}
	}
	var ino uint64
	for _, l := range im.Layers() {
		ix := l.Index()
		// Whiteouts apply to the layers below, before this layer's files.
		for i := range ix.Files {
			dir, base := path.Split(ix.Files[i].Name)
			switch {
			case base == opaqueMarker:
				d := path.Clean(dir)
				prefix := d + "/"
				for k := range tree {
					if strings.HasPrefix(k, prefix) {
						delete(tree, k)
					}
				}
			case strings.HasPrefix(base, whiteoutPrefix):
				remove(path.Clean(dir + strings.TrimPrefix(base, whiteoutPrefix)))
			}
		}
		inos := map[string]uint64{}
		for i := range ix.Files {
			f := &ix.Files[i]
			_, base := path.Split(f.Name)
			if strings.HasPrefix(base, whiteoutPrefix) {
				continue
			}
			e := entryOf(l, f, fo)
			if f.Type == "hardlink" {
				t, ok := ix.Lookup(f.Name)
				if !ok {
					continue
				}
				e = entryOf(l, t, fo)
				e.Path = f.Name
			}
			if e.Mode&syscall.S_IFMT == syscall.S_IFREG {
				target := f.Name
				if f.Type == "hardlink" {
					t, _ := ix.Lookup(f.Name)
					target = t.Name
				}
				if _, ok := inos[target]; !ok {
					ino++
					inos[target] = ino
				}
				e.Ino = inos[target]
			}
			if old, ok := tree[f.Name]; ok && old.Mode&syscall.S_IFMT == syscall.S_IFDIR && e.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				remove(f.Name)
			}
			if _, ok := tree[f.Name]; !ok {
				order = append(order, f.Name)
			}
			tree[f.Name] = e
		}
	}
	out := make([]Entry, 0, len(tree))
	seen := map[string]bool{}
	for _, p := range order {
		if e, ok := tree[p]; ok && !seen[p] {
			seen[p] = true
			out = append(out, e)
		}
	}
	return out
}

func inoFor(inos map[string]uint64, name string) uint64 {
	if n, ok := inos[name]; ok {
		return n
	}
	n := uint64(len(inos) + 1)
	inos[name] = n
	return n
}

func withXattr(m map[string][]byte, k, v string) map[string][]byte {
	out := make(map[string][]byte, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = []byte(v)
	return out
}

// entryOf is the entry of TOC file f of layer l.
func entryOf(l *disk.Layer, f *toc.File, fo FileOptions) Entry {
	e := Entry{
		Path: f.Name, Mode: uint32(f.Mode) & 0o7777, Size: f.Size, UID: uint32(f.UID), GID: uint32(f.GID),
		ModTime: f.ModTime, Link: f.LinkName, Xattrs: f.Xattrs,
	}
	switch f.Type {
	case "dir":
		e.Mode |= syscall.S_IFDIR
		e.Size = 0
	case "symlink":
		e.Mode |= syscall.S_IFLNK
	case "char":
		e.Mode |= syscall.S_IFCHR
		e.Rdev = mkdev(f.DevMajor, f.DevMinor)
	case "block":
		e.Mode |= syscall.S_IFBLK
		e.Rdev = mkdev(f.DevMajor, f.DevMinor)
	case "fifo":
		e.Mode |= syscall.S_IFIFO
	default: // reg
		e.Mode |= syscall.S_IFREG
		e.Link = ""
		name := f.Name
		var opts []disk.Option
		if fo != nil {
			opts = fo(f)
		}
		e.Open = func() (io.ReaderAt, error) { return l.Open(name, opts...) }
	}
	return e
}

// mkdev is the Linux device number of major and minor, as the kernel's
// new_encode_dev packs them for 32 bits.
func mkdev(major, minor int64) uint32 {
	return uint32((minor & 0xff) | ((major & 0xfff) << 8) | ((minor &^ 0xff) << 12))
}
