package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Artifact is what a reference points at: exactly one of Image or Index is set.
type Artifact struct {
	Image v1.Image
	Index v1.ImageIndex
}

func (a Artifact) check() error {
	if (a.Image == nil) == (a.Index == nil) {
		return errors.New("an artifact needs exactly one of Image or Index")
	}
	return nil
}

// Read resolves r to the image or index it names. Registry and layout
// content is fetched lazily by the returned objects; ctx bounds the requests
// Read itself makes and, for registries, those the returned objects make later.
func Read(ctx context.Context, r Reference, opts ...Option) (Artifact, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return Artifact{}, err
	}
	if err := ctx.Err(); err != nil {
		return Artifact{}, err
	}
	switch r.Transport {
	case Docker:
		return readRegistry(ctx, r, o)
	case OCI:
		return readLayout(r)
	case DockerArchive:
		return readArchive(r)
	case Disk:
		img, err := newContainerDisk(r, o)
		if err != nil {
			return Artifact{}, err
		}
		return Artifact{Image: img}, nil
	}
	return Artifact{}, fmt.Errorf("reading %q: unknown transport %q: %w", r, r.Transport, ErrInvalidReference)
}

// Write stores a at r: blobs first, then the manifest or index that names
// them, so a failed Write leaves no tag pointing at missing content.
//
// For registries it pushes with go-containerregistry, which asks each layer
// for its digest before uploading it: a DigestPending layer is read twice.
//
// For oci:DIR, a DIR that does not exist is built in a temporary directory
// beside it (its parents are created) and renamed into place at the end. An
// existing layout gets the blobs first, then a new index.json renamed over the
// old one; the entry with the same tag is replaced and the others kept (an
// untagged write replaces the untagged entry). An existing empty directory is
// filled and emptied again on failure; any other existing DIR is refused.
// Layers that implement DigestPending are streamed before their digest is
// asked for, so their content is read once.
func Write(ctx context.Context, r Reference, a Artifact, opts ...Option) error {
	o, err := makeOptions(opts)
	if err != nil {
		return err
	}
	if err := a.check(); err != nil {
		return fmt.Errorf("writing %s: %w", r, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.CheckWritable(); err != nil {
		return err
	}
	if r.Transport == Docker {
		return writeRegistry(ctx, r, a, o)
	}
	return writeLayout(ctx, r, a, o)
}

// CheckWritable reports whether r can be a destination, so that callers can
// refuse a bad destination before doing any work.
func (r Reference) CheckWritable() error {
	switch r.Transport {
	case Docker, OCI:
		return nil
	case DockerArchive, Disk:
		return fmt.Errorf("writing %s: %s: is only supported as a source; write to docker:// or oci: instead: %w", r, r.Transport, ErrUnsupported)
	}
	return fmt.Errorf("writing %q: unknown transport %q: %w", r, r.Transport, ErrInvalidReference)
}

// statSource checks that the file a source reference names exists and is a
// regular file.
func statSource(r Reference) (fs.FileInfo, error) {
	fi, err := os.Stat(r.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: %w", r, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", r)
	}
	return fi, nil
}

func readArchive(r Reference) (Artifact, error) {
	if _, err := statSource(r); err != nil {
		return Artifact{}, err
	}
	var tag *name.Tag
	if r.Tag != "" {
		t, err := name.NewTag(r.Tag)
		if err != nil {
			return Artifact{}, fmt.Errorf("%s: %q is not a REPO:TAG reference: %w", r, r.Tag, ErrInvalidReference)
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(r.Path, tag)
	if err == nil {
		return Artifact{Image: img}, nil
	}
	// Say which images the archive does hold when the choice was the problem.
	m, merr := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(r.Path) })
	if merr != nil {
		return Artifact{}, fmt.Errorf("reading %s: %w", r, err)
	}
	var tags []string
	for _, d := range m {
		tags = append(tags, d.RepoTags...)
	}
	isTag := func(s string) bool {
		t, err := name.NewTag(s)
		return err == nil && t.Name() == tag.Name()
	}
	switch {
	case tag != nil && !slices.ContainsFunc(tags, isTag):
		return Artifact{}, fmt.Errorf("%s: the archive has no image %s (it has: %s): %w", r, r.Tag, listOrNone(tags), ErrNotFound)
	case tag == nil && len(m) != 1:
		return Artifact{}, fmt.Errorf("%s holds %d images; name one as docker-archive:%s:REF (it has: %s)", r, len(m), r.Path, listOrNone(tags))
	}
	return Artifact{}, fmt.Errorf("reading %s: %w", r, err)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
