package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// TestConvertSkipIfConverted runs convert --skip-if-converted twice into a
// registry: the first run converts and records the source digest, the
// second says it skipped and prints the same digest, in text and JSON.
func TestConvertSkipIfConverted(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	disk, _ := diskFile(t, t.TempDir(), "vm.img", 300<<10, 30)
	src := "docker://" + reg.Host + "/vm/src:41"
	dst := "docker://" + reg.Host + "/vm/dst:41"
	srcDigest := strings.TrimSpace(mustCLI(t, "convert", "--estargz", "disk:"+disk, src))

	var first, second struct {
		Digest       string `json:"digest"`
		Skipped      bool   `json:"skipped"`
		SourceDigest string `json:"sourceDigest"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "convert", "--zstd-chunked", "--skip-if-converted", "--format", "json", src, dst)), &first); err != nil {
		t.Fatal(err)
	}
	m, _ := getManifest(t, dst)
	if first.Skipped || first.SourceDigest != srcDigest || m.Annotations[lazydisk.AnnotationSourceDigest] != srcDigest {
		t.Fatalf("first run %+v, manifest annotations %v; want converted and %s recorded", first, m.Annotations, srcDigest)
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "convert", "--zstd-chunked", "--skip-if-converted", "--format", "json", src, dst)), &second); err != nil {
		t.Fatal(err)
	}
	if !second.Skipped || second.Digest != first.Digest {
		t.Errorf("second run %+v; want skipped with digest %s", second, first.Digest)
	}
	out, errOut, code := cli(t, "convert", "--zstd-chunked", "--skip-if-converted", src, dst)
	if code != 0 || strings.TrimSpace(out) != first.Digest || !strings.Contains(errOut, "is already converted from "+srcDigest+": skipped") {
		t.Errorf("text run: exit %d, stdout %q, stderr %q; want the digest and a line saying it skipped", code, out, errOut)
	}
}

// TestConvertFromList converts the pair of a --from-list file that
// --list-index picks, as a pod of the Indexed Job in deploy/ does, and
// checks the refusals.
func TestConvertFromList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	disk, _ := diskFile(t, dir, "vm.img", 200<<10, 31)
	list := filepath.Join(dir, "sources.txt")
	body := "# source destination\n\ndisk:" + disk + " oci:" + dir + "/zero:41\n  disk:" + disk + "   oci:" + dir + "/one:41  \nonly-one-field\n"
	if err := os.WriteFile(list, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "convert", "--estargz", "--from-list", list, "--list-index", "1")
	if _, err := os.Stat(filepath.Join(dir, "one", "index.json")); err != nil {
		t.Errorf("pair 1 was not converted: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "zero")); err == nil {
		t.Errorf("pair 0 was converted too")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--list-index", "3"}, "has 3 pairs: index 3 is out of range"},
		{[]string{"--list-index", "2"}, `line 5: want "SRC DST", got "only-one-field"`},
		{[]string{"--list-index", "0", "disk:" + disk, "oci:" + dir + "/x"}, "convert takes 0 arguments, got 2"},
	} {
		wantExit(t, 2, tc.want, append([]string{"convert", "--estargz", "--from-list", list}, tc.args...)...)
	}
	wantExit(t, 2, "--from-list:", "convert", "--estargz", "--from-list", filepath.Join(dir, "missing"), "--list-index", "0")
}

// TestConvertFromListJobIndex takes the index from $JOB_COMPLETION_INDEX,
// as Kubernetes sets it. It sets the variable, so it does not run in
// parallel.
func TestConvertFromListJobIndex(t *testing.T) {
	dir := t.TempDir()
	disk, _ := diskFile(t, dir, "vm.img", 100<<10, 32)
	list := filepath.Join(dir, "sources.txt")
	if err := os.WriteFile(list, []byte("disk:"+disk+" oci:"+dir+"/zero:41\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(jobIndexEnv, "x")
	wantExit(t, 2, `$JOB_COMPLETION_INDEX is "x"`, "convert", "--estargz", "--from-list", list)
	t.Setenv(jobIndexEnv, "0")
	mustCLI(t, "convert", "--estargz", "--from-list", list)
	if _, err := os.Stat(filepath.Join(dir, "zero", "index.json")); err != nil {
		t.Errorf("pair 0 was not converted: %v", err)
	}
	os.Unsetenv(jobIndexEnv)
	wantExit(t, 2, "--from-list needs --list-index N or $JOB_COMPLETION_INDEX", "convert", "--estargz", "--from-list", list)
}
