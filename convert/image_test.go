package convert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/built"
	"github.com/lazydisk/lazydisk/internal/validate"
)

// testImage returns a docker-media-type image with a gzip layer holding
// tarBytes, labels, env and history.
func testImage(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := empty.Image
	for _, l := range layers {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "ADD disk"}, Annotations: map[string]string{"keep.me": "yes"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Labels = map[string]string{"org.example": "label"}
	cfg.Config.Env = []string{"A=b"}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.Annotations(img, map[string]string{"org.opencontainers.image.title": "test"}).(v1.Image)
}

func gzipLayer(t testing.TB, tarBytes []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromReader(bytes.NewReader(tarBytes))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := testImage(t, gzipLayer(t, sampleTar(t)), gzipLayer(t, tarOf(t, dir("etc/"), file("etc/motd", []byte("hi")))))
	conv, err := Image(ctx, src, WithChunkSize(testChunk))
	if err != nil {
		t.Fatal(err)
	}
	defer conv.Close()
	out := conv.Image
	m, err := out.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types %s / %s, want OCI", m.MediaType, m.Config.MediaType)
	}
	if m.Annotations["org.opencontainers.image.title"] != "test" {
		t.Errorf("manifest annotations lost: %v", m.Annotations)
	}
	cfg, err := out.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.Labels["org.example"] != "label" || len(cfg.Config.Env) != 1 || len(cfg.History) != 2 || cfg.Architecture != "amd64" {
		t.Errorf("config fields lost: %+v", cfg)
	}
	layers, err := out.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, desc := range m.Layers {
		if desc.MediaType != types.OCILayer || desc.Annotations["keep.me"] != "yes" {
			t.Errorf("layer %d: media type %s, annotations %v", i, desc.MediaType, desc.Annotations)
		}
		blob := readAll(t, layers[i].Compressed)
		tocDigest := digest.Digest(desc.Annotations[AnnotationTOCDigest])
		rep, err := validate.EStargz(ctx, io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))), tocDigest)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if rep.DiffID.String() != cfg.RootFS.DiffIDs[i].String() {
			t.Errorf("layer %d: config diff_id %s, blob decompresses to %s", i, cfg.RootFS.DiffIDs[i], rep.DiffID)
		}
		if desc.Annotations[AnnotationUncompressedSize] != strconv.FormatInt(rep.Uncompressed, 10) {
			t.Errorf("layer %d: uncompressed-size %s, actual %d", i, desc.Annotations[AnnotationUncompressedSize], rep.Uncompressed)
		}
		if desc.Digest != conv.Result.Images[0].Layers[i].Digest || conv.Result.Images[0].Layers[i].Kept {
			t.Errorf("layer %d: result %+v does not describe the manifest", i, conv.Result.Images[0].Layers[i])
		}
	}
	if d, _ := out.Digest(); d != conv.Result.Digest {
		t.Errorf("result digest %s, image digest %s", conv.Result.Digest, d)
	}

	// Converting the result again keeps every layer and the manifest.
	again, err := Image(ctx, out, WithChunkSize(testChunk))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Result.Digest != conv.Result.Digest {
		t.Errorf("second conversion changed the digest %s -> %s", conv.Result.Digest, again.Result.Digest)
	}
	for _, l := range again.Result.Images[0].Layers {
		if !l.Kept {
			t.Errorf("layer %s was converted again", l.Source)
		}
	}
	// --force converts again, to the same bytes.
	forced, err := Image(ctx, out, WithChunkSize(testChunk), WithForce(true))
	if err != nil {
		t.Fatal(err)
	}
	defer forced.Close()
	if forced.Result.Images[0].Layers[0].Kept || forced.Result.Digest != conv.Result.Digest {
		t.Errorf("forced conversion: kept=%v digest %s, want converted to %s", forced.Result.Images[0].Layers[0].Kept, forced.Result.Digest, conv.Result.Digest)
	}
	// A wrong TOC annotation is not trusted: the layer is converted.
	m.Layers[0].Annotations[AnnotationTOCDigest] = digest.FromString("wrong").String()
	lied := &built.Image{Manifest: mustJSON(t, m), Config: mustRaw(t, out.RawConfigFile), Layers: map[v1.Hash]v1.Layer{m.Layers[0].Digest: layers[0], m.Layers[1].Digest: layers[1]}}
	fixed, err := Image(ctx, mustImage(t, lied), WithChunkSize(testChunk))
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	if l := fixed.Result.Images[0].Layers[0]; l.Kept || l.TOCDigest != conv.Result.Images[0].Layers[0].TOCDigest {
		t.Errorf("layer with a wrong TOC annotation: %+v", l)
	}
}

