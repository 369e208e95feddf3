package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Facts of the KubeVirt containerDisk layout: the disk file lives in /disk,
// readable by the qemu user that virt-launcher runs as.
const (
	containerDiskDir     = "disk/"
	containerDiskDirMode = 0o555
	containerDiskMode    = 0o444
	// qemuUID is the uid and gid of the disk entries (kubevirt
	// pkg/util/util.go NonRootUID).
	qemuUID = 107
)

// diskImage is the containerDisk image of one local disk file: a single
// uncompressed layer holding disk/ and disk/<basename>, and an OCI config.
// Its layer is produced on demand from the file; nothing is held in memory.
type diskImage struct {
	ref      Reference
	layer    *diskLayer
	platform v1.Platform
	created  time.Time
}

var (
	_ v1.Image      = (*diskImage)(nil)
	_ v1.Layer      = (*diskLayer)(nil)
	_ DigestPending = (*diskLayer)(nil)
)

// ErrEmptyDisk means a disk: reference names an empty file: a containerDisk
// of it would be an empty export. (It is declared here, next to its only
// use.)
var ErrEmptyDisk = errors.New("the disk file is empty")

func newContainerDisk(r Reference, o options) (*diskImage, error) {
	fi, err := statSource(r)
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("%s is 0 bytes long: %w; name the disk image file (qcow2 or raw)", r, ErrEmptyDisk)
	}
	created, err := sourceDateEpoch()
	if err != nil {
		return nil, err
	}
	path, err := filepath.Abs(r.Path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r, err)
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if p := o.platform; p != nil {
		platform.Variant = p.Variant
		if p.OS != "" {
			platform.OS = p.OS
		}
		if p.Architecture != "" {
			platform.Architecture = p.Architecture
		}
	}
	var enc *diskEncoding
	if o.diskFormat != "" && o.diskFormat != DiskKeep {
		if enc, err = newDiskEncoding(r, path, fi.Size(), o.diskFormat); err != nil {
			return nil, err
		}
	}
	return &diskImage{
		ref:      r,
		platform: platform,
		created:  created,
		layer: &diskLayer{
			ref:      r,
			path:     path,
			base:     filepath.Base(path),
			modTime:  created,
			fileSize: fi.Size(),
			fileMod:  fi.ModTime(),
			enc:      enc,
		},
	}, nil
}

// sourceDateEpoch returns the time SOURCE_DATE_EPOCH names, or the Unix
// epoch when it is unset, so the same disk file always gives the same image.
func sourceDateEpoch() (time.Time, error) {
	s, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a Unix time in seconds; unset it or set it to e.g. $(git log -1 --format=%%ct)", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func (i *diskImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (i *diskImage) Layers() ([]v1.Layer, error) { return []v1.Layer{i.layer}, nil }

// DigestPending reports whether the image's manifest, and so its digest,
// would need a pass over the disk file: its layer's digest is pending.
func (i *diskImage) DigestPending() bool { return i.layer.DigestPending() }

func (i *diskImage) ConfigFile() (*v1.ConfigFile, error) {
	diffID, err := i.layer.DiffID()
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: i.created}
	return &v1.ConfigFile{
		Architecture: i.platform.Architecture,
		OS:           i.platform.OS,
		OSVersion:    i.platform.OSVersion,
		Variant:      i.platform.Variant,
		OSFeatures:   i.platform.OSFeatures,
		Created:      created,
		History:      []v1.History{{Created: created, CreatedBy: "lazydisk disk:" + i.layer.base}},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
	}, nil
}

func (i *diskImage) RawConfigFile() ([]byte, error) {
	cfg, err := i.ConfigFile()
	if err != nil {
		return nil, err
	}
	return json.Marshal(cfg)
}

func (i *diskImage) ConfigName() (v1.Hash, error) {
	raw, err := i.RawConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

func (i *diskImage) Manifest() (*v1.Manifest, error) {
	raw, err := i.RawConfigFile()
	if err != nil {
		return nil, err
	}
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	digest, size, err := i.layer.compute()
	if err != nil {
		return nil, err
	}
	return &v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: cfgSize, Digest: cfgDigest},
		Layers:        []v1.Descriptor{{MediaType: types.OCIUncompressedLayer, Size: size, Digest: digest}},
	}, nil
}

