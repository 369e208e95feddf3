package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/fusefs"
	"github.com/lazydisk/lazydisk/internal/guest"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/toc"
)

type mountOptions struct {
	disk      diskFlags
	all       bool
	guest     bool
	readahead string
}

func newMountCmd(reg *registryOptions) *cobra.Command {
	o := &mountOptions{disk: diskFlags{reg: reg}}
	cmd := &cobra.Command{
		Use:   "mount REF DIR",
		Short: "Mount the disk in an image as a read-only file, fetching chunks as they are read (FUSE)",
		Long: `Mount the VM disk (by default the single file under /disk/, or --file) of a
seekable eStargz or zstd:chunked image on DIR with FUSE, as DIR/<name of the
file>, read-only, with the file's mode, owner and size, so that qemu,
cloud-hypervisor, qemu-img, virt-* tools or e2fsck can open it by path. As
with read and serve, the TOC is checked against the manifest's TOC digest
annotation and each chunk is fetched when it is first read and checked
against its digest; with --key the image's signature is checked first. A
chunk that does not match its digest fails the reads that touch it with EIO
(logged on stderr); other reads go on. Sequential reads are read ahead
(--readahead), and the kernel keeps what was read in its page cache.

With --all, DIR shows the whole file system of the image instead: every file
of every layer, the upper layers' whiteouts applied. Each regular file is
read lazily the same way.

mount prints the path of the file (with --all, DIR) on stdout once it is
mounted and stays in the foreground until SIGINT or SIGTERM, or until the
mount is removed (fusermount -u DIR, umount DIR); then it unmounts and exits
0. A mount left behind by a lazydisk that was killed (reads fail with
"transport endpoint is not connected") is cleared by the next mount on the
same DIR. Mounting needs root, or fusermount (package fuse3) for a user.`,
		Example: `  # Mount the disk and look at it
  mkdir -p /mnt/fedora
  lazydisk mount quay.io/containerdisks/fedora:41-esgz /mnt/fedora &
  qemu-img info /mnt/fedora/disk.qcow2

  # Boot a VM from it, writes going to a local overlay
  qemu-img create -f qcow2 -F qcow2 -b /mnt/fedora/disk.qcow2 overlay.qcow2
  qemu-system-x86_64 -m 2G -drive file=overlay.qcow2,if=virtio

  # Only if signed by this key, with a persistent chunk cache
  lazydisk mount --key cosign.pub --cache-dir ~/.cache/lazydisk registry.example.com/vm/fedora:41 /mnt/fedora

  # The guest's disk of a qcow2 containerDisk, decompressed, as a raw file
  lazydisk mount --guest registry.example.com/vm/fedora:41 /mnt/fedora   # /mnt/fedora/disk.raw

  # The whole image file system
  lazydisk mount --all registry.example.com/vm/fedora:41 /mnt/image

  # Unmount
  fusermount -u /mnt/fedora   # or: kill %1, or umount /mnt/fedora as root`,
		Args:              exactArgs(2),
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.all, "all", false, "mount the image's whole file system (every layer, whiteouts applied) instead of the disk file")
	f.BoolVar(&o.guest, "guest", false, "mount the guest's disk: for a qcow2 file its virtual disk as NAME.raw (decoded as it is read); for a raw file the file itself")
	f.StringVar(&o.readahead, "readahead", size.Format(disk.DefaultReadahead), "bytes fetched ahead of sequential reads of the disk file (0: none; at most half of --cache-size)")
	o.disk.addFlags(cmd)
	_ = cmd.RegisterFlagCompletionFunc("readahead", cobra.FixedCompletions([]string{"0", "32M"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *mountOptions) run(ctx context.Context, cmd *cobra.Command, refArg, dir string) error {
	readahead, err := size.Parse(o.readahead)
	if err != nil {
		return usagef("--readahead: %w", err)
	}
	if o.all && o.disk.file != "" {
		return usagef("--all mounts every file; --file names one: use one of them")
	}
	if o.all && o.guest {
		return usagef("--all mounts every file; --guest the guest's disk of one: use one of them")
	}
	fi, err := os.Stat(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// A stale mount fails stat with ENOTCONN: Mount clears it.
		if _, cerr := fusefs.ClearStale(dir); cerr != nil {
			return cerr
		}
		fi, err = os.Stat(dir)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return usagef("mount point %s does not exist: create the directory first", dir)
	case err != nil:
		return err
	case !fi.IsDir():
		return usagef("mount point %s is not a directory", dir)
	}
	if err := fusefs.Available(); err != nil {
		return err
	}
	opts, err := o.disk.options(cmd)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	level := slog.LevelInfo
	if o.disk.reg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ref, err := image.ParseSource(refArg)
	if err != nil {
		return usageError{err}
	}

	var (
		entries []fusefs.Entry
		shown   string
		closer  func() error
	)
	if o.all {
		im, err := disk.OpenImage(ctx, ref, opts...)
		if err != nil {
			return err
		}
		closer = im.Close
		entries = fusefs.MergedEntries(im, diskFileOptions(readahead))
		shown = dir
	} else {
		f, err := disk.Open(ctx, ref, append(opts, disk.WithReadahead(readahead))...)
		if err != nil {
			return err
		}
		closer = f.Close
		e := f.Entry()
		name, content, length := path.Base(f.Name()), io.ReaderAt(f), f.Size()
		if o.guest {
			v, err := guest.Open(guestFile{f})
			if err != nil {
				f.Close()
				return fmt.Errorf("reading the guest disk of %s: %w", f.Name(), err)
			}
			if v.Format() != guest.FormatRaw {
				name = strings.TrimSuffix(name, path.Ext(name)) + ".raw"
			}
			content, length = v, v.Size()
		}
		entries = []fusefs.Entry{{
			Path: name, Mode: 0o100000 | uint32(e.Mode)&0o7777, Size: length,
			UID: uint32(e.UID), GID: uint32(e.GID), ModTime: e.ModTime,
			Open: func() (io.ReaderAt, error) { return content, nil },
		}}
		shown = filepath.Join(dir, name)
		log.Debug("opened", "file", f.Name(), "size", f.Size(), "format", f.Format(), "layer", f.Layer().Digest)
	}
	defer closer()
	tree, err := fusefs.New(entries, fusefs.Options{Log: log})
	if err != nil {
		return err
	}
	srv, err := fusefs.Mount(dir, tree, fusefs.Options{Log: log})
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), shown)
	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	select {
	case <-unmounted:
		log.Debug("unmounted from outside", "dir", srv.Dir())
		return nil
	case <-ctx.Done():
	}
	return srv.Unmount()
}

// diskFileOptions reads the large files of a tree (disk images) with
// readahead and the memory cache, and the others with a small cache and no
// readahead: the kernel's page cache keeps what was read, and many small
// files must not each hold a large cache.
func diskFileOptions(readahead int64) fusefs.FileOptions {
	return func(f *toc.File) []disk.Option {
		if f.Size >= 16<<20 {
			return []disk.Option{disk.WithReadahead(readahead)}
		}
		return []disk.Option{disk.WithCacheSize(1 << 20), disk.WithReadahead(0)}
	}
}
