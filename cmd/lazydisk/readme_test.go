package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shellWords splits a README command line as sh would for the simple lines
// there: words, single- and double-quoted strings (kept as they are inside),
// a comment from " #" on.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				t.Fatalf("unbalanced quote in README line %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestReadme60Seconds runs the lazydisk lines of the README's "Try it in
// 60 seconds" block, as written, in a new directory, so that the path a
// newcomer follows cannot rot. It changes directory, so it does not run in
// parallel.
func TestReadme60Seconds(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Try it in 60 seconds\n")
	if !ok {
		t.Fatal(`README.md has no "## Try it in 60 seconds" section`)
	}
	_, block, _ := strings.Cut(section, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	t.Chdir(t.TempDir())
	ran := 0
	for _, line := range strings.Split(block, "\n") {
		args := shellWords(t, line)
		if len(args) == 0 || args[0] != "lazydisk" {
			continue
		}
		if args[1] == "serve" {
			if _, err := exec.LookPath("qemu-img"); err != nil {
				t.Logf("skipping %q: qemu-img is not installed (apt-get install qemu-utils)", line)
				continue
			}
		}
		stdout, stderr, code := cli(t, args[1:]...)
		if code != 0 {
			t.Fatalf("README line %q: exit %d\n%s%s", line, code, stdout, stderr)
		}
		if args[1] == "serve" && !strings.Contains(stdout, "file format: qcow2") {
			t.Errorf("README line %q: qemu-img info printed %q", line, stdout)
		}
		ran++
	}
	if ran < 3 {
		t.Errorf("ran %d lazydisk lines of the README's 60 seconds; want demo, toc, read and serve", ran)
	}
	if b, err := os.ReadFile("header.bin"); err != nil || string(b[:4]) != "QFI\xfb" {
		t.Errorf("the README's read did not write the qcow2 header to header.bin: %v", err)
	}
}
