package annotate_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/annotate"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/built"
	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/toc"
)

// memBlob is a layer blob in memory.
type memBlob struct{ *bytes.Reader }

func (m memBlob) Close() error { return nil }

// opener serves the layers of img.
func opener(img v1.Image) annotate.Opener {
	return func(_ context.Context, d v1.Descriptor) (annotate.Blob, error) {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return memBlob{bytes.NewReader(b)}, err
	}
}

func diskImage(t *testing.T) v1.Image {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3<<20)
	for i := range data[:1<<20] {
		data[i] = byte(r.Uint32())
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/disk.img", Mode: 0o444, Size: int64(len(data))})
	tw.Write(data)
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

// withAnnotations returns img with layer i's annotations replaced.
func withAnnotations(t *testing.T, img v1.Image, i int, ann map[string]string) v1.Image {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	m.Layers[i].Annotations = ann
	out, err := built.Rewrite(img, m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func converted(t *testing.T, f toc.Format) (v1.Image, map[string]string) {
	t.Helper()
	conv, err := convert.Image(context.Background(), diskImage(t), convert.WithFormat(f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conv.Close() })
	m, _ := conv.Image.Manifest()
	return conv.Image, m.Layers[0].Annotations
}

func TestRestoresStripped(t *testing.T) {
	t.Parallel()
	for _, f := range []toc.Format{toc.FormatEStargz, toc.FormatZstdChunked} {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			good, ann := converted(t, f)
			stripped := withAnnotations(t, good, 0, map[string]string{"keep": "me"})
			out, res, err := annotate.Image(ctx, stripped, opener(stripped))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed || !res.Layers[0].Seekable {
				t.Fatalf("result %+v", res)
			}
			m, _ := out.Manifest()
			got := m.Layers[0].Annotations
			for k, v := range ann {
				if got[k] != v {
					t.Errorf("%s = %q, the converter wrote %q", k, got[k], v)
				}
			}
			if got["keep"] != "me" {
				t.Errorf("other annotations lost: %v", got)
			}
			if d, _ := out.Digest(); d != res.Digest {
				t.Errorf("result digest %s, image %s", res.Digest, d)
			}
			cfg, _ := out.ConfigFile()
			if f == toc.FormatEStargz && res.Layers[0].DiffID != cfg.RootFS.DiffIDs[0].String() {
				t.Errorf("DiffID from the pass %q, config %s", res.Layers[0].DiffID, cfg.RootFS.DiffIDs[0])
			}
			// The result passes the same validators as a fresh conversion.
			l, _ := out.Layers()
			rc, _ := l[0].Compressed()
			blob, _ := io.ReadAll(rc)
			sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
			if f == toc.FormatEStargz {
				_, err = validate.EStargz(ctx, sr, digest.Digest(got[toc.AnnotationTOCDigest]))
			} else {
				_, err = validate.ZstdChunked(ctx, sr, got)
			}
			if err != nil {
				t.Errorf("annotated layer fails validation: %v", err)
			}
			// Running again changes nothing.
			again, res2, err := annotate.Image(ctx, out, opener(out))
			if err != nil || res2.Changed {
				t.Fatalf("second run: changed=%v err=%v", res2 != nil && res2.Changed, err)
			}
			if d1, d2 := mustDigest(t, again), mustDigest(t, out); d1 != d2 {
				t.Errorf("second run changed the digest")
			}
		})
	}
}

func TestRepairsWrongAnnotation(t *testing.T) {
	t.Parallel()
	good, ann := converted(t, toc.FormatEStargz)
	bad := map[string]string{}
	for k, v := range ann {
		bad[k] = v
	}
	bad[toc.AnnotationTOCDigest] = digest.FromString("wrong").String()
	bad[toc.AnnotationZstdChunkedTarSplitPosition] = "1:2:3" // stale, from another format
	img := withAnnotations(t, good, 0, bad)
	out, res, err := annotate.Image(context.Background(), img, opener(img))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := out.Manifest()
	if got := m.Layers[0].Annotations; got[toc.AnnotationTOCDigest] != ann[toc.AnnotationTOCDigest] || got[toc.AnnotationZstdChunkedTarSplitPosition] != "" {
		t.Errorf("annotations after repair: %v", got)
	}
	if len(res.Layers[0].Removed) != 1 {
		t.Errorf("removed %v", res.Layers[0].Removed)
	}
	if mustDigest(t, out) != mustDigest(t, good) {
		t.Errorf("repaired image %s differs from the converter's %s", mustDigest(t, out), mustDigest(t, good))
	}
}

func TestRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plain := diskImage(t)
	if _, _, err := annotate.Image(ctx, plain, opener(plain)); !errors.Is(err, annotate.ErrNothingSeekable) {
		t.Errorf("plain gzip image: %v", err)
	}
	good, ann := converted(t, toc.FormatEStargz)
	both := map[string]string{toc.AnnotationZstdChunkedManifestChecksum: "sha256:00"}
	for k, v := range ann {
		both[k] = v
	}
	img := withAnnotations(t, good, 0, both)
	if _, _, err := annotate.Image(ctx, img, opener(img)); !errors.Is(err, toc.ErrBothTOCs) {
		t.Errorf("both TOC annotations: %v", err)
	}
}

func TestIndex(t *testing.T) {
	t.Parallel()
	good, _ := converted(t, toc.FormatZstdChunked)
	stripped := withAnnotations(t, good, 0, nil)
	plain := diskImage(t)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: stripped, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: plain, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	open := func(ctx context.Context, d v1.Descriptor) (annotate.Blob, error) {
		for _, img := range []v1.Image{stripped, plain} {
			if _, err := img.LayerByDigest(d.Digest); err == nil {
				return opener(img)(ctx, d)
			}
		}
		return nil, errors.New("no such layer")
	}
	out, res, err := annotate.Index(context.Background(), idx, open)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Images) != 2 || res.Images[1].Layers[0].Seekable {
		t.Fatalf("result %+v", res)
	}
	im, _ := out.IndexManifest()
	img, err := out.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, img) != mustDigest(t, good) || im.Manifests[0].Platform.Architecture != "amd64" {
		t.Errorf("index entry 0 is %s, want the converter's %s", mustDigest(t, img), mustDigest(t, good))
	}
	if im.Manifests[1].Digest != mustDigest(t, plain) {
		t.Errorf("the plain image changed")
	}
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
