//go:build linux

package layerstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// TestLayerDir reads a layer directory directly: info, blob, the diff tree,
// the use protocol's answers, and an idle image closed and reopened by the
// next read.
func TestLayerDir(t *testing.T) {
	if err := fusefs.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	reg := testregistry.Start(t)
	data := testdisk.Bytes(3<<20, 4)
	var logs lockedBuffer
	root, _ := serveStore(t, layerstore.Options{Idle: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	name := reg.Host + "/store/dir:zstd"
	pushDisk(t, "docker://"+name, data, toc.FormatZstdChunked)
	ref, _ := image.Parse(name)
	im, err := disk.OpenImage(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	l := im.Layers()[0]
	tocDigest, desc := l.Index().Digest, l.Descriptor()
	diffID := im.ConfigFile().RootFS.DiffIDs[0].String()
	im.Close()
	dir := filepath.Join(root, base64.StdEncoding.EncodeToString([]byte(name)), tocDigest.String())

	b, err := os.ReadFile(filepath.Join(dir, "info"))
	if err != nil {
		t.Fatal(err)
	}
	var info layerstore.Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if info.TOCDigest != tocDigest || info.CompressedDigest.String() != desc.Digest.String() || info.CompressedSize != desc.Size ||
		info.UncompressedDigest.String() != diffID || info.Compression != 4 || !slices.Contains(info.UIDs, 107) {
		t.Errorf("info: %s", b)
	}
	blob, err := os.ReadFile(filepath.Join(dir, "blob"))
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(blob).String(); got != desc.Digest.String() {
		t.Errorf("blob hashes to %s, want %s", got, desc.Digest)
	}
	diskPath := filepath.Join(dir, "diff", "disk", "vm.img")
	if got, err := os.ReadFile(diskPath); err != nil || !bytes.Equal(got, data) {
		t.Errorf("diff/disk/vm.img differs from the disk (%v)", err)
	}
	if _, err := os.Create(filepath.Join(dir, "use")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("creating use: %v, want ENOENT", err)
	}
	if err := unix.Rmdir(dir); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("rmdir of the layer: %v, want ENOENT", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "diff", "new"), nil, 0o644); err == nil {
		t.Error("creating a file in diff/ succeeded")
	}
	if !strings.Contains(logs.String(), "layer used") || !strings.Contains(logs.String(), "layer released") {
		t.Errorf("the use protocol is not logged:\n%s", logs.String())
	}
	// Nobody uses it now: it is closed, and a read opens it again.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "closed idle image") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "closed idle image") {
		t.Fatalf("the idle image was not closed:\n%s", logs.String())
	}
	f, err := os.Open(diskPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Bypass the page cache, which still holds what was read before.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536)
	if _, err := f.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, data[1<<20:1<<20+65536]) {
		t.Errorf("read after the image was closed: %v", err)
	}
	if n := strings.Count(logs.String(), "opened image"); n < 2 {
		t.Errorf("the image was opened %d times, want it reopened after being idle:\n%s", n, logs.String())
	}
}
