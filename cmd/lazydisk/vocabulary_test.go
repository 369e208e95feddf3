package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutputVocabulary checks that the commands share flags and names:
// --format text|json (toc's table kept as an alias), --stats as shorthand,
// a --platform that matches nothing refused by every command, annotate
// --check without a destination, and disk/... as every command names the
// disk.
func TestOutputVocabulary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.img", 300<<10, 41)
	layout := "oci:" + filepath.Join(dir, "layout") + ":v1"
	mustCLI(t, "convert", "--estargz", "--platform", "linux/amd64", "disk:"+diskPath, layout)

	t.Run("toc --format", func(t *testing.T) {
		t.Parallel()
		text, table := mustCLI(t, "toc", "--format", "text", layout), mustCLI(t, "toc", "--format", "table", layout)
		if text != table || !strings.Contains(text, "disk/vm.img") {
			t.Errorf("toc --format text printed %q, --format table %q", text, table)
		}
		if _, stderr, code := cli(t, "toc", "--format", "yaml", layout); code != 2 || !strings.Contains(stderr, "--format must be text or json") {
			t.Errorf("toc --format yaml: exit %d, %q", code, stderr)
		}
	})

	t.Run("read --stats", func(t *testing.T) {
		t.Parallel()
		_, stderr, code := cli(t, "read", "--stats", "json", layout, "--range", "0:4K")
		if code != 2 || !strings.Contains(stderr, "write --stats=json") {
			t.Errorf("read --stats json (with a space): exit %d, %q; want a usage error saying how", code, stderr)
		}
		for _, args := range [][]string{{"--stats=json"}, {"--stats", "--format", "json"}, {"--format", "json"}} {
			_, stderr := mustCLIErr(t, append([]string{"read", layout, "--range", "0:4K"}, args...)...)
			var st readStats
			if err := json.Unmarshal([]byte(lastJSON(stderr)), &st); err != nil || st.File != "disk/vm.img" || st.Read != 4096 {
				t.Errorf("read %s: stats %+v, %v from %q", strings.Join(args, " "), st, err, stderr)
			}
		}
		if _, stderr := mustCLIErr(t, "read", layout, "--range", "0:4K", "--stats"); !strings.HasPrefix(stderr, "read 4.0 KiB of disk/vm.img") {
			t.Errorf("read --stats printed %q", stderr)
		}
		if _, stderr, code := cli(t, "read", layout, "--range", "0:4K", "--stats=json", "--format", "text"); code != 2 || !strings.Contains(stderr, "disagree") {
			t.Errorf("read --stats=json --format text: exit %d, %q", code, stderr)
		}
	})

	t.Run("platform", func(t *testing.T) {
		t.Parallel()
		// verify's is checked in TestJSONFields, which has a key.
		for _, args := range [][]string{
			{"convert", "--zstd-chunked", layout, "oci:" + filepath.Join(t.TempDir(), "out")},
			{"toc", layout},
			{"read", layout, "--range", "0:1"},
			{"serve", layout, "--run", "true"},
		} {
			args = append(args, "--platform", "linux/s390x")
			_, stderr, code := cli(t, args...)
			if code != 1 || !strings.Contains(stderr, "linux/s390x") || !strings.Contains(stderr, "platform not found") {
				t.Errorf("lazydisk %s: exit %d, %q; want 1 and platform not found", strings.Join(args, " "), code, stderr)
			}
		}
	})

	t.Run("annotate --check", func(t *testing.T) {
		t.Parallel()
		if _, stderr, code := cli(t, "annotate", "--check", layout); code != 0 {
			t.Errorf("annotate --check SRC: exit %d, %q", code, stderr)
		}
		if _, stderr, code := cli(t, "annotate", layout); code != 2 || !strings.Contains(stderr, "annotate takes 2 arguments") {
			t.Errorf("annotate SRC without --check: exit %d, %q", code, stderr)
		}
	})

	t.Run("disk names", func(t *testing.T) {
		t.Parallel()
		_, stderr := mustCLIErr(t, "serve", layout, "--run", "true", "--stats")
		if !strings.Contains(stderr, "serving disk/vm.img (") || !strings.Contains(stderr, "served disk/vm.img (") || strings.Contains(stderr, "/disk/") {
			t.Errorf("serve names the disk otherwise than disk/vm.img:\n%s", stderr)
		}
	})
}

// mustCLIErr is mustCLI returning stderr too.
func mustCLIErr(t *testing.T, args ...string) (string, string) {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("lazydisk %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out, errOut
}
