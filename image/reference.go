package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport is the kind of store a Reference points into.
type Transport string

// The transports Parse understands; each is also the prefix of its syntax.
const (
	// Docker is a registry: "docker://HOST/REPO:TAG", "docker://HOST/REPO@DIGEST",
	// or the same without "docker://".
	Docker Transport = "docker"
	// OCI is an OCI image layout directory: "oci:DIR" or "oci:DIR:TAG".
	OCI Transport = "oci"
	// DockerArchive is a `docker save` tarball: "docker-archive:FILE" or
	// "docker-archive:FILE:REF". It can only be read.
	DockerArchive Transport = "docker-archive"
	// Disk is a local qcow2 or raw disk file packed as a KubeVirt
	// containerDisk: "disk:PATH". It can only be read.
	Disk Transport = "disk"
)

// AnnotationRefName is the annotation on an index.json entry of an OCI layout
// that holds the entry's tag (image-spec annotations.md).
const AnnotationRefName = "org.opencontainers.image.ref.name"

// IsAttachedTag reports whether tag names an artifact attached to an image
// rather than an image: "sha256-<64 hex>" (the referrers tag schema of the
// OCI distribution spec, an index of the referrers of that digest) or that
// with ".sig", ".att" or ".sbom" (cosign's signature, attestation and SBOM
// tags). Signing an oci: layout adds such tags to its index.json, and an
// untagged oci:DIR reference skips them when it picks the layout's image.
func IsAttachedTag(tag string) bool {
	rest, ok := strings.CutPrefix(tag, "sha256-")
	if !ok || len(rest) < 64 {
		return false
	}
	hex, suffix := rest[:64], rest[64:]
	for _, c := range hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	switch suffix {
	case "", ".sig", ".att", ".sbom":
		return true
	}
	return false
}

// Reference is a parsed image reference.
type Reference struct {
	Transport Transport
	// Name is the registry reference; set for Docker only.
	Name name.Reference
	// Path is the layout directory (OCI), the archive (DockerArchive) or the
	// disk file (Disk).
	Path string
	// Tag is the ref.name of the image in an OCI layout, or the REF naming
	// one image of a docker-archive; empty when the reference has none.
	Tag string
}

// Parse parses s without touching the filesystem or the network.
//
// A string that starts with "oci:", "docker-archive:" or "disk:" is of that
// transport; to name a Docker Hub image called oci, disk or docker-archive,
// write it as "docker://oci:TAG". Another "SCHEME://" is an unknown
// transport, and a string that starts like a path ("/", "./", "../", "~/")
// is refused: Parse does not look at the filesystem (ParseSource and
// ParseDestination do). Anything else is a registry reference, with or
// without "docker://".
//
// In "oci:DIR:TAG" the tag is what follows the last ':' when that contains no
// '/', so "oci:/a:b/c" is the directory "/a:b/c" with no tag, and a directory
// whose name contains ':' needs an explicit tag ("oci:/a:b:latest").
// In "docker-archive:FILE:REF" the file is what precedes the first ':', as in
// skopeo, so the file name cannot contain ':'.
func Parse(s string) (Reference, error) {
	if s == "" {
		return Reference{}, fmt.Errorf("empty image reference: %w", ErrInvalidReference)
	}
	if redacted, ok := withoutCredentials(s); ok {
		return Reference{}, fmt.Errorf("%s: an image reference must not hold credentials (USER:PASSWORD@HOST); "+
			"use lazydisk login, --creds or --authfile (%w)", redacted, ErrInvalidReference)
	}
	if rest, ok := strings.CutPrefix(s, "docker://"); ok {
		return parseDocker(s, rest)
	}
	prefix, rest, hasColon := strings.Cut(s, ":")
	if hasColon {
		switch Transport(prefix) {
		case OCI:
			return parseOCI(s, rest)
		case DockerArchive:
			return parseDockerArchive(s, rest)
		case Disk:
			if rest == "" {
				return Reference{}, fmt.Errorf("%q names no file; write disk:PATH: %w", s, ErrInvalidReference)
			}
			return Reference{Transport: Disk, Path: rest}, nil
		}
		switch prefix {
		case "oci-archive", "docker-daemon", "containers-storage", "dir", "sif", "ostree":
			return Reference{}, fmt.Errorf("%q: the %s: transport is not supported; use docker://, oci:, docker-archive: or disk: (%w)",
				s, prefix, ErrUnsupported)
		}
	}
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		// go-containerregistry would read "foo://bar" as a registry named
		// "foo:" rather than refuse it.
		return Reference{}, fmt.Errorf("%q: unknown transport %q; use docker://, oci:, docker-archive: or disk: (%w)",
			s, scheme, ErrInvalidReference)
	}
	if looksLikePath(s) {
		return Reference{}, fmt.Errorf("%q is a local path, not a registry reference; write disk:PATH, oci:DIR or docker-archive:FILE, "+
			"or docker://HOST/REPO:TAG for a registry (%w)", s, ErrInvalidReference)
	}
	ref, err := parseDocker(s, s)
	if err != nil && hasColon && !strings.ContainsAny(prefix, "./") {
		return Reference{}, fmt.Errorf("%q: unknown transport %q; use docker://, oci:, docker-archive: or disk: (%w)",
			s, prefix, ErrInvalidReference)
	}
	return ref, err
}

