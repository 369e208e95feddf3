package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"
)

// blobTOC is the TOC of an eStargz blob as it is stored.
type blobTOC struct {
	toc *estargz.JTOC
	// offset and size locate the compressed TOC member (without footer).
	offset, size int64
	// jsonSize is the length of the TOC JSON.
	jsonSize int64
}

// readTOC reads the TOC of the eStargz blob in the file path the way a
// lazy reader does: footer, then the TOC member it points to.
func readTOC(path string) (*blobTOC, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sr := io.NewSectionReader(f, 0, fi.Size())
	tocOffset, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		return nil, fmt.Errorf("reading the footer of %s: %w", path, err)
	}
	bt := &blobTOC{offset: tocOffset, size: fi.Size() - footerSize - tocOffset}
	zr, err := gzip.NewReader(io.NewSectionReader(f, bt.offset, bt.size))
	if err != nil {
		return nil, fmt.Errorf("opening the TOC of %s: %w", path, err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading the TOC of %s: %w", path, err)
	}
	if h.Name != estargz.TOCTarName {
		return nil, fmt.Errorf("reading the TOC of %s: first entry is %q, not %s", path, h.Name, estargz.TOCTarName)
	}
	raw, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("reading the TOC of %s: %w", path, err)
	}
	bt.jsonSize = int64(len(raw))
	bt.toc = new(estargz.JTOC)
	if err := json.Unmarshal(raw, bt.toc); err != nil {
		return nil, fmt.Errorf("decoding the TOC of %s: %w", path, err)
	}
	return bt, nil
}

// chunk is one chunk of a file as the TOC places it.
type chunk struct {
	// off and size are the chunk's range in the file.
	off, size int64
	// coff and csize are the compressed range a reader fetches for it:
	// from its offset to the next chunk's (or the TOC's).
	coff, csize int64
	digest      string
}

// countChunks returns how many chunks the TOC lists over all files.
func (bt *blobTOC) countChunks() int {
	n := 0
	for _, e := range bt.toc.Entries {
		if (e.Type == "reg" && e.Size > 0) || e.Type == "chunk" {
			n++
		}
	}
	return n
}

// fileChunks returns the chunks of the file called name, in file order.
func (bt *blobTOC) fileChunks(name string) ([]chunk, error) {
	// Every offset where the payload of a chunk starts, and the TOC: a
	// chunk's compressed bytes end at the next of these.
	var starts []int64
	for _, e := range bt.toc.Entries {
		if (e.Type == "reg" && e.Size > 0) || e.Type == "chunk" {
			starts = append(starts, e.Offset)
		}
	}
	starts = append(starts, bt.offset)
	slices.Sort(starts)
	starts = slices.Compact(starts)

	var (
		out  []chunk
		size int64 = -1
	)
	for _, e := range bt.toc.Entries {
		if cleanName(e.Name) != name {
			continue
		}
		switch e.Type {
		case "reg":
			size = e.Size
			if size == 0 {
				return nil, nil
			}
		case "chunk":
		default:
			continue
		}
		if size < 0 {
			return nil, fmt.Errorf("chunk of %s at %d comes before its file entry", name, e.ChunkOffset)
		}
		c := chunk{off: e.ChunkOffset, size: e.ChunkSize, coff: e.Offset, digest: e.ChunkDigest}
		if c.size == 0 {
			c.size = size - c.off
		}
		i, found := slices.BinarySearch(starts, e.Offset)
		if !found || i+1 >= len(starts) {
			return nil, fmt.Errorf("chunk of %s at %d starts at %d, past the TOC at %d", name, c.off, e.Offset, bt.offset)
		}
		c.csize = starts[i+1] - c.coff
		out = append(out, c)
	}
	if size < 0 {
		return nil, fmt.Errorf("%s is not in the TOC", name)
	}
	var want int64
	for _, c := range out {
		if c.off != want {
			return nil, fmt.Errorf("chunks of %s leave a gap at %d", name, want)
		}
		want += c.size
	}
	if want != size {
		return nil, fmt.Errorf("chunks of %s cover %d of its %d bytes", name, want, size)
	}
	return out, nil
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}
