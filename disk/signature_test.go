package disk_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/verify"
)

// testKey is a cosign key pair: the signer and the verifier of its public key.
type testKey struct {
	signer   signature.SignerVerifier
	verifier signature.Verifier
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadPrivateKey(priv, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{s, v}
}

func signRef(t *testing.T, k testKey, ref string) {
	t.Helper()
	r, err := image.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Manifest(context.Background(), r, k.signer, sign.WithImageOptions(image.WithKeychain(authn.NewMultiKeychain()))); err != nil {
		t.Fatalf("signing %s: %v", ref, err)
	}
}

// withKey is disk.WithSignature with verify's checker for v.
func withKey(t testing.TB, v signature.Verifier, opts ...verify.Option) disk.Option {
	t.Helper()
	c, err := verify.NewChecker(v, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return disk.WithSignature(c)
}

func openErr(ref string, opts ...disk.Option) error {
	r, err := image.Parse(ref)
	if err != nil {
		return err
	}
	f, err := disk.Open(context.Background(), r, append([]disk.Option{anonymous()}, opts...)...)
	if err == nil {
		f.Close()
	}
	return err
}

// TestSignature opens signed, unsigned, re-tagged and corrupted images with
// WithSignature, in a registry.
func TestSignature(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	key, other := newTestKey(t), newTestKey(t)
	data := diskOnce()
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			ref, img := pushDisk(t, reg, "signed/"+string(format), format, data, nil)
			signRef(t, key, ref)
			want, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}

			f := open(t, ref, withKey(t, key.verifier))
			if got, ok := f.Signed(); !ok || got != want || f.Manifest() != want {
				t.Errorf("Signed() = %s, %t; Manifest() = %s; want %s", got, ok, f.Manifest(), want)
			}
			if !strings.HasSuffix(f.Ref(), "@"+want.String()) {
				t.Errorf("Ref() = %s, want it pinned to %s", f.Ref(), want)
			}
			checkRead(t, f, data, 0, int64(len(data)))
			if _, ok := open(t, ref).Signed(); ok {
				t.Error("Signed() is true without WithSignature")
			}

			if err := openErr(ref, withKey(t, other.verifier)); !errors.Is(err, verify.ErrBadSignature) {
				t.Errorf("another key: %v, want ErrBadSignature", err)
			}
			if err := openErr(ref, withKey(t, key.verifier, verify.WithAnnotations(map[string]string{"env": "prod"}))); !errors.Is(err, verify.ErrBadSignature) {
				t.Errorf("a claim the signature lacks: %v, want ErrBadSignature", err)
			}
			if _, err := verify.NewChecker(nil); err == nil {
				t.Errorf("verify.NewChecker(nil): no error")
			}
			if err := openErr(ref, disk.WithSignature(nil)); err == nil || !strings.Contains(err.Error(), "checker") {
				t.Errorf("a nil verifier: %v", err)
			}
			if err := openErr(ref, withKey(t, key.verifier), disk.WithInsecureSkipTOCDigest()); err == nil {
				t.Error("a signature with the TOC digest skipped was accepted")
			}

			// The tag moved to an image nobody signed.
			moved, _ := pushDisk(t, reg, "signed/"+string(format), format, makeDisk(300<<10, 7), nil)
			if moved != ref {
				t.Fatalf("pushed to %s, not %s", moved, ref)
			}
			if err := openErr(ref, withKey(t, key.verifier)); !errors.Is(err, verify.ErrNoSignature) {
				t.Errorf("re-tagged: %v, want ErrNoSignature", err)
			}
		})
	}
	t.Run("corrupt chunk", func(t *testing.T) {
		ref, img := pushDisk(t, reg, "signed/corrupt", formats[0], data, nil)
		signRef(t, key, ref)
		plain := open(t, ref)
		bounds := disk.ChunkBounds(plain)
		i := corruptChunk(t, reg, img, plain, len(bounds)/2)
		f := open(t, ref, withKey(t, key.verifier))
		buf := make([]byte, 4096)
		_, err := f.ReadAt(buf, bounds[i])
		if !errors.Is(err, verify.ErrContentMismatch) || !errors.Is(err, disk.ErrChunkDigest) {
			t.Errorf("reading the corrupt chunk: %v, want ErrContentMismatch and ErrChunkDigest", err)
		}
		if _, err := f.ReadAt(buf, 0); err != nil {
			t.Errorf("reading an intact chunk: %v", err)
		}
	})
	t.Run("TOC digest annotation missing", func(t *testing.T) {
		ref, _ := pushDisk(t, reg, "signed/unannotated", formats[0], data, func(m *v1.Manifest) {
			delete(m.Layers[0].Annotations, toc.AnnotationTOCDigest)
		})
		signRef(t, key, ref)
		err := openErr(ref, withKey(t, key.verifier))
		if !errors.Is(err, verify.ErrContentMismatch) || !errors.Is(err, disk.ErrNoTOCDigest) {
			t.Errorf("%v, want ErrContentMismatch and ErrNoTOCDigest", err)
		}
	})
}

// TestSignatureLayout reads a signed index from an OCI layout, then changes
// the bytes of the image manifest the index lists.
func TestSignatureLayout(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	key := newTestKey(t)
	data := makeDisk(400<<10, 3)
	_, img := pushDisk(t, reg, "layout/src", formats[1], data, nil)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add:        img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	})
	dir := t.TempDir()
	ref := "oci:" + dir + ":v1"
	dst, err := image.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.Write(context.Background(), dst, image.Artifact{Index: idx}); err != nil {
		t.Fatal(err)
	}
	signRef(t, key, ref)

	f := open(t, ref, withKey(t, key.verifier))
	checkRead(t, f, data, 0, int64(len(data)))
	top, _ := idx.Digest()
	if got, _ := f.Signed(); got != top {
		t.Errorf("Signed() = %s, want the index %s", got, top)
	}

	// Same manifest, one more byte: the index no longer lists its digest.
	h, _ := img.Digest()
	path := filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	err = openErr(ref, withKey(t, key.verifier))
	if !errors.Is(err, verify.ErrContentMismatch) || !strings.Contains(err.Error(), "does not list") {
		t.Errorf("changed manifest bytes: %v, want ErrContentMismatch", err)
	}
}
