package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestLocalPaths checks that a source or destination naming an existing
// local path is taken for what it is, and that one naming nothing, or the
// wrong kind of thing, is refused with the reference meant, never sent to
// Docker Hub.
func TestLocalPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.qcow2", 300<<10, 21)
	archive := filepath.Join(dir, "saved.tar")
	tag, _ := name.NewTag("example.com/vm/disk:1")
	if err := tarball.WriteToFile(archive, tag, containerDisk(t, diskPath, "linux/amd64")); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "layout")
	if err := os.Mkdir(filepath.Join(dir, "plain"), 0o755); err != nil {
		t.Fatal(err)
	}

	// A disk file: disk:, into a new layout, then the layout as it is.
	mustCLI(t, "convert", "--estargz", diskPath, "oci:"+layout)
	if out := mustCLI(t, "toc", layout); !strings.Contains(out, "disk/vm.qcow2") {
		t.Errorf("toc %s printed %q", layout, out)
	}
	// A tar from docker save: docker-archive:, into the existing layout.
	mustCLI(t, "convert", "--zstd-chunked", archive, layout)
	if out := mustCLI(t, "read", layout, "--range", "0:4"); len(out) != 4 {
		t.Errorf("read %s printed %d bytes", layout, len(out))
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"convert", "--estargz", filepath.Join(dir, "missing.qcow2"), "oci:" + layout}, "no such file or directory"},
		{[]string{"convert", "--estargz", diskPath, filepath.Join(dir, "new")}, "write oci:" + filepath.Join(dir, "new")},
		{[]string{"convert", "--estargz", diskPath, filepath.Join(dir, "plain")}, "write oci:" + filepath.Join(dir, "plain") + " to make it one"},
		{[]string{"convert", "--estargz", diskPath, archive}, "existing file"},
		{[]string{"toc", filepath.Join(dir, "plain")}, "not an OCI layout"},
		{[]string{"toc", "foo://bar"}, `unknown transport "foo"`},
		{[]string{"read", "./nothing-here.qcow2", "--range", "0:1"}, "no such file or directory"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			_, stderr, code := cli(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "docker.io") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
}
