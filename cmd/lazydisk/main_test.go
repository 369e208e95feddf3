package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/internal/validate"
)

// cli runs lazydisk in-process and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("lazydisk %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// diskFile writes n bytes shaped like a VM disk (zero runs, text, noise).
func diskFile(t *testing.T, dir, name string, n int, seed uint64) (string, string) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for off := 0; off < n; {
		run := min(n-off, 4096*(1+r.IntN(64)))
		switch r.IntN(3) {
		case 1:
			copy(b[off:off+run], bytes.Repeat([]byte("qcow2 cluster data\n"), run/19+1))
		case 2:
			for i := off; i < off+run; i++ {
				b[i] = byte(r.Uint32())
			}
		}
		off += run
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, hex.EncodeToString(sum[:])
}

// containerDisk builds a gzip-layer image holding disk/<name> like
// `ADD --chown=107:107 file /disk/` does.
func containerDisk(t *testing.T, diskPath string, platform string) v1.Image {
	t.Helper()
	data, err := os.ReadFile(diskPath)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/" + filepath.Base(diskPath), Mode: 0o444, Uid: 107, Gid: 107, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	layer, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Config.Labels = map[string]string{"io.kubevirt.containerdisk": "yes"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// checkDiskImage validates every layer of img with the estargz reference
// reader and checks that disk/<name> has the wanted sha256.
func checkDiskImage(t *testing.T, img v1.Image, diskName, wantSHA string) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", m.MediaType)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i, desc := range m.Layers {
		blob := compressedBlob(t, layers[i])
		rep, err := validate.EStargz(context.Background(), io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))),
			digest.Digest(desc.Annotations[convert.AnnotationTOCDigest]))
		if err != nil {
			t.Fatalf("layer %d fails the reference reader: %v", i, err)
		}
		if rep.DiffID.String() != cfg.RootFS.DiffIDs[i].String() {
			t.Errorf("layer %d: diff_id %s, actual %s", i, cfg.RootFS.DiffIDs[i], rep.DiffID)
		}
		if desc.Annotations[convert.AnnotationUncompressedSize] != strconv.FormatInt(rep.Uncompressed, 10) {
			t.Errorf("layer %d: uncompressed-size annotation %q, actual %d", i, desc.Annotations[convert.AnnotationUncompressedSize], rep.Uncompressed)
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		found = checkDiskFile(t, zr, i, diskName, wantSHA) || found
	}
	if !found {
		t.Errorf("no disk/%s in the image", diskName)
	}
}

// compressedBlob reads a layer's blob.
func compressedBlob(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkDiskFile walks the uncompressed layer i and checks disk/<diskName>:
// its sha256, and the mode and owner KubeVirt expects. It reports whether
// the layer has the file.
func checkDiskFile(t *testing.T, layer io.Reader, i int, diskName, wantSHA string) bool {
	t.Helper()
	found := false
	tr := tar.NewReader(layer)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return found
		}
		if err != nil {
			t.Fatalf("layer %d is not a valid tar: %v", i, err)
		}
		if h.Name != "disk/"+diskName {
			continue
		}
		found = true
		s := sha256.New()
		if _, err := io.Copy(s, tr); err != nil {
			t.Fatalf("layer %d: reading %s: %v", i, h.Name, err)
		}
		if got := hex.EncodeToString(s.Sum(nil)); got != wantSHA {
			t.Errorf("disk file sha256 %s, want %s", got, wantSHA)
		}
		if h.Mode&0o777 != 0o444 || h.Uid != 107 || h.Gid != 107 {
			t.Errorf("disk file mode %o uid %d gid %d", h.Mode, h.Uid, h.Gid)
		}
	}
}

func layoutImage(t *testing.T, dir, tag string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no tag %q in %s", tag, dir)
	return nil
}

