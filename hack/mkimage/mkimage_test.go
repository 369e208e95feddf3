package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

const testPEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

// testSpec is a spec for two platforms whose "binaries" are small files:
// the packaging does not look inside them.
func testSpec(t *testing.T, created int64) *spec {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	amd, arm := filepath.Join(dir, "amd64"), filepath.Join(dir, "arm64")
	for p, b := range map[string]string{ca: testPEM, amd: "amd64 binary", arm: "arm64 binary"} {
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &spec{
		platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}},
		binaries:  []string{amd, arm},
		caFile:    ca,
		created:   time.Unix(created, 0).UTC(),
		source:    "https://github.com/lazydisk/lazydisk",
		revision:  "0123456789abcdef0123456789abcdef01234567",
		version:   "v0.1.0",
	}
}

// files reads an image's flattened filesystem: name -> header and content.
func files(t *testing.T, img v1.Image) map[string]struct {
	h    *tar.Header
	data []byte
} {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]struct {
		h    *tar.Header
		data []byte
	}{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = struct {
			h    *tar.Header
			data []byte
		}{h, b}
	}
}

// TestLayout builds the index for two platforms into a layout and reads it
// back as a client would: an index of two platforms, each image with the
// binary, CA bundle and non-root user, the OCI annotations, and timestamps
// from -created only.
func TestLayout(t *testing.T) {
	t.Parallel()
	s := testSpec(t, 1700000000)
	idx, err := build(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := writeLayout(dir, "v0.1.0", idx); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].Annotations[annotationRefName] != "v0.1.0" {
		t.Fatalf("index.json lists %+v, want the index tagged v0.1.0", tm.Manifests)
	}
	got, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := got.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		annotationCreated:  "2023-11-14T22:13:20Z",
		annotationSource:   s.source,
		annotationRevision: s.revision,
		annotationVersion:  s.version,
	}
	for k, v := range want {
		if im.Annotations[k] != v {
			t.Errorf("index annotation %s = %q, want %q", k, im.Annotations[k], v)
		}
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("the index lists %d manifests, want 2", len(im.Manifests))
	}
	for i, d := range im.Manifests {
		if d.Platform == nil || d.Platform.String() != s.platforms[i].String() {
			t.Fatalf("manifest %d has platform %v, want %s", i, d.Platform, s.platforms[i])
		}
		img, err := got.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if m.Annotations[k] != v || cf.Config.Labels[k] != v {
				t.Errorf("%s: annotation %s = %q, label %q, want %q", d.Platform, k, m.Annotations[k], cf.Config.Labels[k], v)
			}
		}
		if cf.Architecture != s.platforms[i].Architecture || cf.OS != "linux" || cf.Config.User != "65532:65532" ||
			len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/local/bin/lazydisk" || !cf.Created.Time.Equal(s.created) {
			t.Errorf("%s: config %+v %+v", d.Platform, cf, cf.Config)
		}
		if !strings.Contains(strings.Join(cf.Config.Env, " "), "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") {
			t.Errorf("%s: env %v lacks SSL_CERT_FILE", d.Platform, cf.Config.Env)
		}
		fs := files(t, img)
		bin := fs["usr/local/bin/lazydisk"]
		if want := s.platforms[i].Architecture + " binary"; string(bin.data) != want || bin.h == nil || bin.h.Mode != 0o755 {
			t.Errorf("%s: /usr/local/bin/lazydisk = %q (%+v), want %q mode 0755", d.Platform, bin.data, bin.h, want)
		}
		if ca := fs["etc/ssl/certs/ca-certificates.crt"]; string(ca.data) != testPEM {
			t.Errorf("%s: CA bundle %q, want the -ca file", d.Platform, ca.data)
		}
		if pw := string(fs["etc/passwd"].data); !strings.Contains(pw, "\nlazydisk:x:65532:65532:") {
			t.Errorf("%s: /etc/passwd %q lacks the lazydisk user", d.Platform, pw)
		}
		if h := fs["home/lazydisk"].h; h == nil || h.Uid != 65532 || h.Typeflag != tar.TypeDir {
			t.Errorf("%s: /home/lazydisk %+v, want a directory owned by 65532", d.Platform, h)
		}
		if h := fs["tmp"].h; h == nil || h.Mode != 0o1777 {
			t.Errorf("%s: /tmp %+v, want mode 1777", d.Platform, h)
		}
		for name, f := range fs {
			if !f.h.ModTime.Equal(s.created) {
				t.Errorf("%s: %s has mtime %s, want %s", d.Platform, name, f.h.ModTime, s.created)
			}
		}
	}
}

