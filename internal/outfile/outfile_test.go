package outfile_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/internal/clitest"
	"github.com/lazydisk/lazydisk/internal/outfile"
)

func TestMain(m *testing.M) { os.Exit(clitest.RunCheckingDevNull(m)) }

// write creates path, writes data (with Skip for the parts named in skips,
// which must be zeros) and commits.
func write(t *testing.T, path string, data []byte, skips [][2]int, opts ...outfile.Option) error {
	t.Helper()
	out, err := outfile.Create(context.Background(), path, opts...)
	if err != nil {
		return err
	}
	pos := 0
	for _, s := range append(skips, [2]int{len(data), 0}) {
		if _, err := out.Write(data[pos:s[0]]); err != nil {
			out.Abort()
			return err
		}
		if err := out.Skip(int64(s[1])); err != nil {
			out.Abort()
			return err
		}
		pos = s[0] + s[1]
	}
	if out.Written() != int64(len(data)) {
		t.Errorf("Written() = %d, want %d", out.Written(), len(data))
	}
	return out.Commit()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allocated is the bytes the file system gave path.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestRegular(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := []byte("new contents\n")

	t.Run("new file gets perm less umask", func(t *testing.T) {
		p := filepath.Join(dir, "new")
		if err := write(t, p, data, nil, outfile.WithPerm(0o640)); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		old := syscall.Umask(0)
		syscall.Umask(old)
		if want := os.FileMode(0o640 &^ old); fi.Mode().Perm() != want || !bytes.Equal(mustRead(t, p), data) {
			t.Errorf("mode %v, want %v; contents %q", fi.Mode().Perm(), want, mustRead(t, p))
		}
	})
	t.Run("existing file keeps its mode and is replaced whole", func(t *testing.T) {
		p := filepath.Join(dir, "existing")
		os.WriteFile(p, bytes.Repeat([]byte("x"), 100), 0o600)
		os.Chmod(p, 0o604)
		if err := write(t, p, data, nil); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o604 || !bytes.Equal(mustRead(t, p), data) {
			t.Errorf("mode %v, contents %q", fi.Mode().Perm(), mustRead(t, p))
		}
	})
	t.Run("perm narrows an existing file's mode", func(t *testing.T) {
		p := filepath.Join(dir, "key")
		os.WriteFile(p, nil, 0o644)
		os.Chmod(p, 0o644)
		if err := write(t, p, data, nil, outfile.WithPerm(0o600)); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
	})
	t.Run("abort leaves the old file and no temporary", func(t *testing.T) {
		sub := t.TempDir()
		p := filepath.Join(sub, "kept")
		os.WriteFile(p, []byte("old"), 0o644)
		out, err := outfile.Create(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		out.Write([]byte("half of the new"))
		out.Abort()
		if got := mustRead(t, p); string(got) != "old" {
			t.Errorf("after Abort: %q", got)
		}
		if ents, _ := os.ReadDir(sub); len(ents) != 1 {
			t.Errorf("after Abort the directory holds %d entries, want 1", len(ents))
		}
	})
	t.Run("symlink is followed, not replaced", func(t *testing.T) {
		target := filepath.Join(dir, "target")
		os.WriteFile(target, []byte("old"), 0o644)
		link := filepath.Join(dir, "link")
		if err := os.Symlink("target", link); err != nil {
			t.Fatal(err)
		}
		if err := write(t, link, data, nil); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(link)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link is no longer a symlink: %v %v", fi.Mode(), err)
		}
		if !bytes.Equal(mustRead(t, target), data) {
			t.Errorf("target holds %q", mustRead(t, target))
		}
	})
}

func TestRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dangling := filepath.Join(dir, "dangling")
	os.Symlink("nowhere/at/all", dangling)
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tt := range []struct{ path, msg string }{
		{dir, "is a directory"},
		{dangling, "symlink to nothing that can be written"},
		{sock, "is a socket"},
		{filepath.Join(dir, "no/such/dir/file"), "no such file or directory"},
	} {
		if err := write(t, tt.path, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("%s: %v, want an error naming it and saying %q", tt.path, err, tt.msg)
		}
	}
	if fi, err := os.Lstat(dangling); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the dangling symlink was replaced")
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Error("the socket was replaced")
	}
}

// disk is 1 MiB of data with two runs of zeros, the way a disk reads.
func disk() ([]byte, [][2]int) {
	b := bytes.Repeat([]byte("lazydisk"), 1<<17)
	skips := [][2]int{{64 << 10, 256 << 10}, {512 << 10, 320 << 10}}
	for _, s := range skips {
		clear(b[s[0] : s[0]+s[1]])
	}
	return b, skips
}

