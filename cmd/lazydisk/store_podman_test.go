//go:build e2e

package main

// End-to-end tests of `lazydisk store` with Debian's podman (apt-get install
// podman fuse3), run by `make test-e2e`: podman pulls containerDisks from a
// registry on 127.0.0.1 through the store and reads them with `podman image
// mount`. Each test isolates podman completely (its own root, runroot,
// storage.conf, registries.conf, containers.conf and HOME) and removes every
// mount it made.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazydisk/lazydisk/internal/cstoragetest"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// podmanEnv is a podman isolated in a temporary directory.
type podmanEnv struct {
	dir    string
	env    []string
	args   []string
	policy string
}

// newPodman sets up podman with its own storage (overlay, the store at
// storeRoot when it is not ""), registries.conf marking host insecure, and
// HOME. Everything podman mounted under its root is unmounted when the test
// ends.
func newPodman(t *testing.T, host, storeRoot string) *podmanEnv {
	t.Helper()
	// Not t.TempDir(): overlay mount options break on a comma from a
	// test name.
	dir, err := os.MkdirTemp("", "lazydisk-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podmanEnv{dir: dir}
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	stores := ""
	if storeRoot != "" {
		stores = fmt.Sprintf("additionallayerstores = [%q]\n", storeRoot+":ref")
	}
	files := map[string]string{
		"storage.conf":    fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n[storage.options]\n%s", root, run, stores),
		"registries.conf": fmt.Sprintf("unqualified-search-registries = []\n[[registry]]\nlocation = %q\ninsecure = true\n", host),
		"containers.conf": "[containers]\ndefault_ulimits = []\n[engine]\nevents_logger = \"none\"\n",
		"policy.json":     `{"default":[{"type":"insecureAcceptAnything"}]}`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)
	p.env = []string{
		"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir,
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"XDG_RUNTIME_DIR=" + run, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"NO_PROXY=*", "no_proxy=*",
	}
	p.args = nil
	p.policy = filepath.Join(dir, "policy.json")
	t.Cleanup(func() {
		unmountBelow(t, dir)
		os.RemoveAll(dir)
	})
	return p
}

// unmountBelow detaches every mount below dir, innermost first.
func unmountBelow(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	var ms []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			ms = append(ms, f[4])
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		unix.Unmount(ms[i], unix.MNT_DETACH)
	}
}

// run runs podman with args and returns its stdout; it fails the test on
// an error.
func (p *podmanEnv) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, p.args...), args...)...)
	cmd.Env = p.env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	t.Logf("podman %s:\n%s", strings.Join(args, " "), errb.String())
	return out.String()
}

// startStore runs `lazydisk store --root DIR args...` as a process until the
// test ends, and returns DIR.
func startStore(t *testing.T, env []string, args ...string) (string, *lockedBuffer) {
	t.Helper()
	root, err := os.MkdirTemp("", "lazydisk-store-")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"store", "--root", root, "-v"}, args...)...)
	cmd.Env = append(env, execAsLazydisk+"=1")
	stderr := &lockedBuffer{}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		unix.Unmount(root, unix.MNT_DETACH)
		os.Remove(root)
		t.Logf("lazydisk store's log:\n%s", stderr)
	})
	ready := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(pr)
		sent := false
		for s.Scan() {
			stderr.Write([]byte(s.Text() + "\n"))
			if !sent && strings.HasPrefix(s.Text(), "serving the layer store at ") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("lazydisk store exited before serving: %s", stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("lazydisk store is not serving after 30 s: %s", stderr)
	}
	return root, stderr
}

func needPodman(t *testing.T) {
	t.Helper()
	needFUSE(t)
	cstoragetest.Skip(t) // root and overlay mounts, as podman's overlay driver needs them
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("skipping: podman is not installed (apt-get install podman fuse3)")
	}
}

// layerOf returns the digest and size of the single layer of ref.
func layerOf(t *testing.T, ref string) (string, int64) {
	t.Helper()
	var res tocOutput
	if err := json.Unmarshal([]byte(mustCLI(t, "toc", "--format", "json", ref)), &res); err != nil {
		t.Fatal(err)
	}
	return res.Layers[0].Digest, res.Layers[0].Size
}

