package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// TestCosignInterop checks lazydisk's signatures with the real cosign CLI
// and cosign's with lazydisk, in both forms, with keys from either tool, on
// a registry without the referrers API (distribution v3, as registry:2/3)
// and one with it (go-containerregistry's in-memory registry).
// Both tools run as separate processes with a fresh HOME and every
// non-loopback request sent to a dead proxy: signing and verifying need no
// network. It skips when the cosign CLI is not installed.
func TestCosignInterop(t *testing.T) {
	t.Parallel()
	cosign := cosignBinary(t)
	reg := testregistry.Start(t)
	dir := t.TempDir()
	env := offlineEnv(t, "COSIGN_PASSWORD=interop password")

	lz := func(t *testing.T, args ...string) string {
		t.Helper()
		o, e, c := lazydiskProcess(t, env, dir, args...)
		return strings.TrimSpace(mustRun(t, "lazydisk "+strings.Join(args, " "), o, e, c))
	}
	cs := func(t *testing.T, args ...string) string {
		t.Helper()
		o, e, c := runProcess(t, env, dir, cosign, args...)
		return mustRun(t, "cosign "+strings.Join(args, " "), o, e, c)
	}
	// The offline flags (docs/signing.md): no signing config from TUF, no
	// transparency log.
	cosignSign := func(t *testing.T, args ...string) {
		t.Helper()
		cs(t, append([]string{"sign", "--yes", "--use-signing-config=false", "--tlog-upload=false"}, args...)...)
	}
	cosignVerify := func(t *testing.T, args ...string) {
		t.Helper()
		out := cs(t, append([]string{"verify", "--insecure-ignore-tlog"}, args...)...)
		var claims []json.RawMessage
		if err := json.Unmarshal([]byte(out), &claims); err != nil || len(claims) == 0 {
			t.Fatalf("cosign verify %s printed %q", strings.Join(args, " "), out)
		}
	}
	var v struct{ GitVersion string }
	if err := json.Unmarshal([]byte(cs(t, "version", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	t.Logf("cosign %s at %s", v.GitVersion, cosign)

	// An eStargz containerDisk per case, each in its own repository.
	disk, _ := diskFile(t, dir, "vm.qcow2", 700<<10, 3)
	image := func(t *testing.T, repo string) string {
		t.Helper()
		d := lz(t, "convert", "--estargz", "--chunk-size", "64K", "disk:"+disk, "docker://"+reg.Host+"/"+repo+":v1")
		return reg.Host + "/" + repo + "@" + d
	}

	lz(t, "keygen", "--output-key-prefix", "lz")
	cs(t, "generate-key-pair", "--output-key-prefix", "cs")

	t.Run("lazydisk signs both forms, cosign verifies each", func(t *testing.T) {
		ref := image(t, "interop/lz-both")
		lz(t, "sign", "--key", "lz.key", ref)
		cosignVerify(t, "--key", "lz.pub", ref)                              // bundle
		cosignVerify(t, "--key", "lz.pub", "--new-bundle-format=false", ref) // legacy .sig
		lz(t, "verify", "--key", "lz.pub", "--deep", ref)
		// The control: what needs the network fails here. cosign without
		// --insecure-ignore-tlog fetches the TUF trusted root.
		_, e, c := runProcess(t, env, dir, cosign, "verify", "--key", "lz.pub", ref)
		if c == 0 || !strings.Contains(e, "127.0.0.1:9") {
			t.Errorf("cosign verify without --insecure-ignore-tlog: exit %d, stderr %q; want a failure to reach the dead proxy", c, e)
		}
	})
	t.Run("lazydisk signs one form, cosign verifies it", func(t *testing.T) {
		for _, f := range []string{"bundle", "legacy"} {
			ref := image(t, "interop/lz-"+f)
			lz(t, "sign", "--key", "lz.key", "--signature-format", f, "-a", "org.example/form="+f, ref)
			cosignVerify(t, "--key", "lz.pub", "-a", "org.example/form="+f, ref) // cosign falls back to legacy by itself
		}
	})
	t.Run("cosign signs, lazydisk verifies", func(t *testing.T) {
		ref := image(t, "interop/cs-bundle")
		cosignSign(t, "--key", "cs.key", "-a", "org.example/by=cosign", ref)
		lz(t, "verify", "--key", "cs.pub", "--signature-format", "bundle", "-a", "org.example/by=cosign", ref)
		lz(t, "read", "--key", "cs.pub", "--signature-format", "bundle", "--range", "all", "-o", "bundle.out", ref)
		ref = image(t, "interop/cs-legacy")
		cosignSign(t, "--key", "cs.key", "--new-bundle-format=false", ref)
		lz(t, "verify", "--key", "cs.pub", "--signature-format", "legacy", "--deep", ref)
		lz(t, "read", "--key", "cs.pub", "--signature-format", "legacy", "--range", "all", "-o", "legacy.out", ref)
		want, err := os.ReadFile(disk)
		if err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{"bundle.out", "legacy.out"} {
			if got, err := os.ReadFile(filepath.Join(dir, out)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("read --key of a cosign-signed image: %s is not the disk (%v)", out, err)
			}
		}
		if _, e, c := lazydiskProcess(t, env, dir, "read", "--key", "lz.pub", "--range", "0:4K", "-o", "wrong.out", ref); c != exitBadSignature {
			t.Errorf("read --key with another key: exit %d, want %d: %s", c, exitBadSignature, e)
		}
	})
	t.Run("keys work in the other tool", func(t *testing.T) {
		ref := image(t, "interop/lz-with-cosign-key")
		lz(t, "sign", "--key", "cs.key", ref)
		cosignVerify(t, "--key", "cs.pub", ref)
		ref = image(t, "interop/cosign-with-lz-key")
		cosignSign(t, "--key", "lz.key", ref)
		cosignVerify(t, "--key", "lz.pub", ref)
		lz(t, "verify", "--key", "lz.pub", ref)
	})
	t.Run("wrong key", func(t *testing.T) {
		ref := image(t, "interop/wrong-key")
		lz(t, "sign", "--key", "lz.key", ref)
		if o, e, c := runProcess(t, env, dir, cosign, "verify", "--insecure-ignore-tlog", "--key", "cs.pub", ref); c == 0 {
			t.Errorf("cosign verify with another key passed: %s %s", o, e)
		}
		if _, e, c := lazydiskProcess(t, env, dir, "verify", "--key", "cs.pub", ref); c != exitBadSignature {
			t.Errorf("lazydisk verify with another key: exit %d, want %d: %s", c, exitBadSignature, e)
		}
	})
	t.Run("registry with the referrers API", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		d := lz(t, "convert", "--estargz", "--chunk-size", "64K", "disk:"+disk, "docker://"+host+"/api/lz:v1")
		lz(t, "sign", "--key", "lz.key", "docker://"+host+"/api/lz:v1")
		cosignVerify(t, "--key", "lz.pub", host+"/api/lz@"+d)
		d = lz(t, "convert", "--estargz", "--chunk-size", "64K", "disk:"+disk, "docker://"+host+"/api/cs:v1")
		cosignSign(t, "--key", "cs.key", host+"/api/cs@"+d)
		lz(t, "verify", "--key", "cs.pub", "--signature-format", "bundle", host+"/api/cs@"+d)
	})
	t.Run("a signed layout pushed with convert keeps its signatures", func(t *testing.T) {
		layoutRef := "oci:" + dir + "/layout:v1"
		d := lz(t, "convert", "--estargz", "--chunk-size", "64K", "disk:"+disk, layoutRef)
		lz(t, "sign", "--key", "lz.key", "--identity", reg.Host+"/interop/from-layout", layoutRef)
		lz(t, "verify", "--key", "lz.pub", layoutRef)
		if got := lz(t, "convert", "--estargz", layoutRef, "docker://"+reg.Host+"/interop/from-layout:v1"); got != d {
			t.Fatalf("pushing the layout changed its digest: %s -> %s", d, got)
		}
		ref := reg.Host + "/interop/from-layout@" + d
		cosignVerify(t, "--key", "lz.pub", ref)
		cosignVerify(t, "--key", "lz.pub", "--new-bundle-format=false", ref)
	})
	t.Run("convert --sign-key signs an index and each image", func(t *testing.T) {
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for _, p := range []string{"linux/amd64", "linux/arm64"} {
			pl, _ := v1.ParsePlatform(p)
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: containerDisk(t, disk, p), Descriptor: v1.Descriptor{Platform: pl}})
		}
		if err := remote.WriteIndex(mustRef(t, reg.Host+"/interop/src:multi"), idx); err != nil {
			t.Fatal(err)
		}
		d := lz(t, "convert", "--estargz", "--sign-key", "lz.key", "docker://"+reg.Host+"/interop/src:multi", "docker://"+reg.Host+"/interop/multi:v1")
		cosignVerify(t, "--key", "lz.pub", reg.Host+"/interop/multi@"+d)
		out, err := remote.Index(mustRef(t, reg.Host+"/interop/multi@"+d))
		if err != nil {
			t.Fatal(err)
		}
		im, err := out.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range im.Manifests {
			cosignVerify(t, "--key", "lz.pub", reg.Host+"/interop/multi@"+c.Digest.String())
		}
		lz(t, "verify", "--key", "lz.pub", "--deep", reg.Host+"/interop/multi@"+d)
	})
}
