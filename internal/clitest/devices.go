package clitest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ReadDevice returns the first n bytes of the device (or file) at path.
func ReadDevice(t testing.TB, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return b
}

// NeedRoot skips t unless the test runs as root; what says what needs it.
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("%s needs root: skipping", what)
	}
}

// NullDevice makes a character device with /dev/null's numbers (1, 3) in a
// temporary directory, as root, and returns its path; the test is skipped
// when that is not allowed.
func NullDevice(t testing.TB) string {
	t.Helper()
	NeedRoot(t, "making a character device with mknod")
	p := filepath.Join(t.TempDir(), "null")
	if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Skipf("mknod %s: %v: skipping", p, err)
	}
	return p
}

// LoopDevice attaches a loop device to a new file of size bytes filled with
// fill, as root, and returns the path of a device node for it and the file's.
// The node is made in a temporary directory, not /dev, so that a bug that
// replaces what it writes to cannot damage /dev. The device is detached when
// the test ends, whatever happens; the test is skipped when root, losetup or
// loop devices are missing.
func LoopDevice(t testing.TB, size int64, fill byte) (dev, backing string) {
	t.Helper()
	NeedRoot(t, "a loop device")
	Need(t, "apt-get install mount", "losetup")
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices (/dev/loop-control: %v): skipping", err)
	}
	backing = filepath.Join(t.TempDir(), "loop.img")
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = fill
	}
	if err := os.WriteFile(backing, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("losetup --find --show %s: %v: %s: skipping", backing, err, strings.TrimSpace(string(out)))
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		// A device still held (by a write in flight) refuses to detach for a
		// moment: try a few times, then mark it to detach once free.
		for i := 0; i < 20; i++ {
			if exec.Command("losetup", "--detach", loop).Run() == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("losetup --detach %s failed; it is left attached to %s", loop, backing)
	})
	var st syscall.Stat_t
	if err := syscall.Stat(loop, &st); err != nil {
		t.Fatalf("%s: %v", loop, err)
	}
	dev = filepath.Join(t.TempDir(), filepath.Base(loop))
	if err := syscall.Mknod(dev, syscall.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatalf("mknod %s: %v", dev, err)
	}
	return dev, backing
}

// RunCheckingDevNull runs m's tests and returns the exit code for os.Exit:
// 1 when they fail, and 1 too when /dev/null is no longer a character
// device afterwards (a test's output written by rename once replaced it with
// a regular file, breaking the machine). Packages that write outputs call it
// from TestMain.
func RunCheckingDevNull(m *testing.M) int {
	code := m.Run()
	if err := CheckDevNull(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	return code
}

// CheckDevNull returns an error unless /dev/null is still a character
// device.
func CheckDevNull() error {
	fi, err := os.Lstat("/dev/null")
	if err != nil {
		return fmt.Errorf("/dev/null: %w", err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("/dev/null is no longer a character device but %s: a test replaced it", fi.Mode())
	}
	return nil
}
