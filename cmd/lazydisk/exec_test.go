package main

import (
	"bytes"
	"context"
	"errors"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/internal/clitest"
)

// execAsLazydisk makes the test binary run as lazydisk, for tests that need
// a separate process with its own environment (a fresh HOME, no route off
// the loopback).
const execAsLazydisk = "LAZYDISK_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execAsLazydisk) == "1" {
		main() // exits, stopping on SIGINT and SIGTERM as lazydisk does
	}
	// read -o once replaced /dev/null with a regular file, as root.
	os.Exit(clitest.RunCheckingDevNull(m))
}

// offlineEnv is an environment in which nothing can be reached but the
// loopback: HTTP(S) to anything else goes to a proxy on 127.0.0.1:9, where
// nothing listens. HOME is a fresh directory, so no cosign or TUF cache and no
// registry credentials are found.
func offlineEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	return append([]string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"TMPDIR=" + t.TempDir(),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9",
		"https_proxy=http://127.0.0.1:9", "http_proxy=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
		"TUF_ROOT=" + filepath.Join(home, ".sigstore", "root"),
		"DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
	}, extra...)
}

// runProcess runs a program in dir with env and a timeout, and returns its
// stdout, stderr and exit code.
func runProcess(t *testing.T, env []string, dir, prog string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env, cmd.Dir = env, dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", prog, err)
	}
	return out.String(), errb.String(), 0
}

// lazydiskProcess runs lazydisk (this test binary) as a separate process.
func lazydiskProcess(t *testing.T, env []string, dir string, args ...string) (string, string, int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return runProcess(t, append(env, execAsLazydisk+"=1"), dir, self, args...)
}

// cosignBinary finds the cosign CLI on PATH or in $(go env GOPATH)/bin,
// where .ci/run installs it, and skips the test when there is none.
func cosignBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	gopath := build.Default.GOPATH
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		gopath = string(bytes.TrimSpace(out))
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "cosign")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	t.Skip("cosign CLI not found on PATH or in $(go env GOPATH)/bin: run `make cosign` (which .ci/run and CI do) " +
		"or `go install github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3` to run the interop tests")
	return ""
}

// mustRun fails the test unless the process exited 0.
func mustRun(t *testing.T, what string, stdout, stderr string, code int) string {
	t.Helper()
	if code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, code, stdout, strings.TrimSpace(stderr))
	}
	return stdout
}
