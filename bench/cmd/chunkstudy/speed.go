package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.podman.io/storage/pkg/chunked/compressor"
)

// refSpeeds are single-core speeds that put the chunkers' in context.
type refSpeeds struct {
	sha256   float64 // MB/s of sha256 over the disk
	zstd     float64 // MB/s of zstd level 3, one frame per 256 KiB
	cstorage float64 // MB/s of containers/storage's writer without compression; 0 if not run
}

// measureRefSpeeds times, on one core, what every chunk costs whatever the
// chunker (sha256 and zstd), and containers/storage's own writer with
// compression off (compressor.NoCompression: tar parsing, holes finder,
// rolling sum, digests, tar-split), on d.
func measureRefSpeeds(ctx context.Context, d *disk, cstorage bool) (refSpeeds, error) {
	var r refSpeeds
	fmt.Fprintf(os.Stderr, "chunkstudy: timing sha256 and zstd on %s\n", d.name)
	t := time.Now()
	sha256.Sum256(d.data)
	r.sha256 = benchutil.MBps(int64(len(d.data)), time.Since(t))

	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(studyLevel)), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return r, err
	}
	defer enc.Close()
	var buf []byte
	t = time.Now()
	for off := 0; off < len(d.data); off += 256 << 10 {
		buf = enc.EncodeAll(d.data[off:min(off+256<<10, len(d.data))], buf[:0])
	}
	r.zstd = benchutil.MBps(int64(len(d.data)), time.Since(t))
	if err := ctx.Err(); err != nil {
		return r, err
	}

	if cstorage {
		fmt.Fprintf(os.Stderr, "chunkstudy: timing containers/storage's writer (no compression) on %s\n", d.name)
		if r.cstorage, err = cstorageSpeed(d); err != nil {
			return r, err
		}
	}
	return r, nil
}

// cstorageSpeed runs containers/storage's zstd:chunked writer without
// compression over a tar holding d and returns its throughput.
func cstorageSpeed(d *disk) (float64, error) {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/" + d.name, Mode: 0o444, Size: int64(len(d.data)),
			Uid: 107, Gid: 107, ModTime: time.Unix(1704067200, 0), Format: tar.FormatPAX})
		if err == nil {
			_, err = tw.Write(d.data)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	t := time.Now()
	zw, err := compressor.NoCompression(io.Discard, map[string]string{})
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(zw, pr); err != nil {
		return 0, fmt.Errorf("containers/storage writer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return 0, fmt.Errorf("containers/storage writer: %w", err)
	}
	return benchutil.MBps(int64(len(d.data)), time.Since(t)), nil
}

// streamSize returns the size of d compressed as one zstd stream at the
// study's level: what plain zstd, not seekable, would make of the disk.
func streamSize(d *disk) (int64, error) {
	var n countWriter
	zw, err := zstd.NewWriter(&n, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(studyLevel)))
	if err != nil {
		return 0, err
	}
	if _, err := zw.Write(d.data); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

// countWriter counts the bytes written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
