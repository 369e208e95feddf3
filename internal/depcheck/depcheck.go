// Package depcheck is a test helper that keeps a package from linking heavy
// dependencies: it asks `go list -deps` for everything a package links and
// fails with the chain of imports that reached a banned one. It is modelled
// on go-containerregistry's internal/depcheck (pkg/registry/depcheck_test.go),
// without its golang.org/x/tools dependency.
package depcheck

import (
	"bufio"
	"bytes"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// AssertNoDependency fails t when pkg (an import path) links, directly or
// not, a package whose import path starts with one of the banned prefixes.
// A prefix matches whole path elements: "google.golang.org/grpc" bans
// google.golang.org/grpc and google.golang.org/grpc/codes but not
// google.golang.org/grpcx.
func AssertNoDependency(t *testing.T, pkg string, banned []string) {
	t.Helper()
	g := load(t, pkg)
	for _, p := range slices.Sorted(maps.Keys(g)) {
		for _, b := range banned {
			if p == b || strings.HasPrefix(p, b+"/") {
				t.Errorf("%s links %s, which it must not (banned: %s):\n  %s", pkg, p, b, strings.Join(path(g, pkg, p), "\n  "))
			}
		}
	}
}

// load returns the import graph of pkg and its dependencies: each package
// with the packages it imports.
func load(t *testing.T, pkg string) map[string][]string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the dependency check needs the go command: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(goTool, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, pkg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v: %s", pkg, err, stderr.String())
	}
	g := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok := g[pkg]; !ok {
		t.Fatalf("go list -deps %s did not list %s itself", pkg, pkg)
	}
	return g
}

// path returns a shortest chain of imports from "from" to "to".
func path(g map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, imp := range g[p] {
			if _, seen := prev[imp]; !seen {
				prev[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return []string{from, "...", to}
}
