// Package clitest runs, in tests, the external programs lazydisk is checked
// against (qemu-img, qemu-io, nbdinfo, nbdcopy, cosign): it skips a test when
// one is not installed, and fails it with the program's output when the
// program fails.
package clitest

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Need skips t unless every program in tools is on PATH; hint says how to
// install them ("apt-get install qemu-utils libnbd-bin").
func Need(t testing.TB, hint string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (%s): skipping", tool, hint)
		}
	}
}

// Run runs name with args, killing it after timeout, and returns its
// standard output. A failure fails t with both outputs.
func Run(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
