package toc_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/toc"
)

// zstdWithTOC builds a zstd:chunked-framed blob whose TOC is the given
// JSON, after 300 bytes that stand for the data (so the data ends at 300),
// and the annotations that point at it. Read with the annotations reads
// exactly the TOC frame; the tar-split and footer are not needed.
func zstdWithTOC(t *testing.T, tocJSON string) ([]byte, map[string]string) {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	payload := enc.EncodeAll([]byte(tocJSON), nil)
	b := append(make([]byte, 300), toc.SkippableFrame(payload)...)
	pos := toc.Position{Offset: 300 + toc.SkippableFrameHeaderSize, Compressed: int64(len(payload)), Uncompressed: int64(len(tocJSON))}
	return b, map[string]string{
		toc.AnnotationZstdChunkedManifestChecksum: digest.Canonical.FromBytes(payload).String(),
		toc.AnnotationZstdChunkedManifestPosition: pos.String() + ":1",
	}
}

// tocDir holds the TOC JSON documents that toc and internal/validate tests
// share (testdata/zstd-chunked-toc/README.md).
const tocDir = "../testdata/zstd-chunked-toc"

// tocFiles returns the contents of the files in tocDir/sub, by name.
func tocFiles(t testing.TB, sub string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(tocDir, sub, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no TOCs in %s/%s: %v", tocDir, sub, err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = b
	}
	return out
}

func TestDecodeZstdChunkedTOC(t *testing.T) {
	t.Parallel()
	sound := tocFiles(t, "sound")
	tc, err := toc.DecodeZstdChunkedTOC(sound["disk"], 300)
	if err != nil {
		t.Fatalf("sound/disk.json: %v", err)
	}
	if len(tc.Entries) != 6 || tc.Entries[2].ChunkType != toc.ChunkTypeZeros || tc.Entries[1].Size != 150 || tc.Entries[0].Mode != 365 {
		t.Errorf("sound/disk.json decoded as %+v", tc)
	}
	if tc, err := toc.DecodeZstdChunkedTOC(sound["escapes"], 300); err != nil || tc.Entries[0].Name != `café/"q"` {
		t.Errorf("sound/escapes.json: %v, %+v", err, tc)
	}

	type tocCase struct {
		name string
		js   []byte
		ok   bool
	}
	var tests []tocCase
	for name, js := range sound {
		tests = append(tests, tocCase{"sound/" + name, js, true})
	}
	for name, js := range tocFiles(t, "refused") {
		tests = append(tests, tocCase{"refused/" + name, js, false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := toc.DecodeZstdChunkedTOC(tt.js, 300)
			if (err == nil) != tt.ok {
				t.Errorf("DecodeZstdChunkedTOC(%s) err = %v, want ok=%v", tt.js, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, toc.ErrInvalid) || strings.Contains(err.Error(), "\n")) {
				t.Errorf("err = %q, want one line wrapping ErrInvalid", err)
			}
			// Read, through the annotations, decides the same.
			b, ann := zstdWithTOC(t, string(tt.js))
			if _, err := toc.Read(bytes.NewReader(b), int64(len(b)), ann); (err == nil) != tt.ok {
				t.Errorf("Read: err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestDecodeZstdChunkedTOCKeys checks that keys match as containers/storage
// matches them (strings.ToLower), not by encoding/json's Unicode case
// folding: "ſize" (long s) is an unknown key, skipped.
func TestDecodeZstdChunkedTOCKeys(t *testing.T) {
	t.Parallel()
	tc, err := toc.DecodeZstdChunkedTOC([]byte(`{"Version":1,"ENTRIES":[{"Type":"dir","NAME":"a","\u017fize":7,"MODE":493,"UID":107,"modTime":"2024-05-06T07:08:09Z"}]}`), 300)
	if err != nil {
		t.Fatal(err)
	}
	e := tc.Entries[0]
	if e.Type != "dir" || e.Name != "a" || e.Size != 0 || e.Mode != 0o755 || e.UID != 107 || e.ModTime == nil || e.ModTime.Year() != 2024 {
		t.Errorf("entry decoded as %+v", e)
	}
}

// TestReadZstdSoundTOC reads sound/disk.json through Read: the frame of the
// refusal cases above is fine, so they fail for their TOC alone.
func TestReadZstdSoundTOC(t *testing.T) {
	t.Parallel()
	b, ann := zstdWithTOC(t, string(tocFiles(t, "sound")["disk"]))
	ix, err := toc.Read(bytes.NewReader(b), int64(len(b)), ann)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := ix.Lookup("disk/h")
	if !ok || f.Name != "disk/b" || len(f.Chunks) != 1 || f.Chunks[0].CompressedSize != 90 {
		t.Errorf("disk/h: %+v", f)
	}
	if f, _ := ix.Lookup("disk/a"); len(f.Chunks) != 2 || !f.Chunks[1].Zero || f.Chunks[1].CompressedSize != 90 {
		t.Errorf("disk/a: %+v", f)
	}
}