// withoutCredentials reports whether s is a registry reference with user
// information (USER:PASSWORD@HOST/REPO), and returns it with that part
// replaced by "***", so that no message repeats a password. A digest
// (REPO@sha256:...) is no user information: what follows its "@" has no "/".
func withoutCredentials(s string) (string, bool) {
	for _, local := range []Transport{OCI, DockerArchive, Disk} {
		if strings.HasPrefix(s, string(local)+":") {
			return "", false
		}
	}
	name := strings.TrimPrefix(s, "docker://")
	at := strings.IndexByte(name, '@')
	if at < 0 || !strings.Contains(name[at+1:], "/") {
		return "", false
	}
	return strings.TrimSuffix(s, name) + "***@" + name[at+1:], true
}

func parseDocker(s, ref string) (Reference, error) {
	if ref == "" {
		return Reference{}, fmt.Errorf("%q names no image; write docker://HOST/REPO:TAG: %w", s, ErrInvalidReference)
	}
	n, err := name.ParseReference(ref)
	if err != nil {
		return Reference{}, fmt.Errorf("%w %q: %w", ErrInvalidReference, s, err)
	}
	return Reference{Transport: Docker, Name: n}, nil
}

func parseOCI(s, rest string) (Reference, error) {
	dir, tag := rest, ""
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		dir, tag = rest[:i], rest[i+1:]
		if tag == "" {
			return Reference{}, fmt.Errorf("%q has an empty tag; write oci:DIR or oci:DIR:TAG: %w", s, ErrInvalidReference)
		}
	}
	if dir == "" {
		return Reference{}, fmt.Errorf("%q names no directory; write oci:DIR or oci:DIR:TAG: %w", s, ErrInvalidReference)
	}
	return Reference{Transport: OCI, Path: dir, Tag: tag}, nil
}

func parseDockerArchive(s, rest string) (Reference, error) {
	file, ref, hasRef := strings.Cut(rest, ":")
	if file == "" {
		return Reference{}, fmt.Errorf("%q names no file; write docker-archive:FILE or docker-archive:FILE:REF: %w", s, ErrInvalidReference)
	}
	if hasRef {
		if _, err := name.NewTag(ref); err != nil || ref == "" {
			return Reference{}, fmt.Errorf("%q: %q is not a REPO:TAG reference (%w)", s, ref, ErrInvalidReference)
		}
	}
	return Reference{Transport: DockerArchive, Path: file, Tag: ref}, nil
}

// String returns r in the syntax Parse reads. A registry reference always
// gets its "docker://" prefix.
func (r Reference) String() string {
	switch r.Transport {
	case Docker:
		if r.Name == nil {
			return "docker://"
		}
		return "docker://" + r.Name.String()
	case OCI, DockerArchive:
		if r.Tag == "" {
			return string(r.Transport) + ":" + r.Path
		}
		return string(r.Transport) + ":" + r.Path + ":" + r.Tag
	case Disk:
		return "disk:" + r.Path
	}
	return ""
}
