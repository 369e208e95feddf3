package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/internal/clitest"
)

// outputDisk is a 3 MiB disk for the output tests, converted to eStargz into
// an OCI layout with 64 KiB chunks.
func outputDisk(t *testing.T) (ref string, data []byte) {
	t.Helper()
	dir := t.TempDir()
	path, _ := diskFile(t, dir, "vm.img", 3<<20+777, 5)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ref = "oci:" + filepath.Join(dir, "layout") + ":1"
	mustCLI(t, "convert", "--estargz", "--chunk-size", "64K", "disk:"+path, ref)
	return ref, data
}

// TestReadOutputs writes read's output to what is not a regular file: each is
// written in place and stays what it was.
func TestReadOutputs(t *testing.T) {
	t.Parallel()
	ref, data := outputDisk(t)

	t.Run("character device", func(t *testing.T) {
		t.Parallel()
		null := clitest.NullDevice(t)
		mustCLI(t, "read", ref, "--range", "all", "-o", null)
		if fi, err := os.Lstat(null); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("%s is no longer a character device after read -o: %v %v", null, fi.Mode(), err)
		}
	})

	t.Run("FIFO", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fifo := filepath.Join(dir, "disk.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		// A separate reader process, as `cat fifo | qemu-img dd ...` would be.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cat := exec.CommandContext(ctx, "cat", fifo)
		var got bytes.Buffer
		cat.Stdout = &got
		if err := cat.Start(); err != nil {
			t.Skipf("cat: %v", err)
		}
		mustCLI(t, "read", ref, "--range", "all", "-o", fifo)
		if err := cat.Wait(); err != nil {
			t.Fatalf("the reader did not end cleanly: %v", err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Errorf("the FIFO's reader got %d bytes, want %d, or they differ", got.Len(), len(data))
		}
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Error("the FIFO was replaced")
		}
	})

	t.Run("symlink", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		target, link := filepath.Join(dir, "target.img"), filepath.Join(dir, "link.img")
		os.WriteFile(target, []byte("old"), 0o644)
		if err := os.Symlink("target.img", link); err != nil {
			t.Fatal(err)
		}
		mustCLI(t, "read", ref, "--range", "0:4K", "-o", link)
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatal("the symlink was replaced")
		}
		if got, _ := os.ReadFile(target); !bytes.Equal(got, data[:4096]) {
			t.Error("the symlink's target does not hold the range")
		}
	})

	t.Run("block device", func(t *testing.T) {
		t.Parallel()
		const devSize = 8 << 20
		dev, _ := clitest.LoopDevice(t, devSize, 0xee)
		mustCLI(t, "read", ref, "--range", "1M:64K,0:", "-o", dev)
		want := append(append([]byte{}, data[1<<20:1<<20+64<<10]...), data...)
		got := clitest.ReadDevice(t, dev, devSize)
		if !bytes.Equal(got[:len(want)], want) {
			t.Error("the device does not hold the ranges at offsets 0 and 64 KiB")
		}
		if !bytes.Equal(got[len(want):], bytes.Repeat([]byte{0xee}, devSize-len(want))) {
			t.Error("bytes past the ranges were changed")
		}
	})

	t.Run("block device too small", func(t *testing.T) {
		t.Parallel()
		dev, _ := clitest.LoopDevice(t, 1<<20, 0xee)
		_, errOut, code := cli(t, "read", ref, "--range", "all", "-o", dev)
		if code != 1 || !strings.Contains(errOut, dev+": block device of 1.0 MiB, smaller than the 3.0 MiB to write") {
			t.Errorf("read to a small device: exit %d, %q", code, errOut)
		}
		if got := clitest.ReadDevice(t, dev, 1<<20); !bytes.Equal(got, bytes.Repeat([]byte{0xee}, 1<<20)) {
			t.Error("the refused device was written")
		}
	})

	t.Run("/dev/stdout", func(t *testing.T) {
		t.Parallel()
		out := mustCLI(t, "read", ref, "--range", "8K:8K", "-o", "/dev/stdout")
		if out != string(data[8192:16384]) {
			t.Errorf("in-process -o /dev/stdout: %d bytes", len(out))
		}
		// A separate process, with its stdout a pipe.
		stdout, stderr, code := lazydiskProcess(t, offlineEnv(t), t.TempDir(), "read", ref, "--range", "8K:8K", "-o", "/dev/stdout")
		if code != 0 || stdout != string(data[8192:16384]) {
			t.Errorf("lazydisk read -o /dev/stdout: exit %d, %d bytes, %s", code, len(stdout), stderr)
		}
	})
}

// TestReadSparse reads a mostly-zero disk whole into a regular file: the
// file holds the disk, and its allocation is at most the data plus one chunk
// per run of zeros.
func TestReadSparse(t *testing.T) {
	t.Parallel()
	const chunk = 64 << 10
	dir := t.TempDir()
	data := make([]byte, 48<<20)
	// Data at places that are not chunk-aligned, with zeros around them.
	regions := [][2]int{{100, 5000}, {3<<20 + 12345, 300 << 10}, {20 << 20, 1 << 20}, {48<<20 - 70000, 70000}}
	dataBytes := 0
	for i, r := range regions {
		copy(data[r[0]:r[0]+r[1]], bytes.Repeat([]byte{byte(i + 1), 'd', 'a', 't', 'a'}, r[1]/5+1))
		dataBytes += r[1]
	}
	zeroRuns := len(regions) // the runs between and before the regions
	path := filepath.Join(dir, "sparse.raw")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"--estargz", "--zstd-chunked"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			ref := "oci:" + filepath.Join(t.TempDir(), "layout") + ":1"
			mustCLI(t, "convert", format, "--chunk-size", "64K", "disk:"+path, ref)
			for _, tt := range []struct {
				sparse   string
				min, max int64
			}{
				{"auto", 0, int64(dataBytes + chunk*zeroRuns)},
				{"always", 0, int64(dataBytes + 4096*2*len(regions))},
				{"never", int64(len(data)), int64(len(data)) + chunk},
			} {
				out := filepath.Join(t.TempDir(), "disk.raw")
				mustCLI(t, "read", ref, "--range", "all", "--sparse", tt.sparse, "-o", out)
				got, err := os.ReadFile(out)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("--sparse %s: the file does not hold the disk (%v)", tt.sparse, err)
				}
				var st syscall.Stat_t
				if err := syscall.Stat(out, &st); err != nil {
					t.Fatal(err)
				}
				if n := st.Blocks * 512; n < tt.min || n > tt.max {
					t.Errorf("--sparse %s: %d bytes allocated for %d bytes of data in %d; want %d to %d", tt.sparse, n, dataBytes, len(data), tt.min, tt.max)
				}
			}
		})
	}
	t.Run("bad --sparse", func(t *testing.T) {
		t.Parallel()
		_, errOut, code := cli(t, "read", "oci:"+dir+":1", "--range", "all", "--sparse", "maybe")
		if code != 2 || !strings.Contains(errOut, `sparse mode "maybe": use auto, always or never`) {
			t.Errorf("--sparse maybe: exit %d, %q", code, errOut)
		}
	})
}