// readMounted mounts name with podman image mount and returns the sha256
// of /disk/vm.qcow2 and its first 4 KiB.
func readMounted(t *testing.T, p *podmanEnv, name string, n int64) string {
	t.Helper()
	mnt := strings.TrimSpace(p.run(t, "image", "mount", name))
	defer p.run(t, "image", "unmount", name)
	f, err := os.Open(filepath.Join(mnt, "disk", "vm.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, n)); err != nil {
		t.Fatalf("reading /disk/vm.qcow2 of %s: %v", name, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestStorePodman pulls an eStargz and a zstd:chunked containerDisk with
// podman through the store: the pull fetches no layer, the first 4 KiB of
// the disk cost the TOC and a chunk or two, and the whole disk read through
// podman's overlay mount is exact.
func TestStorePodman(t *testing.T) {
	needPodman(t)
	counter := &testregistry.BlobBytes{}
	reg := testregistry.Start(t, testregistry.WithMiddleware(counter.Middleware))
	src := t.TempDir()
	path, sum := diskFile(t, src, "vm.qcow2", 24<<20, 31)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head := sha256.Sum256(data[:4096])
	root, log := startStore(t, offlineEnv(t))
	p := newPodman(t, reg.Host, root)
	for _, format := range []string{"estargz", "zstd-chunked"} {
		name := reg.Host + "/store/disk:" + format
		mustCLI(t, "convert", "--"+format, "--chunk-size", "256K", "disk:"+path, "docker://"+name)
		layer, size := layerOf(t, "docker://"+name)
		base := counter.Get(layer) // what toc fetched
		start := time.Now()
		p.run(t, "pull", "--tls-verify=false", "--signature-policy", p.policy, name)
		pulled := counter.Get(layer) - base
		if got := readMounted(t, p, name, 4096); got != hex.EncodeToString(head[:]) {
			t.Fatalf("%s: the first 4 KiB of the disk through podman's mount differ", format)
		}
		first := counter.Get(layer) - base
		took := time.Since(start)
		if got := readMounted(t, p, name, int64(len(data))); got != sum {
			t.Errorf("%s: sha256 of the disk through podman's mount %s, want %s", format, got, sum)
		}
		all := counter.Get(layer) - base
		t.Logf("%s: layer %d bytes; fetched by pull %d, by pull + first 4 KiB %d (%v), after reading the whole disk %d", format, size, pulled, first, took, all)
		// TOC + at most 2 chunks of 256 KiB (compressed), well under the layer.
		if first > size/4 || first > 2<<20 {
			t.Errorf("%s: pull and the first 4 KiB fetched %d bytes of the %d-byte layer", format, first, size)
		}
		if !strings.Contains(log.String(), "opened image") {
			t.Errorf("%s: the store did not serve the image:\n%s", format, log)
		}
	}
	if !strings.Contains(log.String(), "layer used") || !strings.Contains(log.String(), "layer released") {
		t.Errorf("the store did not see the use protocol:\n%s", log)
	}
}

// TestStorePodmanKey runs the store with --key: a signed image is served
// lazily, an unsigned one is not exposed and podman pulls it the normal
// way; both read back exactly.
func TestStorePodmanKey(t *testing.T) {
	needPodman(t)
	counter := &testregistry.BlobBytes{}
	reg := testregistry.Start(t, testregistry.WithMiddleware(counter.Middleware))
	dir := t.TempDir()
	// Different disks: podman would reuse the signed image's layer for an
	// unsigned image with the same one.
	signedPath, signedSum := diskFile(t, t.TempDir(), "vm.qcow2", 8<<20, 32)
	unsignedPath, unsignedSum := diskFile(t, t.TempDir(), "vm.qcow2", 8<<20, 33)
	env := offlineEnv(t, "COSIGN_PASSWORD=e2e")
	key := filepath.Join(dir, "k")
	o, e, code := lazydiskProcess(t, env, dir, "keygen", "--output-key-prefix", key)
	mustRun(t, "keygen", o, e, code)
	signed, unsigned := reg.Host+"/key/signed:1", reg.Host+"/key/unsigned:1"
	mustCLI(t, "convert", "--estargz", "--chunk-size", "256K", "disk:"+signedPath, "docker://"+signed)
	mustCLI(t, "convert", "--estargz", "--chunk-size", "256K", "disk:"+unsignedPath, "docker://"+unsigned)
	o, e, code = lazydiskProcess(t, env, dir, "sign", "--key", key+".key", "docker://"+signed)
	mustRun(t, "sign", o, e, code)
	root, log := startStore(t, offlineEnv(t), "--key", key+".pub")
	p := newPodman(t, reg.Host, root)
	for _, c := range []struct {
		name string
		lazy bool
		sum  string
	}{{signed, true, signedSum}, {unsigned, false, unsignedSum}} {
		layer, size := layerOf(t, "docker://"+c.name)
		base := counter.Get(layer)
		p.run(t, "pull", "--tls-verify=false", "--signature-policy", p.policy, c.name)
		pulled := counter.Get(layer) - base
		t.Logf("%s: the pull fetched %d bytes of the %d-byte layer", c.name, pulled, size)
		if c.lazy && pulled > size/4 {
			t.Errorf("%s is signed, but the pull fetched %d bytes of the %d-byte layer", c.name, pulled, size)
		}
		if !c.lazy && pulled < size {
			t.Errorf("%s is unsigned, but the pull fetched only %d bytes of the %d-byte layer: the store exposed it", c.name, pulled, size)
		}
		if got := readMounted(t, p, c.name, 1<<40); got != c.sum {
			t.Errorf("%s: sha256 through podman's mount %s, want %s", c.name, got, c.sum)
		}
	}
	if !strings.Contains(log.String(), "image not exposed") || !strings.Contains(log.String(), "unsigned") {
		t.Errorf("the store did not log refusing the unsigned image:\n%s", log)
	}
}