func TestConvertDiskToOCI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	disk, sum := diskFile(t, dir, "vm.qcow2", 3<<20+777, 1)
	out := filepath.Join(dir, "out")
	stdout := mustCLI(t, "convert", "--estargz", "--chunk-size", "256K", "--format", "json", "--digestfile", filepath.Join(dir, "digest"), "disk:"+disk, "oci:"+out+":v1")
	var res lazydisk.ConvertResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--format json printed %q: %v", stdout, err)
	}
	img := layoutImage(t, out, "v1")
	checkDiskImage(t, img, "vm.qcow2", sum)
	d, _ := img.Digest()
	if res.Digest != d || len(res.Images) != 1 || res.Images[0].Layers[0].Chunks != 13+1 {
		t.Errorf("JSON result %+v does not describe image %s with 14 chunks (13 disk + landmark)", res, d)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "digest")); strings.TrimSpace(string(b)) != d.String() {
		t.Errorf("--digestfile has %q, want %s", b, d)
	}
	// The same input gives the same image, and OCI -> OCI keeps a valid
	// eStargz layer as it is.
	again := mustCLI(t, "convert", "--estargz", "--chunk-size", "256K", "disk:"+disk, "oci:"+filepath.Join(dir, "again"))
	if strings.TrimSpace(again) != d.String() {
		t.Errorf("second conversion gave %s, first %s", again, d)
	}
	copied := mustCLI(t, "convert", "--estargz", "oci:"+out+":v1", "oci:"+filepath.Join(dir, "copy")+":v1")
	if strings.TrimSpace(copied) != d.String() {
		t.Errorf("oci -> oci of an eStargz image changed it: %s -> %s", d, copied)
	}
}

func TestConvertRegistryRoundTrip(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	disk, sum := diskFile(t, dir, "fedora.qcow2", 2<<20, 2)
	src := containerDisk(t, disk, "linux/amd64")
	srcRef := reg.Host + "/vm/fedora:41"
	if err := remote.Write(mustRef(t, srcRef), src); err != nil {
		t.Fatal(err)
	}
	dstRef := reg.Host + "/vm/fedora:41-esgz"
	out := mustCLI(t, "convert", "--estargz", "docker://"+srcRef, "docker://"+dstRef)
	img, err := remote.Image(mustRef(t, dstRef))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if strings.TrimSpace(out) != d.String() {
		t.Errorf("printed %q, registry has %s", out, d)
	}
	checkDiskImage(t, img, "fedora.qcow2", sum)
	cfg, _ := img.ConfigFile()
	if cfg.Config.Labels["io.kubevirt.containerdisk"] != "yes" {
		t.Errorf("labels lost: %v", cfg.Config.Labels)
	}
}

func TestConvertDockerArchive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	disk, sum := diskFile(t, dir, "cirros.img", 1<<20, 3)
	archive := filepath.Join(dir, "saved.tar")
	tag, _ := name.NewTag("example.com/vm/cirros:0.6")
	if err := tarball.WriteToFile(archive, tag, containerDisk(t, disk, "linux/amd64")); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "convert", "--estargz", "docker-archive:"+archive, "oci:"+filepath.Join(dir, "out")+":cirros")
	checkDiskImage(t, layoutImage(t, filepath.Join(dir, "out"), "cirros"), "cirros.img", sum)
}

func TestConvertMultiPlatform(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	amdDisk, amdSum := diskFile(t, dir, "amd.qcow2", 1<<20, 4)
	armDisk, armSum := diskFile(t, dir, "arm.qcow2", 1<<20, 5)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: containerDisk(t, amdDisk, "linux/amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: containerDisk(t, armDisk, "linux/arm64/v8"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	srcRef := reg.Host + "/vm/multi:1"
	if err := remote.WriteIndex(mustRef(t, srcRef), idx); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "convert", "--estargz", srcRef, reg.Host+"/vm/multi:1-esgz")
	got, err := remote.Index(mustRef(t, reg.Host+"/vm/multi:1-esgz"))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := got.IndexManifest()
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("converted index: %s with %d manifests", im.MediaType, len(im.Manifests))
	}
	for i, want := range []struct{ name, sum string }{{"amd.qcow2", amdSum}, {"arm.qcow2", armSum}} {
		img, err := got.Image(im.Manifests[i].Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkDiskImage(t, img, want.name, want.sum)
	}
	// --platform picks one image and writes it as a single manifest.
	mustCLI(t, "convert", "--estargz", "--platform", "linux/arm64", srcRef, "oci:"+filepath.Join(dir, "arm")+":1")
	checkDiskImage(t, layoutImage(t, filepath.Join(dir, "arm"), "1"), "arm.qcow2", armSum)
}

