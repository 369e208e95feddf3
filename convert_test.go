package lazydisk_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/verify"
)

// anonymous reads no credentials from the machine running the tests.
var anonymous = image.WithKeychain(authn.NewMultiKeychain())

func mustParse(t *testing.T, s string) image.Reference {
	t.Helper()
	r, err := image.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestConvert runs the whole workflow through the facade: a disk file
// converted and signed into a layout, then the signed layout pushed to a
// registry with its signatures copied, and read back lazily under the key.
func TestConvert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := testregistry.Start(t)
	data := bytes.Repeat([]byte("lazydisk facade\n"), 20000)
	path := filepath.Join(t.TempDir(), "vm.raw")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	privPEM, pubPEM, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadPrivateKey(privPEM, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := verify.LoadPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}

	layout := mustParse(t, "oci:"+filepath.Join(t.TempDir(), "out")+":v1")
	res, err := lazydisk.Convert(ctx, mustParse(t, "disk:"+path), layout,
		lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatZstdChunked), convert.WithChunkSize(64<<10)),
		lazydisk.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}),
		lazydisk.WithSigner(signer, sign.WithSignatureFormat(sign.SignatureBoth)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Signed == nil || res.Signed.Digest != res.Digest || res.CopiedSignatures != nil {
		t.Fatalf("signed %+v, copied %+v; want the result %s signed and nothing copied", res.Signed, res.CopiedSignatures, res.Digest)
	}
	if len(res.Images) != 1 || res.Images[0].Layers[0].Chunks == 0 || res.Destination != layout.String() {
		t.Fatalf("result %+v: want one converted image at %s", res, layout)
	}

	remote := mustParse(t, "docker://"+reg.Host+"/vm/facade:v1")
	again, err := lazydisk.Convert(ctx, layout, remote, lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatZstdChunked)),
		lazydisk.WithImageOptions(anonymous))
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest {
		t.Errorf("pushing a converted layout changed its digest: %s, want %s", again.Digest, res.Digest)
	}
	if n := again.CopiedSignatures; n == nil || n.Bundles != 1 || n.Legacy != 1 {
		t.Errorf("copied %+v, want 1 bundle and 1 legacy signature", n)
	}
	if _, err := verify.Image(ctx, remote, pub, verify.WithDeep(true), verify.WithImageOptions(anonymous)); err != nil {
		t.Errorf("verifying the pushed image: %v", err)
	}
	checker, err := verify.NewChecker(pub)
	if err != nil {
		t.Fatal(err)
	}
	f, err := disk.Open(ctx, remote, disk.WithSignature(checker), disk.WithImageOptions(anonymous), disk.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, 4096)
	if _, err := f.ReadAt(got, 100_000); err != nil || !bytes.Equal(got, data[100_000:104_096]) {
		t.Errorf("ReadAt: %v, or the bytes differ", err)
	}
}

// TestConvertErrors checks that bad options and destinations fail before
// anything is read.
func TestConvertErrors(t *testing.T) {
	t.Parallel()
	missing := mustParse(t, "oci:"+filepath.Join(t.TempDir(), "missing"))
	dst := mustParse(t, "oci:"+filepath.Join(t.TempDir(), "dst"))
	tests := []struct {
		name     string
		dst      image.Reference
		opts     []lazydisk.Option
		sentinel error
	}{
		{name: "source-only destination", dst: mustParse(t, "disk:/nonexistent"), sentinel: image.ErrUnsupported},
		{name: "bad chunk size", dst: dst, opts: []lazydisk.Option{lazydisk.WithConvertOptions(convert.WithChunkSize(1))}},
		{name: "conflicting image options", dst: dst, opts: []lazydisk.Option{lazydisk.WithImageOptions(image.WithJobs(0))}},
		{name: "no signer", dst: dst, opts: []lazydisk.Option{lazydisk.WithSigner(nil)}},
		{name: "half a platform", dst: dst, opts: []lazydisk.Option{lazydisk.WithPlatform(v1.Platform{OS: "linux"})}},
		{name: "missing source", dst: dst, sentinel: image.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := lazydisk.Convert(context.Background(), missing, tt.dst, tt.opts...)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("error %q is not %v", err, tt.sentinel)
			}
			if tt.sentinel != image.ErrNotFound && errors.Is(err, image.ErrNotFound) {
				t.Errorf("error %q: the source was read before the options were checked", err)
			}
		})
	}
}
