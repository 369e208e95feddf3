package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lazydisk/lazydisk/internal/built"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

func TestTocAndAnnotate(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	disk, _ := diskFile(t, dir, "vm.qcow2", 2<<20, 11)
	for _, format := range []string{"--estargz", "--zstd-chunked"} {
		ref := reg.Host + "/vm/toc:" + strings.TrimPrefix(format, "--")
		mustCLI(t, "convert", format, "disk:"+disk, ref)

		out := mustCLI(t, "toc", "--format", "json", "--chunks", ref)
		var res tocOutput
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%s: toc --format json printed %q: %v", format, out, err)
		}
		l := res.Layers[0]
		if !l.Seekable || l.Error != "" || l.TOCDigest == "" || l.Annotated != l.TOCDigest {
			t.Fatalf("%s: layer %+v", format, l)
		}
		var f *fileTOC
		for i := range l.Files {
			if l.Files[i].Name == "disk/vm.qcow2" {
				f = &l.Files[i]
			}
		}
		if f == nil || f.Size != 2<<20 || f.Chunks == 0 || len(f.ChunkList) != f.Chunks {
			t.Fatalf("%s: disk file %+v", format, f)
		}
		if res.Requests < 1 || res.Requests > 2 || res.BytesFetched <= 0 {
			t.Errorf("%s: %d requests, %d bytes", format, res.Requests, res.BytesFetched)
		}
		if table := mustCLI(t, "toc", ref); !strings.Contains(table, "matches the layer's annotation") || !strings.Contains(table, "range request") {
			t.Errorf("%s: table output:\n%s", format, table)
		}

		// Strip the annotations (as a registry copy that rewrites the
		// manifest does), then restore them.
		img, err := remote.Image(mustRef(t, ref))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := img.Digest()
		stripped := reg.Host + "/vm/stripped:" + strings.TrimPrefix(format, "--")
		pushImage(t, stripped, withoutLayerAnnotations(t, img))
		if _, stderr, code := cli(t, "toc", stripped); code != 0 {
			t.Errorf("%s: toc of a stripped image: exit %d %s", format, code, stderr)
		}
		if _, _, code := cli(t, "annotate", "--check", stripped, stripped); code != 1 {
			t.Errorf("%s: annotate --check of a stripped image: exit %d, want 1", format, code)
		}
		got := strings.TrimSpace(mustCLI(t, "annotate", stripped, reg.Host+"/vm/restored:1"))
		if got != want.String() {
			t.Errorf("%s: annotate restored %s, the converter wrote %s", format, got, want)
		}
		if _, stderr, code := cli(t, "annotate", "--check", reg.Host+"/vm/restored:1", "oci:"+filepath.Join(dir, "unused")); code != 0 {
			t.Errorf("%s: annotate --check after restoring: exit %d %s", format, code, stderr)
		}
	}

	// A plain gzip image: not seekable, with a pointer to convert.
	plain := reg.Host + "/vm/plain:1"
	pushImage(t, plain, containerDisk(t, disk, "linux/amd64"))
	if out := mustCLI(t, "toc", plain); !strings.Contains(out, "not seekable") || !strings.Contains(out, "lazydisk convert") {
		t.Errorf("toc of a gzip image:\n%s", out)
	}
	_, stderr, code := cli(t, "annotate", plain, reg.Host+"/vm/plain:2")
	if code != 1 || !strings.Contains(stderr, "not seekable") || !strings.Contains(stderr, "lazydisk convert") {
		t.Errorf("annotate of a gzip image: exit %d, %q", code, stderr)
	}
}

// TestTocRequests1GiB reads the TOC of a 1 GiB disk layer from the
// registry: at most 2 range requests and well under 1% of the blob.
func TestTocRequests1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("converts a 1 GiB disk")
	}
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	// Low-entropy data, so that the blob is several hundred MB as a real
	// disk's would be, written in 1 MiB pieces.
	path := filepath.Join(dir, "big.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(42, 42))
	buf := make([]byte, 1<<20)
	mib := 1024
	if raceEnabled {
		// Converting 1 GiB twice takes over 10 minutes under the race
		// detector on 2 busy cores (the package's timeout is 15); a quarter
		// of it has the same TOC share. convert's own tests race-check the
		// converter.
		mib = 256
	}
	for range mib {
		for i := range buf {
			buf[i] = "abcdefghijklmnop"[r.Uint32()&15]
		}
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	for _, format := range []string{"--estargz", "--zstd-chunked"} {
		ref := reg.Host + "/vm/big:" + strings.TrimPrefix(format, "--")
		mustCLI(t, "convert", format, "--compression-level", "1", "disk:"+path, ref)
		var res tocOutput
		if err := json.Unmarshal([]byte(mustCLI(t, "toc", "--format", "json", ref)), &res); err != nil {
			t.Fatal(err)
		}
		size := res.Layers[0].Size
		t.Logf("%s: blob %d bytes, TOC read in %d requests, %d bytes (%.3f%%)", format, size, res.Requests, res.BytesFetched, 100*float64(res.BytesFetched)/float64(size))
		if res.Requests > 2 || float64(res.BytesFetched) > 0.01*float64(size) {
			t.Errorf("%s: %d requests and %d bytes for a %d-byte blob; want at most 2 and under 1%%", format, res.Requests, res.BytesFetched, size)
		}
		if res.Layers[0].Format != string(map[string]toc.Format{"--estargz": toc.FormatEStargz, "--zstd-chunked": toc.FormatZstdChunked}[format]) {
			t.Errorf("%s: format %s", format, res.Layers[0].Format)
		}
	}
}

// withoutLayerAnnotations returns img with no layer annotations.
func withoutLayerAnnotations(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	for i := range m.Layers {
		m.Layers[i].Annotations = nil
	}
	out, err := built.Rewrite(img, m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