func TestConvertBadInput(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t, testregistry.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.Contains(r.URL.Path, "/locked/"):
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			case strings.Contains(r.URL.Path, "/broken/"):
				http.Error(w, "internal error", http.StatusInternalServerError)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}))
	dir := t.TempDir()
	disk, _ := diskFile(t, dir, "ok.img", 1<<20, 6)
	good := containerDisk(t, disk, "linux/amd64")

	// An image whose layer is a truncated gzip stream.
	l, _ := good.Layers()
	b := compressedBlob(t, l[0])
	truncated, _ := mutate.AppendLayers(empty.Image, static.NewLayer(b[:len(b)/2], types.DockerLayer))
	pushImage(t, reg.Host+"/vm/truncated:1", truncated)
	pushImage(t, reg.Host+"/vm/ok:1", good)
	// Layers with unsafe names.
	pushImage(t, reg.Host+"/vm/dotdot:1", tarImage(t, "disk/../../etc/passwd"))
	pushImage(t, reg.Host+"/vm/absolute:1", tarImage(t, "/etc/passwd"))
	notImage := filepath.Join(dir, "not-an-image.tar")
	os.WriteFile(notImage, []byte("hello, this is not a docker archive"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)

	tests := []struct {
		name string
		args []string
		code int
		want string // in the error line
	}{
		{"no format", []string{"convert", "disk:" + disk, "oci:x"}, 2, "--estargz"},
		{"bad chunk size", []string{"convert", "--estargz", "--chunk-size", "1Q", "disk:" + disk, "oci:x"}, 2, "chunk-size"},
		{"tiny chunk size", []string{"convert", "--estargz", "--chunk-size", "1K", "disk:" + disk, "oci:x"}, 2, "chunk size"},
		{"bad level", []string{"convert", "--estargz", "--compression-level", "12", "disk:" + disk, "oci:x"}, 2, "level"},
		{"bad platform", []string{"convert", "--estargz", "--platform", "linux", "disk:" + disk, "oci:x"}, 2, "platform"},
		{"platform mismatch", []string{"convert", "--estargz", "--platform", "linux/s390x", reg.Host + "/vm/ok:1", "oci:x"}, 1, "not linux/s390x"},
		{"disk destination", []string{"convert", "--estargz", "disk:" + disk, "disk:out.img"}, 2, "disk:"},
		{"archive destination", []string{"convert", "--estargz", "disk:" + disk, "docker-archive:out.tar"}, 2, "docker-archive"},
		{"unknown reference", []string{"convert", "--estargz", "bogus::ref", "oci:x"}, 2, "bogus::ref"},
		{"not an image", []string{"convert", "--estargz", "docker-archive:" + notImage, "oci:x"}, 1, "not-an-image.tar"},
		{"not a layout", []string{"convert", "--estargz", "oci:" + filepath.Join(dir, "adir"), "oci:x"}, 1, "adir"},
		{"disk is a directory", []string{"convert", "--estargz", "disk:" + filepath.Join(dir, "adir"), "oci:x"}, 1, "not a regular file"},
		{"disk missing", []string{"convert", "--estargz", "disk:" + filepath.Join(dir, "nope.img"), "oci:x"}, 1, "nope.img"},
		{"registry 404", []string{"convert", "--estargz", reg.Host + "/vm/missing:1", "oci:x"}, 1, "404"},
		{"registry 401", []string{"convert", "--estargz", reg.Host + "/locked/vm:1", "oci:x"}, 1, "401"},
		{"registry 500", []string{"convert", "--estargz", reg.Host + "/broken/vm:1", "oci:x"}, 1, "500"},
		{"truncated gzip", []string{"convert", "--estargz", reg.Host + "/vm/truncated:1", "oci:x"}, 1, "corrupt or truncated"},
		{"dotdot name", []string{"convert", "--estargz", reg.Host + "/vm/dotdot:1", "oci:x"}, 1, "unsafe path"},
		{"absolute name", []string{"convert", "--estargz", reg.Host + "/vm/absolute:1", "oci:x"}, 1, "unsafe path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			work := t.TempDir()
			args := append([]string(nil), tc.args...)
			dst := filepath.Join(work, "dst")
			args[len(args)-1] = strings.Replace(args[len(args)-1], "oci:x", "oci:"+dst, 1)
			stdout, stderr, code := cli(t, args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if stdout != "" {
				t.Errorf("printed %q on stdout", stdout)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "lazydisk: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q: want one line 'lazydisk: ...%s...'", stderr, tc.want)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("destination %s exists after a failed conversion", dst)
			}
		})
	}
}