// TestReproducible: the same inputs give the same index digest; another
// -created gives another.
func TestReproducible(t *testing.T) {
	t.Parallel()
	digest := func(s *spec) v1.Hash {
		idx, err := build(s)
		if err != nil {
			t.Fatal(err)
		}
		h, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a, b, c := digest(testSpec(t, 1700000000)), digest(testSpec(t, 1700000000)), digest(testSpec(t, 1700000001))
	if a != b {
		t.Errorf("two builds of the same inputs: %s and %s", a, b)
	}
	if a == c {
		t.Errorf("builds at different times have the same digest %s", a)
	}
}

// TestRefuses checks the errors for bad input.
func TestRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*spec)
		args []string
		want string
	}{
		{name: "no CA bundle", edit: func(s *spec) { s.caFile = filepath.Join(dir, "missing") }, want: "apt-get install ca-certificates"},
		{name: "CA not PEM", edit: func(s *spec) { s.caFile = notPEM }, want: "holds no PEM certificate"},
		{name: "missing binary", edit: func(s *spec) { s.binaries[1] = filepath.Join(dir, "missing") }, want: "the linux/arm64 binary"},
		{name: "no binaries", args: []string{"-out", dir + "/x", "-created", "0"}, want: "usage"},
		{name: "bad platform", args: []string{"-out", dir + "/x", "-created", "0", "-binary", "amd64=x"}, want: "want os/arch"},
		{name: "bad created", args: []string{"-out", dir + "/x", "-created", "yesterday", "-binary", "linux/amd64=x"}, want: "seconds since the epoch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tc.args != nil {
				err = run(tc.args)
			} else {
				s := testSpec(t, 0)
				tc.edit(s)
				_, err = build(s)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestPodmanRun builds the real static lazydisk binary for linux/amd64, packs
// it as make image does and runs `lazydisk version` in it with podman (as
// root, runc, storage and configuration of its own under a temporary
// directory, no network).
func TestPodmanRun(t *testing.T) {
	switch {
	case os.Geteuid() != 0:
		t.Skip("podman run as root is needed to run lazydisk's image: run the tests as root (CI does)")
	case runtime.GOARCH != "amd64":
		t.Skipf("the test runs the linux/amd64 image; this machine is %s", runtime.GOARCH)
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman not found: apt-get install podman runc (.ci/run does) to run lazydisk's image")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not found: apt-get install runc (crun fails on these machines, see docs)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "lazydisk")
	gob := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../../cmd/lazydisk")
	gob.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := gob.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := testSpec(t, 1700000000)
	s.platforms, s.binaries = s.platforms[:1], []string{bin}
	s.caFile = defaultCA
	if _, err := os.Stat(defaultCA); err != nil {
		t.Skipf("no CA bundle at %s (apt-get install ca-certificates)", defaultCA)
	}
	idx, err := build(s)
	if err != nil {
		t.Fatal(err)
	}
	// podman names an image pulled from oci:DIR after DIR, which must then
	// be lowercase; t.TempDir's name is not.
	lay, err := os.MkdirTemp("", "lazydisk-image-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(lay) })
	if err := writeLayout(lay, "test", idx); err != nil {
		t.Fatal(err)
	}

	root := filepath.Join(dir, "podman")
	conf := filepath.Join(dir, "containers.conf")
	storage := filepath.Join(dir, "storage.conf")
	registries := filepath.Join(dir, "registries.conf")
	for p, b := range map[string]string{
		// No default ulimits (podman would raise RLIMIT_NOFILE), state and
		// events under root, not /run/libpod or the journal.
		conf: "[containers]\ndefault_ulimits = []\n[engine]\nevents_logger = \"file\"\nevents_logfile_path = \"" + root + "/events.log\"\ntmp_dir = \"" + root + "/tmp\"\n",
		// vfs: no overlay mounts to leave behind.
		storage:    "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + root + "/graph\"\nrunroot = \"" + root + "/run\"\n",
		registries: "",
	} {
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "CONTAINERS_CONF="+conf, "CONTAINERS_STORAGE_CONF="+storage, "CONTAINERS_REGISTRIES_CONF="+registries)
	pm := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, podman, append([]string{"--root", root + "/graph", "--runroot", root + "/run",
			"--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"}, args...)...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			err = errors.New(err.Error() + ": " + strings.TrimSpace(errb.String()))
		}
		return out.String(), err
	}
	name := "lazydisk-image-test-" + filepath.Base(dir)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := pm(ctx, "rm", "-f", "--all"); err != nil {
			t.Errorf("podman rm: %v", err)
		}
		if _, err := pm(ctx, "rmi", "-f", "--all"); err != nil {
			t.Errorf("podman rmi: %v", err)
		}
		unmountUnder(t, dir)
	})
	id, err := pm(ctx, "pull", "-q", "oci:"+lay+":test")
	if err != nil {
		t.Fatalf("podman pull: %v", err)
	}
	id = strings.TrimSpace(id)
	user, err := pm(ctx, "image", "inspect", "--format", "{{.Config.User}}", id)
	if err != nil || strings.TrimSpace(user) != "65532:65532" {
		t.Errorf("podman image inspect: user %q, %v; want 65532:65532", user, err)
	}
	out, err := pm(ctx, "run", "--rm", "--name", name, "--network", "none", id, "version")
	if err != nil {
		t.Fatalf("podman run IMAGE version: %v", err)
	}
	t.Logf("podman run IMAGE version: %s", out)
	if !strings.HasPrefix(out, "lazydisk ") || !strings.Contains(out, " linux/amd64") {
		t.Errorf("lazydisk version in the image printed %q, want \"lazydisk VERSION GO linux/amd64\"", out)
	}
	// As make image builds it: static (no interpreter) and stripped (no
	// symbol table).
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: it is not static", bin)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table: it is not stripped", bin)
	}
}

// unmountUnder detaches whatever podman left mounted under dir (the shm of a
// container that was not removed), so the temporary directory can go.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			if err := syscall.Unmount(f[4], syscall.MNT_DETACH); err != nil {
				t.Errorf("unmounting %s: %v", f[4], err)
			} else {
				t.Errorf("podman left %s mounted", f[4])
			}
		}
	}
}
