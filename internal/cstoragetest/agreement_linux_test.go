package cstoragetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/internal/zstdfixture"
	"github.com/lazydisk/lazydisk/toc"
)

// readTOC decodes the TOC of a blob written by containers/storage.
func readTOC(t *testing.T, blob []byte, ann map[string]string) (toc.Position, *toc.ZstdChunkedTOC) {
	t.Helper()
	pos, tc, err := zstdfixture.TOC(blob, ann)
	if err != nil {
		t.Fatal(err)
	}
	return pos, tc
}

// resign replaces the blob's TOC with edit's version of it and rewrites the
// trailer and annotations to match, as a writer with that bug would.
func resign(t *testing.T, blob []byte, ann map[string]string, edit func(*toc.ZstdChunkedTOC)) ([]byte, map[string]string) {
	t.Helper()
	out, ann, err := zstdfixture.Resign(blob, ann, edit)
	if err != nil {
		t.Fatal(err)
	}
	return out, ann
}

// Outcomes of a partial pull by containers/storage.
const (
	pulled   = "pulled"   // staged, with the right DiffID
	failed   = "failed"   // a hard error: the pull fails
	fellBack = "fellBack" // c/image would pull the whole blob instead
)

// TestValidatorAgreesWithCStorage runs validate.ZstdChunked and
// containers/storage's partial pull over the same damaged blobs. The
// validator rejects all of them; the table records what c/storage does, so
// that every place where it is more lenient is written down, and a
// c/storage upgrade that changes one shows up here.
func TestValidatorAgreesWithCStorage(t *testing.T) {
	Skip(t)
	tarb := layerTar(t)
	blob, ann := zstdChunked(t, tarb)
	diffID := digest.Canonical.FromBytes(tarb)
	pos, tc := readTOC(t, blob, ann)
	ts, err := toc.ParseTarSplitPosition(ann[toc.AnnotationZstdChunkedTarSplitPosition])
	if err != nil {
		t.Fatal(err)
	}
	type mutation func([]byte, map[string]string) ([]byte, map[string]string)
	flip := func(off int64) mutation {
		return func(b []byte, a map[string]string) ([]byte, map[string]string) {
			b[off] ^= 0x40
			return b, a
		}
	}
	annotation := func(key, value string) mutation {
		return func(b []byte, a map[string]string) ([]byte, map[string]string) {
			if value == "" {
				delete(a, key)
			} else {
				a[key] = value
			}
			return b, a
		}
	}
	edit := func(f func(*toc.ZstdChunkedTOC)) mutation {
		return func(b []byte, a map[string]string) ([]byte, map[string]string) { return resign(t, b, a, f) }
	}
	// chunk returns the index of the first chunk entry of the disk image
	// with the given type ("" for data).
	chunk := func(tc *toc.ZstdChunkedTOC, typ string) int {
		for i, e := range tc.Entries {
			if e.Type == "chunk" && e.ChunkType == typ {
				return i
			}
		}
		t.Fatalf("no %q chunk", typ)
		return 0
	}
	disk := func(tc *toc.ZstdChunkedTOC) *toc.ZstdChunkedEntry {
		for i := range tc.Entries {
			if tc.Entries[i].Name == "disk/disk.img" && tc.Entries[i].Type == "reg" {
				return &tc.Entries[i]
			}
		}
		t.Fatal("no disk/disk.img")
		return nil
	}
	dataChunk := tc.Entries[chunk(tc, "")]

	tests := []struct {
		name     string
		mutate   mutation
		cstorage string
	}{
		{"unchanged", func(b []byte, a map[string]string) ([]byte, map[string]string) { return b, a }, pulled},
		{"byte flipped in a data chunk", flip(dataChunk.Offset + 10), failed},
		{"byte flipped in the TOC", flip(pos.Offset + pos.Compressed/2), failed},
		{"byte flipped in the tar-split", flip(ts.Offset + ts.Compressed/2), failed},
		{"wrong manifest-checksum", annotation(toc.AnnotationZstdChunkedManifestChecksum, digest.Canonical.FromString("x").String()), failed},
		{"no tarsplit-position", annotation(toc.AnnotationZstdChunkedTarSplitPosition, ""), failed},
		{"both TOC annotations", annotation(toc.AnnotationTOCDigest, digest.Canonical.FromString("x").String()), failed},
		{"TOC mode differs from the tar-split", edit(func(tc *toc.ZstdChunkedTOC) { disk(tc).Mode = 0o600 }), failed},
		{"wrong file digest", edit(func(tc *toc.ZstdChunkedTOC) { disk(tc).Digest = digest.Canonical.FromString("x").String() }), failed},
		{"data chunk marked zeros", edit(func(tc *toc.ZstdChunkedTOC) { tc.Entries[chunk(tc, "")].ChunkType = toc.ChunkTypeZeros }), failed},
		{"dangling chunk entry", edit(func(tc *toc.ZstdChunkedTOC) {
			tc.Entries = append([]toc.ZstdChunkedEntry{tc.Entries[chunk(tc, "")]}, tc.Entries...)
		}), failed},
		{"TOC without tarSplitDigest", edit(func(tc *toc.ZstdChunkedTOC) { tc.TarSplitDigest = "" }), fellBack},
		{"TOC over the size limit", annotation(toc.AnnotationZstdChunkedManifestPosition,
			toc.Position{Offset: pos.Offset, Compressed: pos.Compressed, Uncompressed: toc.MaxTOCSize + 1}.String()+":1"), fellBack},

		// c/storage never reads the footer, the skippable frame headers,
		// the annotated uncompressed lengths or the bytes after the
		// tar-split.
		{"footer magic", flip(int64(len(blob)) - 3), pulled},
		{"TOC skippable frame magic", flip(pos.Offset - 8), pulled},
		{"tarsplit-position uncompressed length", annotation(toc.AnnotationZstdChunkedTarSplitPosition,
			toc.Position{Offset: ts.Offset, Compressed: ts.Compressed, Uncompressed: ts.Uncompressed + 1}.String()), pulled},
		{"manifest-position uncompressed length", annotation(toc.AnnotationZstdChunkedManifestPosition,
			toc.Position{Offset: pos.Offset, Compressed: pos.Compressed, Uncompressed: pos.Uncompressed + 1}.String()+":1"), pulled},
		{"truncated footer", func(b []byte, a map[string]string) ([]byte, map[string]string) { return b[:len(b)-1], a }, pulled},
		// A partial pull rebuilds the tar from the tar-split and never
		// fetches the frames holding tar headers; a full pull of this
		// blob fails.
		{"byte flipped in a tar header frame", flip(20), pulled},
		// It checks whole-file digests, not chunk digests or the chunk
		// layout, and skips zeros chunks.
		{"wrong chunk digest", edit(func(tc *toc.ZstdChunkedTOC) {
			tc.Entries[chunk(tc, "")].ChunkDigest = digest.Canonical.FromString("x").String()
		}), pulled},
		{"unknown chunk type", edit(func(tc *toc.ZstdChunkedTOC) { tc.Entries[chunk(tc, "")].ChunkType = "future" }), pulled},
		{"chunkOffset gap", edit(func(tc *toc.ZstdChunkedTOC) { tc.Entries[chunk(tc, "")].ChunkOffset++ }), pulled},
		{"zeros chunk offset shifted", edit(func(tc *toc.ZstdChunkedTOC) { tc.Entries[chunk(tc, toc.ChunkTypeZeros)].Offset++ }), pulled},
		{"multi-chunk endOffset short", edit(func(tc *toc.ZstdChunkedTOC) { disk(tc).EndOffset-- }), pulled},
		{"TOC version 2", edit(func(tc *toc.ZstdChunkedTOC) { tc.Version = 2 }), pulled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, a := tt.mutate(bytes.Clone(blob), maps.Clone(ann))
			_, verr := validate.ZstdChunked(context.Background(), io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))), a)
			res, cerr := PartialPull(t, bytes.NewReader(b), int64(len(b)), digest.Canonical.FromBytes(b), a)
			got := pulled
			switch {
			case res.Fallback:
				got = fellBack
			case cerr != nil:
				got = failed
			case res.UncompressedDigest != diffID:
				t.Errorf("c/storage staged the layer with DiffID %s, want %s", res.UncompressedDigest, diffID)
			}
			if got != tt.cstorage {
				t.Errorf("c/storage: %s (%v), want %s", got, cerr, tt.cstorage)
			}
			if tt.name == "unchanged" {
				if verr != nil {
					t.Errorf("validator rejects the writer's blob: %v", verr)
				}
				return
			}
			if !errors.Is(verr, validate.ErrInvalid) {
				t.Errorf("validator: %v, want ErrInvalid", verr)
			}
			t.Logf("validator: %v; c/storage: %s %v", verr, got, cerr)
		})
	}
}
