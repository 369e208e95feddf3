package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// progressLine is the end of a finished progress line.
var progressLine = regexp.MustCompile(`\(100%\)  \S+ \S*B/s *\n`)

// TestProgress checks that the long phases show bytes, rate and ETA
// (forced with --progress always, as tests have no terminal): read, the
// upload after a conversion and verify --deep; and that --quiet leaves only
// the result. It sets COSIGN_PASSWORD, so it does not run in parallel.
func TestProgress(t *testing.T) {
	t.Setenv("COSIGN_PASSWORD", "progress")
	reg := testregistry.Start(t)
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.img", 2<<20, 51)
	key := filepath.Join(dir, "k")
	mustCLI(t, "keygen", "--output-key-prefix", key)
	ref := "docker://" + reg.Host + "/progress/vm:1"

	_, stderr := mustCLIErr(t, "convert", "--estargz", "--progress", "always", "--sign-key", key+".key", "disk:"+diskPath, ref)
	if !strings.Contains(stderr, "layer 1/1  ") || !strings.Contains(stderr, "uploading "+ref+"  ") || !progressLine.MatchString(stderr) {
		t.Errorf("convert --progress always printed no layer or upload progress:\n%q", stderr)
	}
	_, stderr = mustCLIErr(t, "read", ref, "--range", "all", "-o", filepath.Join(dir, "out.img"), "--progress", "always")
	if !strings.Contains(stderr, "reading disk/vm.img  2.0 MiB / 2.0 MiB (100%)") {
		t.Errorf("read --range all --progress always printed %q", stderr)
	}
	_, stderr = mustCLIErr(t, "verify", "--deep", "--key", key+".pub", ref, "--progress", "always")
	if !strings.Contains(stderr, "fetching layer sha256:") || !progressLine.MatchString(stderr) {
		t.Errorf("verify --deep --progress always printed %q", stderr)
	}
	// Without a terminal, auto shows nothing.
	if _, stderr := mustCLIErr(t, "read", ref, "--range", "all", "-o", filepath.Join(dir, "out.img")); stderr != "" {
		t.Errorf("read without a terminal printed %q", stderr)
	}

	// --quiet: the result only, progress or not.
	stdout, stderr := mustCLIErr(t, "--quiet", "convert", "--zstd-chunked", "--progress", "always", "disk:"+diskPath, ref+"-zstd")
	if stderr != "" || !strings.HasPrefix(stdout, "sha256:") {
		t.Errorf("convert --quiet printed %q on stdout, %q on stderr; want only the digest", stdout, stderr)
	}
	if _, stderr := mustCLIErr(t, "sign", "-q", "--key", key+".key", ref+"-zstd"); stderr != "" {
		t.Errorf("sign -q printed %q", stderr)
	}
	if _, stderr, code := cli(t, "read", ref, "--range", "0:1", "--progress", "sometimes"); code != 2 || !strings.Contains(stderr, "--progress must be auto, always or never") {
		t.Errorf("--progress sometimes: exit %d, %q", code, stderr)
	}
}

// TestVerbose checks that -v logs every HTTP request, token fetches and
// signed-URL redirects included, without credentials: no Authorization
// header, token or signed query string.
func TestVerbose(t *testing.T) {
	t.Parallel()
	fp := &testregistry.Faults{TokenTTL: time.Minute, RedirectTTL: time.Minute}
	reg := testregistry.Start(t, testregistry.WithMiddleware(fp.Middleware))
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.img", 1<<20, 52)
	ref := "docker://" + reg.Host + "/verbose/vm:1"
	mustCLI(t, "convert", "--estargz", "disk:"+diskPath, ref)

	for _, flag := range []string{"-v", "--debug"} {
		_, stderr := mustCLIErr(t, "read", flag, ref, "--range", "0:4K", "-o", os.DevNull)
		for _, want := range []string{"msg=http method=GET", "/v2/verbose/vm/manifests/1", "status=401", "/token?…", "status=307", "/blobs/sha256:", "range=\"bytes="} {
			if !strings.Contains(stderr, want) {
				t.Errorf("read %s: the log lacks %q:\n%s", flag, want, stderr)
			}
		}
		for _, secret := range []string{"Authorization", "Bearer", "token=", "expires=", "signature=", "fault="} {
			if strings.Contains(stderr, secret) {
				t.Errorf("read %s: the log shows %q:\n%s", flag, secret, stderr)
			}
		}
	}
	if _, stderr := mustCLIErr(t, "read", ref, "--range", "0:4K", "-o", os.DevNull); stderr != "" {
		t.Errorf("read without -v printed %q", stderr)
	}
}
