package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// pushManyLayers pushes to reg an image whose manifest lists one small
// layer n times, and returns its docker:// reference.
func pushManyLayers(t *testing.T, reg *testregistry.Registry, repo string, n int) string {
	t.Helper()
	r, err := name.NewRepository(reg.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	layer := static.NewLayer(tarImageBytes(t), types.OCIUncompressedLayer)
	diffID, _ := layer.DiffID()
	ld, _ := layer.Digest()
	diffIDs := make([]v1.Hash, n)
	descs := make([]v1.Descriptor, n)
	for i := range n {
		diffIDs[i] = diffID
		descs[i] = v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: mustSize(t, layer), Digest: ld}
	}
	cfg, err := json.Marshal(v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}})
	if err != nil {
		t.Fatal(err)
	}
	cl := static.NewLayer(cfg, types.OCIConfigJSON)
	cd, _ := cl.Digest()
	for _, l := range []v1.Layer{layer, cl} {
		if err := remote.WriteLayer(r, l); err != nil {
			t.Fatal(err)
		}
	}
	m, err := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfg)), Digest: cd}, Layers: descs})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/1", reg.Host, repo), bytes.NewReader(m))
	req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("pushing a manifest of %d layers (%d bytes): %s", n, len(m), resp.Status)
	}
	return "docker://" + reg.Host + "/" + repo + ":1"
}

func mustSize(t *testing.T, l v1.Layer) int64 {
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tarImageBytes is a small layer: a tar with one file.
func tarImageBytes(t *testing.T) []byte {
	img := tarImage(t, "file.txt")
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestManyLayersRefused converts an image of 10,000 layers: it is refused
// at once, naming the limit, for every command that reads a manifest.
func TestManyLayersRefused(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	ref := pushManyLayers(t, reg, "many/layers", 10000)
	out := t.TempDir()
	for _, args := range [][]string{
		{"convert", "--estargz", ref, "oci:" + filepath.Join(out, "o") + ":1"},
		{"annotate", "--check", ref, ref},
		{"read", ref, "--range", "0:1"},
		{"toc", ref},
	} {
		start := time.Now()
		_, stderr, code := cli(t, args...)
		took := time.Since(start)
		if code == 0 || !strings.Contains(stderr, "10000 layers, more than the 500 lazydisk accepts (image.MaxLayers)") {
			t.Errorf("lazydisk %s: exit %d, stderr %q", args[0], code, stderr[:min(len(stderr), 500)])
		}
		if took > 5*time.Second {
			t.Errorf("lazydisk %s took %s to refuse 10,000 layers", args[0], took)
		}
	}
}

// TestConvertSIGINT interrupts a convert of an image of image.MaxLayers
// layers whose blobs the registry never sends: the process ends within a
// second of SIGINT.
func TestConvertSIGINT(t *testing.T) {
	t.Parallel()
	faults := &testregistry.Faults{}
	reg := testregistry.Start(t, testregistry.WithMiddleware(faults.Middleware))
	ref := pushManyLayers(t, reg, "many/stalled", image.MaxLayers)
	faults.Always(testregistry.Stall)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "convert", "--estargz", "--progress", "never", ref, "oci:"+filepath.Join(t.TempDir(), "o")+":1")
	env := offlineEnv(t, execAsLazydisk+"=1")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until it asks for a blob, which stalls.
	deadline := time.Now().Add(30 * time.Second)
	for faults.Count(testregistry.Stall) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("convert asked for no blob in 30 s: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		took := time.Since(start)
		t.Logf("convert ended %s after SIGINT: %v", took, err)
		if took > time.Second {
			t.Errorf("convert took %s to end after SIGINT", took)
		}
		if err == nil {
			t.Errorf("convert interrupted exited 0")
		}
		for _, kv := range env {
			if tmp, ok := strings.CutPrefix(kv, "TMPDIR="); ok {
				if m, _ := filepath.Glob(filepath.Join(tmp, "lazydisk-convert-*")); len(m) != 0 {
					t.Errorf("staging directories left after SIGINT: %v", m)
				}
			}
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("convert still running 30 s after SIGINT: %s", stderr.String())
	}
}

// TestEmptyDisk checks that a 0-byte disk is refused, with a message that
// says so, by convert (disk:) and by read and serve (an image holding one).
func TestEmptyDisk(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := cli(t, "convert", "--estargz", "disk:"+empty, "oci:"+filepath.Join(dir, "out")+":1")
	if code != 1 || !strings.Contains(stderr, "is 0 bytes long: the disk file is empty") {
		t.Errorf("convert of an empty disk: exit %d, %q", code, stderr)
	}
	src := "docker://" + reg.Host + "/empty/disk:src"
	pushImage(t, strings.TrimPrefix(src, "docker://"), containerDisk(t, empty, "linux/amd64"))
	for _, format := range []string{"--estargz", "--zstd-chunked"} {
		ref := "docker://" + reg.Host + "/empty/disk:" + strings.TrimPrefix(format, "--")
		mustCLI(t, "convert", format, "--platform", "linux/amd64", src, ref)
		for _, args := range [][]string{
			{"read", "--platform", "linux/amd64", ref, "--range", "all"},
			{"serve", "--platform", "linux/amd64", ref, "--listen", "unix://" + filepath.Join(dir, "s.sock")},
		} {
			_, stderr, code := cli(t, args...)
			if code != 1 || !strings.Contains(stderr, "disk/empty.img in layer 0") || !strings.Contains(stderr, "is 0 bytes long: the disk file is empty") {
				t.Errorf("%s of an empty disk (%s): exit %d, %q", args[0], format, code, stderr)
			}
		}
	}
}

// TestConvertKilledStaging kills a convert with SIGKILL while it stages
// (its registry never sends the layer): its staging directory stays, and
// the next convert with the same temporary directory removes it.
func TestConvertKilledStaging(t *testing.T) {
	t.Parallel()
	faults := &testregistry.Faults{}
	reg := testregistry.Start(t, testregistry.WithMiddleware(faults.Middleware))
	ref := pushManyLayers(t, reg, "killed/convert", 1)
	faults.Always(testregistry.Stall)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := offlineEnv(t, execAsLazydisk+"=1")
	tmp := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "TMPDIR="); ok {
			tmp = v
		}
	}
	staged := func() []string {
		m, _ := filepath.Glob(filepath.Join(tmp, "lazydisk-convert-*"))
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "convert", "--estargz", "--progress", "never", ref, "oci:"+filepath.Join(t.TempDir(), "o")+":1")
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for faults.Count(testregistry.Stall) == 0 || len(staged()) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("convert did not stage and ask for a blob in 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill() // SIGKILL: nothing runs on the way out
	cmd.Wait()
	left := staged()
	if len(left) != 1 {
		t.Fatalf("after kill -9: staging directories %v, want the killed run's", left)
	}
	// The next run, of another image, sweeps it away and removes its own.
	dir := t.TempDir()
	path, _ := diskFile(t, dir, "vm.img", 1<<20, 5)
	if _, stderr, code := lazydiskProcess(t, env, dir, "convert", "--estargz", "disk:"+path, "oci:"+filepath.Join(dir, "out")+":1"); code != 0 {
		t.Fatalf("the next convert: exit %d: %s", code, stderr)
	}
	if left := staged(); len(left) != 0 {
		t.Errorf("after the next convert: staging directories %v, want none", left)
	}
}
