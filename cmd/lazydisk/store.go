package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
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
	authFile  string
	readahead string
	idle      time.Duration
	verbose   bool
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
Credentials come from --auth-file (default $REGISTRY_AUTH_FILE, podman's
auth.json format) and the Docker config. Images nobody uses are closed after
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
	f.StringVar(&o.authFile, "auth-file", "", "registry credentials in podman's auth.json format (default $REGISTRY_AUTH_FILE)")
	f.StringVar(&o.readahead, "readahead", size.Format(disk.DefaultReadahead), "bytes fetched ahead of sequential reads of large files (0: none)")
	f.DurationVar(&o.idle, "idle", layerstore.DefaultIdle, "close images nobody has used for this long")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log lookups and the use protocol too")
	o.disk.addFlags(cmd)
	_ = f.MarkHidden("file")
	_ = cmd.MarkFlagDirname("root")
	_ = cmd.MarkFlagFilename("auth-file", "json")
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
	authFile := o.authFile
	if authFile == "" {
		authFile = os.Getenv("REGISTRY_AUTH_FILE")
	}
	var kc authn.Keychain = authn.DefaultKeychain
	if authFile != "" {
		if kc, err = authFileKeychain(authFile); err != nil {
			return err
		}
	}
	if err := fusefs.Available(); err != nil {
		return err
	}
	opts, err := o.disk.options(cmd)
	if err != nil {
		return err
	}
	opts = append(opts, disk.WithImageOptions(image.WithKeychain(kc)))
	level := slog.LevelInfo
	if o.verbose {
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

// authFileKeychain reads registry credentials from a containers-auth.json
// file ({"auths": {"HOST": {"auth": base64("USER:PASSWORD")}}}), falling
// back to the Docker config for registries it does not name.
func authFileKeychain(path string) (authn.Keychain, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--auth-file: %w", err)
	}
	var f struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("--auth-file %s is not a containers-auth.json file: %w", path, err)
	}
	kc := authKeychain{}
	for host, a := range f.Auths {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		user, pass, ok := strings.Cut(string(raw), ":")
		if err != nil || !ok {
			return nil, fmt.Errorf("--auth-file %s: the entry for %s is not base64 of USER:PASSWORD", path, host)
		}
		host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		kc[host] = authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})
	}
	return authn.NewMultiKeychain(kc, authn.DefaultKeychain), nil
}

type authKeychain map[string]authn.Authenticator

func (k authKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := k[r.RegistryStr()]; ok {
		return a, nil
	}
	return authn.Anonymous, nil
}
