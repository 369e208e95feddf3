package image_test

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk/image"
)

// localFixture makes, in a new directory, a disk file, a tar, an OCI layout
// (only its oci-layout file: ParseSource looks no further) and a plain
// directory.
func localFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fedora.qcow2"), []byte("QFI\xfb not really a qcow2"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "saved.tar"))
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2})
	tw.Write([]byte("[]"))
	tw.Close()
	f.Close()
	for _, d := range []string{"layout", "plain"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "layout", "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestParseSourceAndDestination(t *testing.T) {
	t.Parallel()
	dir := localFixture(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		in        string
		dest      bool
		transport image.Transport // when the reference is accepted
		path      string
		want      error  // when it is refused
		wantMsg   string // in the refusal: the reference meant
	}{
		{in: p("fedora.qcow2"), transport: image.Disk, path: p("fedora.qcow2")},
		{in: p("saved.tar"), transport: image.DockerArchive, path: p("saved.tar")},
		{in: p("layout"), transport: image.OCI, path: p("layout")},
		{in: p("layout"), dest: true, transport: image.OCI, path: p("layout")},
		{in: p("layout") + ":v1", transport: image.OCI, path: p("layout")},
		{in: p("layout") + ":v2", dest: true, transport: image.OCI, path: p("layout")},
		{in: p("plain"), want: image.ErrInvalidReference, wantMsg: "not an OCI layout"},
		{in: p("plain"), dest: true, want: image.ErrInvalidReference, wantMsg: "write oci:" + p("plain")},
		{in: p("missing.qcow2"), want: image.ErrNotFound, wantMsg: "no such file or directory"},
		{in: p("new"), dest: true, want: image.ErrNotFound, wantMsg: "write oci:" + p("new")},
		{in: p("fedora.qcow2"), dest: true, want: image.ErrUnsupported, wantMsg: "existing file"},
		{in: "/dev/null", want: image.ErrInvalidReference, wantMsg: "write disk:/dev/null"},
		{in: "foo://bar", want: image.ErrInvalidReference, wantMsg: `unknown transport "foo"`},
		{in: "foo://bar", dest: true, want: image.ErrInvalidReference, wantMsg: `unknown transport "foo"`},
		// Explicit transports and registry names are not looked up on disk.
		{in: "disk:" + p("missing.qcow2"), transport: image.Disk, path: p("missing.qcow2")},
		{in: "oci:" + p("plain"), dest: true, transport: image.OCI, path: p("plain")},
		{in: "quay.io/containerdisks/fedora:41", transport: image.Docker},
		{in: "localhost:5000/vm/fedora", dest: true, transport: image.Docker},
		{in: "ubuntu", transport: image.Docker},
		{in: "kubevirt/fedora-cloud-container-disk-demo", transport: image.Docker},
	}
	for _, tt := range tests {
		t.Run(tt.in+map[bool]string{true: " as destination"}[tt.dest], func(t *testing.T) {
			t.Parallel()
			parse := image.ParseSource
			if tt.dest {
				parse = image.ParseDestination
			}
			r, err := parse(tt.in)
			if tt.want != nil {
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("= %+v, %v; want %v mentioning %q", r, err, tt.want, tt.wantMsg)
				}
				return
			}
			if err != nil || r.Transport != tt.transport || r.Path != tt.path {
				t.Fatalf("= {%s %q}, %v; want {%s %q}", r.Transport, r.Path, err, tt.transport, tt.path)
			}
		})
	}
}

// TestParseSourceRelative checks names without a path separator: a file or
// directory of that name wins over Docker Hub, which they would otherwise
// name.
func TestParseSourceRelative(t *testing.T) {
	t.Chdir(localFixture(t))
	for in, want := range map[string]image.Transport{
		"fedora.qcow2": image.Disk, "./fedora.qcow2": image.Disk, "saved.tar": image.DockerArchive,
		"layout": image.OCI, "ubuntu": image.Docker,
	} {
		if r, err := image.ParseSource(in); err != nil || r.Transport != want {
			t.Errorf("ParseSource(%q) = %s, %v; want %s", in, r.Transport, err, want)
		}
	}
	if _, err := image.ParseSource("other.qcow2"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("ParseSource(other.qcow2), which does not exist: %v; want ErrNotFound", err)
	}
}
