package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

// actionScript is the shell logic of the GitHub Action (action.yml).
const actionScript = "../../action/convert.sh"

// runAction runs the action's script in dir with env.
func runAction(t *testing.T, env []string, dir string) (string, string, int) {
	t.Helper()
	script, err := filepath.Abs(actionScript)
	if err != nil {
		t.Fatal(err)
	}
	return runProcess(t, env, dir, "bash", script)
}

// actionEnv is an offline environment for running the action's script the
// way GitHub does: lazydisk on PATH (this test binary behind a wrapper),
// GITHUB_OUTPUT and GITHUB_STEP_SUMMARY in temporary files, and RUNNER_TEMP.
// It returns the environment and the paths of the output and summary files
// and of RUNNER_TEMP.
func actionEnv(t *testing.T, extra ...string) (env []string, output, summary, runnerTemp string) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found: the action's script needs it")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, files := t.TempDir(), t.TempDir()
	wrapper := "#!/bin/sh\n" + execAsLazydisk + "=1 exec '" + self + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "lazydisk"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	output, summary, runnerTemp = filepath.Join(files, "output"), filepath.Join(files, "summary"), t.TempDir()
	env = offlineEnv(t, extra...)
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i] = "PATH=" + bin + string(filepath.ListSeparator) + strings.TrimPrefix(kv, "PATH=")
		}
	}
	env = append(env, "GITHUB_OUTPUT="+output, "GITHUB_STEP_SUMMARY="+summary, "RUNNER_TEMP="+runnerTemp)
	return env, output, summary, runnerTemp
}

// readOutputs parses a GITHUB_OUTPUT file of name=value lines.
func readOutputs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[string]string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if _, dup := out[k]; dup {
				t.Errorf("output %s written twice", k)
			}
			out[k] = v
		}
	}
	return out
}

// TestActionScript runs the action's script as action.yml does, against a
// registry on 127.0.0.1: a disk becomes a signed eStargz and zstd:chunked
// pair, and the digests the step outputs name are the ones in the registry,
// signed with the key given as text.
func TestActionScript(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	const password = "action password"
	env, _, _, _ := actionEnv(t, "COSIGN_PASSWORD="+password)
	o, e, c := lazydiskProcess(t, env, dir, "keygen")
	mustRun(t, "lazydisk keygen", o, e, c)
	key, err := os.ReadFile(filepath.Join(dir, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	disk, _ := diskFile(t, dir, "vm.img", 700<<10, 20)

	env, output, summary, runnerTemp := actionEnv(t,
		"LAZYDISK_SOURCE=disk:"+disk,
		"LAZYDISK_DESTINATION=docker://"+reg.Host+"/vm/disk:41-{format}",
		"LAZYDISK_FORMATS=estargz, zstd-chunked",
		"LAZYDISK_PLATFORM=linux/arm64",
		"LAZYDISK_CHUNK_SIZE=64K",
		"LAZYDISK_SIGN_KEY="+string(key),
		"COSIGN_PASSWORD="+password,
	)
	stdout, stderr, code := runAction(t, env, dir)
	t.Logf("action script: exit %d\n%s%s", code, stdout, stderr)
	mustRun(t, "action script", stdout, stderr, code)

	out := readOutputs(t, output)
	sum, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		format, annotation string
	}{
		{"estargz", toc.AnnotationTOCDigest},
		{"zstd-chunked", toc.AnnotationZstdChunkedManifestChecksum},
	} {
		tag := reg.Host + "/vm/disk:41-" + tc.format
		desc, err := remote.Head(mustRef(t, tag))
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		digest := desc.Digest.String()
		if got := out[tc.format+"-digest"]; got != digest {
			t.Errorf("output %s-digest = %q, the registry has %s at %s", tc.format, got, digest, tag)
		}
		pinned := reg.Host + "/vm/disk@" + digest
		if got := out[tc.format+"-image"]; got != pinned {
			t.Errorf("output %s-image = %q, want %q", tc.format, got, pinned)
		}
		m, _ := getManifest(t, pinned)
		if len(m.Layers) != 1 || m.Layers[0].Annotations[tc.annotation] == "" {
			t.Errorf("%s: layers %+v, want one with %s", pinned, m.Layers, tc.annotation)
		}
		if m.Config.Digest.String() == "" {
			t.Errorf("%s: no config", pinned)
		}
		// The real consumer of the signature: lazydisk verify, as a
		// separate process with the public key only.
		o, e, c := lazydiskProcess(t, offlineEnv(t), dir, "verify", "--key", filepath.Join(dir, "cosign.pub"), "--deep", "docker://"+pinned)
		mustRun(t, "lazydisk verify "+pinned, o, e, c)
		if row := "| " + tc.format + " | `docker://" + tag + "` | `" + digest + "` | yes (both) |"; !strings.Contains(string(sum), row) {
			t.Errorf("summary lacks the row %q:\n%s", row, sum)
		}
	}
	if out["digest"] != out["estargz-digest"] {
		t.Errorf("output digest = %q, want the first format's, %q", out["digest"], out["estargz-digest"])
	}
	// The key written from the secret is gone.
	if left, _ := os.ReadDir(runnerTemp); len(left) != 0 {
		t.Errorf("RUNNER_TEMP keeps %d entries after the script, want none (the key file must be removed)", len(left))
	}
}

// TestActionScriptBadInput checks that the script refuses bad inputs with a
// GitHub error annotation that says what to change, and writes no output.
func TestActionScriptBadInput(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	disk, _ := diskFile(t, dir, "vm.img", 100<<10, 21)
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"no source", []string{"LAZYDISK_DESTINATION=oci:" + dir + "/out"}, "the source input is empty"},
		{"no destination", []string{"LAZYDISK_SOURCE=disk:" + disk}, "the destination input is empty"},
		{"unknown format", []string{"LAZYDISK_SOURCE=disk:" + disk, "LAZYDISK_DESTINATION=oci:" + dir + "/out", "LAZYDISK_FORMATS=gzip"}, `unknown format "gzip"`},
		{"two formats, one destination", []string{"LAZYDISK_SOURCE=disk:" + disk, "LAZYDISK_DESTINATION=docker://" + reg.Host + "/vm/disk:41", "LAZYDISK_FORMATS=estargz zstd-chunked"}, "need a destination containing {format}"},
		{"bad chunk size", []string{"LAZYDISK_SOURCE=disk:" + disk, "LAZYDISK_DESTINATION=docker://" + reg.Host + "/vm/disk:41", "LAZYDISK_CHUNK_SIZE=1K"}, "chunk size 1024 is out of range"},
		{"bad key", []string{"LAZYDISK_SOURCE=disk:" + disk, "LAZYDISK_DESTINATION=docker://" + reg.Host + "/vm/disk:41", "LAZYDISK_SIGN_KEY=not a key"}, "key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, output, _, runnerTemp := actionEnv(t, tc.env...)
			stdout, stderr, code := runAction(t, env, dir)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want a failure saying %q\nstdout: %s", code, stderr, tc.want, stdout)
			}
			if out := readOutputs(t, output); len(out) != 0 {
				t.Errorf("outputs %v written by a failed run", out)
			}
			if left, _ := os.ReadDir(runnerTemp); len(left) != 0 {
				t.Errorf("RUNNER_TEMP keeps %d entries after a failed run", len(left))
			}
		})
	}
	if _, err := remote.Head(mustRef(t, reg.Host+"/vm/disk:41")); err == nil {
		t.Errorf("a failed run wrote %s/vm/disk:41", reg.Host)
	}
}
