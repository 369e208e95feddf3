package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ParseSource parses a reference a user typed for an image to read, as
// Parse does, except that a string with no transport and no registry host
// that names an existing local path is taken for what it is, as a user who
// typed it means:
//
//   - a directory holding an oci-layout file is oci:DIR, and DIR:TAG is
//     oci:DIR:TAG;
//   - a tar archive (a `docker save` output) is docker-archive:FILE;
//   - any other regular file is disk:FILE, a qcow2 or raw disk.
//
// A directory that is not an OCI layout, another kind of file, and a string
// that looks like a path ("./x", "/x", "x.qcow2", "x.tar") but names nothing
// are refused, naming the reference the user probably meant. Registry names
// stay unambiguous: "docker://..." and names whose first component is a
// registry host ("quay.io/x", "localhost:5000/x") are never taken for paths,
// and a name such as "ubuntu" is a Docker Hub image unless a file or
// directory of that name exists.
func ParseSource(s string) (Reference, error) { return parseLocal(s, false) }

// ParseDestination is ParseSource for a reference to write: an existing
// directory holding an oci-layout file is oci:DIR. An existing file, a
// directory that is not an OCI layout and a path that does not exist are
// refused with the reference to write instead (oci:PATH), as lazydisk writes
// only registries and OCI layouts.
func ParseDestination(s string) (Reference, error) { return parseLocal(s, true) }

// pathSuffixes are the file name endings that make a string that names
// nothing a path rather than a Docker Hub image.
var pathSuffixes = []string{".qcow2", ".img", ".raw", ".iso", ".vmdk", ".vhd", ".vhdx", ".tar", ".tgz", ".tar.gz"}

func parseLocal(s string, dest bool) (Reference, error) {
	if s == "" || explicitTransport(s) || hasRegistryHost(s) {
		return Parse(s)
	}
	// DIR:TAG, an image in an existing OCI layout.
	if i := strings.LastIndex(s, ":"); i > 0 && !strings.Contains(s[i+1:], "/") {
		if _, err := os.Stat(filepath.Join(s[:i], "oci-layout")); err == nil {
			return parseOCI(s, s)
		}
	}
	fi, err := os.Stat(s)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return Reference{}, fmt.Errorf("%q: %w", s, err)
		}
		lower := strings.ToLower(s)
		pathLike := looksLikePath(s)
		for _, suf := range pathSuffixes {
			pathLike = pathLike || strings.HasSuffix(lower, suf)
		}
		if !pathLike {
			return Parse(s)
		}
		if dest {
			return Reference{}, fmt.Errorf("%q does not exist; write oci:%s to create an OCI layout there, or docker://HOST/REPO:TAG for a registry: %w",
				s, s, ErrNotFound)
		}
		return Reference{}, fmt.Errorf("%q: no such file or directory; for a registry image write docker://HOST/REPO:TAG: %w", s, ErrNotFound)
	}
	switch {
	case fi.IsDir():
		if _, err := os.Stat(filepath.Join(s, "oci-layout")); err == nil {
			return Reference{Transport: OCI, Path: s}, nil
		}
		if dest {
			return Reference{}, fmt.Errorf("%q is a directory but not an OCI layout (no oci-layout file); write oci:%s to make it one: %w",
				s, s, ErrInvalidReference)
		}
		return Reference{}, fmt.Errorf("%q is a directory but not an OCI layout (no oci-layout file): %w", s, ErrInvalidReference)
	case dest:
		return Reference{}, fmt.Errorf("%q is an existing file, and lazydisk writes only OCI layouts and registries; write oci:DIR or docker://HOST/REPO:TAG: %w",
			s, ErrUnsupported)
	case !fi.Mode().IsRegular():
		return Reference{}, fmt.Errorf("%q is not a regular file or a directory; write disk:%s for a disk file: %w", s, s, ErrInvalidReference)
	}
	isTar, err := isTarFile(s)
	if err != nil {
		return Reference{}, fmt.Errorf("%q: %w", s, err)
	}
	if isTar {
		return Reference{Transport: DockerArchive, Path: s}, nil
	}
	return Reference{Transport: Disk, Path: s}, nil
}

// explicitTransport reports whether s names its transport: "docker://",
// "SCHEME://", or one of the "TRANSPORT:" prefixes Parse knows.
func explicitTransport(s string) bool {
	if strings.Contains(s, "://") {
		return true
	}
	prefix, _, ok := strings.Cut(s, ":")
	if !ok {
		return false
	}
	switch Transport(prefix) {
	case OCI, DockerArchive, Disk:
		return true
	}
	switch prefix {
	case "oci-archive", "docker-daemon", "containers-storage", "dir", "sif", "ostree":
		return true
	}
	return false
}

// hasRegistryHost reports whether s starts with a registry host, as Docker
// tells one from a Docker Hub repository: the component before the first '/'
// contains '.' or ':' or is "localhost" (and is not "." or "..").
func hasRegistryHost(s string) bool {
	host, _, ok := strings.Cut(s, "/")
	if !ok || host == "." || host == ".." || host == "" {
		return false
	}
	return host == "localhost" || strings.ContainsAny(host, ".:")
}

// looksLikePath reports whether s starts as only a path can.
func looksLikePath(s string) bool {
	return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		strings.HasPrefix(s, "~/") || s == "." || s == ".." || s == "~"
}

// isTarFile reports whether the file at path starts with a tar header
// (POSIX ustar or GNU magic at offset 257).
func isTarFile(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var hdr [512]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	return bytes.HasPrefix(hdr[257:], []byte("ustar")), nil
}
