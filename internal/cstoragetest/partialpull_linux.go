//go:build linux

package cstoragetest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/chunked"
	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"
)

// PartialPull runs containers/storage's own partial-pull code over blob: an
// overlay store with enable_partial_images=true in a new temporary
// directory, chunked.NewDiffer with a fetcher that serves GetBlobAt from
// blob, store.PrepareStagedLayer, then CleanupStagedLayer and
// store.Shutdown(true), which unmounts what the overlay driver mounted. It
// returns what c/storage computed. When c/storage declines with a fallback
// error, the Result has Fallback set and the error is returned too.
//
// It calls Skip first. It fails with an error, after unmounting it, if
// anything is still mounted below the store when it is done.
func PartialPull(t testing.TB, blob io.ReaderAt, size int64, blobDigest digest.Digest, annotations map[string]string) (res Result, err error) {
	t.Helper()
	Skip(t)
	// Not t.TempDir(): the test's name is part of that path, and a comma
	// in it breaks the overlay mount options.
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, cleanUp(dir)) }()
	store, err := storage.GetStore(types.StoreOptions{
		RunRoot:         filepath.Join(dir, "run"),
		GraphRoot:       filepath.Join(dir, "graph"),
		GraphDriverName: "overlay",
		PullOptions:     map[string]string{"enable_partial_images": "true"},
	})
	if err != nil {
		return Result{}, fmt.Errorf("creating an overlay store: %w", err)
	}
	defer func() {
		if _, serr := store.Shutdown(true); serr != nil {
			err = errors.Join(err, fmt.Errorf("shutting down the store: %w", serr))
		}
	}()

	differ, err := chunked.NewDiffer(t.Context(), store, blobDigest, size, annotations, readerAtSource{blob, size})
	if err != nil {
		return Result{Fallback: isFallback(err)}, fmt.Errorf("chunked.NewDiffer: %w", err)
	}
	defer differ.Close()
	out, err := store.PrepareStagedLayer(&graphdriver.ApplyDiffWithDifferOpts{}, differ)
	if err != nil {
		if out != nil && out.TarSplit != nil {
			out.TarSplit.Close()
		}
		return Result{Fallback: isFallback(err)}, fmt.Errorf("store.PrepareStagedLayer: %w", err)
	}
	res = Result{TOCDigest: out.TOCDigest, UncompressedDigest: out.UncompressedDigest, Size: out.Size}
	if err := store.CleanupStagedLayer(out); err != nil {
		return res, fmt.Errorf("store.CleanupStagedLayer: %w", err)
	}
	return res, nil
}

// tempPrefix starts the names of the temporary directories of stores.
const tempPrefix = "cstoragetest-"

// cleanUp removes a store's directory once the store is shut down. Should
// anything still be mounted below it, it unmounts that and reports it.
func cleanUp(dir string) error {
	left, err := mountsBelow(dir)
	if err != nil {
		return err
	}
	for _, m := range left {
		if uerr := unix.Unmount(m, unix.MNT_DETACH); uerr != nil {
			return fmt.Errorf("%s is still mounted after store.Shutdown, and unmounting it failed: %w", m, uerr)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("still mounted after store.Shutdown (now unmounted): %q", left)
	}
	return nil
}

// mountsBelow lists the mount points below dir in /proc/self/mountinfo.
func mountsBelow(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	prefix := filepath.Clean(dir) + "/"
	var out []string
	for line := range strings.Lines(string(b)) {
		// The fifth field is the mount point, with octal escapes that
		// our paths do not need.
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			out = append(out, f[4])
		}
	}
	// Innermost first, so that they can be unmounted in order.
	slices.Reverse(out)
	return out, nil
}

func isFallback(err error) bool {
	_, ok := errors.AsType[chunked.ErrFallbackToOrdinaryLayerDownload](err)
	return ok
}

// readerAtSource is a chunked.ImageSourceSeekable over an io.ReaderAt,
// like a registry that honours every range it is asked for.
type readerAtSource struct {
	r    io.ReaderAt
	size int64
}

func (s readerAtSource) GetBlobAt(chunks []chunked.ImageSourceChunk) (chan io.ReadCloser, chan error, error) {
	for _, c := range chunks {
		if c.Offset > uint64(s.size) || c.Length > uint64(s.size)-c.Offset {
			return nil, nil, fmt.Errorf("range %d+%d is outside the %d-byte blob", c.Offset, c.Length, s.size)
		}
	}
	streams := make(chan io.ReadCloser)
	errs := make(chan error)
	go func() {
		defer close(errs)
		defer close(streams)
		for _, c := range chunks {
			streams <- io.NopCloser(io.NewSectionReader(s.r, int64(c.Offset), int64(c.Length)))
		}
	}()
	return streams, errs, nil
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Skip skips the test unless containers/storage's overlay driver can work
// here: it needs root and overlayfs mounts in the temporary directory,
// which it checks once per process by mounting a tiny overlay.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: containers/storage partial pulls need root for overlay mounts (run the tests as root)")
	}
	probeOnce.Do(func() { probeErr = probeOverlay() })
	if probeErr != nil {
		t.Skipf("skipping: overlay mounts are not available in %s: %v", os.TempDir(), probeErr)
	}
}

func probeOverlay() (err error) {
	dir, err := os.MkdirTemp("", "cstoragetest-probe-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	var d [4]string
	for i, name := range []string{"lower", "upper", "work", "merged"} {
		d[i] = filepath.Join(dir, name)
		if err := os.Mkdir(d[i], 0o700); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", d[0], d[1], d[2])
	if err := unix.Mount("overlay", d[3], "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount -t overlay: %w", err)
	}
	if err := unix.Unmount(d[3], 0); err != nil {
		return fmt.Errorf("unmounting the probe overlay: %w", err)
	}
	return nil
}