func TestSparse(t *testing.T) {
	t.Parallel()
	data, skips := disk()
	zeroed := 576 << 10 // the bytes Skip is given
	for _, tt := range []struct {
		name   string
		opts   []outfile.Option
		skips  [][2]int
		maxUse int64 // at most this many bytes allocated
		minUse int64
	}{
		{"auto leaves holes where Skip says", nil, skips, int64(len(data)-zeroed) + 64<<10, 0},
		{"never is dense", []outfile.Option{outfile.WithSparse(outfile.SparseNever)}, skips, 2 << 20, int64(len(data))},
		{"always finds the zero blocks itself", []outfile.Option{outfile.WithSparse(outfile.SparseAlways)}, nil, int64(len(data)-zeroed) + 64<<10, 0},
		{"auto without Skip is dense", nil, nil, 2 << 20, int64(len(data))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "disk.raw")
			if err := write(t, p, data, tt.skips, tt.opts...); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustRead(t, p), data) {
				t.Fatal("contents differ")
			}
			if n := allocated(t, p); n > tt.maxUse || n < tt.minUse {
				t.Errorf("%d bytes allocated, want %d to %d", n, tt.minUse, tt.maxUse)
			}
		})
	}
	t.Run("trailing hole sets the size", func(t *testing.T) {
		t.Parallel()
		p := filepath.Join(t.TempDir(), "tail")
		out, err := outfile.Create(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		out.Write([]byte("head"))
		out.Skip(1 << 20)
		if err := out.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, p); len(got) != 4+1<<20 || string(got[:4]) != "head" || !bytes.Equal(got[4:], make([]byte, 1<<20)) {
			t.Errorf("%d bytes", len(got))
		}
	})
}

func TestCharDevice(t *testing.T) {
	t.Parallel()
	null := clitest.NullDevice(t)
	data, skips := disk()
	if err := write(t, null, data, skips); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(null)
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s is no longer a character device: %v %v", null, fi.Mode(), err)
	}
	if out, err := outfile.Create(context.Background(), null); err != nil || out.Kind() != outfile.CharDevice {
		t.Errorf("Create(%s): %v, kind %v", null, err, out.Kind())
	} else {
		out.Abort()
	}
}

func TestFIFO(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	data, skips := disk()
	got := make(chan []byte, 1)
	go func() {
		f, err := os.Open(p)
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(f) // ends only when the writer closes
		f.Close()             // before the subtest below, which wants no reader
		got <- b
	}()
	if err := write(t, p, data, skips); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Errorf("the reader got %d bytes, want %d, or they differ", len(b), len(data))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the FIFO's reader did not see the end")
	}
	if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Error("the FIFO was replaced")
	}

	t.Run("no reader: the wait ends with the context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		out, err := outfile.Create(ctx, p)
		if err == nil {
			out.Abort()
		}
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a reader") {
			t.Errorf("Create with no reader: %v", err)
		}
	})
}

func TestDescriptor(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	path := fmt.Sprintf("/dev/fd/%d", w.Fd())
	out, err := outfile.Create(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	w.Close() // the File holds its own copy of the descriptor
	if out.Kind() != outfile.Descriptor {
		t.Errorf("kind %v", out.Kind())
	}
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	out.Write([]byte("abc"))
	out.Skip(3)
	if err := out.Commit(); err != nil {
		t.Fatal(err)
	}
	if b := <-done; string(b) != "abc\x00\x00\x00" {
		t.Errorf("read %q from the pipe", b)
	}
}

func TestBlockDevice(t *testing.T) {
	t.Parallel()
	const devSize = 2 << 20
	data, skips := disk()
	t.Run("zeros written", func(t *testing.T) {
		t.Parallel()
		dev, _ := clitest.LoopDevice(t, devSize, 0xff)
		if err := write(t, dev, data, skips, outfile.WithSize(int64(len(data)))); err != nil {
			t.Fatal(err)
		}
		got := clitest.ReadDevice(t, dev, devSize)
		if !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], bytes.Repeat([]byte{0xff}, devSize-len(data))) {
			t.Error("the device does not hold the data followed by what was there")
		}
		if fi, err := os.Lstat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 {
			t.Errorf("%s is no longer a device", dev)
		}
	})
	t.Run("device zeroed: zero runs left alone", func(t *testing.T) {
		t.Parallel()
		dev, _ := clitest.LoopDevice(t, devSize, 0xff)
		if err := write(t, dev, data, skips, outfile.WithDeviceZeroed(true)); err != nil {
			t.Fatal(err)
		}
		got := clitest.ReadDevice(t, dev, devSize)
		for _, s := range skips {
			if !bytes.Equal(got[s[0]:s[0]+s[1]], bytes.Repeat([]byte{0xff}, s[1])) {
				t.Errorf("the skipped run at %d was written", s[0])
			}
			copy(got[s[0]:], make([]byte, s[1]))
		}
		if !bytes.Equal(got[:len(data)], data) {
			t.Error("the data differs")
		}
	})
	t.Run("too small: refused before writing", func(t *testing.T) {
		t.Parallel()
		dev, _ := clitest.LoopDevice(t, 512<<10, 0xff)
		_, err := outfile.Create(context.Background(), dev, outfile.WithSize(int64(len(data))))
		if err == nil || !strings.Contains(err.Error(), dev+": block device of 512.0 KiB, smaller than the 1.0 MiB to write") {
			t.Errorf("Create of a small device: %v", err)
		}
	})
}
