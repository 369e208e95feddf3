package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// TestUsageExitCodes checks that every way of calling lazydisk wrongly
// exits 2, unknown commands included, with a hint.
func TestUsageExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"convrt", "a", "b"}, `did you mean "convert"?`},
		{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"toc"}, "toc takes 1 arguments, got 0"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			_, stderr, code := cli(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
	// No command at all is a request for help.
	if out, _, code := cli(t); code != 0 || !strings.Contains(out, "Available Commands") {
		t.Errorf("lazydisk with no arguments: exit %d, %q", code, out)
	}
}

func TestRootHelpDocumentsExitCodes(t *testing.T) {
	t.Parallel()
	out := mustCLI(t, "--help")
	for _, want := range []string{"Exit codes:", "2    usage error", "130  interrupted by SIGINT", "143  stopped by SIGTERM"} {
		if !strings.Contains(out, want) {
			t.Errorf("lazydisk --help lacks %q:\n%s", want, out)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	flag, cmd := mustCLI(t, "--version"), mustCLI(t, "version")
	if !strings.HasPrefix(flag, "lazydisk ") || flag != cmd {
		t.Errorf("lazydisk --version printed %q, lazydisk version %q; want the same line", flag, cmd)
	}
}

func TestVersionOf(t *testing.T) {
	t.Parallel()
	rev := "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"go install", debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"pseudo-version", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261208020000-0123456789ab+dirty"}}, "v0.0.0-20261208020000-0123456789ab+dirty"},
		{"checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}}, "devel-0123456789ab"},
		{"dirty checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}}, "devel-0123456789ab-dirty"},
		{"nothing", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := versionOf(&tc.bi); got != tc.want {
				t.Errorf("versionOf = %q, want %q", got, tc.want)
			}
		})
	}
}
