package toc

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// TOC entry types of zstd:chunked (containers/storage minimal.Type*).
const (
	ZstdTypeReg     = "reg"
	ZstdTypeChunk   = "chunk"
	ZstdTypeLink    = "hardlink"
	ZstdTypeChar    = "char"
	ZstdTypeBlock   = "block"
	ZstdTypeDir     = "dir"
	ZstdTypeFifo    = "fifo"
	ZstdTypeSymlink = "symlink"
)

var emptyDigest = digest.Canonical.FromBytes(nil)

// DecodeZstdChunkedTOC decodes and checks the uncompressed JSON TOC of a
// zstd:chunked layer whose chunk data ends at dataEnd (where the TOC's
// skippable frame starts). It is the one decoder of zstd:chunked TOCs: Read
// uses it, and so does the whole-blob validator.
//
// It is meant to accept no TOC that containers/storage's reader
// (go.podman.io/storage pkg/chunked: unmarshalToc and the checks of its
// partial pull) refuses, and it refuses TOCs that two readers could read
// differently:
//
//   - the TOC is one JSON object (RFC 8259, strings valid UTF-8), with
//     nothing but white space after it;
//   - keys match case-insensitively by strings.ToLower, as containers/storage
//     matches them (not by encoding/json's Unicode folding, under which
//     "ſize" is "size"); unknown keys are skipped, as containers/storage
//     skips them; a key repeated in the TOC, in an entry or in xattrs is
//     refused (containers/storage appends a second "entries" array and
//     keeps the last xattrs object, encoding/json merges them);
//   - known keys have values of their JSON type, never null, except that
//     "entries" and "xattrs" may be null (none, as containers/storage
//     reads it and its writer writes an empty layer); integers are written
//     as integers; times are RFC 3339; version is 1; tarSplitDigest, when
//     present, is a valid digest; there are at most MaxEntries entries;
//   - entry types are containers/storage's (reg, chunk, hardlink, symlink,
//     dir, char, block, fifo); names do not contain ".." and are unique
//     after cleaning (a chunk entry repeats its file's name exactly);
//   - a regular file with data has a valid file digest, its data range
//     [offset, endOffset) lies in the data, and either it is one chunk (no
//     chunk fields) or the reg entry and the chunk entries after it carry
//     each chunk's chunkSize, chunkOffset, chunkDigest and chunkType ("" or
//     "zeros"), contiguous from 0 to the file's size, with non-empty
//     compressed ranges; chunk entries carry no file fields (digest, size,
//     endOffset: containers/storage takes a file's end from its last chunk
//     entry, this package from the reg entry); an empty file has no data
//     fields and no digest but that of empty content; other entries have
//     no data fields.
//
// Errors wrap ErrInvalid.
func DecodeZstdChunkedTOC(js []byte, dataEnd int64) (*ZstdChunkedTOC, error) {
	t, err := decodeZstdChunkedJSON(js)
	if err != nil {
		return nil, fmt.Errorf("%w: TOC JSON: %w", ErrInvalid, err)
	}
	if err := checkZstdChunkedTOC(t, dataEnd); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return t, nil
}

