package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/json-fields.golden from the commands' output")

// jsonFields lists the field paths of a JSON document: "a.b" for objects,
// "a[]" for arrays; map keys that are data (annotations, set) are "*".
func jsonFields(t *testing.T, doc string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	seen := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if strings.HasSuffix(prefix, "annotations") || strings.HasSuffix(prefix, ".set") {
					k = "*"
				}
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				seen[p] = true
				walk(p, e)
			}
		case []any:
			for _, e := range x {
				walk(prefix+"[]", e)
			}
		}
	}
	walk("", v)
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// lastJSON returns the last line of s that is a JSON object (read and serve
// print theirs on stderr, after other lines).
func lastJSON(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			return lines[i]
		}
	}
	return s
}

// TestJSONFields is the golden test of every command's --format json field
// names (docs/json.md), so that a change to them is deliberate: run
// `go test -run TestJSONFields ./cmd/lazydisk -update` and review the diff.
// It sets COSIGN_PASSWORD, so it does not run in parallel.
func TestJSONFields(t *testing.T) {
	t.Setenv("COSIGN_PASSWORD", "golden")
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.img", 600<<10, 31)
	key := filepath.Join(dir, "k")
	layout := "oci:" + filepath.Join(dir, "layout")

	mustCLI(t, "convert", "--zstd-chunked", "disk:"+diskPath, layout+":unsigned")
	type run struct {
		name   string
		args   []string
		stderr bool // the JSON is on stderr
		code   int
	}
	runs := []run{
		{name: "version", args: []string{"version", "--format", "json"}},
		{name: "keygen", args: []string{"keygen", "--format", "json", "--output-key-prefix", key}},
		{name: "convert", args: []string{"convert", "--estargz", "--format", "json", "--sign-key", key + ".key", "disk:" + diskPath, layout + ":v1"}},
		{name: "toc", args: []string{"toc", "--format", "json", "--chunks", layout + ":v1"}},
		{name: "annotate", args: []string{"annotate", "--format", "json", layout + ":v1", layout + ":v2"}},
		{name: "annotate --check", args: []string{"annotate", "--check", "--format", "json", layout + ":v1"}},
		{name: "sign", args: []string{"sign", "--format", "json", "--key", key + ".key", layout + ":v2"}},
		{name: "verify", args: []string{"verify", "--format", "json", "--deep", "--key", key + ".pub", layout + ":v1"}},
		{name: "copy", args: []string{"copy", "--format", "json", layout + ":v1", "oci:" + filepath.Join(dir, "copied")}},
		{name: "read", args: []string{"read", "--format", "json", "--range", "0:4K", layout + ":v1"}, stderr: true},
		{name: "serve", args: []string{"serve", "--format", "json", "--run", "true", layout + ":v1"}, stderr: true},
		{name: "error", args: []string{"toc", "--format", "json", "oci:" + filepath.Join(dir, "missing")}, code: 1},
		{name: "error (read)", args: []string{"read", "--format", "json", "--range", "0:1", "oci:" + filepath.Join(dir, "missing")}, stderr: true, code: 1},
		{name: "error (verify)", args: []string{"verify", "--format", "json", "--key", key + ".pub", layout + ":unsigned"}, code: 3},
	}
	var got strings.Builder
	for _, r := range runs {
		stdout, stderr, code := cli(t, r.args...)
		if code != r.code {
			t.Fatalf("lazydisk %s: exit %d, want %d: %s", strings.Join(r.args, " "), code, r.code, stderr)
		}
		doc := stdout
		if r.stderr {
			doc = lastJSON(stderr)
		}
		fmt.Fprintf(&got, "## %s\n%s\n", r.name, strings.Join(jsonFields(t, doc), "\n"))
	}
	// A --platform that matches nothing, refused as by the other commands
	// (TestOutputVocabulary).
	if _, stderr, code := cli(t, "verify", "--key", key+".pub", "--platform", "linux/s390x", layout+":v1"); code != 1 || !strings.Contains(stderr, "linux/s390x") || !strings.Contains(stderr, "platform not found") {
		t.Errorf("verify --platform linux/s390x of a linux/%s image: exit %d, %q; want 1 and platform not found", runtime.GOARCH, code, stderr)
	}

	golden := filepath.Join("testdata", "json-fields.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("the commands' JSON field names changed; if that is deliberate, update docs/json.md and run with -update.\ngot:\n%s", got.String())
	}
}
