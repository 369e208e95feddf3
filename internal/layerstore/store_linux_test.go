//go:build linux

package layerstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/cstoragetest"
	"github.com/lazydisk/lazydisk/internal/fusefs"
	"github.com/lazydisk/lazydisk/internal/layerstore"
	"github.com/lazydisk/lazydisk/internal/testdisk"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveStore mounts a store on a new directory (not t.TempDir: its path
// goes into overlay mount options, where a comma from a test name breaks
// them) and unmounts it when the test ends.
func serveStore(t *testing.T, o layerstore.Options) (string, *layerstore.Store) {
	t.Helper()
	dir, err := os.MkdirTemp("", "layerstore-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := layerstore.New(ctx, o)
	srv, err := fusefs.Mount(dir, st, fusefs.Options{Writable: true, NoNegativeCache: true})
	if err != nil {
		cancel()
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmounting the store: %v", err)
		}
		unix.Unmount(dir, unix.MNT_DETACH)
		cancel()
		<-done
		os.Remove(dir)
	})
	return dir, st
}

// pushDisk converts a containerDisk holding data to format and pushes it.
func pushDisk(t *testing.T, ref string, data []byte, format toc.Format) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "vm.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := image.Parse("disk:" + p)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := image.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lazydisk.Convert(t.Context(), src, dst,
		lazydisk.WithConvertOptions(convert.WithFormat(format), convert.WithChunkSize(64<<10))); err != nil {
		t.Fatal(err)
	}
}

// TestContainersStorage has containers/storage's overlay driver find the
// layers in the store by TOC digest, create an image on them, and mount it:
// the disk file read through overlayfs is the disk.
func TestContainersStorage(t *testing.T) {
	cstoragetest.Skip(t)
	if err := fusefs.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	reg := testregistry.Start(t)
	data := testdisk.Bytes(5<<20, 3)
	var logs lockedBuffer
	root, st := serveStore(t, layerstore.Options{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	for i, format := range []toc.Format{toc.FormatEStargz, toc.FormatZstdChunked} {
		name := reg.Host + "/store/disk:" + strings.ReplaceAll(string(format), ":", "-")
		pushDisk(t, "docker://"+name, data, format)
		ref, _ := image.Parse(name)
		im, err := disk.OpenImage(t.Context(), ref)
		if err != nil {
			t.Fatal(err)
		}
		l := im.Layers()[0]
		tocDigest, layerDigest, size := l.Index().Digest, l.Descriptor().Digest.String(), l.Size()
		diffID := im.ConfigFile().RootFS.DiffIDs[0].String()
		im.Close()

		gdir, err := os.MkdirTemp("", "layerstore-graph-")
		if err != nil {
			t.Fatal(err)
		}
		s, err := storage.GetStore(types.StoreOptions{
			RunRoot: filepath.Join(gdir, "run"), GraphRoot: filepath.Join(gdir, "graph"), GraphDriverName: "overlay",
			GraphDriverOptions: []string{"overlay.additionallayerstore=" + root + ":ref"},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.Shutdown(true)
			b, _ := os.ReadFile("/proc/self/mountinfo")
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], gdir+"/") {
					unix.Unmount(f[4], unix.MNT_DETACH)
				}
			}
			os.RemoveAll(gdir)
		})
		before := st.Stats().BytesFetched
		al, err := s.LookupAdditionalLayer(tocDigest, name)
		if err != nil {
			t.Fatalf("%s: LookupAdditionalLayer(%s): %v\n%s", format, tocDigest, err, logs.String())
		}
		if al.TOCDigest() != tocDigest || al.CompressedSize() != size {
			t.Errorf("%s: the additional layer says TOC %s, size %d; want %s, %d", format, al.TOCDigest(), al.CompressedSize(), tocDigest, size)
		}
		layer, err := al.PutAs(digest.FromString(name).Encoded(), "", nil)
		al.Release()
		if err != nil {
			t.Fatalf("%s: PutAs: %v", format, err)
		}
		if layer.UncompressedDigest.String() != diffID || layer.CompressedDigest.String() != layerDigest {
			t.Errorf("%s: the layer's digests are %s and %s, want the DiffID %s and %s", format, layer.UncompressedDigest, layer.CompressedDigest, diffID, layerDigest)
		}
		// Older clients ask by the compressed digest.
		if _, err := os.Stat(filepath.Join(root, base64.StdEncoding.EncodeToString([]byte(name)), layerDigest, "diff")); err != nil {
			t.Errorf("%s: by the compressed digest: %v", format, err)
		}
		img, err := s.CreateImage("", []string{name}, layer.ID, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		mnt, err := s.MountImage(img.ID, nil, "")
		if err != nil {
			t.Fatalf("%s: MountImage: %v", format, err)
		}
		fetchedBeforeRead := st.Stats().BytesFetched - before
		got, err := os.ReadFile(filepath.Join(mnt, "disk", "vm.img"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: the disk read through the overlay mount differs", format)
		}
		if fetchedBeforeRead > size/4 {
			t.Errorf("%s: %d bytes fetched before the disk was read, of a %d-byte layer", format, fetchedBeforeRead, size)
		}
		var fi unix.Stat_t
		if err := unix.Stat(filepath.Join(mnt, "disk"), &fi); err != nil || fi.Uid != 107 || fi.Mode&0o7777 != 0o555 {
			t.Errorf("%s: /disk: %+v, %v", format, fi, err)
		}
		if _, err := s.UnmountImage(img.ID, true); err != nil {
			t.Error(err)
		}
		if i == 0 && !strings.Contains(logs.String(), "layer used") {
			t.Errorf("the store was not told of the layer's use:\n%s", logs.String())
		}
	}
	// An image that is not there, and a name that is not a reference.
	for _, p := range []string{
		filepath.Join(root, base64.StdEncoding.EncodeToString([]byte(reg.Host+"/store/missing:1")), digest.FromString("x").String()),
		filepath.Join(root, "not-base64!", digest.FromString("x").String()),
	} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("stat %s: %v, want not found", p, err)
		}
	}
}
