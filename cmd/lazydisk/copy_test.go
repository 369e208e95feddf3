package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// TestCopy copies a signed layout into a registry and back, as an
// air-gapped mirror does: the digest stays the same and the signatures
// still verify at each end. It sets COSIGN_PASSWORD, so it does not run in
// parallel.
func TestCopy(t *testing.T) {
	t.Setenv("COSIGN_PASSWORD", "copy")
	reg := testregistry.Start(t)
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.img", 300<<10, 81)
	key := filepath.Join(dir, "k")
	mustCLI(t, "keygen", "--output-key-prefix", key)
	layout := "oci:" + filepath.Join(dir, "layout") + ":v1"
	digest := strings.TrimSpace(mustCLI(t, "convert", "--estargz", "--sign-key", key+".key", "disk:"+diskPath, layout))

	ref := "docker://" + reg.Host + "/copy/vm:1"
	back := "oci:" + filepath.Join(dir, "back") + ":v1"
	for _, c := range [][2]string{{layout, ref}, {ref, back}} {
		stdout, stderr := mustCLIErr(t, "copy", c[0], c[1])
		if strings.TrimSpace(stdout) != digest || !strings.Contains(stderr, "copied its signatures: 1 bundle, 1 legacy") {
			t.Errorf("copy %s %s printed %q, %q; want %s and its signatures", c[0], c[1], stdout, stderr, digest)
		}
		mustCLI(t, "verify", "--key", key+".pub", "--deep", c[1])
	}
	// Without its signatures, the copy verifies no more.
	bare := "docker://" + reg.Host + "/copy/bare:1"
	mustCLI(t, "copy", "--no-signatures", layout, bare)
	if _, _, code := cli(t, "verify", "--key", key+".pub", bare); code != exitNoSignature {
		t.Errorf("verify of a copy without signatures: exit %d, want %d", code, exitNoSignature)
	}
	if _, stderr, code := cli(t, "copy", layout, "disk:"+filepath.Join(dir, "x.img")); code != 2 || !strings.Contains(stderr, "only supported as a source") {
		t.Errorf("copy to disk:: exit %d, %q", code, stderr)
	}
}
