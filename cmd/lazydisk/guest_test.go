package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// compressedQcow2 writes a raw disk of 16 MiB of data and runs of zeros
// followed by 8 MiB of zeros, and its qemu-img convert -c qcow2. It returns
// the qcow2's path and the raw guest disk.
func compressedQcow2(t *testing.T, dir string, opts ...string) (string, []byte) {
	t.Helper()
	raw, _ := diskFile(t, dir, "guest.raw", 16<<20, 17)
	if err := os.Truncate(raw, 24<<20); err != nil {
		t.Fatal(err)
	}
	qcow := filepath.Join(dir, "vm.qcow2")
	tool(t, "qemu-img", append(append([]string{"convert", "-c", "-f", "raw", "-O", "qcow2"}, opts...), raw, qcow)...)
	want := filepath.Join(dir, "want.raw")
	tool(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow, want)
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	return qcow, b
}

// qemuMap is qemu-img map of a qcow2 file as runs of data and of zeros.
func qemuMap(t *testing.T, qcow string) []disk.Extent {
	t.Helper()
	var m []struct {
		Start, Length int64
		Data          bool
	}
	if err := json.Unmarshal([]byte(tool(t, "qemu-img", "map", "--output=json", "-f", "qcow2", qcow)), &m); err != nil {
		t.Fatal(err)
	}
	var out []disk.Extent
	for _, e := range m {
		if k := len(out) - 1; k >= 0 && out[k].Zero == !e.Data {
			out[k].Length += e.Length
			continue
		}
		out = append(out, disk.Extent{Offset: e.Start, Length: e.Length, Zero: !e.Data})
	}
	return out
}

// TestGuest reads and serves the guest disk of a compressed qcow2
// containerDisk (deflate, which qemu-img calls zlib, and zstd) with --guest, and checks it against
// qemu-img: read -o gives the guest disk, sparse; serve --guest read back
// with nbdcopy and qemu-img convert -f raw is the guest disk, and nbdinfo
// --map shows holes where qemu-img map has no data.
func TestGuest(t *testing.T) {
	t.Parallel()
	needClients(t, "qemu-img", "nbdinfo", "nbdcopy")
	reg := testregistry.Start(t)
	for _, comp := range []string{"zlib", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			qcow, want := compressedQcow2(t, dir, "-o", "compression_type="+comp)
			ref := "docker://" + reg.Host + "/guest/" + comp + ":1"
			mustCLI(t, "convert", "--zstd-chunked", "disk:"+qcow, ref)

			var ti tocOutput
			if err := json.Unmarshal([]byte(mustCLI(t, "toc", "--guest", "--format", "json", ref)), &ti); err != nil {
				t.Fatal(err)
			}
			wantComp := map[string]string{"zlib": "deflate", "zstd": "zstd"}[comp]
			if d := ti.Disk; d == nil || d.File != "disk/vm.qcow2" || d.Format != "qcow2" || d.VirtualSize != int64(len(want)) || d.Version != 3 || d.ClusterSize != 64<<10 || d.Compression != wantComp {
				t.Errorf("toc --guest: %+v", ti.Disk)
			}
			if text := mustCLI(t, "toc", "--guest", ref); !strings.Contains(text, "disk/vm.qcow2: qcow2, guest disk 24.0 MiB (25165824 bytes); qcow2 version 3, 64.0 KiB clusters, compression type "+wantComp) {
				t.Errorf("toc --guest:\n%s", text)
			}

			out := filepath.Join(dir, "out.raw")
			mustCLI(t, "read", "--guest", ref, "--range", "all", "-o", out)
			if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read --guest --range all differs from qemu-img convert -O raw (%v)", err)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(out, &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 > int64(len(want))-8<<20 {
				t.Errorf("read --guest -o allocated %d bytes of %d: the unallocated 8 MiB are not holes", st.Blocks*512, len(want))
			}
			if got := mustCLI(t, "read", "--guest", ref, "--range", "5M:100K,23M:", "-o", "-"); got != string(want[5<<20:5<<20+100<<10])+string(want[23<<20:]) {
				t.Errorf("read --guest --range 5M:100K,23M: differs")
			}
			if _, errOut, code := cli(t, "read", "--guest", ref, "--range", "25M:1"); code != 2 || !strings.Contains(errOut, "past the end of the guest disk of disk/vm.qcow2 (25165824 bytes)") {
				t.Errorf("a range past the guest disk: exit %d, %s", code, errOut)
			}

			s := serve(t, ref, "--guest", "--listen", "unix://"+socketIn(t))
			if m := readyLine.FindStringSubmatch(s.stderr.String()); m[2] != strconv.Itoa(len(want)) || !strings.Contains(m[0], "guest disk of qcow2") {
				t.Errorf("ready line %q", m[0])
			}
			copied := filepath.Join(dir, "nbdcopy.raw")
			tool(t, "nbdcopy", s.uri, copied)
			converted := filepath.Join(dir, "qemu.raw")
			tool(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", s.uri, converted)
			for _, p := range []string{copied, converted} {
				if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s of serve --guest differs from the guest disk (%v)", filepath.Base(p), err)
				}
			}
			got, wantMap := nbdMap(t, s.uri), qemuMap(t, qcow)
			if !slices.Equal(got, wantMap) {
				t.Errorf("nbdinfo --map of serve --guest:\n%v\nqemu-img map:\n%v", got, wantMap)
			}
			if !slices.ContainsFunc(got, func(e disk.Extent) bool { return e.Zero && e.Offset+e.Length == 24<<20 && e.Length >= 8<<20 }) {
				t.Errorf("nbdinfo --map shows no hole for the unallocated 8 MiB: %v", got)
			}
			if code, errOut := s.stop(t); code != 0 {
				t.Errorf("serve exited %d: %s", code, errOut)
			}
		})
	}

	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		raw, _ := diskFile(t, dir, "disk.img", 3<<20, 5)
		want, _ := os.ReadFile(raw)
		ref := "oci:" + filepath.Join(dir, "layout") + ":1"
		mustCLI(t, "convert", "--estargz", "disk:"+raw, ref)
		if got := mustCLI(t, "read", "--guest", ref, "--range", "all", "-o", "-"); got != string(want) {
			t.Errorf("read --guest of a raw disk is not the file")
		}
		if text := mustCLI(t, "toc", "--guest", ref); !strings.Contains(text, "disk/disk.img: raw, guest disk 3.0 MiB (3145728 bytes)\n") {
			t.Errorf("toc --guest:\n%s", text)
		}
	})

	t.Run("backing file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		qcow, _ := compressedQcow2(t, dir)
		b, err := os.ReadFile(qcow)
		if err != nil {
			t.Fatal(err)
		}
		binary.BigEndian.PutUint64(b[8:], 512) // backing_file_offset
		binary.BigEndian.PutUint32(b[16:], 4)
		if err := os.WriteFile(qcow, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ref := "oci:" + filepath.Join(dir, "layout") + ":1"
		mustCLI(t, "convert", "--estargz", "disk:"+qcow, ref)
		_, errOut, code := cli(t, "read", "--guest", ref, "--range", "0:4K", "-o", filepath.Join(dir, "x"))
		if code != 1 || !strings.Contains(errOut, "qcow2 image has a backing file") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("read --guest of a qcow2 with a backing file: exit %d, %q", code, errOut)
		}
	})
}

