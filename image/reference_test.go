package image_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk/image"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		transport image.Transport
		registry  string // Docker only
		repo      string // Docker only
		ident     string // Docker only: tag or digest
		path      string
		tag       string
	}{
		{in: "docker://127.0.0.1:5000/x/y:tag", transport: image.Docker, registry: "127.0.0.1:5000", repo: "x/y", ident: "tag"},
		{in: "docker://reg.example.com/x@" + testDigest, transport: image.Docker, registry: "reg.example.com", repo: "x", ident: testDigest},
		{in: "docker://ubuntu", transport: image.Docker, registry: "index.docker.io", repo: "library/ubuntu", ident: "latest"},
		{in: "ubuntu", transport: image.Docker, registry: "index.docker.io", repo: "library/ubuntu", ident: "latest"},
		{in: "ubuntu:22.04", transport: image.Docker, registry: "index.docker.io", repo: "library/ubuntu", ident: "22.04"},
		{in: "quay.io/containerdisks/fedora:40", transport: image.Docker, registry: "quay.io", repo: "containerdisks/fedora", ident: "40"},
		{in: "localhost:5000/x", transport: image.Docker, registry: "localhost:5000", repo: "x", ident: "latest"},
		{in: "[::1]:5000/x:y", transport: image.Docker, registry: "[::1]:5000", repo: "x", ident: "y"},
		{in: "docker://[::1]:5000/x@" + testDigest, transport: image.Docker, registry: "[::1]:5000", repo: "x", ident: testDigest},
		{in: "docker:24-dind", transport: image.Docker, registry: "index.docker.io", repo: "library/docker", ident: "24-dind"},
		{in: "docker://oci:v1", transport: image.Docker, registry: "index.docker.io", repo: "library/oci", ident: "v1"},
		{in: "oci:/tmp/a:latest", transport: image.OCI, path: "/tmp/a", tag: "latest"},
		{in: "oci:/tmp/a", transport: image.OCI, path: "/tmp/a"},
		{in: "oci:relative/dir", transport: image.OCI, path: "relative/dir"},
		{in: "oci:/a:b/c", transport: image.OCI, path: "/a:b/c"},
		{in: "oci:/a:b:v1.2", transport: image.OCI, path: "/a:b", tag: "v1.2"},
		{in: "docker-archive:f.tar", transport: image.DockerArchive, path: "f.tar"},
		{in: "docker-archive:f.tar:repo/x:tag", transport: image.DockerArchive, path: "f.tar", tag: "repo/x:tag"},
		{in: "docker-archive:/d/f.tar:localhost:5000/x:tag", transport: image.DockerArchive, path: "/d/f.tar", tag: "localhost:5000/x:tag"},
		{in: "disk:./x.qcow2", transport: image.Disk, path: "./x.qcow2"},
		{in: "disk:/var/lib/a b.img", transport: image.Disk, path: "/var/lib/a b.img"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			r, err := image.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if r.Transport != tt.transport || r.Path != tt.path || r.Tag != tt.tag {
				t.Errorf("Parse(%q) = {%s %q %q}, want {%s %q %q}", tt.in, r.Transport, r.Path, r.Tag, tt.transport, tt.path, tt.tag)
			}
			if tt.transport == image.Docker {
				if r.Name == nil {
					t.Fatalf("Parse(%q).Name is nil", tt.in)
				}
				ctx := r.Name.Context()
				if ctx.RegistryStr() != tt.registry || ctx.RepositoryStr() != tt.repo || r.Name.Identifier() != tt.ident {
					t.Errorf("Parse(%q).Name = %s %s %s, want %s %s %s", tt.in,
						ctx.RegistryStr(), ctx.RepositoryStr(), r.Name.Identifier(), tt.registry, tt.repo, tt.ident)
				}
			} else if r.Name != nil {
				t.Errorf("Parse(%q).Name = %v, want nil", tt.in, r.Name)
			}

			again, err := image.Parse(r.String())
			if err != nil {
				t.Fatalf("Parse(String() = %q): %v", r.String(), err)
			}
			if again.String() != r.String() {
				t.Errorf("String round trip: %q, then %q", r.String(), again.String())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    error
		wantMsg string
	}{
		{in: "", want: image.ErrInvalidReference, wantMsg: "empty"},
		{in: "docker://", want: image.ErrInvalidReference, wantMsg: "names no image"},
		{in: "docker://UPPER/x", want: image.ErrInvalidReference},
		{in: "ubuntu@sha256:short", want: image.ErrInvalidReference},
		{in: "oci:", want: image.ErrInvalidReference, wantMsg: "names no directory"},
		{in: "oci::v1", want: image.ErrInvalidReference, wantMsg: "names no directory"},
		{in: "oci:/tmp/a:", want: image.ErrInvalidReference, wantMsg: "empty tag"},
		{in: "docker-archive:", want: image.ErrInvalidReference, wantMsg: "names no file"},
		{in: "docker-archive:f.tar:", want: image.ErrInvalidReference, wantMsg: "REPO:TAG"},
		{in: "docker-archive:f.tar:Bad Ref", want: image.ErrInvalidReference, wantMsg: "REPO:TAG"},
		{in: "docker-archive:f.tar:x@" + testDigest, want: image.ErrInvalidReference, wantMsg: "REPO:TAG"},
		{in: "disk:", want: image.ErrInvalidReference, wantMsg: "names no file"},
		{in: "foo:bar/baz", want: image.ErrInvalidReference, wantMsg: `unknown transport "foo"`},
		{in: "https://reg.example.com/x:y", want: image.ErrInvalidReference, wantMsg: `unknown transport "https"`},
		{in: "oci-archive:x.tar", want: image.ErrUnsupported, wantMsg: "oci-archive: transport is not supported"},
		{in: "containers-storage:x", want: image.ErrUnsupported},
		{in: "foo://bar", want: image.ErrInvalidReference, wantMsg: `unknown transport "foo"`},
		{in: "reg.example.com://x/y", want: image.ErrInvalidReference, wantMsg: `unknown transport "reg.example.com"`},
		{in: "./fedora.qcow2", want: image.ErrInvalidReference, wantMsg: "local path"},
		{in: "/var/lib/fedora.qcow2", want: image.ErrInvalidReference, wantMsg: "local path"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			r, err := image.Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) = %+v, %v; want error %v", tt.in, r, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Parse(%q) error %q does not mention %q", tt.in, err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse(%q) error is not one line: %q", tt.in, err)
			}
		})
	}
}

