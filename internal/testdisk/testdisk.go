// Package testdisk generates disk-like inputs for tests and benchmarks: the
// bytes of a VM disk image (incompressible, compressible and zero runs, as
// an ext4 or qcow2 image has them) and the containerDisk tar that holds
// them. Data is generated in memory from a seed, the same for the same
// seed; nothing is read from or written to files, so that large inputs are
// never committed.
package testdisk

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// Name is the disk's path in the tar Tar builds, as KubeVirt expects it.
const Name = "disk/disk.img"

// text is the compressible run's pattern, varied byte by byte so that it
// compresses like text rather than like a repeated block.
var text = []byte("the quick brown fox jumps over the lazy disk 0123456789\n")

// Bytes returns n bytes shaped like a disk image: runs of 4 KiB to about
// 1 MiB, each random (incompressible), text-like, or zero, in about equal
// shares; zero runs are long enough for some to cover whole chunks (which
// zstd:chunked stores as zeros chunks).
func Bytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for off := 0; off < n; {
		run := min(n-off, 4<<10+r.IntN(1<<20))
		p := b[off : off+run]
		switch r.IntN(3) {
		case 0:
			for i := 0; i+8 <= len(p); i += 8 {
				binary.LittleEndian.PutUint64(p[i:], r.Uint64())
			}
		case 1:
			for i := range p {
				p[i] = text[(i+r.IntN(2))%len(text)]
			}
		default: // zeros: already
		}
		off += run
	}
	return b
}

// Tar returns a containerDisk tar holding data as Name: the "disk/"
// directory mode 0555 and the file mode 0444, both owned by uid/gid 107,
// as lazydisk convert's disk: source builds it.
func Tar(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(data) + 3<<10)
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107, Format: tar.FormatUSTAR},
		{Typeflag: tar.TypeReg, Name: Name, Mode: 0o444, Uid: 107, Gid: 107, Size: int64(len(data)), Format: tar.FormatUSTAR},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing the tar header of %s: %w", h.Name, err)
		}
	}
	if _, err := tw.Write(data); err != nil {
		return nil, fmt.Errorf("writing %s: %w", Name, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the tar: %w", err)
	}
	return buf.Bytes(), nil
}
