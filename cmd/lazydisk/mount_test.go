package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/fusefs"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// These tests run `lazydisk mount` as a process (this test binary) on images
// in a registry on 127.0.0.1 and read the mount with the kernel's FUSE
// client. They need FUSE (root or fusermount) and skip without it.

func needFUSE(t *testing.T) {
	t.Helper()
	if err := fusefs.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// mounted is a `lazydisk mount` process.
type mounted struct {
	cmd    *exec.Cmd
	dir    string
	path   string // what it printed
	stderr *lockedBuffer
	done   chan error
}

// mountProcess starts `lazydisk mount args... dir` and waits until it has
// printed the mounted path. The process is killed and the mount detached
// when the test ends, whatever happened.
func mountProcess(t *testing.T, dir string, args ...string) *mounted {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := &mounted{dir: dir, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	m.cmd = exec.Command(self, append(append([]string{"mount"}, args...), dir)...)
	m.cmd.Env = offlineEnv(t, execAsLazydisk+"=1")
	m.cmd.Stderr = m.stderr
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			t.Errorf("lazydisk mount (pid %d) did not exit after SIGKILL", m.cmd.Process.Pid)
		}
		unix.Unmount(dir, unix.MNT_DETACH)
	})
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		io.Copy(io.Discard, out)
		m.done <- m.cmd.Wait()
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			<-m.done
			m.done <- nil
			t.Fatalf("lazydisk mount %s exited before mounting: %s", strings.Join(args, " "), m.stderr)
		}
		m.path = line
	case <-time.After(60 * time.Second):
		t.Fatalf("lazydisk mount %s has not mounted after 60 s: %s", strings.Join(args, " "), m.stderr)
	}
	return m
}

// stop sends sig and returns the exit error once the process has exited.
func (m *mounted) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.done:
		m.done <- err
		// A clean stop exits 130 after SIGINT and 143 after SIGTERM, as
		// every lazydisk command does.
		want := map[os.Signal]int{os.Interrupt: 130, syscall.SIGTERM: 143}[sig]
		var ee *exec.ExitError
		switch {
		case want != 0 && errors.As(err, &ee) && ee.ExitCode() == want:
			return nil
		case want != 0 && err == nil:
			return fmt.Errorf("exit 0 after %s, want %d", sig, want)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("lazydisk mount did not exit 30 s after %s: %s", sig, m.stderr)
		return nil
	}
}

// isMounted reports whether /proc/mounts lists dir.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// TestMount mounts the disk of an eStargz and a zstd:chunked image and
// compares random ranges and the whole file's sha256 with the disk.
func TestMount(t *testing.T) {
	needFUSE(t)
	t.Parallel()
	reg := testregistry.Start(t)
	src := t.TempDir()
	path, sum := diskFile(t, src, "vm.qcow2", 6<<20+4321, 21)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"estargz", "zstd-chunked"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			ref := "docker://" + reg.Host + "/mount/disk:" + format
			mustCLI(t, "convert", "--"+format, "--chunk-size", "64K", "disk:"+path, ref)
			dir := t.TempDir()
			m := mountProcess(t, dir, ref)
			if want := filepath.Join(dir, "vm.qcow2"); m.path != want {
				t.Errorf("mount printed %q, want %q", m.path, want)
			}
			var st unix.Stat_t
			if err := unix.Stat(m.path, &st); err != nil {
				t.Fatal(err)
			}
			// The containerDisk's file: mode 0444, owned by 107.
			if st.Size != int64(len(data)) || st.Mode != syscall.S_IFREG|0o444 || st.Uid != 107 || st.Gid != 107 {
				t.Errorf("stat of the mounted file: size %d mode %o owner %d:%d", st.Size, st.Mode, st.Uid, st.Gid)
			}
			f, err := os.Open(m.path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(uint64(len(format)), 7))
			for range 40 {
				off := r.Int64N(int64(len(data)))
				n := min(1+r.Int64N(300<<10), int64(len(data))-off)
				got := make([]byte, n)
				if _, err := f.ReadAt(got, off); err != nil && !errors.Is(err, io.EOF) {
					t.Fatalf("read %d at %d: %v", n, off, err)
				}
				if !bytes.Equal(got, data[off:off+n]) {
					t.Fatalf("read %d at %d: bytes differ from the disk", n, off)
				}
			}
			if got := sha256File(t, m.path); got != sum {
				t.Errorf("sha256 through the mount %s, want %s", got, sum)
			}
			if err := os.WriteFile(m.path, []byte("x"), 0o644); err == nil {
				t.Error("writing the mounted file succeeded")
			}
			f.Close()
			if err := m.stop(t, os.Interrupt); err != nil {
				t.Errorf("mount after SIGINT: %v: %s", err, m.stderr)
			}
			if isMounted(t, dir) {
				t.Errorf("%s is still mounted after mount exited", dir)
			}
		})
	}
}

