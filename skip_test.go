package lazydisk_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/verify"
)

// topAnnotations reads the annotations and digest of the top manifest or
// index r names.
func topAnnotations(t *testing.T, r image.Reference) (map[string]string, string) {
	t.Helper()
	art, err := image.Read(context.Background(), r, anonymous)
	if err != nil {
		t.Fatal(err)
	}
	if art.Index != nil {
		m, err := art.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := art.Index.Digest()
		return m.Annotations, d.String()
	}
	m, err := art.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := art.Image.Digest()
	return m.Annotations, d.String()
}

// TestSkipIfConverted runs the same conversion job again and again, as the
// Kubernetes Job in deploy/ does: the first run converts, signs and records
// the source digest; a rerun writes nothing and does not sign again; a rerun
// with another key signs; a new source digest converts again; a run without
// the option records nothing.
func TestSkipIfConverted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	key, err := newPair("one")
	if err != nil {
		t.Fatal(err)
	}
	other, err := newPair("two")
	if err != nil {
		t.Fatal(err)
	}
	// The source: an eStargz containerDisk in the registry, made from disk
	// content v.
	src := mustParse(t, "docker://"+reg.Host+"/vm/src:41")
	push := func(v string) string {
		t.Helper()
		p := filepath.Join(dir, "vm-"+v+".raw")
		if err := os.WriteFile(p, bytes.Repeat([]byte("lazydisk skip "+v+"\n"), 30000), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := lazydisk.Convert(ctx, mustParse(t, "disk:"+p), src, lazydisk.WithImageOptions(anonymous))
		if err != nil {
			t.Fatal(err)
		}
		return res.Digest.String()
	}
	srcDigest := push("v1")
	zstd := lazydisk.WithConvertOptions(convert.WithFormat(toc.FormatZstdChunked), convert.WithChunkSize(64<<10))

	for _, dst := range []image.Reference{
		mustParse(t, "docker://"+reg.Host+"/vm/dst:41-zstd"),
		mustParse(t, "oci:"+filepath.Join(dir, "layout")+":41-zstd"),
	} {
		t.Run(string(dst.Transport), func(t *testing.T) {
			run := func(k *verifyPair) *lazydisk.ConvertResult {
				t.Helper()
				res, err := lazydisk.Convert(ctx, src, dst, zstd, lazydisk.WithImageOptions(anonymous),
					lazydisk.WithSkipIfConverted(true), lazydisk.WithSigner(k.signer))
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			first := run(key)
			anns, digest := topAnnotations(t, dst)
			if first.Skipped || first.Signed == nil || first.SourceDigest != srcDigest || first.Digest.String() != digest {
				t.Fatalf("first run: %+v; want converted, signed, source %s, digest %s", first, srcDigest, digest)
			}
			if anns[lazydisk.AnnotationSourceDigest] != srcDigest {
				t.Fatalf("the destination's annotations %v do not record the source digest %s", anns, srcDigest)
			}
			if len(first.Images) != 1 || first.Images[0].Digest != first.Digest {
				t.Errorf("images %+v, want the one image with the recorded digest %s", first.Images, first.Digest)
			}
			checkSigned(t, dst, first.Digest.String(), key)

			again := run(key)
			if !again.Skipped || again.Signed != nil || again.Digest != first.Digest || again.MediaType != types.OCIManifestSchema1 || len(again.Images) != 0 {
				t.Errorf("rerun: %+v; want skipped, not signed again, digest %s", again, first.Digest)
			}
			if _, d := topAnnotations(t, dst); d != digest {
				t.Errorf("a skipped run changed %s from %s to %s", dst, digest, d)
			}

			// Another key does not verify it: a skipped run signs it.
			resigned := run(other)
			if !resigned.Skipped || resigned.Signed == nil || resigned.Signed.Digest != first.Digest {
				t.Errorf("rerun with another key: %+v; want skipped and signed", resigned)
			}
			checkSigned(t, dst, first.Digest.String(), other)
		})
	}

	// A new source digest is converted again, and recorded.
	dst := mustParse(t, "docker://"+reg.Host+"/vm/dst:41-zstd")
	before, _ := topAnnotations(t, dst)
	newDigest := push("v2")
	res, err := lazydisk.Convert(ctx, src, dst, zstd, lazydisk.WithImageOptions(anonymous), lazydisk.WithSkipIfConverted(true))
	if err != nil {
		t.Fatal(err)
	}
	anns, digest := topAnnotations(t, dst)
	if res.Skipped || newDigest == srcDigest || anns[lazydisk.AnnotationSourceDigest] != newDigest || res.Digest.String() != digest {
		t.Errorf("changed source: result %+v, annotations %v (before %v); want %s converted and recorded", res, anns, before, newDigest)
	}

	// Without the option, nothing is recorded: the output is what it
	// always was.
	plain := mustParse(t, "docker://"+reg.Host+"/vm/dst:plain")
	if _, err := lazydisk.Convert(ctx, src, plain, zstd, lazydisk.WithImageOptions(anonymous)); err != nil {
		t.Fatal(err)
	}
	if anns, _ := topAnnotations(t, plain); anns[lazydisk.AnnotationSourceDigest] != "" {
		t.Errorf("a run without WithSkipIfConverted recorded %v", anns)
	}
}

// verifyPair is a signing key and its public key.
type verifyPair struct {
	signer signature.SignerVerifier
	pub    []byte
}

func newPair(pw string) (*verifyPair, error) {
	priv, pub, err := sign.GenerateKeyPair([]byte(pw))
	if err != nil {
		return nil, err
	}
	s, err := sign.LoadPrivateKey(priv, []byte(pw))
	if err != nil {
		return nil, err
	}
	return &verifyPair{signer: s, pub: pub}, nil
}

// checkSigned verifies the signature of r at digest with k's public key, as
// lazydisk verify does.
func checkSigned(t *testing.T, r image.Reference, digest string, k *verifyPair) {
	t.Helper()
	v, err := verify.LoadPublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := verify.Signature(context.Background(), r, v, verify.WithImageOptions(anonymous))
	if err != nil || got.String() != digest {
		t.Errorf("verify %s: %s, %v; want a signature of %s", r, got, err, digest)
	}
}
