package verify_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
	"github.com/lazydisk/lazydisk/verify"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	reg := testregistry.Start(t)
	for _, store := range []string{"registry", "layout"} {
		for _, cf := range []toc.Format{toc.FormatEStargz, toc.FormatZstdChunked} {
			for _, sf := range []sign.SignatureFormat{sign.SignatureBoth, sign.SignatureBundle, sign.SignatureLegacy} {
				t.Run(fmt.Sprintf("%s/%s/%s", store, cf, sf), func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					// A repository each: the same image in one repository
					// would share its signatures.
					ref := fmt.Sprintf("docker://%s/%s/%s-%s:v1", reg.Host, store, strings.ReplaceAll(string(cf), ":", "-"), sf)
					if store == "layout" {
						ref = "oci:" + filepath.Join(t.TempDir(), "layout") + ":v1"
					}
					r := write(t, ref, image.Artifact{Image: diskImage(t, cf, 1, "amd64")})
					if _, err := verify.Signature(ctx, r, key.verifier); !errors.Is(err, verify.ErrNoSignature) {
						t.Fatalf("before signing: %v, want ErrNoSignature", err)
					}
					res, err := sign.Manifest(ctx, r, key.signer, sign.WithSignatureFormat(sf), sign.WithAnnotations(map[string]string{"org.example/k": "v"}))
					if err != nil {
						t.Fatalf("sign: %v", err)
					}
					got, err := verify.Signature(ctx, r, key.verifier)
					if err != nil {
						t.Fatalf("verify.Signature: %v", err)
					}
					if got != res.Digest {
						t.Errorf("verified digest %s, signed %s", got, res.Digest)
					}
					rep, err := verify.Image(ctx, r, key.verifier, verify.WithDeep(true),
						verify.WithAnnotations(map[string]string{"org.example/k": "v"}))
					if err != nil {
						t.Fatalf("verify.Image: %v", err)
					}
					wantSigs := map[sign.SignatureFormat]int{sign.SignatureBoth: 2, sign.SignatureBundle: 1, sign.SignatureLegacy: 1}[sf]
					if len(rep.Signature.Verified) != wantSigs || len(rep.Signature.Rejected) != 0 {
						t.Errorf("signatures: %+v, want %d verified", rep.Signature, wantSigs)
					}
					l := rep.Images[0].Layers[0]
					if !rep.OK || !l.Seekable || l.TOC == "" || l.Deep == nil || l.Deep.Chunks < 2 {
						t.Errorf("report %+v, layer %+v", rep, l)
					}
					if _, err := verify.Signature(ctx, r, key.verifier, verify.WithAnnotations(map[string]string{"org.example/k": "other"})); !errors.Is(err, verify.ErrBadSignature) {
						t.Errorf("wrong annotation: %v, want ErrBadSignature", err)
					}
					// Signing again adds nothing.
					again, err := sign.Manifest(ctx, r, key.signer, sign.WithSignatureFormat(sf), sign.WithAnnotations(map[string]string{"org.example/k": "v"}))
					if err != nil {
						t.Fatal(err)
					}
					if n := len(again.Signed[0].Existing); n != wantSigs {
						t.Errorf("signing twice: existing %v", again.Signed[0].Existing)
					}
					rep, err = verify.Image(ctx, r, key.verifier)
					if err != nil || len(rep.Signature.Verified) != wantSigs {
						t.Errorf("after signing twice: %v, %d signatures", err, len(rep.Signature.Verified))
					}
				})
			}
		}
	}
}

// TestIndex signs a two-platform index recursively (and another copy not
// recursively) and checks the whole chain, one platform, and the children's
// own signatures.
func TestIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := newKey(t)
	reg := testregistry.Start(t)
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        diskImage(t, toc.FormatZstdChunked, 3, arch),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, recursive := range []bool{true, false} {
		r := write(t, fmt.Sprintf("docker://%s/index/recursive-%t:v1", reg.Host, recursive), image.Artifact{Index: idx})
		res, err := sign.Manifest(ctx, r, key.signer, sign.WithRecursive(recursive))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 3, false: 1}[recursive]; len(res.Signed) != want {
			t.Errorf("recursive=%t signed %d manifests, want %d", recursive, len(res.Signed), want)
		}
		rep, err := verify.Image(ctx, r, key.verifier, verify.WithDeep(true))
		if err != nil || len(rep.Images) != 2 || rep.Images[1].Platform.Architecture != "arm64" {
			t.Fatalf("recursive=%t: %v, %+v", recursive, err, rep)
		}
		rep, err = verify.Image(ctx, r, key.verifier, verify.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
		if err != nil || len(rep.Images) != 1 || rep.Images[0].Digest != im.Manifests[1].Digest {
			t.Errorf("recursive=%t, arm64 only: %v, %+v", recursive, err, rep)
		}
		child := mustParse(t, fmt.Sprintf("docker://%s/index/recursive-%t@%s", reg.Host, recursive, im.Manifests[0].Digest))
		_, err = verify.Signature(ctx, child, key.verifier)
		if recursive && err != nil {
			t.Errorf("child of a recursively signed index: %v", err)
		}
		if !recursive && !errors.Is(err, verify.ErrNoSignature) {
			t.Errorf("child of an index signed alone: %v, want ErrNoSignature", err)
		}
	}
}

// TestReferrersAPI signs and verifies on a registry that has the referrers
// API (go-containerregistry's in-memory registry), where no referrers tag
// must be written.
func TestReferrersAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	key := newKey(t)
	r := write(t, "docker://"+host+"/api/img:v1", image.Artifact{Image: diskImage(t, toc.FormatEStargz, 4, "amd64")})
	res, err := sign.Manifest(ctx, r, key.signer)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []verify.SignatureFormat{verify.SignatureBundle, verify.SignatureLegacy} {
		if _, err := verify.Image(ctx, r, key.verifier, verify.WithSignatureFormat(f), verify.WithDeep(true)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	repo, err := name.NewRepository(host + "/api/img")
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(repo)
	if err != nil {
		t.Fatal(err)
	}
	fallback := strings.Replace(res.Digest.String(), ":", "-", 1)
	if slices.Contains(tags, fallback) || !slices.Contains(tags, fallback+".sig") {
		t.Errorf("tags %v: want the .sig tag and no referrers tag %s on a registry with the referrers API", tags, fallback)
	}
}