func TestImageSourceEncodings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	raw := sampleTar(t)
	var zs bytes.Buffer
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(raw)
	zw.Close()
	want := ""
	for _, tc := range []struct {
		name  string
		layer v1.Layer
	}{
		{"gzip", gzipLayer(t, raw)},
		{"zstd", static.NewLayer(zs.Bytes(), types.OCILayerZStd)},
		{"plain", static.NewLayer(raw, types.OCIUncompressedLayer)},
	} {
		conv, err := Image(ctx, testImage(t, tc.layer), WithChunkSize(testChunk))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := conv.Result.Images[0].Layers[0].Digest.String()
		conv.Close()
		if want == "" {
			want = got
		} else if got != want {
			t.Errorf("%s source gives layer %s, gzip source gave %s", tc.name, got, want)
		}
	}
}

func TestImageCorruptLayer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := gzipLayer(t, sampleTar(t))
	blob := readAll(t, good.Compressed)
	truncated := blob[:len(blob)/2]
	flipped := append([]byte(nil), blob...)
	flipped[len(flipped)/2] ^= 0xff
	for name, b := range map[string][]byte{"truncated": truncated, "flipped": flipped} {
		// static.NewLayer computes the digest of the bad bytes, so this is
		// a layer whose content is corrupt gzip, not a digest mismatch.
		_, err := Image(ctx, testImage(t, static.NewLayer(b, types.DockerLayer)), WithChunkSize(testChunk))
		if !errors.Is(err, ErrCorruptLayer) {
			t.Errorf("%s gzip: got %v, want ErrCorruptLayer", name, err)
		}
	}
	// A registry serving other bytes than the manifest names.
	img := testImage(t, good)
	m, _ := img.Manifest()
	lying := &built.Image{Manifest: mustJSON(t, m), Config: mustRaw(t, img.RawConfigFile),
		Layers: map[v1.Hash]v1.Layer{m.Layers[0].Digest: static.NewLayer(flipped, types.DockerLayer)}}
	if _, err := Image(ctx, mustImage(t, lying), WithChunkSize(testChunk)); !errors.Is(err, ErrCorruptLayer) {
		t.Errorf("digest mismatch: got %v, want ErrCorruptLayer", err)
	}
}

func TestIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	amd := testImage(t, gzipLayer(t, sampleTar(t)))
	arm := testImage(t, gzipLayer(t, tarOf(t, dir("disk/"), file("disk/arm.img", diskLike(3*testChunk, 9)))))
	att := testImage(t, static.NewLayer([]byte(`{"_type":"in-toto"}`), "application/vnd.in-toto+json"))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, Annotations: map[string]string{"a": "b"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}},
	)
	conv, err := Index(ctx, idx, WithChunkSize(testChunk))
	if err != nil {
		t.Fatal(err)
	}
	defer conv.Close()
	im, err := conv.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 || len(conv.Result.Dropped) != 1 {
		t.Fatalf("index %s with %d manifests, %d dropped; want OCI index, 2 images, attestation dropped", im.MediaType, len(im.Manifests), len(conv.Result.Dropped))
	}
	if im.Manifests[1].Platform.Variant != "v8" || im.Manifests[1].Annotations["a"] != "b" {
		t.Errorf("index entry lost platform or annotations: %+v", im.Manifests[1])
	}
	for _, d := range im.Manifests {
		img, err := conv.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Layers[0].Annotations[AnnotationTOCDigest] == "" {
			t.Errorf("%s: layer not converted", d.Platform)
		}
	}
	sel, err := image.SelectPlatform(idx, v1.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if d1, d2 := mustDigest(t, sel), mustDigest(t, arm); d1 != d2 {
		t.Errorf("SelectPlatform picked %s, want %s", d1, d2)
	}
	if _, err := image.SelectPlatform(idx, v1.Platform{OS: "linux", Architecture: "s390x"}); !errors.Is(err, image.ErrNoPlatform) {
		t.Errorf("missing platform: %v", err)
	}
}