// TestMountCorrupt mounts an image with a chunk corrupted in the registry:
// reads that touch it fail with EIO and are logged, others return the disk.
func TestMountCorrupt(t *testing.T) {
	needFUSE(t)
	t.Parallel()
	reg := testregistry.Start(t)
	ref, data, bad := corruptDisk(t, reg, "mount/corrupt:1")

	m := mountProcess(t, t.TempDir(), "--readahead", "0", ref)
	f, err := os.Open(m.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 4096), bad.Offset+4096); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the corrupt chunk: %v, want EIO", err)
	}
	for _, off := range []int64{0, 4096, bad.Offset - 65536, bad.Offset + bad.Size, int64(len(data)) - 4096} {
		got := make([]byte, 4096)
		if _, err := f.ReadAt(got, off); err != nil {
			t.Errorf("read at %d beside the corrupt chunk: %v", off, err)
		} else if !bytes.Equal(got, data[off:off+4096]) {
			t.Errorf("read at %d: bytes differ from the disk", off)
		}
	}
	if _, err := f.ReadAt(make([]byte, 100), bad.Offset); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the corrupt chunk again: %v, want EIO", err)
	}
	f.Close()
	if err := m.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("mount after SIGTERM: %v", err)
	}
	if s := m.stderr.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "chunk does not match its TOC digest") {
		t.Errorf("mount's stderr does not log the corrupt chunk:\n%s", s)
	}
}

// TestMountSignal stops mount with SIGTERM (no mount is left), kills one
// with SIGKILL (its dead mount is left) and mounts again on the same
// directory, which clears it.
func TestMountSignal(t *testing.T) {
	needFUSE(t)
	t.Parallel()
	reg := testregistry.Start(t)
	path, sum := diskFile(t, t.TempDir(), "vm.img", 1<<20, 4)
	ref := "docker://" + reg.Host + "/mount/signal:1"
	mustCLI(t, "convert", "--estargz", "disk:"+path, ref)
	dir := t.TempDir()

	m := mountProcess(t, dir, ref)
	if got := sha256File(t, m.path); got != sum {
		t.Errorf("sha256 through the mount %s, want %s", got, sum)
	}
	// A reader holding the file open does not keep the mount alive.
	f, err := os.Open(m.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := m.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("mount after SIGTERM: %v: %s", err, m.stderr)
	}
	if isMounted(t, dir) {
		t.Errorf("%s is still mounted after SIGTERM", dir)
	}
	f.Close()

	m = mountProcess(t, dir, ref)
	m.stop(t, syscall.SIGKILL)
	if !isMounted(t, dir) {
		t.Fatalf("SIGKILL left no mount on %s: the test cannot check clearing it", dir)
	}
	if _, err := os.Stat(m.path); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat in the killed mount: %v, want ENOTCONN", err)
	}
	m = mountProcess(t, dir, ref)
	if got := sha256File(t, m.path); got != sum {
		t.Errorf("sha256 through the mount over the stale one %s, want %s", got, sum)
	}
	if err := m.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("mount after SIGTERM: %v", err)
	}
	if isMounted(t, dir) {
		t.Errorf("%s is still mounted after SIGTERM", dir)
	}
	// fusermount -u or umount ends it too.
	m = mountProcess(t, dir, ref)
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.done:
		m.done <- err
		if err != nil {
			t.Errorf("mount after umount: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("mount did not exit 20 s after umount")
	}
}

