package toc_test

import (
	"bytes"
	"errors"
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

const (
	zero64     = "0000000000000000000000000000000000000000000000000000000000000000"
	zDigest    = `"digest":"sha256:` + zero64 + `"`
	zChunkDgst = `"chunkDigest":"sha256:` + zero64 + `"`
	// soundTOC is a TOC both the old lenient decoder and the strict one
	// accept: a directory, a two-chunk file, a one-chunk file, an empty
	// file and a hard link.
	soundTOC = `{"version":1,"entries":[` +
		`{"type":"dir","name":"disk/","mode":365},` +
		`{"type":"reg","name":"disk/a","size":150,` + zDigest + `,"offset":10,"endOffset":200,"chunkSize":100,` + zChunkDgst + `},` +
		`{"type":"chunk","name":"disk/a","offset":110,"chunkOffset":100,"chunkSize":50,` + zChunkDgst + `,"chunkType":"zeros"},` +
		`{"type":"reg","name":"disk/b","size":5,` + zDigest + `,"offset":200,"endOffset":290},` +
		`{"type":"reg","name":"disk/empty"},` +
		`{"type":"hardlink","name":"disk/h","linkName":"disk/b"}],` +
		`"tarSplitDigest":"sha256:` + zero64 + `"}`
)

func TestDecodeZstdChunkedTOC(t *testing.T) {
	t.Parallel()
	tc, err := toc.DecodeZstdChunkedTOC([]byte(soundTOC), 300)
	if err != nil {
		t.Fatalf("sound TOC: %v", err)
	}
	if len(tc.Entries) != 6 || tc.Entries[2].ChunkType != toc.ChunkTypeZeros || tc.Entries[1].Size != 150 || tc.Entries[0].Mode != 365 {
		t.Errorf("sound TOC decoded as %+v", tc)
	}

	tests := []struct {
		name string
		js   string
		ok   bool
	}{
		// Sound.
		{"null entries, as containers/storage writes an empty layer", `{"version":1,"entries":null}`, true},
		{"null xattrs", `{"version":1,"entries":[{"type":"dir","name":"a","xattrs":null}]}`, true},
		{"minimal", `{"version":1,"entries":[],"tarSplitDigest":"sha256:` + zero64 + `"}`, true},
		{"keys in another case, unknown keys, trailing space", `{"VERSION":1,"Entries":[{"TYPE":"dir","name":"a","future":{"x":[1]}}],"extra":true}` + " \n", true},
		// Refused by the reader's former decoder (encoding/json) too.
		{"trailing data", `{"version":1}{}`, false},
		{"trailing garbage", `{"version":1} x`, false},
		{"not an object", `[]`, false},
		{"truncated", `{"version":1,"entries":[`, false},
		{"string size", `{"version":1,"entries":[{"type":"dir","name":"a","size":"5"}]}`, false},
		{"fractional mode", `{"version":1,"entries":[{"type":"dir","name":"a","mode":1.5}]}`, false},
		{"dotdot", `{"version":1,"entries":[{"type":"dir","name":"../a"}]}`, false},
		{"file with a bad digest", `{"version":1,"entries":[{"type":"reg","name":"a","size":5,"digest":"md5:x","offset":10,"endOffset":20}]}`, false},
		{"endOffset past the data", `{"version":1,"entries":[{"type":"reg","name":"a","size":5,` + zDigest + `,"offset":10,"endOffset":301}]}`, false},
		{"dotdot hard link", `{"version":1,"entries":[{"type":"hardlink","name":"a","linkName":"../../etc/shadow"}]}`, false},
		// Accepted by the reader's former decoder (Read before the strict
		// one), refused now; the validator refused some of them.
		{"repeated entries key", `{"entries":[],"entries":[]}`, false},
		{"closing brace after the TOC", `{"version":1,"entries":[]}}`, false},
		{"repeated entries key, case folded", `{"version":1,"entries":[],"Entries":[{"type":"dir","name":"a"}]}`, false},
		{"repeated key in an entry", `{"version":1,"entries":[{"type":"dir","name":"a","name":"b"}]}`, false},
		{"repeated xattr", `{"version":1,"entries":[{"type":"dir","name":"a","xattrs":{"user.x":"YQ==","user.x":"Yg=="}}]}`, false},
		{"repeated xattrs key", `{"version":1,"entries":[{"type":"dir","name":"a","xattrs":{"user.x":"YQ=="},"xattrs":{"user.y":"Yg=="}}]}`, false},
		{"null type", `{"version":1,"entries":[{"type":null,"name":"a"}]}`, false},
		{"no version", `{"entries":[]}`, false},
		{"version 2", `{"version":2,"entries":[]}`, false},
		{"bad tarSplitDigest", `{"version":1,"entries":[],"tarSplitDigest":"sha256:xyz"}`, false},
		{"unknown type", `{"version":1,"entries":[{"type":"socket","name":"a"}]}`, false},
		{"empty type", `{"version":1,"entries":[{"name":"a"}]}`, false},
		{"name and ./name", `{"version":1,"entries":[{"type":"dir","name":"a"},{"type":"dir","name":"./a"}]}`, false},
		{"file without digest", `{"version":1,"entries":[{"type":"reg","name":"a","size":5,"offset":10,"endOffset":20}]}`, false},
		{"chunk without chunkDigest", `{"version":1,"entries":[{"type":"reg","name":"a","size":10,` + zDigest + `,"offset":10,"endOffset":30,"chunkSize":5,` + zChunkDgst + `},` +
			`{"type":"chunk","name":"a","offset":20,"chunkOffset":5,"chunkSize":5}]}`, false},
		{"chunk entry with its own endOffset", `{"version":1,"entries":[{"type":"reg","name":"a","size":10,` + zDigest + `,"offset":10,"endOffset":30,"chunkSize":5,` + zChunkDgst + `},` +
			`{"type":"chunk","name":"a","offset":20,"endOffset":290,"chunkOffset":5,"chunkSize":5,` + zChunkDgst + `}]}`, false},
		{"chunk of another file's name", `{"version":1,"entries":[{"type":"reg","name":"a","size":10,` + zDigest + `,"offset":10,"endOffset":30,"chunkSize":5,` + zChunkDgst + `},` +
			`{"type":"chunk","name":"./a","offset":20,"chunkOffset":5,"chunkSize":5,` + zChunkDgst + `}]}`, false},
		{"one-chunk file with chunk fields", `{"version":1,"entries":[{"type":"reg","name":"a","size":5,` + zDigest + `,"offset":10,"endOffset":20,"chunkSize":5}]}`, false},
		{"symlink with a size", `{"version":1,"entries":[{"type":"symlink","name":"a","linkName":"b","size":4}]}`, false},
		{"empty file with a digest of data", `{"version":1,"entries":[{"type":"reg","name":"a",` + zDigest + `}]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := toc.DecodeZstdChunkedTOC([]byte(tt.js), 300)
			if (err == nil) != tt.ok {
				t.Errorf("DecodeZstdChunkedTOC(%s) err = %v, want ok=%v", tt.js, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, toc.ErrInvalid) || strings.Contains(err.Error(), "\n")) {
				t.Errorf("err = %q, want one line wrapping ErrInvalid", err)
			}
			// Read, through the annotations, decides the same.
			b, ann := zstdWithTOC(t, tt.js)
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

// TestReadZstdSoundTOC reads the sound TOC through Read: the frame of the
// refusal cases above is fine, so they fail for their TOC alone.
func TestReadZstdSoundTOC(t *testing.T) {
	t.Parallel()
	b, ann := zstdWithTOC(t, soundTOC)
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
