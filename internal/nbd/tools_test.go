package nbd

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/internal/clitest"
)

// These tests check the server with the real clients: qemu-img and
// qemu-io (qemu-utils), nbdinfo and nbdcopy (libnbd-bin). They skip when
// the tools are not installed.

// needTools skips the test unless every tool is installed.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	clitest.Need(t, "apt-get install qemu-utils libnbd-bin", tools...)
}

// run runs a tool with a 30 s limit and returns its standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return clitest.Run(t, 30*time.Second, name, args...)
}

// zeroExtents returns the extents of data at the granularity of block:
// blocks of zeros are zero extents, as a lazy reader's zero chunks would be.
func zeroExtents(data []byte, block int) []Extent {
	var out []Extent
	for off := 0; off < len(data); off += block {
		n := min(block, len(data)-off)
		zero := !bytes.ContainsFunc(data[off:off+n], func(r rune) bool { return r != 0 })
		if k := len(out) - 1; k >= 0 && out[k].Zero == zero {
			out[k].Length += int64(n)
		} else {
			out = append(out, Extent{Length: int64(n), Zero: zero})
		}
	}
	return out
}

// TestRealClients serves a small qcow2 file, through a file-backed Backend
// whose Extenter reports its zero 4 KiB blocks, on a unix socket, and reads
// it with qemu-img, qemu-io, nbdinfo and nbdcopy.
func TestRealClients(t *testing.T) {
	t.Parallel()
	needTools(t, "qemu-img", "qemu-io", "nbdinfo", "nbdcopy")
	dir := t.TempDir()

	// A raw disk: random data, a 0x5a pattern, a run of zeros, more data.
	raw := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(42, 42))
	for i := range 1 << 20 {
		raw[i] = byte(rng.Uint32())
	}
	copy(raw[1<<20:], bytes.Repeat([]byte{0x5a}, 64<<10))
	for i := 3 << 20; i < 4<<20; i++ {
		raw[i] = byte(rng.Uint32())
	}
	rawPath := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	qcowPath := filepath.Join(dir, "disk.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", rawPath, qcowPath)
	qcow, err := os.ReadFile(qcowPath)
	if err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(qcowPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	extents := zeroExtents(qcow, 4096)
	backend := &mapBackend{SectionReader: io.NewSectionReader(f, 0, int64(len(qcow))), extents: extents}
	s, err := New([]Export{{Name: "disk", Description: "a test disk", Backend: backend}})
	if err != nil {
		t.Fatal(err)
	}
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, s, ln)
	uri := "nbd+unix:///disk?socket=" + sock
	defaultURI := "nbd+unix:///?socket=" + sock

	t.Run("qemu-img info", func(t *testing.T) {
		out := run(t, "qemu-img", "info", uri)
		if !strings.Contains(out, "file format: qcow2") || !strings.Contains(out, "(4194304 bytes)") {
			t.Errorf("qemu-img info says:\n%s", out)
		}
	})

	t.Run("qemu-img convert", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out.raw")
		run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", uri, out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		ref := filepath.Join(t.TempDir(), "ref.raw")
		run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcowPath, ref)
		want, err := os.ReadFile(ref)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || !bytes.Equal(got, raw) {
			t.Error("converting the export differs from converting the file")
		}
	})

	t.Run("nbdcopy", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out.qcow2")
		run(t, "nbdcopy", defaultURI, out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := sha256.Sum256(got), sha256.Sum256(qcow); g != w {
			t.Errorf("nbdcopy's copy has sha256 %x, the file %x", g, w)
		}
	})

	t.Run("qemu-io", func(t *testing.T) {
		out := run(t, "qemu-io", "-r", "-f", "raw", "-c", "read 4096 4096", uri)
		if !strings.Contains(out, "read 4096/4096 bytes at offset 4096") {
			t.Errorf("qemu-io raw read says:\n%s", out)
		}
		// Through qemu's qcow2 driver, with qemu checking the bytes.
		out = run(t, "qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 1M 64k", "-c", "read -P 0 2M 64k", uri)
		if strings.Contains(out, "failed") || strings.Count(out, "read 65536/65536 bytes") != 2 {
			t.Errorf("qemu-io qcow2 reads say:\n%s", out)
		}
	})

	t.Run("nbdinfo", func(t *testing.T) {
		out := run(t, "nbdinfo", "--no-content", uri)
		for _, want := range []string{
			"export-size: " + strconv.Itoa(len(qcow)),
			"is_read_only: true",
			"can_multi_conn: true",
			"can_flush: true",
			"can_df: true",
			"can_trim: false",
			"block_size_preferred: 4096",
			"description: a test disk",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("nbdinfo does not say %q:\n%s", want, out)
			}
		}
		out = run(t, "nbdinfo", "--list", defaultURI)
		if !strings.Contains(out, `export="disk"`) {
			t.Errorf("nbdinfo --list says:\n%s", out)
		}
	})

	t.Run("nbdinfo --map", func(t *testing.T) {
		out := run(t, "nbdinfo", "--map", uri)
		var got []Extent
		var pos int64
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 {
				t.Fatalf("nbdinfo --map line %q", line)
			}
			off, err1 := strconv.ParseInt(fields[0], 10, 64)
			n, err2 := strconv.ParseInt(fields[1], 10, 64)
			typ, err3 := strconv.Atoi(fields[2])
			if err1 != nil || err2 != nil || err3 != nil || off != pos || (typ != 0 && typ != 3) {
				t.Fatalf("nbdinfo --map line %q", line)
			}
			pos += n
			if k := len(got) - 1; k >= 0 && got[k].Zero == (typ == 3) {
				got[k].Length += n
			} else {
				got = append(got, Extent{Length: n, Zero: typ == 3})
			}
		}
		holes := 0
		for _, e := range extents {
			if e.Zero {
				holes++
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(extents) || holes == 0 {
			t.Errorf("nbdinfo --map shows %v, the Extenter says %v", got, extents)
		}
	})

	if st := s.Stats(); st.HandshakeFailures != 0 || st.Errors != 0 || st.BlockStatus == 0 || st.ZeroBytes == 0 {
		t.Errorf("stats %+v", st)
	}
}