// TestMountGuest mounts the guest disk of a compressed qcow2 containerDisk
// with mount --guest: the file is NAME.raw, of the guest's size, and reads
// (whole and at random offsets) give the guest disk qemu-img decodes.
func TestMountGuest(t *testing.T) {
	needFUSE(t)
	t.Parallel()
	needClients(t, "qemu-img")
	dir := t.TempDir()
	qcow, want := compressedQcow2(t, dir)
	ref := "oci:" + filepath.Join(dir, "layout") + ":1"
	mustCLI(t, "convert", "--estargz", "disk:"+qcow, ref)
	mnt := t.TempDir()
	m := mountProcess(t, mnt, "--guest", ref)
	if wantPath := filepath.Join(mnt, "vm.raw"); m.path != wantPath {
		t.Errorf("mount --guest printed %q, want %q", m.path, wantPath)
	}
	got, err := os.ReadFile(m.path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("the mounted guest disk: %d bytes, %v; want the %d bytes qemu-img decodes", len(got), err, len(want))
	}
	f, err := os.Open(m.path)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 50; i++ {
		off := (i * 7919 * 4099) % int64(len(want)-4096)
		b := make([]byte, 4096)
		if _, err := f.ReadAt(b, off); err != nil || !bytes.Equal(b, want[off:off+4096]) {
			t.Errorf("read at %d through the mount: %v, or the bytes differ", off, err)
		}
	}
	f.Close()
	if err := m.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("mount --guest after SIGTERM: %v", err)
	}
	if _, stderr, code := cli(t, "mount", "--guest", "--all", ref, t.TempDir()); code != 2 || !strings.Contains(stderr, "use one of them") {
		t.Errorf("mount --guest --all: exit %d, %q", code, stderr)
	}
}
