package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/image"
)

// diskLayer returns the containerDisk layer that `lazydisk convert
// disk:PATH` builds, so the benchmark converts exactly what users convert.
func diskLayer(ctx context.Context, disk string) (v1.Layer, error) {
	ref, err := image.Parse("disk:" + disk)
	if err != nil {
		return nil, err
	}
	art, err := image.Read(ctx, ref)
	if err != nil {
		return nil, err
	}
	layers, err := art.Image.Layers()
	if err != nil {
		return nil, err
	}
	return layers[0], nil
}

// diskEntryName is the name of the disk file in its containerDisk tar.
func diskEntryName(disk string) string { return "disk/" + filepath.Base(disk) }

// makeDiskTar writes the containerDisk layer of disk to the file path and
// returns its size.
func makeDiskTar(ctx context.Context, path, disk string) (int64, error) {
	src, err := streamDiskTar(ctx, disk)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	n, err := io.Copy(bw, src)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	return n, nil
}

// streamDiskTar returns the containerDisk layer of disk as a stream, built
// while it is read, so no tar file is needed.
func streamDiskTar(ctx context.Context, disk string) (io.ReadCloser, error) {
	l, err := diskLayer(ctx, disk)
	if err != nil {
		return nil, err
	}
	return l.Uncompressed()
}