func (i *diskImage) RawManifest() ([]byte, error) {
	m, err := i.Manifest()
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func (i *diskImage) Digest() (v1.Hash, error) {
	raw, err := i.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

func (i *diskImage) Size() (int64, error) {
	raw, err := i.RawManifest()
	return int64(len(raw)), err
}

// LayerByDigest returns the layer; its digest is also its diff ID since it
// is not compressed.
func (i *diskImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	d, err := i.layer.Digest()
	if err != nil {
		return nil, err
	}
	if h != d {
		return nil, fmt.Errorf("%s has no layer %s: %w", i.ref, h, ErrNotFound)
	}
	return i.layer, nil
}

func (i *diskImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) { return i.LayerByDigest(h) }

// diskLayer is the uncompressed tar layer holding the disk file. Every
// Compressed or Uncompressed call reopens the file and streams a fresh tar;
// the first complete stream records the digest and size, which a change of
// the file since Read is reported against.
type diskLayer struct {
	ref      Reference
	path     string
	base     string
	modTime  time.Time // of the tar entries
	fileSize int64     // of the disk file at Read
	fileMod  time.Time // of the disk file at Read
	// enc re-encodes the disk (WithDiskFormat); nil keeps it.
	enc *diskEncoding

	computeMu sync.Mutex // one digest-only pass at a time

	mu     sync.Mutex
	digest v1.Hash
	size   int64
}

func (l *diskLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }

func (l *diskLayer) Digest() (v1.Hash, error) {
	h, _, err := l.compute()
	return h, err
}

func (l *diskLayer) DiffID() (v1.Hash, error) { return l.Digest() }

// Size follows from the headers and the file size; it needs no pass over
// the file, so progress can show a total before the digest is known.
func (l *diskLayer) Size() (int64, error) {
	if _, n, ok := l.known(); ok {
		return n, nil
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	dir, file := l.headers()
	if err := tw.WriteHeader(dir); err != nil {
		return 0, err
	}
	if err := tw.WriteHeader(file); err != nil {
		return 0, err
	}
	const block, trailer = 512, 2 * 512
	n := l.entrySize()
	return int64(b.Len()) + n + (-n & (block - 1)) + trailer, nil
}

// DigestPending reports whether Digest would need a pass over the file.
func (l *diskLayer) DigestPending() bool {
	_, _, ok := l.known()
	return !ok
}

func (l *diskLayer) Compressed() (io.ReadCloser, error) { return l.Uncompressed() }

// Uncompressed streams the tar: a goroutine writes it into a pipe while the
// caller reads. Close stops the goroutine and closes the file.
func (l *diskLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", l.ref, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening %s: %w", l.ref, err)
	}
	if fi.Size() != l.fileSize || !fi.ModTime().Equal(l.fileMod) {
		f.Close()
		return nil, fmt.Errorf("%s changed since it was opened; run the command again", l.ref)
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		pw.CloseWithError(l.writeTar(pw, f))
	}()
	return &diskReader{layer: l, pr: pr, done: done, hash: sha256.New()}, nil
}

// entrySize is the size of the disk entry: the file's, or the re-encoded disk's.
func (l *diskLayer) entrySize() int64 {
	if l.enc != nil {
		return l.enc.info.Size // set once, before any stream
	}
	return l.fileSize
}

// headers returns the tar headers of disk/ and of the disk file.
func (l *diskLayer) headers() (dir, file *tar.Header) {
	dir = &tar.Header{
		Typeflag: tar.TypeDir,
		Name:     containerDiskDir,
		Mode:     containerDiskDirMode,
		Uid:      qemuUID,
		Gid:      qemuUID,
		ModTime:  l.modTime,
	}
	file = &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     containerDiskDir + l.base,
		Mode:     containerDiskMode,
		Uid:      qemuUID,
		Gid:      qemuUID,
		Size:     l.fileSize,
		ModTime:  l.modTime,
	}
	if l.enc != nil {
		file.Name, file.Size = l.enc.info.File, l.enc.info.Size
	}
	return dir, file
}

// writeTar writes the layer. archive/tar picks USTAR, or PAX for a file of
// 8 GiB or more.
func (l *diskLayer) writeTar(w io.Writer, f *os.File) error {
	tw := tar.NewWriter(w)
	dir, file := l.headers()
	if err := tw.WriteHeader(dir); err != nil {
		return err
	}
	if err := tw.WriteHeader(file); err != nil {
		return err
	}
	if l.enc != nil {
		if err := l.enc.write(tw, f, l.fileSize); err != nil {
			return fmt.Errorf("writing the %s disk of %s: %w", l.enc.target, l.ref, err)
		}
		return tw.Close()
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(tw, io.LimitReader(f, l.fileSize), buf)
	if err != nil {
		return fmt.Errorf("reading %s: %w", l.ref, err)
	}
	if n != l.fileSize {
		return fmt.Errorf("%s shrank while it was read; run the command again", l.ref)
	}
	return tw.Close()
}

func (l *diskLayer) known() (v1.Hash, int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.digest, l.size, l.digest != (v1.Hash{})
}

// record keeps the digest and size of a complete stream, and fails when a
// later stream differs from the first.
func (l *diskLayer) record(h v1.Hash, n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.digest == (v1.Hash{}) {
		l.digest, l.size = h, n
		return nil
	}
	if l.digest != h || l.size != n {
		return fmt.Errorf("%s changed while it was read (layer digest %s, earlier %s); run the command again", l.ref, h, l.digest)
	}
	return nil
}

// compute returns the digest and size, streaming the layer once if no
// stream has completed yet.
func (l *diskLayer) compute() (v1.Hash, int64, error) {
	if h, n, ok := l.known(); ok {
		return h, n, nil
	}
	l.computeMu.Lock()
	defer l.computeMu.Unlock()
	if h, n, ok := l.known(); ok {
		return h, n, nil
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("computing layer digest of %s: %w", l.ref, err)
	}
	h, n, ok := l.known()
	if !ok {
		return v1.Hash{}, 0, errors.New("layer stream ended without a digest")
	}
	return h, n, nil
}

// diskReader hashes the tar as it is read and records the digest at EOF.
type diskReader struct {
	layer *diskLayer
	pr    *io.PipeReader
	done  chan struct{}
	hash  hash.Hash
	n     int64
}

func (r *diskReader) Read(p []byte) (int, error) {
	n, err := r.pr.Read(p)
	r.hash.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(r.hash.Sum(nil))}
		if rerr := r.layer.record(h, r.n); rerr != nil {
			return n, rerr
		}
	}
	return n, err
}

// Close stops the tar writer and waits until it has closed the file.
func (r *diskReader) Close() error {
	r.pr.Close()
	<-r.done
	return nil
}
