package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

// rawManifest pushes manifest bytes as they are.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

func getManifest(t *testing.T, ref string) (*v1.Manifest, []byte) {
	t.Helper()
	desc, err := remote.Get(mustRef(t, strings.TrimPrefix(ref, "docker://")))
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	return m, desc.Manifest
}

func putManifest(t *testing.T, ref string, m any) string {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(mustRef(t, ref), rawManifest{raw, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	return h.String()
}

// wantExit runs lazydisk in-process and checks the exit code, that stderr is
// one line, and that it says want.
func wantExit(t *testing.T, code int, want string, args ...string) string {
	t.Helper()
	out, errOut, got := cli(t, args...)
	t.Logf("lazydisk %s: exit %d\n%s%s", strings.Join(args, " "), got, out, errOut)
	if got != code {
		t.Fatalf("lazydisk %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errOut)
	}
	if code != 0 {
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 || !strings.Contains(errOut, want) {
			t.Errorf("lazydisk %s: stderr %q, want one line saying %q", strings.Join(args, " "), errOut, want)
		}
	}
	return out
}

// flipByte changes one byte of a file.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyTamper changes a signed image in each way an attacker or a
// broken mirror could and checks that verify fails with the right exit code
// and a one-line reason. It sets COSIGN_PASSWORD, so it does not run in
// parallel.
func TestVerifyTamper(t *testing.T) {
	t.Setenv(passwordEnv, "tamper password")
	reg := testregistry.Start(t)
	dir := t.TempDir()
	key, other := filepath.Join(dir, "k"), filepath.Join(dir, "other")
	mustCLI(t, "keygen", "--output-key-prefix", key)
	mustCLI(t, "keygen", "--output-key-prefix", other)

	// signed pushes and signs an eStargz image of its own content (blobs are
	// shared across repositories, so corrupting one must not touch others).
	seed := uint64(10)
	diskOf := map[string]string{} // tag -> the disk file it was made from
	signed := func(t *testing.T, repo string) (tag, digest string) {
		t.Helper()
		seed++
		disk, _ := diskFile(t, t.TempDir(), "vm.img", 500<<10, seed)
		tag = "docker://" + reg.Host + "/" + repo + ":v1"
		diskOf[tag] = disk
		digest = strings.TrimSpace(mustCLI(t, "convert", "--estargz", "--chunk-size", "64K", "disk:"+disk, tag))
		mustCLI(t, "sign", "--key", key+".key", tag)
		return tag, digest
	}
	repoOf := func(tag string) string { return strings.TrimPrefix(strings.TrimSuffix(tag, ":v1"), "docker://") }
	// readKey reads the whole disk with read --key: on success the bytes
	// are the disk's; on failure nothing is written.
	readKey := func(t *testing.T, code int, want, pub, tag string, more ...string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "disk.out")
		wantExit(t, code, want, append([]string{"read", "--key", pub, "--range", "all", "-o", out, tag}, more...)...)
		got, err := os.ReadFile(out)
		switch {
		case code != 0 && err == nil:
			t.Errorf("read --key failed with exit %d but wrote %s", code, out)
		case code == 0 && err != nil:
			t.Error(err)
		case code == 0:
			if orig, _ := os.ReadFile(diskOf[tag]); !bytes.Equal(got, orig) {
				t.Errorf("read --key of %s: %d bytes differ from the disk's %d", tag, len(got), len(orig))
			}
		}
	}

	t.Run("signed image verifies", func(t *testing.T) {
		tag, _ := signed(t, "tamper/ok")
		out := wantExit(t, 0, "", "verify", "--key", key+".pub", "--deep", tag)
		if !strings.Contains(out, "verified: signature -> manifest -> TOC annotations -> TOCs -> chunks") {
			t.Errorf("report:\n%s", out)
		}
		readKey(t, 0, "", key+".pub", tag)
		readKey(t, 0, "", key+".pub", tag, "--signature-format", "legacy")
		_, errOut, _ := cli(t, "read", "--key", key+".pub", "--range", "0:4K", "-o", filepath.Join(t.TempDir(), "x"), "--stats", tag)
		if !strings.Contains(errOut, "signature verified for sha256:") {
			t.Errorf("read --key --stats does not say the signature was verified: %s", errOut)
		}
		wantExit(t, 2, "cannot be combined", "read", "--key", key+".pub", "--insecure-skip-toc-digest", "--range", "0:1", tag)
		wantExit(t, 2, "--signature-format needs --key", "read", "--signature-format", "bundle", "--range", "0:1", tag)

		// serve --key: the same check before it listens.
		s := serve(t, tag, "--key", key+".pub", "--listen", "unix://"+socketIn(t), "--stats")
		if !strings.Contains(s.stderr.String(), "signature verified for sha256:") {
			t.Errorf("serve --key does not say the signature was verified: %s", s.stderr)
		}
		if _, err := exec.LookPath("nbdcopy"); err == nil {
			out := filepath.Join(t.TempDir(), "copy")
			tool(t, "nbdcopy", s.uri, out)
			if got, orig := sha256File(t, out), sha256File(t, diskOf[tag]); got != orig {
				t.Errorf("nbdcopy through serve --key: sha256 %s, the disk's %s", got, orig)
			}
		}
		if code, stderr := s.stop(t); code != 0 || !strings.Contains(stderr, "served disk/vm.img (500.0 KiB, estargz, signature verified for sha256:") {
			t.Errorf("serve --key: exit %d, stderr %q", code, stderr)
		}
		wantExit(t, 2, "cannot be combined", "serve", "--key", key+".pub", "--insecure-skip-toc-digest", "--listen", "tcp://127.0.0.1:0", tag)
		wantExit(t, 2, "--signature-format needs --key", "serve", "--signature-format", "bundle", "--listen", "tcp://127.0.0.1:0", tag)
	})
	t.Run("unsigned", func(t *testing.T) {
		disk, _ := diskFile(t, t.TempDir(), "vm.img", 100<<10, 99)
		tag := "docker://" + reg.Host + "/tamper/unsigned:v1"
		mustCLI(t, "convert", "--estargz", "disk:"+disk, tag)
		wantExit(t, exitNoSignature, "no signature", "verify", "--key", key+".pub", tag)
		readKey(t, exitNoSignature, "no signature", key+".pub", tag)
		wantExit(t, exitNoSignature, "no signature", "serve", "--key", key+".pub", "--listen", "tcp://127.0.0.1:0", tag)
	})
	t.Run("another key", func(t *testing.T) {
		tag, _ := signed(t, "tamper/other-key")
		out, stderr, code := cli(t, "verify", "--key", other+".pub", tag)
		if code != exitBadSignature || strings.Count(out, "is not signed by this key") != 1 || strings.Count(out, "does not verify with the key") != 1 ||
			strings.Contains(out+stderr, "threshold") || strings.Contains(stderr, "not signed by this key") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("verify with another key: exit %d, want %d, each signature's reason once on stdout, one line on stderr, no sigstore internals:\n%s%s",
				code, exitBadSignature, out, stderr)
		}
		readKey(t, exitBadSignature, "bad signature", other+".pub", tag)
		wantExit(t, exitBadSignature, "bad signature", "serve", "--key", other+".pub", "--listen", "tcp://127.0.0.1:0", tag)
	})
	t.Run("one annotation changed", func(t *testing.T) {
		tag, digest := signed(t, "tamper/annotation")
		m, _ := getManifest(t, tag)
		m.Layers[0].Annotations["org.example/changed"] = "yes"
		newDigest := putManifest(t, repoOf(tag)+":v1", m)
		// The tag now names a manifest nobody signed.
		wantExit(t, exitNoSignature, "no signature for "+newDigest, "verify", "--key", key+".pub", tag)
		readKey(t, exitNoSignature, "no signature for "+newDigest, key+".pub", tag)
		// Replaying the old signatures onto the new digest does not help.
		replaySignatures(t, repoOf(tag), digest, newDigest)
		wantExit(t, exitBadSignature, "bad signature for "+newDigest, "verify", "--key", key+".pub", tag)
		readKey(t, exitBadSignature, "bad signature for "+newDigest, key+".pub", tag)
		// The report on stdout says why each signature is refused, stderr
		// once that none is valid.
		if out := wantExit(t, exitBadSignature, "bad signature for "+newDigest, "verify", "--key", key+".pub", "--signature-format", "legacy", tag); !strings.Contains(out, "not "+newDigest) {
			t.Errorf("verify's report does not say the signature is of another manifest:\n%s", out)
		}
	})
	t.Run("layer swapped in the manifest", func(t *testing.T) {
		tag, digest := signed(t, "tamper/swap")
		otherTag, _ := signed(t, "tamper/swap-source")
		m, _ := getManifest(t, tag)
		om, _ := getManifest(t, otherTag)
		// Mount the other layer into the repository, then swap it in.
		src := mustRef(t, strings.TrimPrefix(otherTag, "docker://"))
		l, err := remote.Layer(src.Context().Digest(om.Layers[0].Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		repo, _ := name.NewRepository(repoOf(tag))
		if err := remote.WriteLayer(repo, l); err != nil {
			t.Fatal(err)
		}
		m.Layers[0] = om.Layers[0]
		newDigest := putManifest(t, repoOf(tag)+":v1", m)
		wantExit(t, exitNoSignature, "no signature", "verify", "--key", key+".pub", tag)
		readKey(t, exitNoSignature, "no signature", key+".pub", tag)
		wantExit(t, exitNoSignature, "no signature", "serve", "--key", key+".pub", "--listen", "tcp://127.0.0.1:0", tag)
		replaySignatures(t, repoOf(tag), digest, newDigest)
		wantExit(t, exitBadSignature, "bad signature", "verify", "--key", key+".pub", tag)
		readKey(t, exitBadSignature, "bad signature", key+".pub", tag)
	})
	t.Run("layer blob swapped in storage", func(t *testing.T) {
		tag, _ := signed(t, "tamper/blob")
		otherTag, _ := signed(t, "tamper/blob-source")
		m, _ := getManifest(t, tag)
		om, _ := getManifest(t, otherTag)
		b, err := os.ReadFile(reg.BlobPath(om.Layers[0].Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(reg.BlobPath(m.Layers[0].Digest.String()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		wantExit(t, exitContentMismatch, "content does not match", "verify", "--key", key+".pub", tag)
		readKey(t, exitContentMismatch, "content does not match the signed manifest", key+".pub", tag)
	})
	t.Run("chunk corrupted", func(t *testing.T) {
		tag, _ := signed(t, "tamper/chunk")
		m, _ := getManifest(t, tag)
		// Inside the disk file's chunks, far from the TOC at the end.
		flipByte(t, reg.BlobPath(m.Layers[0].Digest.String()), m.Layers[0].Size/3)
		// The TOC still matches: only reading (or --deep) finds the chunk.
		wantExit(t, 0, "", "verify", "--key", key+".pub", tag)
		wantExit(t, exitContentMismatch, "content does not match the signed manifest: layer 0", "verify", "--key", key+".pub", "--deep", tag)
		readKey(t, exitContentMismatch, "content does not match the signed manifest: chunk", key+".pub", tag)
		// The chunks before the corrupt one read fine.
		wantExit(t, 0, "", "read", "--key", key+".pub", "--range", "0:4K", "-o", filepath.Join(t.TempDir(), "head"), tag)
	})
	t.Run("TOC corrupted", func(t *testing.T) {
		tag, _ := signed(t, "tamper/toc")
		m, _ := getManifest(t, tag)
		flipByte(t, reg.BlobPath(m.Layers[0].Digest.String()), m.Layers[0].Size-toc.EStargzFooterSize-20)
		out := wantExit(t, exitContentMismatch, "content does not match", "verify", "--key", key+".pub", tag)
		if !strings.Contains(out, "FAIL") {
			t.Errorf("report does not show the failing step:\n%s", out)
		}
		readKey(t, exitContentMismatch, "content does not match the signed manifest", key+".pub", tag)
	})
	t.Run("TOC annotation missing", func(t *testing.T) {
		tag, _ := signed(t, "tamper/no-annotation")
		m, _ := getManifest(t, tag)
		delete(m.Layers[0].Annotations, toc.AnnotationTOCDigest)
		putManifest(t, repoOf(tag)+":v1", m)
		mustCLI(t, "sign", "--key", key+".key", tag) // signed, but the TOC is not covered
		wantExit(t, exitContentMismatch, "without a TOC digest annotation", "verify", "--key", key+".pub", tag)
		readKey(t, exitContentMismatch, "has no TOC digest annotation", key+".pub", tag)
	})
	t.Run("json report", func(t *testing.T) {
		tag, _ := signed(t, "tamper/json")
		out, _, code := cli(t, "verify", "--key", other+".pub", "--format", "json", tag)
		var rep verifyOutput
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("--format json printed %q: %v", out, err)
		}
		if code != exitBadSignature || rep.ExitCode != exitBadSignature || rep.OK || len(rep.Signature.Rejected) != 2 || !strings.Contains(rep.Error, "bad signature") {
			t.Errorf("exit %d, report %+v", code, rep)
		}
		out = wantExit(t, 0, "", "verify", "--key", key+".pub", "--format", "json", tag)
		if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || len(rep.Signature.Verified) != 2 || rep.Images[0].Layers[0].TOC == "" {
			t.Errorf("report %s (%v)", out, err)
		}
	})
}

// replaySignatures attaches the signatures of the manifest from to the
// manifest to, as an attacker who copies them would: the legacy signature
// image under to's tag, and each bundle referrer with its subject moved.
func replaySignatures(t *testing.T, repo, from, to string) {
	t.Helper()
	tagOf := func(d string) string { return strings.Replace(d, ":", "-", 1) }
	sig, err := remote.Image(mustRef(t, repo+":"+tagOf(from)+".sig"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, repo+":"+tagOf(to)+".sig"), sig); err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(mustRef(t, repo+":"+tagOf(from)))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	toDesc, err := remote.Head(mustRef(t, repo+"@"+to))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		m, _ := getManifest(t, repo+"@"+d.Digest.String())
		m.Subject = &v1.Descriptor{MediaType: toDesc.MediaType, Digest: toDesc.Digest, Size: toDesc.Size}
		raw, _ := json.Marshal(m)
		h, _, _ := v1.SHA256(bytes.NewReader(raw))
		if err := remote.Put(mustRef(t, repo+"@"+h.String()), rawManifest{raw, types.OCIManifestSchema1}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSignCLI covers keygen, signing layouts and indexes, and bad input. It
// sets COSIGN_PASSWORD, so it does not run in parallel.
func TestSignCLI(t *testing.T) {
	t.Setenv(passwordEnv, "cli password")
	reg := testregistry.Start(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	disk, _ := diskFile(t, dir, "vm.img", 300<<10, 5)

	t.Run("keygen", func(t *testing.T) {
		mustCLI(t, "keygen", "--output-key-prefix", key)
		for name, mode := range map[string]os.FileMode{key + ".key": 0o600, key + ".pub": 0o644} {
			fi, err := os.Stat(name)
			if err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
			}
		}
		priv, _ := os.ReadFile(key + ".key")
		if !strings.HasPrefix(string(priv), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----") {
			t.Errorf("private key is not cosign's format:\n%s", priv)
		}
		wantExit(t, 2, "exists", "keygen", "--output-key-prefix", key)
		mustCLI(t, "keygen", "--output-key-prefix", filepath.Join(dir, "forced"))
		mustCLI(t, "keygen", "--force", "--output-key-prefix", filepath.Join(dir, "forced"))
	})
	t.Run("layout", func(t *testing.T) {
		layout := "oci:" + filepath.Join(dir, "layout") + ":v1"
		d := strings.TrimSpace(mustCLI(t, "convert", "--estargz", "disk:"+disk, layout))
		out, _, code := cli(t, "sign", "--key", key+".key", "--format", "json", layout)
		var res struct {
			Digest string
			Signed []struct{ LegacyTag string }
		}
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res.Digest != d || len(res.Signed) != 1 {
			t.Fatalf("sign --format json: exit %d, %q (%v)", code, out, err)
		}
		wantExit(t, 0, "", "verify", "--key", key+".pub", "--deep", layout)
		// The layout's image is still found without a tag, beside its
		// signature tags.
		wantExit(t, 0, "", "verify", "--key", key+".pub", "oci:"+filepath.Join(dir, "layout"))
		// Pushing it to a registry carries the signatures; converting it to
		// another format does not (new digest), unless signed in the same step.
		wantExit(t, 0, "", "convert", "--estargz", layout, "docker://"+reg.Host+"/cli/layout:v1")
		wantExit(t, 0, "", "verify", "--key", key+".pub", "--deep", "docker://"+reg.Host+"/cli/layout:v1")
		// And from one repository to another.
		wantExit(t, 0, "", "convert", "--estargz", "docker://"+reg.Host+"/cli/layout:v1", "docker://"+reg.Host+"/cli/mirror:v1")
		wantExit(t, 0, "", "verify", "--key", key+".pub", "docker://"+reg.Host+"/cli/mirror:v1")
		wantExit(t, 0, "", "convert", "--zstd-chunked", layout, "docker://"+reg.Host+"/cli/zstd:v1")
		wantExit(t, exitNoSignature, "no signature", "verify", "--key", key+".pub", "docker://"+reg.Host+"/cli/zstd:v1")
		wantExit(t, 0, "", "convert", "--zstd-chunked", "--sign-key", key+".key", layout, "docker://"+reg.Host+"/cli/zstd:v1")
		wantExit(t, 0, "", "verify", "--key", key+".pub", "--deep", "docker://"+reg.Host+"/cli/zstd:v1")
	})
	t.Run("bad input", func(t *testing.T) {
		ref := "docker://" + reg.Host + "/cli/bad:v1"
		mustCLI(t, "convert", "--estargz", "disk:"+disk, ref)
		for _, tt := range []struct {
			code int
			want string
			args []string
		}{
			{2, "--key is required", []string{"sign", ref}},
			{2, "no such file", []string{"sign", "--key", filepath.Join(dir, "missing.key"), ref}},
			{2, "this is a public key", []string{"sign", "--key", key + ".pub", ref}},
			{2, "--signature-format", []string{"sign", "--key", key + ".key", "--signature-format", "x509", ref}},
			{2, "KEY=VALUE", []string{"sign", "--key", key + ".key", "-a", "novalue", ref}},
			{2, "only supported as a source", []string{"sign", "--key", key + ".key", "disk:" + disk}},
			{2, "invalid image reference", []string{"sign", "--key", key + ".key", "docker://UPPER/Case"}},
			{2, "convert it to one first", []string{"verify", "--key", key + ".pub", "disk:" + disk}},
			{2, "--key is required", []string{"verify", ref}},
			{2, "not a public key", []string{"verify", "--key", key + ".key", ref}},
			{2, "--signature-format", []string{"verify", "--key", key + ".pub", "--signature-format", "both", ref}},
			{2, "--platform", []string{"verify", "--key", key + ".pub", "--platform", "amd64", ref}},
			{2, "--format", []string{"verify", "--key", key + ".pub", "--format", "yaml", ref}},
			{2, "takes 0 arguments", []string{"keygen", "extra"}},
			{1, "has no \"v1\" in repo cli/missing", []string{"verify", "--key", key + ".pub", "docker://" + reg.Host + "/cli/missing:v1"}},
		} {
			wantExit(t, tt.code, tt.want, tt.args...)
		}
		t.Setenv(passwordEnv, "wrong")
		wantExit(t, 1, "wrong password", "sign", "--key", key+".key", ref)
		wantExit(t, 1, "wrong password", "convert", "--estargz", "--sign-key", key+".key", ref, "oci:"+filepath.Join(dir, "never"))
		if _, err := os.Stat(filepath.Join(dir, "never")); err == nil {
			t.Errorf("convert wrote its output although the signing key could not be loaded")
		}
	})
	t.Run("help", func(t *testing.T) {
		for _, c := range []string{"sign", "verify", "keygen"} {
			out := mustCLI(t, c, "--help")
			if !strings.Contains(out, "Examples:") {
				t.Errorf("%s --help has no examples:\n%s", c, out)
			}
		}
		out := mustCLI(t, "verify", "--help")
		for _, want := range []string{"3  no signature", "4  bad signature", "5  content does not match"} {
			if !strings.Contains(out, want) {
				t.Errorf("verify --help does not document %q", want)
			}
		}
	})
}

// TestSignWithoutPassword signs with an encrypted key, without
// COSIGN_PASSWORD and without a terminal: the error says that, not "wrong
// password".
func TestSignWithoutPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.img", 100<<10, 71)
	layout := "oci:" + filepath.Join(dir, "layout")
	mustCLI(t, "convert", "--estargz", "disk:"+diskPath, layout)
	key := filepath.Join(dir, "k")
	mustProcess(t, offlineEnv(t, "COSIGN_PASSWORD=secret"), "keygen", "--output-key-prefix", key)
	_, stderr, code := lazydiskProcess(t, offlineEnv(t), dir, "sign", "--key", key+".key", layout)
	if code != 2 || !strings.Contains(stderr, "$COSIGN_PASSWORD is not set and there is no terminal") || strings.Contains(stderr, "wrong password") {
		t.Errorf("sign without COSIGN_PASSWORD or a terminal: exit %d, %q", code, stderr)
	}
	_, stderr, code = lazydiskProcess(t, offlineEnv(t, "COSIGN_PASSWORD=wrong"), dir, "sign", "--key", key+".key", layout)
	if code != 1 || !strings.Contains(stderr, "wrong password") {
		t.Errorf("sign with a wrong COSIGN_PASSWORD: exit %d, %q", code, stderr)
	}
}
