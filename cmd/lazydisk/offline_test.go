package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestReferencesTouchNoNetwork runs lazydisk in a network namespace with no
// network (unshare -n, as root) with Go's resolver tracing on
// (GODEBUG=netdns=go+2 prints every host lookup): a typo of a transport
// (foo://bar) and a reference holding a password fail as bad input before
// any lookup, and the password is never printed.
func TestReferencesTouchNoNetwork(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("unshare -n needs root: skipping")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare is not installed (apt-get install util-linux): skipping")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(offlineEnv(t), execAsLazydisk+"=1", "GODEBUG=netdns=go+2")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"read", "foo://bar", "--range", "0:1"}, `unknown transport "foo"`},
		{[]string{"toc", "foo://registry.example.com/vm/x:1"}, `unknown transport "foo"`},
		{[]string{"read", "user:hunter2@registry.example.com/vm/x:1", "--range", "0:1"}, "must not hold credentials"},
		{[]string{"convert", "--estargz", "docker://user:hunter2@registry.example.com/vm/x:1", "oci:" + t.TempDir()}, "must not hold credentials"},
	} {
		stdout, stderr, code := runProcess(t, env, t.TempDir(), unshare, append([]string{"-n", self}, tt.args...)...)
		if code == 1 && strings.Contains(stderr, "unshare:") {
			t.Skipf("unshare -n is not allowed here: %s", strings.TrimSpace(stderr))
		}
		if code != 2 || !strings.Contains(stderr, tt.want) || strings.Contains(stderr+stdout, "hunter2") ||
			strings.Contains(stderr, "hostLookupOrder") || strings.Contains(stderr, "dial ") {
			t.Errorf("lazydisk %s in a namespace without network: exit %d, stderr %q; want exit 2, %q, no host lookup and no password",
				strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}
