package main

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The layout of a KubeVirt containerDisk layer: a disk/ directory and one
// disk image in it, owned by the qemu user (107) and read-only.
const (
	diskDirName = "disk/"
	diskDirMode = 0o555
	diskMode    = 0o444
	diskOwner   = 107
)

// tarEpoch is the modification time of both entries, so the tar depends on
// the disk's bytes only.
var tarEpoch = time.Unix(1704067200, 0) // 2024-01-01T00:00:00Z

// diskEntryName is the name of the disk in the containerDisk tar:
// disk/disk.qcow2 for a qcow2 file, disk/disk.img for a raw one.
func diskEntryName(disk string) string {
	ext := filepath.Ext(disk)
	if ext == "" {
		ext = ".img"
	}
	return diskDirName + "disk" + ext
}

// writeDiskTar writes the containerDisk layer of the disk file to w.
func writeDiskTar(ctx context.Context, w io.Writer, disk string) error {
	f, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir, Name: diskDirName, Mode: diskDirMode,
		Uid: diskOwner, Gid: diskOwner, ModTime: tarEpoch,
	}); err != nil {
		return fmt.Errorf("writing tar header of %s: %w", diskDirName, err)
	}
	name := diskEntryName(disk)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: diskMode, Size: fi.Size(),
		Uid: diskOwner, Gid: diskOwner, ModTime: tarEpoch,
	}); err != nil {
		return fmt.Errorf("writing tar header of %s: %w", name, err)
	}
	if _, err := io.Copy(tw, ctxReader{ctx, f}); err != nil {
		return fmt.Errorf("copying %s into the tar: %w", disk, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("closing the tar of %s: %w", disk, err)
	}
	return nil
}

// makeDiskTar writes the containerDisk layer of disk to the file path and
// returns its size.
func makeDiskTar(ctx context.Context, path, disk string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = writeDiskTar(ctx, bw, disk)
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
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// streamDiskTar returns the containerDisk layer of disk as a stream, built
// while it is read, so no tar file is needed.
func streamDiskTar(ctx context.Context, disk string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 1<<20)
		err := writeDiskTar(ctx, bw, disk)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
