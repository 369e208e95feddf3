package image

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Limits on what an image may declare. lazydisk refuses a manifest or an
// index past them, with an error matching ErrLimit, before it reads
// anything the manifest lists, so that a hostile image cannot make a command
// run for minutes or hold much memory. Every image a container runtime can
// run is well within them.
const (
	// MaxLayers bounds the layers of one manifest: 500. Docker and
	// containerd's overlay snapshotters stop at about 125; a containerDisk
	// has one.
	MaxLayers = 500
	// MaxIndexManifests bounds the entries of one index (platforms,
	// attestations, nested indexes): 256.
	MaxIndexManifests = 256
	// MaxIndexDepth bounds how deep indexes nest: 4.
	MaxIndexDepth = 4
	// MaxAnnotationBytes bounds the annotations of one manifest, index or
	// descriptor, keys and values together: 64 KiB. A TOC digest
	// annotation is about 90 bytes.
	MaxAnnotationBytes = 64 << 10
)

// ErrLimit means an image declares more than lazydisk accepts: more
// layers, index entries, index nesting or annotation bytes than the limits
// above. (It lives here rather than in errors.go, with the limits it is
// about.)
var ErrLimit = errors.New("image exceeds a limit")

// CheckManifest returns an error matching ErrLimit if m declares more than
// the limits allow: more than MaxLayers layers, or annotations of more than
// MaxAnnotationBytes on it or one of its descriptors.
func CheckManifest(m *v1.Manifest) error {
	if n := len(m.Layers); n > MaxLayers {
		return fmt.Errorf("%w: the manifest lists %d layers, more than the %d lazydisk accepts (image.MaxLayers)", ErrLimit, n, MaxLayers)
	}
	if err := checkAnnotations("the manifest", m.Annotations); err != nil {
		return err
	}
	if err := checkAnnotations("the config descriptor", m.Config.Annotations); err != nil {
		return err
	}
	for i, d := range m.Layers {
		if err := checkAnnotations(fmt.Sprintf("layer %d", i), d.Annotations); err != nil {
			return err
		}
	}
	return nil
}

// CheckIndex returns an error matching ErrLimit if im declares more than
// the limits allow: more than MaxIndexManifests entries, or annotations of
// more than MaxAnnotationBytes on it or one of its entries.
func CheckIndex(im *v1.IndexManifest) error {
	if n := len(im.Manifests); n > MaxIndexManifests {
		return fmt.Errorf("%w: the index lists %d manifests, more than the %d lazydisk accepts (image.MaxIndexManifests)", ErrLimit, n, MaxIndexManifests)
	}
	if err := checkAnnotations("the index", im.Annotations); err != nil {
		return err
	}
	for i, d := range im.Manifests {
		if err := checkAnnotations(fmt.Sprintf("index entry %d", i), d.Annotations); err != nil {
			return err
		}
	}
	return nil
}

func checkAnnotations(what string, a map[string]string) error {
	n := 0
	for k, v := range a {
		n += len(k) + len(v)
	}
	if n > MaxAnnotationBytes {
		return fmt.Errorf("%w: the annotations of %s take %d bytes, more than the %d lazydisk accepts (image.MaxAnnotationBytes)", ErrLimit, what, n, MaxAnnotationBytes)
	}
	return nil
}
