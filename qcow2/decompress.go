package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// decompressors turns a compressed cluster's bytes back into the cluster,
// with pooled decoders. As in qemu, decompression stops once a whole
// cluster is produced (the sectors may hold the next cluster's bytes
// after it), and must produce a whole cluster.
type decompressors struct {
	kind        Compression
	clusterSize int64
	flate       sync.Pool // flate.Resetter readers
	zstd        sync.Pool // *zstd.Decoder
}

func (d *decompressors) decompress(dst, src []byte) error {
	var r io.Reader
	switch d.kind {
	case Deflate:
		fr, ok := d.flate.Get().(io.ReadCloser)
		if ok {
			if err := fr.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
				return err
			}
		} else {
			fr = flate.NewReader(bytes.NewReader(src))
		}
		defer d.flate.Put(fr)
		r = fr
	case Zstd:
		zr, ok := d.zstd.Get().(*zstd.Decoder)
		if !ok {
			var err error
			// One goroutine-free decoder per read; a cluster is at most
			// 2 MiB, so a bigger window is not from qemu.
			zr, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(uint64(max(d.clusterSize, 1<<20))), zstd.WithDecoderMaxMemory(uint64(4*d.clusterSize+1<<20)))
			if err != nil {
				return err
			}
		}
		if err := zr.Reset(bytes.NewReader(src)); err != nil {
			return err
		}
		defer d.zstd.Put(zr)
		r = zr
	default:
		return fmt.Errorf("%s", d.kind)
	}
	n, err := io.ReadFull(r, dst)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s data decompresses to %d bytes, not a %d-byte cluster", d.kind, n, len(dst))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", d.kind, err)
	}
	return nil
}
