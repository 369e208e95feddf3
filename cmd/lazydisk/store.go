package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/fusefs"
	"github.com/lazydisk/lazydisk/internal/layerstore"
	"github.com/lazydisk/lazydisk/internal/size"
)

type storeOptions struct {
	disk      diskFlags
	root      string
	readahead string
	idle      time.Duration
}

func newStoreCmd(reg *registryOptions) *cobra.Command {
	o := &storeOptions{disk: diskFlags{reg: reg}}
	cmd := &cobra.Command{
		Use:   "store --root DIR",
		Short: "Serve seekable images as an additional layer store for podman and CRI-O (FUSE)",
		Long: `Serve an additional layer store for containers/storage's overlay driver (podman,
CRI-O, Buildah) on DIR with FUSE. With

  [storage.options]
  additionallayerstores = ["DIR:ref"]

in storage.conf, pulling a seekable eStargz or zstd:chunked image fetches only
its manifest, config and TOCs: the runtime finds each layer under
DIR/<base64(image reference)>/<digest>/ (diff/, info, blob) and uses diff/ as
an overlay lower directory, whose files are fetched chunk by chunk when they
are read and checked against their digests, as lazydisk read does. <digest>
is the layer's TOC digest (current containers/storage) or its compressed
digest (older releases such as podman 4.3); both name the same layer.

An image the store cannot open (not seekable, no TOC digest annotations,
unreachable, or with --key not signed by that key) shows no layers: the
runtime then pulls it the normal way, under its own signature policy.
Credentials come from --authfile (default $REGISTRY_AUTH_FILE; podman's
auth.json, which lazydisk login writes too) and the Docker config. With -v, the
lookups and the use protocol are logged too. Images nobody uses are closed after
--idle, which frees their caches; reads reopen them.

store runs in the foreground until SIGINT or SIGTERM, then unmounts DIR.
Failed lookups and reads are logged on stderr. Needs root (or fusermount).`,
		Example: `  # Serve the store and point podman at it
  mkdir -p /var/lib/lazydisk/store
  lazydisk store --root /var/lib/lazydisk/store --cache-dir /var/cache/lazydisk &
  cat >> /etc/containers/storage.conf <<'CONF'
  [storage.options]
  additionallayerstores = ["/var/lib/lazydisk/store:ref"]
  CONF
  podman pull registry.example.com/vm/fedora:41-zstd

  # Only images signed by this key are served lazily
  lazydisk store --root /var/lib/lazydisk/store --key cosign.pub`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.root, "root", "", "the store's directory, as named in additionallayerstores (required)")
	// --auth-file: the spelling of the store's first design; --authfile
	// (global, as podman and skopeo spell it) is the documented one.
	f.StringVar(&reg.authfile, "auth-file", "", "the same as --authfile")
	_ = f.MarkHidden("auth-file")
	f.StringVar(&o.readahead, "readahead", size.Format(disk.DefaultReadahead), "bytes fetched ahead of sequential reads of large files (0: none)")
	f.DurationVar(&o.idle, "idle", layerstore.DefaultIdle, "close images nobody has used for this long")
	o.disk.addFlags(cmd)
	_ = f.MarkHidden("file")
	_ = cmd.MarkFlagDirname("root")
	return cmd
}

func (o *storeOptions) run(ctx context.Context, cmd *cobra.Command) error {
	if o.root == "" {
		return usagef("store needs --root DIR, the directory named in storage.conf's additionallayerstores")
	}
	if o.disk.file != "" {
		return usagef("--file does not apply to store: it serves every file of every layer")
	}
	readahead, err := size.Parse(o.readahead)
	if err != nil {
		return usagef("--readahead: %w", err)
	}
	if o.idle <= 0 {
		return usagef("--idle must be positive")
	}
	fi, err := os.Stat(o.root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		if _, cerr := fusefs.ClearStale(o.root); cerr != nil {
			return cerr
		}
		fi, err = os.Stat(o.root)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return usagef("--root %s does not exist: create the directory first", o.root)
	case err != nil:
		return err
	case !fi.IsDir():
		return usagef("--root %s is not a directory", o.root)
	}
	if path := o.disk.reg.authfile; path != "" || os.Getenv("REGISTRY_AUTH_FILE") != "" {
		if path == "" {
			path = os.Getenv("REGISTRY_AUTH_FILE")
		}
		// A daemon checks its credentials file once, at start; it is read
		// again at each lookup.
		if err := image.CheckAuthFile(path); err != nil {
			return fmt.Errorf("--authfile: %w", err)
		}
	}
	if err := fusefs.Available(); err != nil {
		return err
	}
	opts, err := o.disk.options(cmd)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.disk.reg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := layerstore.New(ctx, layerstore.Options{Disk: opts, Files: diskFileOptions(readahead), Log: log, Idle: o.idle})
	srv, err := fusefs.Mount(o.root, st, fusefs.Options{Log: log, Writable: true, NoNegativeCache: true})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	fmt.Fprintf(cmd.ErrOrStderr(), "serving the layer store at %s (storage.conf: additionallayerstores = [\"%s:ref\"])\n", srv.Dir(), srv.Dir())
	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	select {
	case <-unmounted:
	case <-ctx.Done():
	}
	err = srv.Unmount()
	cancel()
	<-done
	s := st.Stats()
	log.Info("stopped", "requests", s.Requests, "bytes", s.BytesFetched, "chunks", s.ChunksFetched)
	return err
}
