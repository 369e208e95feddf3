package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/clitest"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// These tests serve images from a registry on 127.0.0.1 with `lazydisk
// serve`, run in-process, and read them with the real NBD clients:
// qemu-img and qemu-io (qemu-utils), nbdinfo and nbdcopy (libnbd-bin).
// They skip when a client is not installed; .ci/run installs them.

// needClients skips the test unless every client is installed.
func needClients(t *testing.T, tools ...string) {
	t.Helper()
	clitest.Need(t, "apt-get install qemu-utils libnbd-bin", tools...)
}

// tool runs a client with a 60 s limit and returns its standard output.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	return clitest.Run(t, time.Minute, name, args...)
}

// qcow2Disk writes a qcow2 disk of size virtual bytes, shaped like a VM
// disk, with its metadata preallocated so that the file holds runs of
// zeros (the clusters never written), as zero chunks of a layer.
func qcow2Disk(t *testing.T, dir string, size int, seed uint64) string {
	t.Helper()
	raw, _ := diskFile(t, dir, "disk.raw", size, seed)
	qcow := filepath.Join(dir, "vm.qcow2")
	tool(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "preallocation=metadata,cluster_size=65536", raw, qcow)
	return qcow
}

// lockedBuffer is a bytes.Buffer that a command writes while the test
// reads it.
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

// readyLine is what serve prints once it listens.
var readyLine = regexp.MustCompile(`(?m)^serving (\S+) \((\d+) bytes, [^)]+\) at (nbd\S+)$`)

// server is a `lazydisk serve` running in-process.
type server struct {
	uri    string
	stderr *lockedBuffer
	cancel context.CancelFunc
	done   chan int
	code   int
	once   sync.Once
}

// serve starts `lazydisk serve args...` and waits until it listens. The
// server is stopped when the test ends, if stop was not called.
func serve(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stderr: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		s.done <- run(ctx, append([]string{"serve"}, args...), strings.NewReader(""), io.Discard, s.stderr)
	}()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.After(30 * time.Second)
	for {
		if m := readyLine.FindStringSubmatch(s.stderr.String()); m != nil {
			s.uri = m[3]
			return s
		}
		select {
		case code := <-s.done:
			s.done <- code
			t.Fatalf("lazydisk serve %s exited %d before listening: %s", strings.Join(args, " "), code, s.stderr)
		case <-deadline:
			t.Fatalf("lazydisk serve %s is not listening after 30 s: %s", strings.Join(args, " "), s.stderr)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop cancels the server's context, as SIGINT does, and returns its exit
// code and stderr once it has exited.
func (s *server) stop(t *testing.T) (int, string) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.code = <-s.done:
		case <-time.After(20 * time.Second):
			t.Errorf("lazydisk serve did not exit 20 s after its context was cancelled")
			s.code = -1
		}
	})
	return s.code, s.stderr.String()
}

// serveStatsOf parses the JSON stats serve printed on exit.
func serveStatsOf(t *testing.T, stderr string) serveStats {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "{") {
			var st serveStats
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				t.Fatalf("--stats=json printed %q: %v", line, err)
			}
			return st
		}
	}
	t.Fatalf("no --stats=json line on stderr:\n%s", stderr)
	return serveStats{}
}

