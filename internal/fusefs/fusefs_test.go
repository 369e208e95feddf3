package fusefs_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazydisk/lazydisk/internal/fusefs"
)

// needFUSE skips the test when FUSE mounts cannot be made here.
func needFUSE(t *testing.T) {
	t.Helper()
	if err := fusefs.Available(); err != nil {
		t.Skipf("skipping FUSE test: %v", err)
	}
}

// mount mounts root on a new directory and unmounts it (lazily, if need
// be) when the test ends, even when it fails.
func mount(t *testing.T, root *fusefs.Tree) *fusefs.Server {
	t.Helper()
	dir := t.TempDir()
	srv, err := fusefs.Mount(dir, root, fusefs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return srv
}

// badRange is a ReaderAt whose bytes in [from, to) cannot be read.
type badRange struct {
	r        io.ReaderAt
	from, to int64
}

var errBad = errors.New("chunk does not match its digest")

func (b badRange) ReadAt(p []byte, off int64) (int, error) {
	if off < b.to && off+int64(len(p)) > b.from {
		return 0, errBad
	}
	return b.r.ReadAt(p, off)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestTree(t *testing.T) {
	needFUSE(t)
	data := make([]byte, 3<<20+123)
	rand.NewChaCha8([32]byte{1}).Read(data)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	opens := 0
	open := func() (io.ReaderAt, error) {
		opens++
		return badRange{bytes.NewReader(data), 2 << 20, 2<<20 + 4096}, nil
	}
	var logs lockedBuffer
	tree, err := fusefs.New([]fusefs.Entry{
		{Path: "disk", Mode: syscall.S_IFDIR | 0o555, UID: 107, GID: 107},
		{Path: "disk/vm.img", Mode: syscall.S_IFREG | 0o444, Size: int64(len(data)), UID: 107, GID: 108, ModTime: mtime, Open: open, Ino: 7},
		{Path: "disk/link.img", Mode: syscall.S_IFREG | 0o444, Size: int64(len(data)), Ino: 7},
		{Path: "etc/sym", Mode: syscall.S_IFLNK | 0o777, Link: "../disk/vm.img"},
		{Path: "etc/x", Mode: syscall.S_IFREG | 0o600, Size: 0, Open: func() (io.ReaderAt, error) { return bytes.NewReader(nil), nil },
			Xattrs: map[string][]byte{"user.a": []byte("b")}},
		{Path: "dev/null", Mode: syscall.S_IFCHR | 0o666, Rdev: uint32(unix.Mkdev(1, 3))},
	}, fusefs.Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := mount(t, tree)
	dir := srv.Dir()

	got, err := os.ReadFile(filepath.Join(dir, "disk/link.img"))
	if err == nil || !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the whole file with a bad range: %v, want EIO", err)
	}
	f, err := os.Open(filepath.Join(dir, "disk/vm.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range [][2]int64{{0, 4096}, {1 << 20, 300000}, {int64(len(data)) - 1000, 1000}, {2<<20 + 8192, 65536}} {
		got = make([]byte, r[1])
		if _, err := f.ReadAt(got, r[0]); err != nil {
			t.Fatalf("read %d at %d: %v", r[1], r[0], err)
		}
		if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Errorf("read %d at %d: wrong bytes", r[1], r[0])
		}
	}
	if _, err := f.ReadAt(make([]byte, 100), 2<<20+100); !errors.Is(err, syscall.EIO) {
		t.Errorf("read in the bad range: %v, want EIO", err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), errBad.Error()) {
		t.Errorf("the failed read is not logged: %q", logs.String())
	}
	if opens != 1 {
		t.Errorf("the file was opened %d times, want once", opens)
	}

	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "disk/vm.img"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != syscall.S_IFREG|0o444 || st.Size != int64(len(data)) || st.Uid != 107 || st.Gid != 108 || st.Nlink != 2 || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("stat: %+v", st)
	}
	var st2 unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "disk/link.img"), &st2); err != nil || st2.Ino != st.Ino {
		t.Errorf("the hard link is inode %d, the file %d (%v)", st2.Ino, st.Ino, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "etc/sym")); err != nil || l != "../disk/vm.img" {
		t.Errorf("readlink: %q, %v", l, err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(dir, "etc/x"), "user.a", buf); err != nil || string(buf[:n]) != "b" {
		t.Errorf("getxattr: %q, %v", buf[:n], err)
	}
	if err := unix.Stat(filepath.Join(dir, "dev/null"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("device: %+v, %v", st, err)
	}
	if err := unix.Stat(filepath.Join(dir, "disk"), &st); err != nil || st.Mode != syscall.S_IFDIR|0o555 || st.Uid != 107 {
		t.Errorf("directory: %+v, %v", st, err)
	}
	if _, err := os.OpenFile(filepath.Join(dir, "disk/vm.img"), os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("opening for writing: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err == nil {
		t.Error("creating a file succeeded")
	}
	if _, err := fusefs.Mount(dir, tree, fusefs.Options{}); !errors.Is(err, fusefs.ErrMounted) {
		t.Errorf("mounting over a live mount: %v, want ErrMounted", err)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	for _, es := range [][]fusefs.Entry{
		{{Path: "a", Mode: syscall.S_IFREG}, {Path: "./a", Mode: syscall.S_IFREG}},
		{{Path: "a", Mode: syscall.S_IFREG}, {Path: "a/b", Mode: syscall.S_IFREG}},
	} {
		if _, err := fusefs.New(es, fusefs.Options{}); err == nil {
			t.Errorf("New(%v) succeeded", es)
		}
	}
}
