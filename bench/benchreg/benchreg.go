// Package benchreg builds the containerDisk images the read and serve
// benchmarks compare and pushes them to a registry: the original layer (one
// gzip stream, as `docker build` pushes it) and its eStargz and zstd:chunked
// conversions. It also finds the bytes a lazy read of them should cost.
// It is for the benchmark programs only.
package benchreg

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

// Start runs a distribution registry on 127.0.0.1 with its storage in a
// new directory under work, and returns its host:port and a function that
// stops it and removes the storage.
func Start(work string) (host string, stop func(), err error) {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", nil, err
	}
	root, err := os.MkdirTemp(work, "registry-")
	if err != nil {
		return "", nil, err
	}
	reg, stopReg, err := testregistry.Serve(root)
	if err != nil {
		os.RemoveAll(root)
		return "", nil, err
	}
	return reg.Host, func() { stopReg(); os.RemoveAll(root) }, nil
}

// DiskPath is where the images hold the disk.
const DiskPath = "disk/disk.img"

// Formats are the names Push gives the images, in the order benchmarks
// print them.
var Formats = []string{"gzip", "estargz", "zstd:chunked"}

// Push builds the gzip containerDisk of diskPath (its layer staged in work)
// and its two conversions, pushes them to the registry at host as
// bench/NAME:1, and returns their references by format name. It logs its
// progress to stderr with the prefix prog.
func Push(ctx context.Context, prog, diskPath, work, host string) (map[string]string, error) {
	ropts := []image.Option{image.WithKeychain(authn.NewMultiKeychain())}
	start := time.Now()
	tarPath := filepath.Join(work, prog+"-layer.tar.gz")
	if err := writeTar(diskPath, tarPath); err != nil {
		return nil, err
	}
	defer os.Remove(tarPath)
	fmt.Fprintf(os.Stderr, "%s: wrote the gzip layer in %s\n", prog, time.Since(start).Round(time.Second))
	layer, err := tarball.LayerFromFile(tarPath)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	refs := map[string]string{}
	write := func(name string, img v1.Image) error {
		ref := "docker://" + host + "/bench/" + strings.ReplaceAll(name, ":", "-") + ":1"
		r, err := image.Parse(ref)
		if err != nil {
			return err
		}
		refs[name] = ref
		return image.Write(ctx, r, image.Artifact{Image: img}, ropts...)
	}
	if err := write("gzip", img); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "%s: pushed the gzip image in %s\n", prog, time.Since(start).Round(time.Second))
	for _, f := range []toc.Format{toc.FormatEStargz, toc.FormatZstdChunked} {
		start := time.Now()
		conv, err := convert.Image(ctx, img, convert.WithFormat(f), convert.WithTempDir(work))
		if err != nil {
			return nil, err
		}
		err = write(string(f), conv.Image)
		conv.Close()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "%s: converted and pushed %s in %s\n", prog, f, time.Since(start).Round(time.Second))
	}
	return refs, nil
}

// writeTar writes the containerDisk layer: a tar of disk/ and disk/disk.img
// in one gzip stream (level 6), as `docker build` pushes it.
func writeTar(diskPath, tarPath string) error {
	in, err := os.Open(diskPath)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.Create(tarPath)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, 6)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	mt := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107, ModTime: mt}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: DiskPath, Mode: 0o444, Uid: 107, Gid: 107, Size: fi.Size(), ModTime: mt}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, in); err != nil {
		return err
	}
	if err := errors.Join(tw.Close(), zw.Close(), bw.Flush()); err != nil {
		return err
	}
	return out.Close()
}

// Layer returns the descriptor of the only layer of the image ref names.
func Layer(ctx context.Context, ref string) (v1.Descriptor, error) {
	r, err := image.Parse(ref)
	if err != nil {
		return v1.Descriptor{}, err
	}
	img, err := remote.Image(r.Name, remote.WithContext(ctx))
	if err != nil {
		return v1.Descriptor{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return m.Layers[0], nil
}

// BlobURL returns the URL of the image's only layer in its registry, over
// plain HTTP.
func BlobURL(ctx context.Context, ref string) (string, error) {
	r, err := image.Parse(ref)
	if err != nil {
		return "", err
	}
	d, err := Layer(ctx, ref)
	if err != nil {
		return "", err
	}
	repo := r.Name.Context()
	return "http://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr() + "/blobs/" + d.Digest.String(), nil
}

// LayerIndex reads the TOC of the image's only layer.
func LayerIndex(ctx context.Context, ref string) (*toc.Index, error) {
	r, err := image.Parse(ref)
	if err != nil {
		return nil, err
	}
	d, err := Layer(ctx, ref)
	if err != nil {
		return nil, err
	}
	b, err := blob.Open(ctx, r, d, []image.Option{image.WithKeychain(authn.NewMultiKeychain())})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return toc.Read(b, d.Size, d.Annotations)
}

// TOCBytes is what fetching the layer's TOC costs: the compressed TOC, and
// for eStargz the footer that locates it.
func TOCBytes(ix *toc.Index) int64 {
	if ix.Format == toc.FormatEStargz {
		return ix.TOCSize + toc.EStargzFooterSize
	}
	return ix.TOCSize
}

// ChunkBytes returns the compressed size of n chunks of the disk from the
// one holding off: the read's chunk and the next n-1.
func ChunkBytes(ix *toc.Index, off int64, n int) (int64, error) {
	tf, ok := ix.Lookup(DiskPath)
	if !ok {
		return 0, fmt.Errorf("%s is not in the TOC", DiskPath)
	}
	cs := tf.ChunksFor(off, 1)
	i := slices.IndexFunc(tf.Chunks, func(c toc.Chunk) bool { return c.Offset == cs[0].Offset })
	var sum int64
	for k := i; k < min(i+n, len(tf.Chunks)); k++ {
		sum += tf.Chunks[k].CompressedSize
	}
	return sum, nil
}

// FileSHA256 hashes the file at path.
func FileSHA256(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// Median returns the median of d.
func Median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// ReadBytes returns what a cold read of [off, off+n) of the disk costs: the
// compressed sizes of the chunks that cover it, but for zero chunks
// (zstd:chunked's zeros chunks, and chunks whose digest is that of zeros),
// which cost nothing.
func ReadBytes(ix *toc.Index, off, n int64) (int64, error) {
	tf, ok := ix.Lookup(DiskPath)
	if !ok {
		return 0, fmt.Errorf("%s is not in the TOC", DiskPath)
	}
	var sum int64
	for _, c := range tf.ChunksFor(off, n) {
		if c.Zero || c.Digest == digest.SHA256.FromBytes(make([]byte, c.Size)) {
			continue
		}
		sum += c.CompressedSize
	}
	return sum, nil
}
