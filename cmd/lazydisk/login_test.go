package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// authRegistry puts a registry behind HTTP basic authentication (user ci,
// password s3cret) or a bearer token (tok123), on 127.0.0.1, and returns
// its host.
func authRegistry(t *testing.T) string {
	t.Helper()
	reg := testregistry.Start(t)
	backend, err := url.Parse("http://" + reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(backend)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if (ok && user == "ci" && pass == "s3cret") || r.Header.Get("Authorization") == "Bearer tok123" {
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// cliStdin is cli with stdin.
func cliStdin(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// umask is this process's file mode creation mask.
func umask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status to read the umask from")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			return os.FileMode(n)
		}
	}
	t.Skip("no Umask in /proc/self/status")
	return 0
}

// TestCredentials covers login and logout, --authfile, --creds,
// --registry-token and REGISTRY_AUTH_FILE against a registry that needs
// credentials, and errors that say whether credentials were sent.
func TestCredentials(t *testing.T) {
	t.Parallel()
	host := authRegistry(t)
	dir := t.TempDir()
	diskPath, _ := diskFile(t, dir, "vm.img", 200<<10, 61)
	ref := "docker://" + host + "/auth/vm:1"
	authfile := filepath.Join(dir, "auth.json")

	// Nothing stored: the error says no credentials were sent.
	if _, stderr, code := cli(t, "convert", "--estargz", "disk:"+diskPath, ref); code != 1 || !strings.Contains(stderr, "no credentials were sent") || !strings.Contains(stderr, "lazydisk login "+host) {
		t.Errorf("push without credentials: exit %d, %q", code, stderr)
	}
	// Wrong ones on the command line: they were sent, and refused.
	if _, stderr, code := cli(t, "convert", "--creds", "ci:wrong", "--estargz", "disk:"+diskPath, ref); code != 1 || !strings.Contains(stderr, "the credentials sent for "+host+" were refused") {
		t.Errorf("push with wrong --creds: exit %d, %q", code, stderr)
	}
	mustCLI(t, "convert", "--creds", "ci:s3cret", "--estargz", "disk:"+diskPath, ref)
	mustCLI(t, "toc", "--registry-token", "tok123", ref)
	if _, stderr, code := cli(t, "toc", "--creds", "ci", ref); code != 2 || !strings.Contains(stderr, "--creds must be USER:PASS") {
		t.Errorf("--creds without a password: exit %d, %q", code, stderr)
	}

	// login checks the password, then stores it.
	if _, stderr, code := cliStdin(t, "wrong\n", "login", "--authfile", authfile, host, "-u", "ci", "--password-stdin"); code != 1 || !strings.Contains(stderr, "refused the username and password") {
		t.Errorf("login with a wrong password: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(authfile); !os.IsNotExist(err) {
		t.Errorf("a refused login wrote %s: %v", authfile, err)
	}
	if _, stderr, code := cliStdin(t, "s3cret\n", "login", "--authfile", authfile, host, "-u", "ci", "--password-stdin"); code != 0 || !strings.Contains(stderr, "Login Succeeded") {
		t.Fatalf("login: exit %d, %q", code, stderr)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, err := os.ReadFile(authfile)
	if err != nil || json.Unmarshal(b, &cfg) != nil || cfg.Auths[host].Auth != base64.StdEncoding.EncodeToString([]byte("ci:s3cret")) {
		t.Errorf("login wrote %s: %s, %v", authfile, b, err)
	}
	if fi, err := os.Stat(authfile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the auth file's mode is %v, %v; want 0600: it holds secrets", fi.Mode(), err)
	}
	mustCLI(t, "toc", "--authfile", authfile, ref)

	// REGISTRY_AUTH_FILE, in a process of its own.
	env := offlineEnv(t, "REGISTRY_AUTH_FILE="+authfile)
	mustProcess(t, env, "toc", ref)
	// The default file, for login without --authfile: the Docker config.
	home := t.TempDir()
	env = offlineEnv(t, "DOCKER_CONFIG="+filepath.Join(home, "docker"))
	mustProcess(t, env, "login", host, "-u", "ci", "-p", "s3cret", "--no-check")
	if _, err := os.Stat(filepath.Join(home, "docker", "config.json")); err != nil {
		t.Errorf("login without --authfile did not write $DOCKER_CONFIG/config.json: %v", err)
	}
	mustProcess(t, env, "toc", ref)

	mustCLI(t, "logout", "--authfile", authfile, host)
	if _, stderr, code := cli(t, "logout", "--authfile", authfile, host); code != 1 || !strings.Contains(stderr, "has no credentials for "+host) {
		t.Errorf("logout twice: exit %d, %q", code, stderr)
	}
	if _, stderr, code := cli(t, "toc", "--authfile", authfile, ref); code != 1 || !strings.Contains(stderr, "no credentials were sent") {
		t.Errorf("toc after logout: exit %d, %q", code, stderr)
	}

	// Files written for the user are theirs to share: 0666 less the umask.
	out, digest := filepath.Join(dir, "head.bin"), filepath.Join(dir, "digest.txt")
	mustCLI(t, "read", "--creds", "ci:s3cret", ref, "--range", "0:4K", "-o", out)
	mustCLI(t, "convert", "--creds", "ci:s3cret", "--zstd-chunked", "--digestfile", digest, "disk:"+diskPath, ref+"-zstd")
	want := 0o666 &^ umask(t)
	for _, p := range []string{out, digest} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, %v; want %v", filepath.Base(p), fi.Mode().Perm(), err, want)
		}
	}
}

// mustProcess runs lazydisk as a process in a new directory and fails the
// test unless it exits 0.
func mustProcess(t *testing.T, env []string, args ...string) {
	t.Helper()
	stdout, stderr, code := lazydiskProcess(t, env, t.TempDir(), args...)
	mustRun(t, "lazydisk "+strings.Join(args, " "), stdout, stderr, code)
}
