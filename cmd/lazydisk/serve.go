package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/guest"
	"github.com/lazydisk/lazydisk/internal/nbd"
	"github.com/lazydisk/lazydisk/internal/outfile"
	"github.com/lazydisk/lazydisk/internal/size"
)

type serveOptions struct {
	disk        diskFlags
	listen      string
	allowRemote bool
	readahead   string
	maxConns    int
	stats       statsFlags
	printURI    bool
	pidfile     string
	runCmd      string
	memory      string
	guest       bool
}

func newServeCmd(reg *registryOptions) *cobra.Command {
	o := &serveOptions{disk: diskFlags{reg: reg}}
	cmd := &cobra.Command{
		Use:   "serve REF --listen unix:///PATH|tcp://HOST:PORT",
		Short: "Serve the disk in an image over NBD, read-only, fetching chunks as clients read them",
		Long: `Serve the VM disk (by default the single file under /disk/) of a seekable
eStargz or zstd:chunked image as a read-only NBD export, so that qemu, qemu-img,
nbdcopy, nbdinfo or the kernel's nbd client can use it without downloading the
layer. As with read, the TOC is checked against the manifest's TOC digest
annotation, and each chunk is fetched when a client first reads it and checked
against its digest before any of its bytes are sent. With --key, the image's
cosign signature is checked first and the manifest read by the signed digest,
as read --key does (exit 3 without a signature, 4 for a bad one, 5 when the
TOC does not match); a chunk that does not match its digest then fails the
client's read with EIO and is logged.

All connections share one cache of verified chunks, so clients that open
several connections (nbdcopy, qemu-img with multi-conn) fetch each chunk once.
Reads that run sequentially, several streams at once, are read ahead (up to
--readahead bytes fetched before they are asked for), so a whole copy keeps
several range requests in flight as read --range all does; isolated reads
fetch only the chunks they cover. Zero chunks are reported as holes (nbdinfo --map, qemu-img map).

With --guest the export is the guest's disk: for a qcow2 file, the disk the VM
sees (its virtual size), decoded by the qcow2 reader, with unallocated and zero
clusters reported as holes from the L2 tables alone, so clients that want raw
blocks (nbdcopy to a device, the kernel's nbd client, CDI's raw import) need no
qcow2 support; for a raw file, the file itself.

--listen is a unix socket (unix:///run/disk.sock, or a bare path without ':'
such as /run/disk.sock; a stale socket file that nothing answers on is
replaced, and the file is removed on exit) or a TCP address. The server has no TLS and no authentication, so TCP is limited to
loopback addresses (127.0.0.1, [::1], localhost) unless --allow-remote is given.

Once listening, serve prints the NBD URI to stderr, and with --print-uri the
URI alone on stdout, and writes its process ID to --pidfile (removed on exit):
each is a signal that clients can connect. It runs until interrupted (SIGINT,
SIGTERM), then closes the connections and exits 130 or 143, printing what it
served with --stats. Errors reading the disk are logged to stderr (log/slog)
and answered with EIO.

With --run, as nbdkit --run, serve starts the shell command (sh -c) once
listening, with $uri (and $nbd, the same) and, on a unix socket, $unixsocket
in its environment; when the command exits, serve stops and exits with the
command's status. Without --listen, --run serves on a unix socket in a new
temporary directory, removed afterwards.`,
		Example: `  # Serve on a unix socket; the URI to use is printed on stderr
  lazydisk serve quay.io/containerdisks/fedora:41-esgz --listen unix:///tmp/fedora.sock

  # Serve only while a command runs, on a private socket, and exit with its status
  lazydisk serve quay.io/containerdisks/fedora:41-esgz --run 'qemu-img convert -O raw "$uri" fedora.raw'

  # In a script: wait for the URI, then use it
  lazydisk serve quay.io/containerdisks/fedora:41-esgz --listen /tmp/fedora.sock --print-uri --pidfile serve.pid | {
      read -r uri; nbdinfo "$uri"; kill "$(cat serve.pid)"; }

  # Look at it
  qemu-img info nbd+unix:///?socket=/tmp/fedora.sock
  nbdinfo --map nbd+unix:///?socket=/tmp/fedora.sock

  # Copy it, converted to raw, or as it is (nbdcopy opens 4 connections)
  qemu-img convert -f qcow2 -O raw nbd+unix:///?socket=/tmp/fedora.sock fedora.raw
  nbdcopy nbd+unix:///?socket=/tmp/fedora.sock fedora.qcow2

  # The guest's disk (qcow2 decoded, holes where it is unallocated), for raw-block clients
  lazydisk serve --guest quay.io/containerdisks/fedora:41-esgz --listen unix:///tmp/guest.sock
  nbdcopy nbd+unix:///?socket=/tmp/guest.sock /dev/vdb

  # Read 4 KiB at 1 GiB: fetches only the chunk under it
  qemu-io -r -f raw -c 'read 1G 4k' nbd+unix:///?socket=/tmp/fedora.sock

  # Boot a VM from it, with writes going to a local overlay
  qemu-img create -f qcow2 -F qcow2 -b nbd+unix:///?socket=/tmp/fedora.sock overlay.qcow2
  qemu-system-x86_64 -m 2G -drive file=overlay.qcow2,if=virtio

  # On TCP, only if signed by this key, with a cache that outlives the process and stats on exit
  lazydisk serve registry.example.com/vm/fedora:41 --listen tcp://127.0.0.1:10809 \
      --key cosign.pub --cache-dir ~/.cache/lazydisk --stats
  qemu-system-x86_64 -m 2G -snapshot -drive file=nbd://127.0.0.1:10809,format=qcow2,if=virtio`,
		Args:              oneRefArg,
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "", "where to listen: unix:///PATH, a PATH, or tcp://HOST:PORT (required without --run)")
	f.BoolVar(&o.printURI, "print-uri", false, "once listening, print the NBD URI alone on stdout")
	f.StringVar(&o.pidfile, "pidfile", "", "once listening, write the process ID to this file (removed on exit)")
	f.StringVar(&o.runCmd, "run", "", "once listening, run this shell command with $uri, $nbd and $unixsocket set; stop when it exits and exit with its status")
	f.BoolVar(&o.allowRemote, "allow-remote", false, "allow a TCP address other machines can reach (the server has no TLS or authentication)")
	f.StringVar(&o.readahead, "readahead", size.Format(disk.DefaultReadahead), "bytes fetched ahead of sequential reads, all streams together (0: none; at most half of --cache-size)")
	f.IntVar(&o.maxConns, "max-connections", nbd.DefaultMaxConns, "client connections open at once")
	o.stats.addFlags(cmd, "on exit, print connections, requests, bytes served and fetched to stderr")
	f.StringVar(&o.memory, "memory", "", "memory for reply buffers, cached chunks and fetches in flight, all together (default: a quarter of the machine's, 256M to 2G)")
	f.BoolVar(&o.guest, "guest", false, "serve the guest's disk: for a qcow2 file its virtual disk, with unallocated and zero clusters as holes; for a raw file the file itself")
	o.disk.addFlags(cmd)
	_ = cmd.RegisterFlagCompletionFunc("listen", cobra.FixedCompletions([]string{"unix:///", "tcp://127.0.0.1:10809"}, cobra.ShellCompDirectiveNoSpace|cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("run", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("readahead", cobra.FixedCompletions([]string{"0", "32M"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("max-connections", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("memory", cobra.FixedCompletions([]string{"256M", "1G"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *serveOptions) run(ctx context.Context, cmd *cobra.Command, refArg string) error {
	listen := o.listen
	if listen == "" && o.runCmd != "" {
		dir, err := os.MkdirTemp("", "lazydisk-serve-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		listen = "unix://" + filepath.Join(dir, "nbd.sock")
	}
	if listen == "" {
		return usagef("serve needs --listen unix:///PATH or --listen tcp://127.0.0.1:PORT, or --run CMD")
	}
	addr, err := nbd.ParseAddress(listen)
	if err != nil {
		return usagef("--listen: %w", err)
	}
	if !o.allowRemote && !addr.Loopback() {
		return usagef("--listen %s: other machines could reach it, and the NBD server has no TLS or authentication; listen on a unix socket, 127.0.0.1 or [::1], or pass --allow-remote", o.listen)
	}
	statsFormat, err := o.stats.resolve(cmd)
	if err != nil {
		return err
	}
	readahead, err := size.Parse(o.readahead)
	if err != nil {
		return usagef("--readahead: %w", err)
	}
	if o.maxConns < 1 {
		return usagef("--max-connections must be at least 1")
	}
	memory := defaultMemory()
	if o.memory != "" {
		if memory, err = size.Parse(o.memory); err != nil {
			return usagef("--memory: %w", err)
		}
	}
	cacheSize, err := size.Parse(o.disk.cacheSize)
	if err != nil {
		return usagef("--cache-size: %w", err)
	}
	plan, err := planMemory(memory, cacheSize, cmd.Flags().Changed("cache-size"), o.disk.concurrency, o.maxConns)
	if err != nil {
		return err
	}
	opts, err := o.disk.options(cmd)
	if err != nil {
		return err
	}
	opts = append(opts, disk.WithReadahead(readahead), disk.WithCacheSize(plan.cache))
	// The garbage collector keeps the heap within the budget and returns
	// what clients that left used, unless GOMEMLIMIT says otherwise.
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(memory))
	}
	// The log, the --run command's output copied by os/exec and the stats
	// may be written at once.
	stderr := o.disk.reg.errw
	if stderr == nil {
		stderr = &syncWriter{w: cmd.ErrOrStderr()}
	}
	level := slog.LevelInfo
	if o.disk.reg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	start := time.Now()
	ref, err := image.ParseSource(refArg)
	if err != nil {
		return usageError{err}
	}
	f, err := disk.Open(ctx, ref, opts...)
	if err != nil {
		return err
	}
	defer f.Close()
	var backend nbd.Backend = exportBackend{f}
	desc := fmt.Sprintf("%s of %s (manifest %s)", f.Name(), f.Ref(), f.Manifest())
	view := ""
	if o.guest {
		v, err := guest.Open(guestFile{f})
		if err != nil {
			return fmt.Errorf("reading the guest disk of %s: %w", f.Name(), err)
		}
		backend = guestBackend{v}
		view = ", guest disk of " + v.Format()
		desc = "guest disk (" + v.Format() + ") of " + desc
	}
	srv, err := nbd.New([]nbd.Export{{
		Name:        f.Name(),
		Description: desc,
		Backend:     backend,
	}}, nbd.WithLogger(log), nbd.WithMaxConns(o.maxConns), nbd.WithMemory(plan.replies))
	if err != nil {
		return err
	}
	ln, err := nbd.Listen(addr)
	if err != nil {
		return err
	}
	uri := nbd.URI(ln.Addr(), "")
	fmt.Fprintf(o.disk.reg.info(cmd), "serving %s (%d bytes, %s%s%s) at %s\n", f.Name(), backend.Size(), f.Format(), view, signedNote(f), uri)
	if o.pidfile != "" {
		if err := outfile.WriteFile(ctx, o.pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("--pidfile: %w", err)
		}
		defer removeRegular(o.pidfile)
	}
	if o.printURI {
		fmt.Fprintln(cmd.OutOrStdout(), uri)
	}
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	var runErr error
	ran := make(chan struct{})
	if o.runCmd != "" {
		go func() {
			defer close(ran)
			runErr = o.runCommand(serveCtx, cmd.InOrStdin(), &syncWriter{w: cmd.OutOrStdout()}, stderr, uri, addr)
			stopServing()
		}()
	} else {
		close(ran)
	}
	err = srv.Serve(serveCtx, ln) // closes ln, which removes a unix socket
	stopServing()                 // stops a --run command still running
	<-ran
	f.Close() // cancels the readahead
	if statsFormat != "" {
		o.printStats(statsFormat, stderr, f, srv.Stats(), time.Since(start))
	}
	if err != nil {
		return err
	}
	return runErr
}

// runCommand runs serve --run's command with the URI in its environment,
// and stops it (SIGTERM, then SIGKILL 5 s later) when ctx is done.
func (o *serveOptions) runCommand(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, uri string, addr nbd.Address) error {
	c := exec.CommandContext(ctx, "sh", "-c", o.runCmd)
	c.Env = append(os.Environ(), "uri="+uri, "nbd="+uri)
	if addr.Network == "unix" {
		c.Env = append(c.Env, "unixsocket="+addr.Addr)
	}
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 5 * time.Second
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return exitStatusError{code: code, what: "--run command"}
	}
	if err != nil {
		return fmt.Errorf("--run: %w", err)
	}
	return nil
}

// syncWriter serializes the writes of several goroutines to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// removeRegular removes path if it is a regular file (a pidfile written
// to a device or FIFO is left alone).
func removeRegular(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		os.Remove(path)
	}
}

// exportBackend serves a disk.File over NBD, with its zero chunks as holes.
type exportBackend struct{ *disk.File }

func (b exportBackend) Extents(off, length int64) ([]nbd.Extent, error) {
	es := b.File.Extents(off, length)
	out := make([]nbd.Extent, len(es))
	for i, e := range es {
		out[i] = nbd.Extent{Length: e.Length, Zero: e.Zero}
	}
	return out, nil
}

// guestFile is a disk.File as a guest.File that knows its zero chunks.
type guestFile struct{ *disk.File }

func (f guestFile) Zeros(off, length int64) []guest.Extent {
	es := f.File.Extents(off, length)
	out := make([]guest.Extent, len(es))
	for i, e := range es {
		out[i] = guest.Extent{Offset: e.Offset, Length: e.Length, Zero: e.Zero}
	}
	return out
}

// guestBackend serves the guest view of a disk over NBD: zero and
// unallocated qcow2 clusters (zero chunks of a raw disk) are holes.
type guestBackend struct{ *guest.View }

// maxExtentSpan bounds one block status answer: the client asks again for
// the rest.
const maxExtentSpan = 4 << 30

func (b guestBackend) Extents(off, length int64) ([]nbd.Extent, error) {
	es, err := b.View.Extents(off, min(length, maxExtentSpan))
	out := make([]nbd.Extent, len(es))
	for i, e := range es {
		out[i] = nbd.Extent{Length: e.Length, Zero: e.Zero}
	}
	return out, err
}

// signedNote says which digest's signature Open checked, if it did.
func signedNote(f *disk.File) string {
	if h, ok := f.Signed(); ok {
		return ", signature verified for " + h.String()
	}
	return ""
}

// serveStats is what serve --stats prints.
type serveStats struct {
	File    string  `json:"file"`
	Signed  string  `json:"signed,omitempty"`
	Size    int64   `json:"size"`
	Format  string  `json:"format"`
	Seconds float64 `json:"seconds"`
	disk.Stats
	NBD nbd.Stats `json:"nbd"`
}

func (o *serveOptions) printStats(format string, w io.Writer, f *disk.File, ns nbd.Stats, took time.Duration) {
	st := serveStats{File: f.Name(), Size: f.Size(), Format: string(f.Format()), Seconds: took.Seconds(), Stats: f.Stats(), NBD: ns}
	if h, ok := f.Signed(); ok {
		st.Signed = h.String()
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.Encode(st)
		return
	}
	fmt.Fprintf(w, "served %s (%s, %s%s) for %.1fs: %d connections, %d reads (%s read, %s as holes), %d block status, %d errors; "+
		"%d requests, %s fetched (TOC %s in %d), %d chunks fetched (%d read ahead, %d of them used), %d cache hits, %d from --cache-dir, %d zero chunks, %d retries\n",
		f.Name(), size.Format(f.Size()), f.Format(), signedNote(f), took.Seconds(), ns.Connections, ns.Reads, size.Format(ns.BytesRead), size.Format(ns.ZeroBytes),
		ns.BlockStatus, ns.Errors, st.Requests, size.Format(st.BytesFetched), size.Format(st.TOCBytes), st.TOCRequests,
		st.ChunksFetched, st.ReadaheadChunks, st.ReadaheadHits, st.CacheHits, st.DiskCacheHits, st.ZeroChunks, st.Retries)
}