func TestIsAttachedTag(t *testing.T) {
	t.Parallel()
	hex := strings.Repeat("0a", 32)
	for tag, want := range map[string]bool{
		"sha256-" + hex:                  true,
		"sha256-" + hex + ".sig":         true,
		"sha256-" + hex + ".att":         true,
		"sha256-" + hex + ".sbom":        true,
		"sha256-" + hex + ".other":       false,
		"sha256-" + hex[:62]:             false,
		"sha256-" + strings.ToUpper(hex): false,
		"latest":                         false,
		"":                               false,
	} {
		if got := image.IsAttachedTag(tag); got != want {
			t.Errorf("IsAttachedTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

// TestParseRefusesCredentials: a password inside a reference is refused,
// and the error does not repeat it; digests and local paths with "@" are no
// credentials.
func TestParseRefusesCredentials(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"user:hunter2@registry.example.com/vm/x:1",
		"docker://user:hunter2@registry.example.com/vm/x:1",
		"user:hun/ter2@registry.example.com/vm/x:1",
		"hunter2@127.0.0.1:5000/vm/x",
	} {
		_, err := image.Parse(s)
		if !errors.Is(err, image.ErrInvalidReference) || !strings.Contains(err.Error(), "must not hold credentials") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q): %v; want a refusal that does not repeat the password", s, err)
		}
	}
	for _, s := range []string{
		"registry.example.com/vm/x@sha256:" + strings.Repeat("0", 64),
		"docker://registry.example.com/vm/x@sha256:" + strings.Repeat("0", 64),
		"oci:/tmp/a@b/layout:1",
		"disk:/tmp/a@b/disk.img",
	} {
		if _, err := image.Parse(s); err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
}
