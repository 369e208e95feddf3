// Package validate checks whole seekable layer blobs the way their
// consumers do. EStargz uses the reference reader
// (github.com/containerd/stargz-snapshotter/estargz): the footer and TOC
// parse, the TOC matches its digest, every chunk matches its chunkDigest,
// and the decompressed blob is a valid tar stream whose digest and length
// are reported for comparison with the DiffID and size annotations.
// zstd:chunked has no public reader to reuse, so ZstdChunked mirrors the
// checks of containers/storage's partial-pull code (pkg/chunked) and adds
// the ones it skips; internal/cstoragetest runs the real code in tests.
//
// Validators read the whole blob; they are for conversion checks, `verify
// --deep` and tests, not for lazy reading.
package validate

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// ErrInvalid is wrapped by every error that means the blob is not a valid
// layer of the format it is checked as.
var ErrInvalid = errors.New("invalid seekable layer blob")

// Report is what Validate found.
type Report struct {
	TOCDigest    digest.Digest
	DiffID       digest.Digest
	Uncompressed int64
	// Files counts regular files, Chunks their chunks.
	Files, Chunks int
}

// EStargz checks the eStargz blob in sr against tocDigest.
func EStargz(ctx context.Context, sr *io.SectionReader, tocDigest digest.Digest) (*Report, error) {
	r, err := estargz.Open(sr)
	if err != nil {
		return nil, fmt.Errorf("%w: opening: %w", ErrInvalid, err)
	}
	v, err := r.VerifyTOC(tocDigest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	rep := &Report{TOCDigest: tocDigest}
	var files []*estargz.TOCEntry
	if err := walk(r, "", map[*estargz.TOCEntry]bool{}, &files); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 1<<20)
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Files++
		fr, err := r.OpenFile(f.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: opening %s: %w", ErrInvalid, f.Name, err)
		}
		for off := int64(0); off < f.Size; {
			ce, ok := r.ChunkEntryForOffset(f.Name, off)
			if !ok || ce.ChunkSize <= 0 {
				return nil, fmt.Errorf("%w: no chunk of %s at offset %d", ErrInvalid, f.Name, off)
			}
			buf = append(buf[:0], make([]byte, ce.ChunkSize)...)
			if _, err := fr.ReadAt(buf, ce.ChunkOffset); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: reading %s at %d: %w", ErrInvalid, f.Name, ce.ChunkOffset, err)
			}
			cv, err := v.Verifier(ce)
			if err != nil {
				return nil, fmt.Errorf("%w: %s at %d: %w", ErrInvalid, f.Name, ce.ChunkOffset, err)
			}
			cv.Write(buf)
			if !cv.Verified() {
				return nil, fmt.Errorf("%w: chunk of %s at %d does not match its digest", ErrInvalid, f.Name, ce.ChunkOffset)
			}
			rep.Chunks++
			off = ce.ChunkOffset + ce.ChunkSize
		}
	}
	if rep.DiffID, rep.Uncompressed, err = diffID(io.NewSectionReader(sr, 0, sr.Size())); err != nil {
		return nil, err
	}
	return rep, nil
}

// walk collects the regular files below dir in name order, each once (the
// reader resolves hard links to their target entry).
func walk(r *estargz.Reader, dir string, seen map[*estargz.TOCEntry]bool, out *[]*estargz.TOCEntry) error {
	e, ok := r.Lookup(dir)
	if !ok {
		return fmt.Errorf("%w: no root directory in TOC", ErrInvalid)
	}
	var names []string
	e.ForeachChild(func(base string, _ *estargz.TOCEntry) bool {
		names = append(names, base)
		return true
	})
	sort.Strings(names)
	for _, n := range names {
		c, _ := e.LookupChild(n)
		switch c.Type {
		case "dir":
			if err := walk(r, path.Join(dir, n), seen, out); err != nil {
				return err
			}
		case "reg":
			if c.Size > 0 && !seen[c] {
				seen[c] = true
				*out = append(*out, c)
			}
		}
	}
	return nil
}

// diffID decompresses the whole blob, checks that it is a valid tar stream
// and returns its digest and length.
func diffID(r io.Reader) (digest.Digest, int64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	d := digest.Canonical.Digester()
	cw := &countWriter{w: d.Hash()}
	tee := io.TeeReader(zr, cw)
	tr := tar.NewReader(tee)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", 0, fmt.Errorf("%w: decompressed blob is not a valid tar: %w", ErrInvalid, err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return "", 0, fmt.Errorf("%w: decompressed blob is not a valid tar: %w", ErrInvalid, err)
		}
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return d.Digest(), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}
