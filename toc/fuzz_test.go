package toc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"testing"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/toc"
)

// FuzzRead feeds arbitrary blobs to Read: it must never panic, and an
// index it returns must be consistent with the blob. The seed corpus is in
// testdata/fuzz/FuzzRead (small eStargz and zstd:chunked blobs).
func FuzzRead(f *testing.F) {
	src := diskTar(f, 20000)
	for _, w := range []func(context.Context, io.Writer, io.Reader, ...convert.Option) (*convert.Blob, error){convert.WriteEStargz, convert.WriteZstdChunked} {
		var b bytes.Buffer
		if _, err := w(context.Background(), &b, bytes.NewReader(src), convert.WithChunkSize(convert.MinChunkSize)); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		ix, err := toc.Read(bytes.NewReader(blob), int64(len(blob)), nil)
		if err != nil {
			return
		}
		if ix.DataEnd < 0 || ix.DataEnd > int64(len(blob)) {
			t.Fatalf("data end %d outside the %d-byte blob", ix.DataEnd, len(blob))
		}
		for _, file := range ix.Files {
			var next int64
			for _, c := range file.Chunks {
				if c.Offset != next || c.Size <= 0 || c.CompressedOffset <= 0 || c.CompressedSize <= 0 || c.CompressedOffset+c.CompressedSize > ix.DataEnd {
					t.Fatalf("%s: bad chunk %+v (next %d, data end %d)", file.Name, c, next, ix.DataEnd)
				}
				next += c.Size
			}
			if len(file.Chunks) > 0 && next != file.Size {
				t.Fatalf("%s: chunks cover %d of %d bytes", file.Name, next, file.Size)
			}
		}
	})
}

// FuzzParsers feeds arbitrary bytes to the footer and position parsers and
// to the zstd:chunked TOC decoder.
func FuzzParsers(f *testing.F) {
	f.Add(toc.EStargzFooter(12345), "10:20:30:1")
	footer, _ := toc.ZstdChunkedFooter{Offset: 1, LengthCompressed: 2, LengthUncompressed: 3, ManifestType: 1}.MarshalBinary()
	f.Add(footer, "1:2:3")
	for _, js := range tocFiles(f, "sound") {
		f.Add(js, "300:10:20:1")
	}
	f.Fuzz(func(t *testing.T, b []byte, pos string) {
		// A TOC the decoder accepts means the same once encoded again.
		if tc, err := toc.DecodeZstdChunkedTOC(b, 300); err == nil {
			js, err := json.Marshal(tc)
			if err != nil {
				t.Fatalf("encoding an accepted TOC: %v", err)
			}
			again, err := toc.DecodeZstdChunkedTOC(js, 300)
			if err != nil {
				t.Fatalf("DecodeZstdChunkedTOC accepted %q but not its encoding %s: %v", b, js, err)
			}
			if js2, _ := json.Marshal(again); !bytes.Equal(js, js2) {
				t.Fatalf("DecodeZstdChunkedTOC read %q as %s, then that as %s", b, js, js2)
			}
			// Its own JSON scanner accepts only valid JSON, and reads it as
			// encoding/json does where the two can agree: ASCII keys (no
			// Unicode case folding), times encoding/json parses too.
			if !json.Valid(b) {
				t.Fatalf("DecodeZstdChunkedTOC accepted invalid JSON %q", b)
			}
			var ref toc.ZstdChunkedTOC
			if ascii(b) && json.Unmarshal(b, &ref) == nil {
				if len(ref.Entries) == 0 {
					ref.Entries = nil // [] and null: no entries either way
				}
				if rjs, _ := json.Marshal(&ref); !bytes.Equal(js, rjs) {
					t.Fatalf("DecodeZstdChunkedTOC read %q as %s, encoding/json as %s", b, js, rjs)
				}
			}
		}
		// The offset field is read as the reference reader reads it
		// (strconv.ParseInt base 16: upper-case digits and a sign are
		// accepted); everything else must be the footer EStargzFooter writes.
		if off, err := toc.ParseEStargzFooter(b); err == nil {
			want := toc.EStargzFooter(off)
			back, err := strconv.ParseInt(string(b[16:32]), 16, 64)
			if off < 0 || !bytes.Equal(want[:16], b[:16]) || !bytes.Equal(want[32:], b[32:]) || err != nil || back != off {
				t.Fatalf("ParseEStargzFooter accepted %x as offset %d", b, off)
			}
		}
		if ft, err := toc.ParseZstdChunkedFooter(b); err == nil {
			if back, _ := ft.MarshalBinary(); !bytes.Equal(back, b) {
				t.Fatalf("ParseZstdChunkedFooter does not round-trip %x", b)
			}
		}
		if p, err := toc.ParseManifestPosition(pos); err == nil && (p.Offset < 0 || p.Compressed < 0 || p.Uncompressed < 0) {
			t.Fatalf("ParseManifestPosition(%q) = %+v", pos, p)
		}
		if p, err := toc.ParseTarSplitPosition(pos); err == nil && (p.Offset < 0 || p.Compressed < 0 || p.Uncompressed < 0) {
			t.Fatalf("ParseTarSplitPosition(%q) = %+v", pos, p)
		}
	})
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
