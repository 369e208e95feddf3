package embed_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/annotate"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/trust"
	"github.com/lazydisk/lazydisk/verify"
)

// startRegistry serves go-containerregistry's registry on 127.0.0.1 for the
// test and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// anonymous keeps the test from reading the machine's registry credentials.
var anonymous = image.WithKeychain(authn.NewMultiKeychain())

func parse(t *testing.T, s string) image.Reference {
	t.Helper()
	r, err := image.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEmbed is the whole life of a disk image through the public API:
// convert (with signing), verify, annotate's check, and a signed lazy read.
func TestEmbed(t *testing.T) {
	ctx := context.Background()
	host := startRegistry(t)

	// A 2 MiB "disk": text, noise and zeros.
	data := make([]byte, 2<<20)
	copy(data, bytes.Repeat([]byte("QFI\xfb embedded disk\n"), 20000))
	for i := 1 << 20; i < 1<<20+300_000; i++ {
		data[i] = byte(i * 7919 >> 3)
	}
	path := filepath.Join(t.TempDir(), "vm.qcow2")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	privPEM, pubPEM, err := sign.GenerateKeyPair([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadPrivateKey(privPEM, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := verify.LoadPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}

	for _, format := range []toc.Format{toc.FormatEStargz, toc.FormatZstdChunked} {
		t.Run(string(format), func(t *testing.T) {
			dst := parse(t, "docker://"+host+"/vm/embed:"+strings.ReplaceAll(string(format), ":", "-"))
			res, err := lazydisk.Convert(ctx, parse(t, "disk:"+path), dst,
				lazydisk.WithConvertOptions(convert.WithFormat(format), convert.WithChunkSize(64<<10)),
				lazydisk.WithImageOptions(anonymous),
				lazydisk.WithSigner(signer))
			if err != nil {
				t.Fatalf("converting: %v", err)
			}
			if res.Signed == nil || len(res.Images) != 1 || res.Images[0].Layers[0].Chunks < 2 {
				t.Fatalf("result %+v: want one signed image of several chunks", res)
			}

			rep, err := verify.Image(ctx, dst, pub, verify.WithDeep(true), verify.WithImageOptions(anonymous))
			if err != nil || !rep.OK {
				t.Fatalf("verify.Image: %v", err)
			}

			art, err := image.Read(ctx, dst, anonymous)
			if err != nil {
				t.Fatal(err)
			}
			_, ann, err := annotate.Image(ctx, art.Image, annotate.BlobsOf(dst, anonymous))
			if err != nil || ann.Changed {
				t.Errorf("annotate.Image: changed %v, %v; want the annotations convert wrote to be right", ann != nil && ann.Changed, err)
			}

			checker, err := verify.NewChecker(pub)
			if err != nil {
				t.Fatal(err)
			}
			f, err := disk.Open(ctx, dst, disk.WithSignature(checker), disk.WithImageOptions(anonymous))
			if err != nil {
				t.Fatalf("disk.Open: %v", err)
			}
			defer f.Close()
			if f.Size() != int64(len(data)) || f.Format() != format {
				t.Errorf("opened %d bytes of %s, want %d of %s", f.Size(), f.Format(), len(data), format)
			}
			got := make([]byte, 100_000)
			if _, err := f.ReadAt(got, 1<<20-50_000); err != nil || !bytes.Equal(got, data[1<<20-50_000:1<<20+50_000]) {
				t.Errorf("ReadAt: %v, or the bytes differ", err)
			}
			if st := f.Stats(); st.Requests == 0 {
				t.Errorf("stats %+v: no range request counted", st)
			}
			var all bytes.Buffer
			if _, err := f.WriteRange(&all, 0, f.Size()); err != nil || !bytes.Equal(all.Bytes(), data) {
				t.Errorf("WriteRange: %v, or the bytes differ", err)
			}
		})
	}

	// Another key: the reader refuses the image before reading it.
	_, otherPEM, err := sign.GenerateKeyPair([]byte("other"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := verify.LoadPublicKey(otherPEM)
	if err != nil {
		t.Fatal(err)
	}
	checker, err := verify.NewChecker(other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = disk.Open(ctx, parse(t, "docker://"+host+"/vm/embed:estargz"), disk.WithSignature(checker), disk.WithImageOptions(anonymous))
	if !errors.Is(err, trust.ErrBadSignature) {
		t.Errorf("disk.Open with another key: %v, want trust.ErrBadSignature", err)
	}
}
