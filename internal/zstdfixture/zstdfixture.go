// Package zstdfixture makes zstd:chunked blobs for tests with
// containers/storage's own writer, reads their TOC, and re-signs a blob
// after a test edits its TOC, so that the edit is the only thing wrong.
// It is test support; nothing in lazydisk's commands imports it.
package zstdfixture

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/chunked/compressor"

	"github.com/lazydisk/lazydisk/toc"
)

// CStorage compresses the tar with containers/storage's
// compressor.ZstdCompressor at level and returns the blob and the layer
// annotations the writer produced.
func CStorage(tarb []byte, level int) ([]byte, map[string]string, error) {
	var blob bytes.Buffer
	ann := map[string]string{}
	w, err := compressor.ZstdCompressor(&blob, ann, &level)
	if err != nil {
		return nil, nil, err
	}
	if _, err := w.Write(tarb); err != nil {
		return nil, nil, err
	}
	if err := w.Close(); err != nil {
		return nil, nil, err
	}
	return blob.Bytes(), ann, nil
}

// TOC returns the position and the decoded TOC the annotations point at.
func TOC(blob []byte, ann map[string]string) (toc.Position, *toc.ZstdChunkedTOC, error) {
	pos, err := toc.ParseManifestPosition(ann[toc.AnnotationZstdChunkedManifestPosition])
	if err != nil {
		return pos, nil, err
	}
	if pos.Offset < 0 || pos.Offset+pos.Compressed > int64(len(blob)) {
		return pos, nil, fmt.Errorf("TOC position %v is outside the %d-byte blob", pos, len(blob))
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return pos, nil, err
	}
	defer dec.Close()
	js, err := dec.DecodeAll(blob[pos.Offset:pos.Offset+pos.Compressed], nil)
	if err != nil {
		return pos, nil, err
	}
	var tc toc.ZstdChunkedTOC
	if err := json.Unmarshal(js, &tc); err != nil {
		return pos, nil, err
	}
	return pos, &tc, nil
}

// Resign replaces the blob's TOC with edit's version of it and rewrites
// the trailer (TOC, tar-split and footer frames) and the annotations to
// match, as a writer with that bug would.
func Resign(blob []byte, ann map[string]string, edit func(*toc.ZstdChunkedTOC)) ([]byte, map[string]string, error) {
	_, tc, err := TOC(blob, ann)
	if err != nil {
		return nil, nil, err
	}
	edit(tc)
	js, err := json.Marshal(tc)
	if err != nil {
		return nil, nil, err
	}
	return ResignJSON(blob, ann, js)
}

// ResignJSON replaces the blob's TOC with the TOC JSON js, whatever it
// holds, and rewrites the trailer and the annotations to match, as Resign
// does.
func ResignJSON(blob []byte, ann map[string]string, js []byte) ([]byte, map[string]string, error) {
	pos, err := toc.ParseManifestPosition(ann[toc.AnnotationZstdChunkedManifestPosition])
	if err != nil {
		return nil, nil, err
	}
	if pos.Offset < toc.SkippableFrameHeaderSize || pos.Offset > int64(len(blob)) {
		return nil, nil, fmt.Errorf("TOC position %v is outside the %d-byte blob", pos, len(blob))
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, nil, err
	}
	ztoc := enc.EncodeAll(js, nil)
	ts, err := toc.ParseTarSplitPosition(ann[toc.AnnotationZstdChunkedTarSplitPosition])
	if err != nil {
		return nil, nil, err
	}
	out := bytes.Clone(blob[:pos.Offset-toc.SkippableFrameHeaderSize])
	newTOC := toc.Position{Offset: int64(len(out)) + toc.SkippableFrameHeaderSize, Compressed: int64(len(ztoc)), Uncompressed: int64(len(js))}
	out = append(out, toc.SkippableFrame(ztoc)...)
	newTS := toc.Position{Offset: int64(len(out)) + toc.SkippableFrameHeaderSize, Compressed: ts.Compressed, Uncompressed: ts.Uncompressed}
	out = append(out, toc.SkippableFrame(blob[ts.Offset:ts.Offset+ts.Compressed])...)
	footer, err := toc.ZstdChunkedFooter{
		Offset: uint64(newTOC.Offset), LengthCompressed: uint64(newTOC.Compressed), LengthUncompressed: uint64(newTOC.Uncompressed),
		ManifestType:   toc.ManifestTypeCRFS,
		OffsetTarSplit: uint64(newTS.Offset), LengthCompressedTarSplit: uint64(newTS.Compressed), LengthUncompressedTarSplit: uint64(newTS.Uncompressed),
	}.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	out = append(out, toc.SkippableFrame(footer)...)
	return out, map[string]string{
		toc.AnnotationZstdChunkedManifestChecksum: digest.Canonical.FromBytes(ztoc).String(),
		toc.AnnotationZstdChunkedManifestPosition: newTOC.String() + ":1",
		toc.AnnotationZstdChunkedTarSplitPosition: newTS.String(),
	}, nil
}