func readAll(t testing.TB, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
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

func mustJSON(t testing.TB, m *v1.Manifest) []byte {
	t.Helper()
	b, err := jsonMarshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRaw(t testing.TB, f func() ([]byte, error)) []byte {
	t.Helper()
	b, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustImage(t testing.TB, b *built.Image) v1.Image {
	t.Helper()
	img, err := b.V1()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustDigest(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// pendingLayer is an uncompressed layer whose digest costs a full pass until
// it has been read once, like a disk: source. passes counts full passes.
type pendingLayer struct {
	v1.Layer
	passes int
	read   bool
}

func (p *pendingLayer) DigestPending() bool { return !p.read }

func (p *pendingLayer) pass() { p.passes++; p.read = true }

func (p *pendingLayer) Digest() (v1.Hash, error) {
	if !p.read {
		p.pass()
	}
	return p.Layer.Digest()
}

func (p *pendingLayer) DiffID() (v1.Hash, error) { return p.Digest() }

func (p *pendingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := p.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	p.pass()
	return io.NopCloser(bytes.NewReader(b)), err
}

func (p *pendingLayer) Uncompressed() (io.ReadCloser, error) { return p.Compressed() }

// pendingImage lists its layer without knowing its digest, as imageref's
// disk: image does; only Manifest needs the digest.
type pendingImage struct{ l *pendingLayer }

var _ v1.Image = pendingImage{}

func (i pendingImage) Layers() ([]v1.Layer, error)         { return []v1.Layer{i.l}, nil }
func (i pendingImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (i pendingImage) ConfigFile() (*v1.ConfigFile, error) {
	d, err := i.l.DiffID()
	return &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{d}}}, err
}
func (i pendingImage) RawConfigFile() ([]byte, error) { return partial.RawConfigFile(i) }
func (i pendingImage) ConfigName() (v1.Hash, error)   { return partial.ConfigName(i) }
func (i pendingImage) Manifest() (*v1.Manifest, error) {
	cfg, err := i.RawConfigFile()
	if err != nil {
		return nil, err
	}
	d, err := i.l.Digest()
	if err != nil {
		return nil, err
	}
	n, _ := i.l.Size()
	return &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfg)), Digest: built.SHA256(cfg)},
		Layers: []v1.Descriptor{{MediaType: types.OCIUncompressedLayer, Size: n, Digest: d}}}, nil
}
func (i pendingImage) RawManifest() ([]byte, error)            { return partial.RawManifest(i) }
func (i pendingImage) Digest() (v1.Hash, error)                { return partial.Digest(i) }
func (i pendingImage) Size() (int64, error)                    { return partial.Size(i) }
func (i pendingImage) LayerByDigest(v1.Hash) (v1.Layer, error) { return i.l, nil }
func (i pendingImage) LayerByDiffID(v1.Hash) (v1.Layer, error) { return i.l, nil }
func (i pendingImage) DigestPending() bool                     { return i.l.DigestPending() }

// TestImageReadsPendingLayerOnce checks that a disk: style source is read
// once: converted first, its digest then known for the manifest.
func TestImageReadsPendingLayerOnce(t *testing.T) {
	t.Parallel()
	pl := &pendingLayer{Layer: static.NewLayer(sampleTar(t), types.OCIUncompressedLayer)}
	conv, err := Image(context.Background(), pendingImage{pl}, WithChunkSize(testChunk))
	if err != nil {
		t.Fatal(err)
	}
	defer conv.Close()
	if pl.passes != 1 {
		t.Errorf("source read %d times, want 1", pl.passes)
	}
	want, _ := pl.Layer.Digest()
	if got := conv.Result.Images[0].Layers[0].Source; got != want {
		t.Errorf("result names source %s, want %s", got, want)
	}
	m, _ := conv.Image.Manifest()
	if m.Layers[0].Annotations[AnnotationTOCDigest] == "" {
		t.Error("converted layer lacks its TOC annotation")
	}
}