// layerTar is a layer's tar of entries, each a header and its content.
func layerTar(t *testing.T, entries ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < len(entries); i += 2 {
		h := entries[i].(*tar.Header)
		body := []byte(entries[i+1].(string))
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	return b.Bytes()
}

// layeredImage pushes a three-layer gzip image to ref: files, hard links,
// symlinks, xattrs, a whiteout and an opaque directory.
func layeredImage(t *testing.T, ref string, disk []byte) {
	t.Helper()
	reg := func(name string, mode int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: 1, Gid: 2, ModTime: time.Unix(1700000000, 0)}
	}
	dir := func(name string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: time.Unix(1700000000, 0)}
	}
	x := reg("etc/x", 0o600)
	x.PAXRecords = map[string]string{"SCHILY.xattr.user.color": "blue"}
	layers := [][]byte{
		layerTar(t,
			dir("etc/"), "", reg("etc/gone", 0o644), "removed above",
			reg("etc/kept", 0o640), "kept", x, "xattr",
			&tar.Header{Typeflag: tar.TypeLink, Name: "etc/kept-link", Linkname: "etc/kept"}, "",
			dir("opq/"), "", reg("opq/lower", 0o644), "hidden by the opaque marker",
			&tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/sym", Linkname: "kept", Mode: 0o777}, ""),
		layerTar(t,
			dir("disk/"), "", reg("disk/big.img", 0o444), string(disk),
			reg("etc/.wh.gone", 0o644), "",
			dir("opq/"), "", reg("opq/.wh..wh..opq", 0o644), "", reg("opq/upper", 0o644), "upper"),
		layerTar(t, reg("etc/kept", 0o644), "replaced"),
	}
	img := empty.Image
	for _, b := range layers {
		l, err := tarball.LayerFromReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	pushImage(t, strings.TrimPrefix(ref, "docker://"), img)
}

// TestMountAll mounts the whole file system of a layered image.
func TestMountAll(t *testing.T) {
	needFUSE(t)
	t.Parallel()
	reg := testregistry.Start(t)
	big, _ := diskFile(t, t.TempDir(), "big.img", 20<<20, 9)
	data, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	src := reg.Host + "/mount/layers:gzip"
	layeredImage(t, "docker://"+src, data)
	for _, format := range []string{"estargz", "zstd-chunked"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			ref := "docker://" + reg.Host + "/mount/layers:" + format
			mustCLI(t, "convert", "--"+format, "docker://"+src, ref)
			dir := t.TempDir()
			m := mountProcess(t, dir, "--all", ref)
			if m.path != dir {
				t.Errorf("mount --all printed %q, want %q", m.path, dir)
			}
			files := map[string]string{
				"etc/kept": "replaced", "etc/kept-link": "kept", "etc/x": "xattr", "opq/upper": "upper",
			}
			for name, want := range files {
				if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", name, b, err, want)
				}
			}
			for _, name := range []string{"etc/gone", "etc/.wh.gone", "opq/lower", "opq/.wh..wh..opq"} {
				if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: %v, want it removed", name, err)
				}
			}
			if l, err := os.Readlink(filepath.Join(dir, "etc/sym")); err != nil || l != "kept" {
				t.Errorf("etc/sym: %q, %v", l, err)
			}
			buf := make([]byte, 32)
			if n, err := unix.Getxattr(filepath.Join(dir, "etc/x"), "user.color", buf); err != nil || string(buf[:n]) != "blue" {
				t.Errorf("xattr of etc/x: %q, %v", buf[:n], err)
			}
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(dir, "etc/x"), &st); err != nil || st.Mode != syscall.S_IFREG|0o600 || st.Uid != 1 || st.Gid != 2 || st.Mtim.Sec != 1700000000 {
				t.Errorf("stat etc/x: %+v, %v", st, err)
			}
			sum := sha256.Sum256(data)
			if got := sha256File(t, filepath.Join(dir, "disk/big.img")); got != hex.EncodeToString(sum[:]) {
				t.Errorf("sha256 of disk/big.img through the mount differs")
			}
			if err := m.stop(t, syscall.SIGTERM); err != nil {
				t.Errorf("mount after SIGTERM: %v: %s", err, m.stderr)
			}
			if isMounted(t, dir) {
				t.Errorf("%s is still mounted", dir)
			}
		})
	}
}

// TestMountErrors checks the one-line errors for bad input.
func TestMountErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"mount", "oci:x"}, 2, "mount takes 2 arguments"},
		{[]string{"mount", "oci:x", "/nonexistent/dir"}, 2, "does not exist: create the directory first"},
		{[]string{"mount", "oci:x", file}, 2, "is not a directory"},
		{[]string{"mount", "--all", "--file", "a", "oci:x", t.TempDir()}, 2, "--all mounts every file"},
		{[]string{"mount", "--readahead", "lots", "oci:x", t.TempDir()}, 2, "--readahead"},
		{[]string{"store"}, 2, "store needs --root DIR"},
		{[]string{"store", "--root", "/nonexistent/dir"}, 2, "does not exist: create the directory first"},
		{[]string{"store", "--root", file}, 2, "is not a directory"},
		{[]string{"store", "--root", t.TempDir(), "--file", "a"}, 2, "--file does not apply to store"},
		{[]string{"store", "--root", t.TempDir(), "--idle", "0s"}, 2, "--idle must be positive"},
		{[]string{"store", "--root", t.TempDir(), "--authfile", file}, 1, "is not a JSON auth file"},
		{[]string{"store", "--root", t.TempDir(), "--auth-file", file}, 1, "is not a JSON auth file"},
		{[]string{"store", "--root", t.TempDir(), "--authfile", "/nonexistent/auth.json"}, 1, "--authfile: stat /nonexistent/auth.json"},
	} {
		_, stderr, code := cli(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 && code != 2 {
			t.Errorf("lazydisk %s: exit %d, %q; want %d and %q", strings.Join(c.args, " "), code, stderr, c.code, c.want)
		}
	}
}

// TestAuthFileKeychain reads podman's auth.json format, keys with a scheme
// and path too, as the store does with --authfile.
func TestAuthFileKeychain(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("user:pa:ss"))
	if err := os.WriteFile(p, []byte(`{"auths":{"registry.example.com":{"auth":"`+auth+`"},"https://other.example.com/v1/":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := image.CheckAuthFile(p); err != nil {
		t.Fatal(err)
	}
	kc := image.AuthFileKeychain(p)
	for _, host := range []string{"registry.example.com", "other.example.com"} {
		reg, err := name.NewRegistry(host)
		if err != nil {
			t.Fatal(err)
		}
		a, err := kc.Resolve(reg)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := a.Authorization()
		if err != nil || cfg.Username != "user" || cfg.Password != "pa:ss" {
			t.Errorf("%s: credentials %+v, %v", host, cfg, err)
		}
	}
}