// tarImage is an image with one gzip layer holding a file named name.
func tarImage(t *testing.T, name string) v1.Image {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	l, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	if err := remote.Write(mustRef(t, ref), img); err != nil {
		t.Fatal(err)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDemo(t *testing.T) {
	t.Parallel()
	out := mustCLI(t, "demo", "--out", filepath.Join(t.TempDir(), "layout"))
	for _, want := range []string{"checked with the estargz reference reader", "chunks of disk/sample.qcow2", "blob offset"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	out := mustCLI(t, "convert", "--help")
	for _, want := range []string{"Examples:", "disk:fedora.qcow2", "--chunk-size", "--format"} {
		if !strings.Contains(out, want) {
			t.Errorf("convert --help lacks %q", want)
		}
	}
	if out := mustCLI(t, "version"); !strings.HasPrefix(out, "lazydisk ") {
		t.Errorf("version printed %q", out)
	}
	if _, _, code := cli(t, "convert", "--estargz", "only-one-arg"); code != 2 {
		t.Errorf("wrong argument count: exit %d, want 2", code)
	}
}

// checkZstdImage checks every layer of img with the zstd:chunked validator
// and that disk/<name> has the wanted sha256.
func checkZstdImage(t *testing.T, img v1.Image, diskName, wantSHA string) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i, desc := range m.Layers {
		if desc.MediaType != types.OCILayerZStd {
			t.Errorf("layer %d media type %s", i, desc.MediaType)
		}
		if _, ok := desc.Annotations[convert.AnnotationTOCDigest]; ok {
			t.Errorf("layer %d carries the eStargz TOC annotation too", i)
		}
		blob := compressedBlob(t, layers[i])
		rep, err := validate.ZstdChunked(context.Background(), io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))), desc.Annotations)
		if err != nil {
			t.Fatalf("layer %d fails the zstd:chunked validator: %v", i, err)
		}
		if rep.DiffID.String() != cfg.RootFS.DiffIDs[i].String() {
			t.Errorf("layer %d: diff_id %s, actual %s", i, cfg.RootFS.DiffIDs[i], rep.DiffID)
		}
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		found = checkDiskFile(t, rc, i, diskName, wantSHA) || found
		rc.Close()
	}
	if !found {
		t.Errorf("no disk/%s in the image", diskName)
	}
}

func TestConvertZstdChunked(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	disk, sum := diskFile(t, dir, "fedora.qcow2", 3<<20, 7)
	src := containerDisk(t, disk, "linux/amd64")
	srcRef := reg.Host + "/vm/fedora:41"
	pushImage(t, srcRef, src)

	// registry -> registry: the tar is kept byte for byte, so the DiffID
	// stays the same.
	mustCLI(t, "convert", "--zstd-chunked", srcRef, reg.Host+"/vm/fedora:41-zstd")
	img, err := remote.Image(mustRef(t, reg.Host+"/vm/fedora:41-zstd"))
	if err != nil {
		t.Fatal(err)
	}
	checkZstdImage(t, img, "fedora.qcow2", sum)
	srcCfg, _ := src.ConfigFile()
	cfg, _ := img.ConfigFile()
	if cfg.RootFS.DiffIDs[0] != srcCfg.RootFS.DiffIDs[0] {
		t.Errorf("DiffID changed from %s to %s", srcCfg.RootFS.DiffIDs[0], cfg.RootFS.DiffIDs[0])
	}

	// zstd:chunked -> eStargz -> zstd:chunked.
	mustCLI(t, "convert", "--estargz", reg.Host+"/vm/fedora:41-zstd", "oci:"+filepath.Join(dir, "esgz")+":1")
	checkDiskImage(t, layoutImage(t, filepath.Join(dir, "esgz"), "1"), "fedora.qcow2", sum)
	out := mustCLI(t, "convert", "--zstd-chunked", "oci:"+filepath.Join(dir, "esgz")+":1", "oci:"+filepath.Join(dir, "back")+":1")
	back := layoutImage(t, filepath.Join(dir, "back"), "1")
	checkZstdImage(t, back, "fedora.qcow2", sum)
	want, _ := img.Digest()
	if strings.TrimSpace(out) != want.String() {
		t.Errorf("zstd:chunked -> eStargz -> zstd:chunked gave %s, the first conversion %s", out, want)
	}

	// A valid zstd:chunked image is kept as it is.
	again := mustCLI(t, "convert", "--zstd-chunked", "--format", "json", reg.Host+"/vm/fedora:41-zstd", "oci:"+filepath.Join(dir, "kept"))
	var res lazydisk.ConvertResult
	if err := json.Unmarshal([]byte(again), &res); err != nil {
		t.Fatal(err)
	}
	if res.Digest != want || !res.Images[0].Layers[0].Kept {
		t.Errorf("re-converting a zstd:chunked image: %+v", res.Images[0].Layers[0])
	}

	if _, stderr, code := cli(t, "convert", "--estargz", "--zstd-chunked", srcRef, "oci:"+filepath.Join(dir, "x")); code != 2 || !strings.Contains(stderr, "choose one") {
		t.Errorf("both formats: exit %d, %q", code, stderr)
	}
}