// socketIn returns a unix socket path in a new temporary directory, short
// enough for sun_path.
func socketIn(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) > 80 {
		var err error
		if dir, err = os.MkdirTemp("", "serve"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return filepath.Join(dir, "disk.sock")
}

// qemuRead reads n bytes at off of the export with qemu-io, as raw.
func qemuRead(t *testing.T, uri string, off, n int64) []byte {
	t.Helper()
	out := tool(t, "qemu-io", "-r", "-f", "raw", "-c", fmt.Sprintf("read -v %d %d", off, n), uri)
	if !strings.Contains(out, fmt.Sprintf("read %d/%d bytes at offset %d", n, n, off)) {
		t.Fatalf("qemu-io read of %d bytes at %d:\n%s", n, off, out)
	}
	return qemuDump(t, out, n)
}

// qemuDump parses the first n bytes of qemu-io's read -v output.
func qemuDump(t *testing.T, out string, n int64) []byte {
	t.Helper()
	var got []byte
	for _, line := range strings.Split(out, "\n") {
		// 00000fa0:  da bc cf 88 ...  ascii
		head, rest, ok := strings.Cut(line, ":  ")
		if !ok || len(head) != 8 {
			continue
		}
		for i := 0; i < 16 && int64(len(got)) < n && len(rest) >= 3*i+2; i++ {
			b, err := hex.DecodeString(rest[3*i : 3*i+2])
			if err != nil {
				t.Fatalf("qemu-io dump line %q", line)
			}
			got = append(got, b[0])
		}
	}
	if int64(len(got)) != n {
		t.Fatalf("qemu-io read of %d bytes: got %d bytes:\n%s", n, len(got), out)
	}
	return got
}

// nbdMap parses `nbdinfo --map`: runs of data and of holes (type 3).
func nbdMap(t *testing.T, uri string) []disk.Extent {
	t.Helper()
	var out []disk.Extent
	for _, line := range strings.Split(strings.TrimSpace(tool(t, "nbdinfo", "--map", uri)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("nbdinfo --map line %q", line)
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[1], 10, 64)
		typ, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil || (typ != 0 && typ != 3) {
			t.Fatalf("nbdinfo --map line %q", line)
		}
		if k := len(out) - 1; k >= 0 && out[k].Zero == (typ == 3) && out[k].Offset+out[k].Length == off {
			out[k].Length += n
			continue
		}
		out = append(out, disk.Extent{Offset: off, Length: n, Zero: typ == 3})
	}
	return out
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestServe serves a qcow2 disk from eStargz and zstd:chunked images in a
// registry, on a unix socket and on TCP, and checks it with qemu-img,
// qemu-io, nbdinfo and nbdcopy: the bytes, the holes, several connections
// at once sharing one cache, readahead for copies, lazy random reads, and
// the stats and clean exit.
func TestServe(t *testing.T) {
	t.Parallel()
	needClients(t, "qemu-img", "qemu-io", "nbdinfo", "nbdcopy")
	reg := testregistry.Start(t)
	dir := t.TempDir()
	qcow := qcow2Disk(t, dir, 12<<20, 21)
	data, err := os.ReadFile(qcow)
	if err != nil {
		t.Fatal(err)
	}
	wantSHA := sha256File(t, qcow)
	wantRaw := filepath.Join(dir, "want.raw")
	tool(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow, wantRaw)
	wantRawSHA := sha256File(t, wantRaw)

	for _, format := range []string{"estargz", "zstd-chunked"} {
		ref := "docker://" + reg.Host + "/serve/" + format + ":1"
		mustCLI(t, "convert", "--"+format, "--chunk-size", "64K", "disk:"+qcow, ref)

		t.Run(format+"/unix", func(t *testing.T) {
			t.Parallel()
			sock := socketIn(t)
			s := serve(t, ref, "--listen", "unix://"+sock, "--stats=json")
			if want := "nbd+unix:///?socket=" + sock; s.uri != want {
				t.Errorf("URI %q, want %q", s.uri, want)
			}
			if m := readyLine.FindStringSubmatch(s.stderr.String()); m[1] != "disk/vm.qcow2" || m[2] != strconv.Itoa(len(data)) {
				t.Errorf("ready line %q", m[0])
			}

			if list := tool(t, "nbdinfo", "--list", s.uri); !strings.Contains(list, `export="disk/vm.qcow2"`) || !strings.Contains(list, "description: disk/vm.qcow2 of "+ref+" (manifest sha256:") {
				t.Errorf("nbdinfo --list says:\n%s", list)
			}
			info := tool(t, "qemu-img", "info", s.uri)
			if !strings.Contains(info, "file format: qcow2") || !strings.Contains(info, "virtual size: 12 MiB (12582912 bytes)") {
				t.Errorf("qemu-img info says:\n%s", info)
			}

			// Two copies at once: nbdcopy (four connections) and qemu-img
			// convert, then two qemu-io at once.
			var wg sync.WaitGroup
			copied := filepath.Join(t.TempDir(), "copy.qcow2")
			converted := filepath.Join(t.TempDir(), "out.raw")
			wg.Go(func() { tool(t, "nbdcopy", "--connections=4", s.uri, copied) })
			wg.Go(func() { tool(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", s.uri, converted) })
			wg.Wait()
			if got := sha256File(t, copied); got != wantSHA {
				t.Errorf("nbdcopy of the export has sha256 %s, the qcow2 file %s", got, wantSHA)
			}
			if got := sha256File(t, converted); got != wantRawSHA {
				t.Errorf("qemu-img convert of the export has sha256 %s, of the qcow2 file %s", got, wantRawSHA)
			}
			reads := []struct{ off, n int64 }{{0, 4096}, {int64(len(data)) - 5000, 5000}, {3<<20 + 123, 70000}, {int64(len(data)) / 2, 4096}}
			for i := 0; i < len(reads); i += 2 {
				var a, b []byte
				wg.Go(func() { a = qemuRead(t, s.uri, reads[i].off, reads[i].n) })
				wg.Go(func() { b = qemuRead(t, s.uri, reads[i+1].off, reads[i+1].n) })
				wg.Wait()
				for k, got := range [][]byte{a, b} {
					r := reads[i+k]
					if !bytes.Equal(got, data[r.off:r.off+r.n]) {
						t.Errorf("qemu-io read of %d bytes at %d differs from the file", r.n, r.off)
					}
				}
			}

			// The map has the zero chunks as holes, and data elsewhere.
			r, err := image.Parse(ref)
			if err != nil {
				t.Fatal(err)
			}
			f, err := disk.Open(t.Context(), r, disk.WithImageOptions(image.WithKeychain(authn.NewMultiKeychain())))
			if err != nil {
				t.Fatal(err)
			}
			want := f.Extents(0, f.Size())
			f.Close()
			got := nbdMap(t, s.uri)
			holes := 0
			for _, e := range got {
				if e.Zero {
					holes++
					if bytes.ContainsFunc(data[e.Offset:e.Offset+e.Length], func(r rune) bool { return r != 0 }) {
						t.Errorf("nbdinfo --map shows a hole at [%d, +%d) where the file has data", e.Offset, e.Length)
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || holes == 0 {
				t.Errorf("nbdinfo --map shows %v; the disk's extents are %v", got, want)
			}

			code, stderr := s.stop(t)
			if code != 0 {
				t.Fatalf("serve exited %d: %s", code, stderr)
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("the socket is still there after serve exited: %v", err)
			}
			t.Logf("serve's stderr:\n%s", stderr)
			st := serveStatsOf(t, stderr)
			chunks := 0
			for _, c := range tocChunks(t, ref) {
				if !c.Zero {
					chunks++
				}
			}
			n := st.NBD
			if n.Connections < 9 || n.Errors != 0 || n.BackendErrors != 0 || n.HandshakeFailures != 0 || n.Active != 0 || n.BlockStatus == 0 || n.ZeroBytes == 0 {
				t.Errorf("nbd stats %+v: want 9 connections or more (nbdcopy's (one per thread, 2 or more), qemu-img info and convert, 4 qemu-io, nbdinfo), holes read, no errors", n)
			}
			// One cache for every connection: each chunk fetched at most
			// once, though the disk was read whole twice at the same time.
			if st.ChunksFetched > int64(chunks) || st.ReadaheadChunks == 0 || st.ReadaheadHits == 0 || st.Size != int64(len(data)) {
				t.Errorf("disk stats %+v: want at most the %d data chunks fetched, some read ahead and used", st.Stats, chunks)
			}
		})

		t.Run(format+"/tcp", func(t *testing.T) {
			t.Parallel()
			s := serve(t, ref, "--listen", "tcp://127.0.0.1:0", "--stats=json")
			if !regexp.MustCompile(`^nbd://127\.0\.0\.1:\d+/$`).MatchString(s.uri) {
				t.Errorf("URI %q", s.uri)
			}
			// A random 4 KiB read across two data chunks fetches those two,
			// with one request, and nothing ahead.
			cs := tocChunks(t, ref)
			i := len(cs) / 3
			for ; i+1 < len(cs); i++ {
				if !cs[i].Zero && !cs[i+1].Zero && cs[i].CompressedSize > 1000 && cs[i+1].CompressedSize > 1000 {
					break
				}
			}
			off := cs[i+1].Offset - 1000
			if got := qemuRead(t, s.uri, off, 4096); !bytes.Equal(got, data[off:off+4096]) {
				t.Errorf("qemu-io read at %d differs from the file", off)
			}
			code, stderr := s.stop(t)
			if code != 0 {
				t.Fatalf("serve exited %d: %s", code, stderr)
			}
			st := serveStatsOf(t, stderr)
			want := cs[i].CompressedSize + cs[i+1].CompressedSize
			if got := st.BytesFetched - st.TOCBytes; got != want || st.Requests-st.TOCRequests != 1 || st.ChunksFetched != 2 || st.ReadaheadChunks != 0 {
				t.Errorf("a 4 KiB read over chunks %d and %d: %d bytes fetched beyond the TOC's %d, in %d requests, %d chunks, %d read ahead; want %d (their compressed sizes), 1, 2, 0",
					i, i+1, got, st.TOCBytes, st.Requests-st.TOCRequests, st.ChunksFetched, st.ReadaheadChunks, want)
			}
			t.Logf("a 4 KiB read at %d: %d bytes fetched = TOC %d + chunks %d + %d", off, st.BytesFetched, st.TOCBytes, cs[i].CompressedSize, cs[i+1].CompressedSize)
		})
	}
}

// tocChunks returns the chunks of disk/vm.qcow2 in the image, with
// `lazydisk toc --chunks`; eStargz chunks whose digest is that of zeros are
// marked zero, as the reader treats them.
func tocChunks(t *testing.T, ref string) []chunkTOC {
	t.Helper()
	var res tocOutput
	if err := json.Unmarshal([]byte(mustCLI(t, "toc", "--format", "json", "--chunks", ref)), &res); err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Layers[0].Files {
		if f.Name != "disk/vm.qcow2" {
			continue
		}
		for i, c := range f.ChunkList {
			sum := sha256.Sum256(make([]byte, c.Size))
			if c.Digest == "sha256:"+hex.EncodeToString(sum[:]) {
				f.ChunkList[i].Zero = true
			}
		}
		return f.ChunkList
	}
	t.Fatalf("%s has no disk/vm.qcow2", ref)
	return nil
}

// TestServeErrors checks what serve refuses, and that it replaces a stale
// socket but not a live one.
func TestServeErrors(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	path, _ := diskFile(t, dir, "vm.img", 1<<20, 3)
	ref := "docker://" + reg.Host + "/serve/errors:1"
	mustCLI(t, "convert", "--zstd-chunked", "disk:"+path, ref)

	live := socketIn(t)
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	notSocket := filepath.Join(dir, "file.sock")
	os.WriteFile(notSocket, nil, 0o644)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"serve", ref}, 2, "serve needs --listen"},
		{[]string{"serve", ref, "--listen", "http://127.0.0.1:80"}, 2, "use unix:///PATH or tcp://HOST:PORT"},
		{[]string{"serve", ref, "--listen", "unix://"}, 2, "has no socket path"},
		{[]string{"serve", ref, "--listen", "tcp://127.0.0.1:99999"}, 2, "is not a number from 0 to 65535"},
		{[]string{"serve", ref, "--listen", "tcp://0.0.0.0:0"}, 2, "--allow-remote"},
		{[]string{"serve", ref, "--listen", "tcp://:10809"}, 2, "--allow-remote"},
		{[]string{"serve", ref, "--listen", "tcp://127.0.0.1:0", "--stats=yaml"}, 2, "--stats must be text or json"},
		{[]string{"serve", ref, "--listen", "tcp://127.0.0.1:0", "--readahead", "lots"}, 2, "--readahead"},
		{[]string{"serve", ref, "--listen", "tcp://127.0.0.1:0", "--cache-size", "-1"}, 2, "--cache-size"},
		{[]string{"serve", ref, "--listen", "tcp://127.0.0.1:0", "--max-connections", "0"}, 2, "--max-connections"},
		{[]string{"serve", ref, "--listen", "tcp://127.0.0.1:0", "--platform", "linux"}, 2, "--platform"},
		{[]string{"serve", ref, "--listen", "unix://" + live}, 1, "a server is answering on"},
		{[]string{"serve", ref, "--listen", "unix://" + notSocket}, 1, "exists and is not a socket"},
		{[]string{"serve", "docker://" + reg.Host + "/serve/missing:1", "--listen", "tcp://127.0.0.1:0"}, 1, "missing"},
		{[]string{"serve", ref, "--file", "disk/nope", "--listen", "tcp://127.0.0.1:0"}, 1, "has no file /disk/nope"},
		{[]string{"serve", ref, "x", "--listen", "tcp://127.0.0.1:0"}, 2, "serve takes 1 arguments"},
	}
	for _, tt := range tests {
		out, errOut, code := cli(t, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.msg) || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "lazydisk: ") || out != "" {
			t.Errorf("lazydisk %s: exit %d, stderr %q; want exit %d and one line saying %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.msg)
		}
	}

	help := mustCLI(t, "serve", "--help")
	for _, want := range []string{"Examples:", "qemu-img info nbd+unix:///?socket=", "qemu-img convert", "nbdcopy", "nbdinfo --map", "qemu-io", "qemu-system-x86_64", "--allow-remote", "--readahead", "--key"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}

	// A socket file nothing answers on, as a killed server leaves it, is
	// replaced.
	stale := socketIn(t)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	s := serve(t, ref, "--listen", "unix://"+stale)
	if code, stderr := s.stop(t); code != 0 || strings.Contains(stderr, "level=") {
		t.Errorf("serving on a stale socket: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("the socket is still there after serve exited: %v", err)
	}
}

// corruptDisk pushes a 2 MiB disk as zstd:chunked (64 KiB chunks) to reg as
// REPO:TAG and flips a bit in one of its chunks past 1 MiB in the
// registry's storage. It returns the reference, the disk and that chunk.
func corruptDisk(t *testing.T, reg *testregistry.Registry, repoTag string) (string, []byte, chunkTOC) {
	t.Helper()
	path, _ := diskFile(t, t.TempDir(), "vm.img", 2<<20, 5)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ref := "docker://" + reg.Host + "/" + repoTag
	mustCLI(t, "convert", "--zstd-chunked", "--chunk-size", "64K", "disk:"+path, ref)
	var res tocOutput
	if err := json.Unmarshal([]byte(mustCLI(t, "toc", "--format", "json", "--chunks", ref)), &res); err != nil {
		t.Fatal(err)
	}
	var bad chunkTOC
	for _, c := range res.Layers[0].Files[len(res.Layers[0].Files)-1].ChunkList {
		if c.CompressedSize > 1000 && c.Offset > 1<<20 {
			bad = c
			break
		}
	}
	if bad.Size == 0 {
		t.Fatal("no chunk to corrupt")
	}
	blob := reg.BlobPath(res.Layers[0].Digest)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[bad.CompressedOffset+bad.CompressedSize/2] ^= 1
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return ref, data, bad
}

// TestServeCorrupt serves an image with a corrupt chunk: reading it fails
// with EIO, the error is logged, and the rest of the disk still reads.
func TestServeCorrupt(t *testing.T) {
	t.Parallel()
	needClients(t, "qemu-io")
	reg := testregistry.Start(t)
	ref, data, bad := corruptDisk(t, reg, "serve/corrupt:1")

	// The clients run as serve --run's command, which has the URI in $uri.
	script := fmt.Sprintf(`qemu-io -r -f raw -c 'read %d 4096' "$uri" 2>&1 | sed 's/^/corrupt: /'; qemu-io -r -f raw -c 'read -v 4096 8192' "$uri"`, bad.Offset)
	out, stderr, code := cli(t, "serve", ref, "--listen", socketIn(t), "--stats=json", "--run", script)
	if code != 0 {
		t.Errorf("serve exited %d: %s", code, stderr)
	}
	if !strings.Contains(out, "corrupt: ") || !strings.Contains(out, "Input/output error") {
		t.Errorf("qemu-io read of the corrupt chunk did not fail with EIO: %s", out)
	}
	if got := qemuDump(t, out, 8192); !bytes.Equal(got, data[4096:4096+8192]) {
		t.Error("a read of good chunks differs from the file")
	}
	t.Logf("serve's stderr:\n%s", stderr)
	st := serveStatsOf(t, stderr)
	if st.NBD.BackendErrors == 0 || !strings.Contains(stderr, "level=ERROR") || !strings.Contains(stderr, "chunk does not match its TOC digest") {
		t.Errorf("serve's stderr does not log the corrupt chunk, or stats %+v:\n%s", st.NBD, stderr)
	}
}

// TestServeSignal runs serve as a process and stops it with SIGINT and
// SIGTERM: it removes its socket, prints its stats and exits 130 and 143, as
// a shell reports a command those signals stopped.
func TestServeSignal(t *testing.T) {
	t.Parallel()
	needClients(t, "nbdinfo")
	reg := testregistry.Start(t)
	dir := t.TempDir()
	path, _ := diskFile(t, dir, "vm.img", 1<<20, 4)
	ref := "docker://" + reg.Host + "/serve/signal:1"
	mustCLI(t, "convert", "--estargz", "disk:"+path, ref)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			t.Parallel()
			sock := socketIn(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, self, "serve", ref, "--listen", "unix://"+sock, "--stats")
			cmd.Env = offlineEnv(t, execAsLazydisk+"=1")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(stderr)
			var rest strings.Builder
			if !lines.Scan() || !readyLine.MatchString(lines.Text()) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("serve printed %q, not the ready line", lines.Text())
			}
			uri := readyLine.FindStringSubmatch(lines.Text())[3]
			if out := tool(t, "nbdinfo", "--size", uri); strings.TrimSpace(out) != "1048576" {
				t.Errorf("nbdinfo --size says %q", out)
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			for lines.Scan() {
				rest.WriteString(lines.Text() + "\n")
			}
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("serve after %s exited %d, want %d; stderr %q", tc.sig, code, tc.code, rest.String())
			}
			if !strings.HasPrefix(rest.String(), "served disk/vm.img (1.0 MiB, estargz) for ") || !strings.Contains(rest.String(), "1 connections") {
				t.Errorf("serve printed %q after %s; want its stats", rest.String(), tc.sig)
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("the socket is still there after serve exited: %v", err)
			}
		})
	}
}

// TestServeScripting checks what scripts use: --run with the URI in its
// environment and its exit status, --print-uri, --pidfile and a bare path
// for --listen.
func TestServeScripting(t *testing.T) {
	t.Parallel()
	needClients(t, "nbdinfo")
	dir := t.TempDir()
	path, _ := diskFile(t, dir, "vm.img", 1<<20, 6)
	layout := filepath.Join(dir, "layout")
	mustCLI(t, "convert", "--estargz", "disk:"+path, "oci:"+layout)

	t.Run("run", func(t *testing.T) {
		t.Parallel()
		// Without --listen: a private socket, gone afterwards.
		out, stderr, code := cli(t, "serve", layout, "--run", `test -S "$unixsocket" && test "$nbd" = "$uri" && echo "$uri $unixsocket" && nbdinfo --size "$uri"`)
		if code != 0 {
			t.Fatalf("serve --run: exit %d: %s", code, stderr)
		}
		uri, rest, _ := strings.Cut(out, " ")
		sock, size, _ := strings.Cut(rest, "\n")
		if uri != "nbd+unix:///?socket="+sock || strings.TrimSpace(size) != "1048576" {
			t.Errorf("serve --run's command printed %q", out)
		}
		if _, err := os.Lstat(filepath.Dir(sock)); !os.IsNotExist(err) {
			t.Errorf("serve --run left its socket's directory: %v", err)
		}
		// The command's status is serve's.
		if _, stderr, code := cli(t, "serve", layout, "--listen", "tcp://127.0.0.1:0", "--run", `test -z "$unixsocket" && exit 7`); code != 7 || !strings.Contains(stderr, "--run command exited with status 7") {
			t.Errorf("serve --run 'exit 7': exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("print-uri and pidfile", func(t *testing.T) {
		t.Parallel()
		sock := socketIn(t)
		pidfile := filepath.Join(t.TempDir(), "serve.pid")
		ctx, cancel := context.WithCancel(context.Background())
		stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"serve", layout, "--listen", sock, "--print-uri", "--pidfile", pidfile}, strings.NewReader(""), stdout, stderr)
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.HasSuffix(stdout.String(), "\n") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		uri := stdout.String()
		if uri != "nbd+unix:///?socket="+sock+"\n" {
			t.Errorf("serve --print-uri printed %q on stdout", uri)
		}
		// The pidfile is there once the URI is printed.
		b, err := os.ReadFile(pidfile)
		if err != nil || string(b) != strconv.Itoa(os.Getpid())+"\n" {
			t.Errorf("pidfile %q, %v; want %d", b, err, os.Getpid())
		}
		if fi, err := os.Stat(pidfile); err == nil && fi.Mode().Perm()&0o044 == 0 {
			t.Errorf("pidfile mode %v: others cannot read it", fi.Mode())
		}
		if out := tool(t, "nbdinfo", "--size", strings.TrimSpace(uri)); strings.TrimSpace(out) != "1048576" {
			t.Errorf("nbdinfo --size says %q", out)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr)
		}
		for _, p := range []string{sock, pidfile} {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s is still there after serve exited: %v", p, err)
			}
		}
	})
}
