package verify_test

import (
	"archive/tar"
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/verify"
)

// diskImage is a containerDisk-like image (disk/disk.img, 600 KiB of text,
// noise and zeros) converted to format with 64 KiB chunks.
func diskImage(t *testing.T, format toc.Format, seed uint64, arch string) v1.Image {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	data := make([]byte, 600<<10)
	for i := range data[:200<<10] {
		data[i] = byte(r.Uint32())
	}
	copy(data[300<<10:], bytes.Repeat([]byte("qcow2 cluster\n"), 10000))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/disk.img", Mode: 0o444, Uid: 107, Gid: 107, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	layer, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	conv, err := convert.Image(context.Background(), img, convert.WithFormat(format), convert.WithChunkSize(64<<10), convert.WithWorkers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conv.Close() })
	return conv.Image
}

func mustParse(t *testing.T, s string) image.Reference {
	t.Helper()
	r, err := image.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func write(t *testing.T, ref string, a image.Artifact) image.Reference {
	t.Helper()
	r := mustParse(t, ref)
	if err := image.Write(context.Background(), r, a); err != nil {
		t.Fatalf("writing %s: %v", ref, err)
	}
	return r
}

type keyPair struct {
	signer   signature.SignerVerifier
	verifier signature.Verifier
	pub      []byte
}

func newKey(t testing.TB) keyPair {
	t.Helper()
	priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	sv, err := sign.LoadPrivateKey(priv, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{signer: sv, verifier: v, pub: pub}
}
