package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// TestRead converts a disk into the registry in both formats and reads it
// back with `lazydisk read`: ranges, all, stats, and the errors.
func TestRead(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	path, _ := diskFile(t, dir, "vm.img", 2<<20+123, 11)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	plain := "docker://" + reg.Host + "/read/plain:1"
	mustCLI(t, "convert", "--estargz", "disk:"+path, "oci:"+filepath.Join(dir, "layout")+":1")
	for _, format := range []string{"--estargz", "--zstd-chunked"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			ref := "docker://" + reg.Host + "/read/" + strings.TrimPrefix(format, "--") + ":1"
			mustCLI(t, "convert", format, "--chunk-size", "64K", "disk:"+path, ref)

			out := mustCLI(t, "read", ref, "--range", "0:4K,1M:100,2M:1M", "-o", "-")
			want := append(append(append([]byte{}, data[:4096]...), data[1<<20:1<<20+100]...), data[2<<20:]...)
			if !bytes.Equal([]byte(out), want) {
				t.Errorf("read of three ranges: %d bytes, want %d, or they differ", len(out), len(want))
			}
			file := filepath.Join(t.TempDir(), "all.img")
			_, errOut, code := cli(t, "read", ref, "--range", "all", "-o", file, "--stats=json", "--file", "/disk/vm.img")
			if code != 0 {
				t.Fatalf("read --range all: exit %d: %s", code, errOut)
			}
			if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, data) {
				t.Errorf("read --range all -o FILE: %v, equal %t", err, bytes.Equal(got, data))
			}
			var st struct {
				Size, BytesRead, Requests, TOCRequests, ChunksFetched int64
			}
			if err := json.Unmarshal([]byte(errOut), &st); err != nil || st.Size != int64(len(data)) || st.BytesRead != st.Size || st.ChunksFetched < 20 || st.Requests <= st.TOCRequests {
				t.Errorf("--stats=json: %v, %q", err, errOut)
			}
			_, errOut, _ = cli(t, "read", ref, "--range", "100:10", "--stats")
			if !strings.HasPrefix(errOut, "read 10 B of disk/vm.img") || !strings.Contains(errOut, "1 chunks fetched") {
				t.Errorf("--stats: %q", errOut)
			}
		})
	}
	t.Run("layout", func(t *testing.T) {
		t.Parallel()
		out := mustCLI(t, "read", "oci:"+filepath.Join(dir, "layout")+":1", "--range", "5:", "-o", "-")
		if !bytes.Equal([]byte(out), data[5:]) {
			t.Error("read from an OCI layout: the bytes differ")
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		pushImage(t, strings.TrimPrefix(plain, "docker://"), containerDisk(t, path, "linux/amd64"))
		esgz := "docker://" + reg.Host + "/read/errors:1"
		mustCLI(t, "convert", "--estargz", "disk:"+path, esgz)
		outFile := filepath.Join(t.TempDir(), "out.bin")
		tests := []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"read", esgz}, 2, "read needs --range"},
			{[]string{"read", esgz, "--range", "4K"}, 2, "use OFFSET:LENGTH"},
			{[]string{"read", esgz, "--range", "x:4"}, 2, "offset: invalid size"},
			{[]string{"read", esgz, "--range", "1G:4K"}, 2, "starts past the end of disk/vm.img"},
			{[]string{"read", esgz, "--range", "0:1", "--stats=yaml"}, 2, "--stats must be text or json"},
			{[]string{"read", plain, "--range", "0:1", "-o", outFile}, 1, "not seekable"},
			{[]string{"read", esgz, "--range", "0:1", "--file", "disk/nope", "-o", outFile}, 1, "has no file /disk/nope"},
			{[]string{"read", "docker://" + reg.Host + "/read/missing:1", "--range", "0:1", "-o", outFile}, 1, "missing"},
		}
		// A corrupt chunk: the read fails and leaves no output file.
		corrupt := "docker://" + reg.Host + "/read/corrupt:1"
		mustCLI(t, "convert", "--zstd-chunked", "disk:"+path, corrupt)
		var toc struct{ Layers []struct{ Digest string } }
		if err := json.Unmarshal([]byte(mustCLI(t, "toc", "--format", "json", corrupt)), &toc); err != nil || len(toc.Layers) != 1 {
			t.Fatalf("toc: %v", err)
		}
		blob := reg.BlobPath(toc.Layers[0].Digest)
		b, err := os.ReadFile(blob)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/3] ^= 1
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			args []string
			code int
			msg  string
		}{[]string{"read", corrupt, "--range", "all", "-o", outFile}, 1, "chunk does not match its TOC digest"})
		for _, tt := range tests {
			out, errOut, code := cli(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.msg) || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "lazydisk: ") || out != "" {
				t.Errorf("lazydisk %s: exit %d, stderr %q, stdout %d bytes; want exit %d and one line saying %q",
					strings.Join(tt.args, " "), code, errOut, len(out), tt.code, tt.msg)
			}
			if _, err := os.Stat(outFile); err == nil {
				t.Errorf("lazydisk %s left %s behind", strings.Join(tt.args, " "), outFile)
			}
		}
	})
}
