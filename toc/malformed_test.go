package toc_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

// esgzWithTOC builds an eStargz blob whose TOC is the given JSON, after
// 3 data members of 100 bytes each (at offsets 10, 110 and 210 of a
// 10-byte prefix member).
func esgzWithTOC(t *testing.T, tocJSON string) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Write(bytes.Repeat([]byte{0}, 310)) // stands for the data members
	off := int64(b.Len())
	var member bytes.Buffer
	zw := gzip.NewWriter(&member)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "stargz.index.json", Size: int64(len(tocJSON))})
	tw.Write([]byte(tocJSON))
	tw.Close()
	zw.Close()
	b.Write(member.Bytes())
	b.Write(toc.EStargzFooter(off))
	return b.Bytes()
}

func TestReadMalformedTOC(t *testing.T) {
	t.Parallel()
	const chunkDigest = `"chunkDigest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"`
	tests := map[string]string{
		"invalid JSON":     `{"version":1,"entries":[{"name":"disk/x"`,
		"dotdot":           `{"version":1,"entries":[{"name":"disk/../../etc/passwd","type":"reg","size":10,"offset":10,` + chunkDigest + `}]}`,
		"dotdot hard link": `{"version":1,"entries":[{"name":"x","type":"hardlink","linkName":"../../etc/shadow"}]}`,
		"overlapping chunks": `{"version":1,"entries":[{"name":"a","type":"reg","size":200,"offset":10,"chunkSize":100,` + chunkDigest + `},` +
			`{"name":"a","type":"chunk","offset":110,"chunkOffset":50,"chunkSize":150,` + chunkDigest + `}]}`,
		"chunks out of order": `{"version":1,"entries":[{"name":"a","type":"reg","size":200,"offset":110,"chunkSize":100,` + chunkDigest + `},` +
			`{"name":"a","type":"chunk","offset":10,"chunkOffset":100,"chunkSize":100,` + chunkDigest + `}]}`,
		"two chunks at one offset": `{"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":10,` + chunkDigest + `},` +
			`{"name":"b","type":"reg","size":10,"offset":10,` + chunkDigest + `}]}`,
		"chunks short of the size": `{"version":1,"entries":[{"name":"a","type":"reg","size":300,"offset":10,"chunkSize":100,` + chunkDigest + `}]}`,
		"chunk past the data":      `{"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":900,` + chunkDigest + `}]}`,
		"dangling chunk":           `{"version":1,"entries":[{"name":"a","type":"chunk","offset":10,"chunkSize":10}]}`,
		"unknown type":             `{"version":1,"entries":[{"name":"a","type":"socket"}]}`,
		"bad digest":               `{"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":10,"chunkDigest":"md5:xyz"}]}`,
	}
	for name, j := range tests {
		b := esgzWithTOC(t, j)
		if _, err := toc.Read(bytes.NewReader(b), int64(len(b)), nil); !errors.Is(err, toc.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	// The same frame with a sound TOC is accepted, so the cases above fail
	// for their TOC alone.
	ok := esgzWithTOC(t, `{"version":1,"entries":[{"name":"a","type":"reg","size":150,"offset":10,"chunkSize":100,`+chunkDigest+`},`+
		`{"name":"a","type":"chunk","offset":110,"chunkOffset":100,"chunkSize":50,`+chunkDigest+`}]}`)
	ix, err := toc.Read(bytes.NewReader(ok), int64(len(ok)), nil)
	if err != nil {
		t.Fatalf("sound TOC: %v", err)
	}
	if f, _ := ix.Lookup("a"); len(f.Chunks) != 2 || f.Chunks[1].CompressedSize != 200 {
		t.Errorf("sound TOC read as %+v", f)
	}
}

// TestReadFromRegistry reads each producer's blob through range requests
// to a real registry on 127.0.0.1 and gets the same index as from memory
// (which TestReadAgreesWithReferences checks against the references).
func TestReadFromRegistry(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	for _, bc := range blobs(t) {
		mt := types.OCILayer
		if bc.format == toc.FormatZstdChunked {
			mt = types.OCILayerZStd
		}
		img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer(bc.blob, mt), Annotations: bc.ann})
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := name.NewTag(reg.Host + "/toc/test:latest")
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
		ref, _ := image.Parse("docker://" + reg.Host + "/toc/test:latest")
		m, _ := img.Manifest()
		b, err := blob.Open(context.Background(), ref, m.Layers[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := toc.Read(b, b.Size(), m.Layers[0].Annotations)
		b.Close()
		if err != nil {
			t.Fatalf("%s: %v", bc.name, err)
		}
		want, _ := toc.Read(bytes.NewReader(bc.blob), int64(len(bc.blob)), bc.ann)
		if !reflect.DeepEqual(got.Files, want.Files) || got.Digest != want.Digest {
			t.Errorf("%s: the index read from the registry differs from the one read from memory", bc.name)
		}
		if st := b.Stats(); st.Requests != 1 {
			t.Errorf("%s: %d range requests, want 1", bc.name, st.Requests)
		}
	}
}

// TestReadLegacyFormats recognises the older footers: CRFS stargz (47
// bytes, no "SG" subfield) and zstd:chunked before containers/storage 1.44
// (a 40-byte "GnUlInUx" footer).
func TestReadLegacyFormats(t *testing.T) {
	t.Parallel()
	const chunkDigest = `"chunkDigest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"`
	esgz := esgzWithTOC(t, `{"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":10,`+chunkDigest+`}]}`)
	tocOff, err := toc.ParseEStargzFooter(esgz[len(esgz)-toc.EStargzFooterSize:])
	if err != nil {
		t.Fatal(err)
	}
	legacy := append([]byte(nil), esgz[:len(esgz)-toc.EStargzFooterSize]...)
	legacy = append(legacy, 0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 22, 0)
	legacy = append(legacy, fmt.Sprintf("%016xSTARGZ", tocOff)...)
	legacy = append(legacy, 0x01, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0)
	ix, err := toc.Read(bytes.NewReader(legacy), int64(len(legacy)), nil)
	if err != nil || ix.Format != toc.FormatStargz {
		t.Fatalf("legacy stargz: %v, %+v", err, ix)
	}

	// A current zstd:chunked blob with its footer frame replaced by the
	// legacy one.
	zs := blobs(t)[2]
	pos, _ := toc.ParseManifestPosition(zs.ann[toc.AnnotationZstdChunkedManifestPosition])
	const footerFrame = toc.SkippableFrameHeaderSize + toc.ZstdChunkedFooterSize
	old := append([]byte(nil), zs.blob[:len(zs.blob)-footerFrame]...)
	payload := make([]byte, 40)
	binary.LittleEndian.PutUint64(payload, uint64(pos.Offset))
	binary.LittleEndian.PutUint64(payload[8:], uint64(pos.Compressed))
	binary.LittleEndian.PutUint64(payload[16:], uint64(pos.Uncompressed))
	binary.LittleEndian.PutUint64(payload[24:], toc.ManifestTypeCRFS)
	copy(payload[32:], "GnUlInUx")
	old = append(old, toc.SkippableFrame(payload)...)
	ix, err = toc.Read(bytes.NewReader(old), int64(len(old)), nil)
	if err != nil || ix.Format != toc.FormatZstdChunkedLegacy || ix.Digest.String() != zs.ann[toc.AnnotationZstdChunkedManifestChecksum] {
		t.Fatalf("legacy zstd:chunked: %v, %+v", err, ix)
	}
	// And by its legacy annotations.
	ann := map[string]string{
		toc.LegacyAnnotationZstdChunkedManifestChecksum: zs.ann[toc.AnnotationZstdChunkedManifestChecksum],
		toc.LegacyAnnotationZstdChunkedManifestPosition: zs.ann[toc.AnnotationZstdChunkedManifestPosition],
	}
	if ix, err = toc.Read(bytes.NewReader(old), int64(len(old)), ann); err != nil || ix.Format != toc.FormatZstdChunkedLegacy {
		t.Fatalf("legacy zstd:chunked by annotation: %v", err)
	}
}

// TestReadEStargzJSONLikeReference checks that toc.Read decodes eStargz TOC
// JSON as the reference reader (estargz.Open) does where JSON decoders
// differ: key case, unknown keys, a repeated key (the last one counts in
// both). It reads the same chunks, at the same blob offsets, with the same
// TOC digest. One deliberate difference: data after the TOC's JSON, which
// estargz.Open ignores (it decodes one value from a stream), is refused.
func TestReadEStargzJSONLikeReference(t *testing.T) {
	t.Parallel()
	const chunkDigest = `"sha256:0000000000000000000000000000000000000000000000000000000000000000"`
	tests := map[string]string{
		"keys in another case": `{"VERSION":1,"Entries":[{"NAME":"a","TYPE":"reg","SIZE":150,"OFFSET":10,"CHUNKSIZE":100,"chunkdigest":` + chunkDigest + `},` +
			`{"name":"a","type":"chunk","Offset":110,"chunkOffset":100,"ChunkSize":50,"chunkDigest":` + chunkDigest + `}]}`,
		"unknown keys": `{"version":1,"future":[1,{"x":2}],"entries":[{"name":"a","type":"reg","size":150,"offset":10,"chunkSize":100,"chunkDigest":` + chunkDigest + `,"later":null},` +
			`{"name":"a","type":"chunk","offset":110,"chunkOffset":100,"chunkSize":50,"chunkDigest":` + chunkDigest + `}]}`,
		"repeated key": `{"version":1,"entries":[{"name":"b","name":"a","type":"reg","size":150,"size":150,"offset":10,"chunkSize":100,"chunkDigest":` + chunkDigest + `},` +
			`{"name":"a","type":"chunk","offset":90,"offset":110,"chunkOffset":100,"chunkSize":50,"chunkDigest":` + chunkDigest + `}]}`,
	}
	for name, js := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := esgzWithTOC(t, js)
			ix, err := toc.Read(bytes.NewReader(b), int64(len(b)), nil)
			if err != nil {
				t.Fatal(err)
			}
			er, err := estargz.Open(io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))))
			if err != nil {
				t.Fatalf("reference reader: %v", err)
			}
			if er.TOCDigest() != ix.Digest {
				t.Errorf("TOC digest %s, reference reader %s", ix.Digest, er.TOCDigest())
			}
			f, ok := ix.Lookup("a")
			if !ok || len(f.Chunks) != 2 {
				t.Fatalf("Lookup(a) = %+v, %v", f, ok)
			}
			if re, ok := er.Lookup("a"); !ok || re.Size != f.Size {
				t.Errorf("reference reader: a is %+v", re)
			}
			for _, c := range f.Chunks {
				ce, ok := er.ChunkEntryForOffset("a", c.Offset)
				if !ok || ce.ChunkOffset != c.Offset || ce.ChunkSize != c.Size || ce.Offset != c.CompressedOffset || ce.ChunkDigest != c.Digest.String() {
					t.Errorf("chunk at %d: ours %+v, reference %+v", c.Offset, c, ce)
				}
			}
		})
	}

	trailing := esgzWithTOC(t, `{"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":10,"chunkDigest":`+chunkDigest+`}]} {}`)
	if _, err := estargz.Open(io.NewSectionReader(bytes.NewReader(trailing), 0, int64(len(trailing)))); err != nil {
		t.Errorf("the reference reader refuses data after the TOC JSON (%v); toc.Read may follow it", err)
	}
	if _, err := toc.Read(bytes.NewReader(trailing), int64(len(trailing)), nil); !errors.Is(err, toc.ErrInvalid) {
		t.Errorf("data after the TOC JSON: %v, want ErrInvalid", err)
	}
}