func decodeZstdChunkedJSON(js []byte) (*ZstdChunkedTOC, error) {
	var t ZstdChunkedTOC
	s := &jsonScanner{b: js}
	var seen keySet
	err := s.object(false, func(key string) error {
		k := strings.ToLower(key)
		if !seen.add(k) {
			return errors.New("key appears twice")
		}
		switch k {
		case "version":
			n, err := s.integer()
			if int64(int(n)) != n {
				return fmt.Errorf("%d does not fit an int", n)
			}
			t.Version = int(n)
			return err
		case "entries":
			// containers/storage's writer encodes a layer without entries
			// as null, and its reader reads null as no entries.
			return s.array(true, func() error {
				if len(t.Entries) >= MaxEntries {
					return fmt.Errorf("more than %d entries", MaxEntries)
				}
				t.Entries = append(t.Entries, ZstdChunkedEntry{})
				if err := decodeZstdEntry(s, &t.Entries[len(t.Entries)-1]); err != nil {
					return fmt.Errorf("entry %d: %w", len(t.Entries)-1, err)
				}
				return nil
			})
		case "tarsplitdigest":
			v, err := s.str()
			if err != nil {
				return err
			}
			d, err := digest.Parse(v)
			if err != nil {
				return fmt.Errorf("%q: %w", v, err)
			}
			t.TarSplitDigest = d
			return nil
		default:
			return s.skip()
		}
	})
	if err != nil {
		return nil, err
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	return &t, nil
}

// keySet holds the lower-cased keys of one object seen so far.
type keySet struct {
	known   uint32 // bit i: zstdEntryKeys[i]
	unknown map[string]bool
}

// zstdEntryKeys are the keys of TOC objects that DecodeZstdChunkedTOC
// reads; a keySet tracks them without allocating.
var zstdEntryKeys = map[string]uint32{
	"type": 1 << 0, "name": 1 << 1, "linkname": 1 << 2, "mode": 1 << 3, "size": 1 << 4,
	"uid": 1 << 5, "gid": 1 << 6, "modtime": 1 << 7, "accesstime": 1 << 8, "changetime": 1 << 9,
	"devmajor": 1 << 10, "devminor": 1 << 11, "xattrs": 1 << 12, "digest": 1 << 13, "offset": 1 << 14,
	"endoffset": 1 << 15, "chunksize": 1 << 16, "chunkoffset": 1 << 17, "chunkdigest": 1 << 18,
	"chunktype": 1 << 19, "version": 1 << 20, "entries": 1 << 21, "tarsplitdigest": 1 << 22,
}

// add records k and reports whether it was new.
func (ks *keySet) add(k string) bool {
	if bit, ok := zstdEntryKeys[k]; ok {
		if ks.known&bit != 0 {
			return false
		}
		ks.known |= bit
		return true
	}
	if ks.unknown[k] {
		return false
	}
	if ks.unknown == nil {
		ks.unknown = map[string]bool{}
	}
	ks.unknown[k] = true
	return true
}

// decodeZstdEntry reads one entry object.
func decodeZstdEntry(s *jsonScanner, e *ZstdChunkedEntry) error {
	var seen keySet
	return s.object(false, func(key string) error {
		k := strings.ToLower(key)
		if !seen.add(k) {
			return errors.New("key appears twice")
		}
		var str *string
		var n *int64
		var tm **time.Time
		switch k {
		case "type":
			str = &e.Type
		case "name":
			str = &e.Name
		case "linkname":
			str = &e.Linkname
		case "digest":
			str = &e.Digest
		case "chunkdigest":
			str = &e.ChunkDigest
		case "chunktype":
			str = &e.ChunkType
		case "mode":
			n = &e.Mode
		case "size":
			n = &e.Size
		case "devmajor":
			n = &e.Devmajor
		case "devminor":
			n = &e.Devminor
		case "offset":
			n = &e.Offset
		case "endoffset":
			n = &e.EndOffset
		case "chunksize":
			n = &e.ChunkSize
		case "chunkoffset":
			n = &e.ChunkOffset
		case "uid", "gid":
			v, err := s.integer()
			if err != nil {
				return err
			}
			if int64(int(v)) != v {
				return fmt.Errorf("%d does not fit an int", v)
			}
			if k == "uid" {
				e.UID = int(v)
			} else {
				e.GID = int(v)
			}
			return nil
		case "modtime":
			tm = &e.ModTime
		case "accesstime":
			tm = &e.AccessTime
		case "changetime":
			tm = &e.ChangeTime
		case "xattrs":
			// null is no xattrs, as containers/storage reads it.
			return s.object(true, func(name string) error {
				if _, dup := e.Xattrs[name]; dup {
					return errors.New("xattr appears twice")
				}
				v, err := s.str()
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
				return err
			})
		default:
			return s.skip()
		}
		var err error
		switch {
		case str != nil:
			*str, err = s.str()
		case n != nil:
			*n, err = s.integer()
		default:
			var v string
			if v, err = s.str(); err != nil {
				return err
			}
			t, perr := time.Parse(time.RFC3339, v)
			if perr != nil {
				return perr
			}
			*tm = &t
		}
		return err
	})
}

// checkZstdChunkedTOC checks the entries: types, names, the reg/chunk
// tiling, digests and data ranges.
func checkZstdChunkedTOC(t *ZstdChunkedTOC, dataEnd int64) error {
	if t.Version != 1 {
		return fmt.Errorf("TOC version %d, want 1", t.Version)
	}
	names := make(map[string]bool, len(t.Entries))
	es := t.Entries
	for i := 0; i < len(es); {
		e := &es[i]
		if e.Type != ZstdTypeChunk {
			if err := checkName(e.Name); err != nil {
				return fmt.Errorf("TOC entry %d: %w", i, err)
			}
			n := cleanName(e.Name)
			if names[n] {
				return fmt.Errorf("TOC has two entries for %q", e.Name)
			}
			names[n] = true
		}
		switch e.Type {
		case ZstdTypeReg:
			j := i + 1
			for j < len(es) && es[j].Type == ZstdTypeChunk {
				j++
			}
			if err := checkZstdChunkedFile(es[i:j], dataEnd); err != nil {
				return fmt.Errorf("TOC entry %d (%q): %w", i, e.Name, err)
			}
			i = j
		case ZstdTypeChunk:
			return fmt.Errorf("TOC entry %d is a chunk of %q that does not follow a reg entry", i, e.Name)
		case ZstdTypeLink, ZstdTypeChar, ZstdTypeBlock, ZstdTypeDir, ZstdTypeFifo, ZstdTypeSymlink:
			if e.Digest != "" || e.Offset != 0 || e.EndOffset != 0 || e.Size != 0 || hasChunkFields(e) {
				return fmt.Errorf("TOC entry %d (%s %q) has file data fields", i, e.Type, e.Name)
			}
			if e.Type == ZstdTypeLink {
				if err := checkName(e.Linkname); err != nil {
					return fmt.Errorf("TOC entry %d (hard link %q): %w", i, e.Name, err)
				}
			}
			i++
		default:
			return fmt.Errorf("TOC entry %d (%q) has unknown type %q", i, e.Name, e.Type)
		}
	}
	return nil
}

func hasChunkFields(e *ZstdChunkedEntry) bool {
	return e.ChunkSize != 0 || e.ChunkOffset != 0 || e.ChunkDigest != "" || e.ChunkType != ""
}

// checkZstdChunkedFile checks a reg entry and the chunk entries after it.
func checkZstdChunkedFile(es []ZstdChunkedEntry, dataEnd int64) error {
	r := &es[0]
	if r.Size < 0 {
		return fmt.Errorf("negative size %d", r.Size)
	}
	if r.Size == 0 {
		if len(es) > 1 || hasChunkFields(r) || r.Offset != 0 || r.EndOffset != 0 {
			return errors.New("empty file has chunks or a data range")
		}
		if r.Digest != "" && r.Digest != emptyDigest.String() {
			return fmt.Errorf("empty file has digest %s", r.Digest)
		}
		return nil
	}
	if _, err := digest.Parse(r.Digest); err != nil {
		return fmt.Errorf("file digest %q: %w", r.Digest, err)
	}
	if r.EndOffset > dataEnd {
		return fmt.Errorf("endOffset %d is past the end of the data at %d", r.EndOffset, dataEnd)
	}
	if len(es) == 1 {
		if hasChunkFields(r) {
			return errors.New("single-chunk file has chunk fields")
		}
		if r.Offset <= 0 || r.EndOffset <= r.Offset {
			return fmt.Errorf("data range [%d, %d) is empty or misplaced", r.Offset, r.EndOffset)
		}
		return nil
	}
	var next int64
	for k := range es {
		c := &es[k]
		if c.Name != r.Name {
			return fmt.Errorf("chunk %d is named %q", k, c.Name)
		}
		if c.ChunkOffset != next {
			return fmt.Errorf("chunk %d starts at file offset %d, want %d (chunks must be contiguous)", k, c.ChunkOffset, next)
		}
		if c.ChunkSize <= 0 || c.ChunkSize > r.Size-next {
			return fmt.Errorf("chunk %d has size %d at file offset %d of %d", k, c.ChunkSize, next, r.Size)
		}
		next += c.ChunkSize
		if _, err := digest.Parse(c.ChunkDigest); err != nil {
			return fmt.Errorf("chunk %d chunkDigest %q: %w", k, c.ChunkDigest, err)
		}
		switch c.ChunkType {
		case "", ChunkTypeZeros:
		default:
			return fmt.Errorf("chunk %d has unknown chunkType %q", k, c.ChunkType)
		}
		if k > 0 && (c.Digest != "" || c.EndOffset != 0 || c.Size != 0 || c.Linkname != "") {
			return fmt.Errorf("chunk %d has file fields", k)
		}
		end := r.EndOffset
		if k+1 < len(es) {
			end = es[k+1].Offset
		}
		if c.Offset <= 0 || end <= c.Offset {
			return fmt.Errorf("chunk %d's compressed range [%d, %d) is empty or misplaced", k, c.Offset, end)
		}
	}
	if next != r.Size {
		return fmt.Errorf("chunks cover %d of %d bytes", next, r.Size)
	}
	return nil
}
