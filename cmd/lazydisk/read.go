package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/guest"
	"github.com/lazydisk/lazydisk/internal/outfile"
	"github.com/lazydisk/lazydisk/internal/size"
)

type readOptions struct {
	disk         diskFlags
	ranges       string
	output       string
	stats        statsFlags
	sparse       string
	deviceZeroed bool
	guest        bool
}

func newReadCmd(reg *registryOptions) *cobra.Command {
	o := &readOptions{disk: diskFlags{reg: reg}}
	cmd := &cobra.Command{
		Use:   "read REF --range OFFSET:LENGTH[,...]|all",
		Short: "Read byte ranges of the disk in an image, fetching and verifying only the chunks they cover",
		Long: `Read byte ranges of the VM disk (by default the single file under /disk/) in a
seekable eStargz or zstd:chunked image, without downloading the layer. lazydisk
fetches the layer's TOC, checks it against the manifest's TOC digest annotation,
then fetches only the chunks that cover the ranges, checks each against its
digest, and writes the bytes of the ranges, in order, to the output.

Ranges are OFFSET:LENGTH with optional K, M, G, T suffixes (powers of 1024);
"OFFSET:" runs to the end of the file, and "all" is the whole file, fetched with
parallel requests and decompression. A range that runs past the end of the file
is cut there; one that starts past it is an error.

With --guest the ranges are of the guest's disk: for a qcow2 file, the disk the
VM sees (its virtual size; compressed clusters are decompressed, zero and
unallocated clusters read as zeros and become holes in a regular -o file), read
by the qcow2 reader over the verified chunks; for a raw file, the file itself.
qcow2 files with a backing file, encryption or an external data file, and
corrupt ones, are refused (see docs/qcow2.md).

With --key, the image's cosign signature is checked first (as verify does) and
the manifest is then read by the signed digest, so every byte written is covered
by the chain signature -> manifest -> TOC digest annotation -> TOC -> chunk. The
exit status is then 3 when there is no signature, 4 for a bad signature and 5
when the TOC or a chunk does not match what the signed manifest says.

Registry reads are retried on 429, 5xx, resets and stalls, with backoff; expired
tokens and signed storage URLs are renewed.

The output (-o) may be a regular file, a block device, a character device, a
FIFO or a file descriptor (/dev/stdout, /dev/fd/N); a symlink is followed. A
regular file is written atomically (a temporary file beside it, renamed over
it once every byte is verified), keeping an existing file's mode. Anything
else is written in place and never removed, renamed over or truncated; a
block device smaller than the bytes to write is refused before anything is
written. A regular file is sparse: runs of zero chunks (zstd:chunked zeros
chunks, chunks whose digest is that of zeros) are left as holes, and with
--sparse=always so is every 4 KiB block of zeros. On a block device zeros are
written (by the kernel's zeroing where it can) unless --device-zeroed says the
device already reads as zeros.`,
		Example: `  # The qcow2 header of a containerDisk
  lazydisk read quay.io/containerdisks/fedora:41-esgz --range 0:512 | xxd | head

  # Two ranges, with what they cost
  lazydisk read registry.example.com/vm/fedora:41 --range 1M:4K,2G:64K -o part.bin --stats

  # The whole disk, verified chunk by chunk, with a cache that survives the process
  lazydisk read oci:mirror:fedora --range all --cache-dir ~/.cache/lazydisk -o fedora.qcow2

  # Straight onto a block device (a CDI block-mode volume, a fresh LV)
  lazydisk read registry.example.com/vm/fedora:41-raw --range all -o /dev/vdb --device-zeroed

  # Into a pipe, for another tool to consume
  mkfifo /tmp/disk.fifo; lazydisk read oci:mirror:fedora --range all -o /tmp/disk.fifo &

  # The guest's disk of a qcow2 containerDisk, decompressed, as a sparse raw file
  lazydisk read --guest registry.example.com/vm/fedora:41 --range all -o fedora.raw

  # Only if the image is signed by this key
  lazydisk read --key cosign.pub registry.example.com/vm/fedora:41 --range 0:1M -o head.bin`,
		Args:              oneRefArg,
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ranges, "range", "", "OFFSET:LENGTH[,OFFSET:LENGTH...], or all (required)")
	f.StringVarP(&o.output, "output", "o", "", "write the bytes to this file (atomically), device or FIFO (in place), or - for stdout (default: stdout, unless it is a terminal)")
	f.StringVar(&o.sparse, "sparse", "auto", "holes in a regular output file: auto (where the TOC says zeros), always (also every 4 KiB block of zeros) or never")
	f.BoolVar(&o.guest, "guest", false, "read the guest's disk: for a qcow2 file its virtual disk (offsets and sizes are the guest's; unallocated and zero clusters are zero runs), for a raw file the file itself")
	f.BoolVar(&o.deviceZeroed, "device-zeroed", false, "the output block device already reads as zeros: leave zero regions unwritten")
	o.stats.addFlags(cmd, "print requests, bytes fetched and time to stderr")
	o.disk.addFlags(cmd)
	_ = cmd.RegisterFlagCompletionFunc("range", cobra.FixedCompletions([]string{"all", "0:4K"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("sparse", cobra.FixedCompletions([]string{"auto", "always", "never"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// byteRange is one --range; n < 0 runs to the end of the file.
type byteRange struct{ off, n int64 }

// parseRanges parses --range: "all", or OFFSET:LENGTH[,...].
func parseRanges(s string) ([]byteRange, error) {
	if strings.TrimSpace(s) == "all" {
		return []byteRange{{0, -1}}, nil
	}
	var out []byteRange
	for _, part := range strings.Split(s, ",") {
		o, l, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, usagef("--range %q: use OFFSET:LENGTH (for example 1M:4K), OFFSET: or all", part)
		}
		off, err := size.Parse(o)
		if err != nil {
			return nil, usagef("--range %q: offset: %w", part, err)
		}
		n := int64(-1)
		if l != "" {
			if n, err = size.Parse(l); err != nil {
				return nil, usagef("--range %q: length: %w", part, err)
			}
		}
		out = append(out, byteRange{off, n})
	}
	return out, nil
}

// readStats is what --stats prints.
type readStats struct {
	File    string  `json:"file"`
	Signed  string  `json:"signed,omitempty"`
	Size    int64   `json:"size"`
	Format  string  `json:"format"`
	Read    int64   `json:"bytesRead"`
	Seconds float64 `json:"seconds"`
	disk.Stats
}

func (o *readOptions) run(ctx context.Context, cmd *cobra.Command, refArg string) (rerr error) {
	if o.ranges == "" {
		return usagef("read needs --range OFFSET:LENGTH[,...] or --range all")
	}
	ranges, err := parseRanges(o.ranges)
	if err != nil {
		return err
	}
	statsFormat, err := o.stats.resolve(cmd)
	if err != nil {
		return err
	}
	sparse, err := outfile.ParseSparse(o.sparse)
	if err != nil {
		return usagef("--sparse: %w", err)
	}
	opts, err := o.disk.options(cmd)
	if err != nil {
		return err
	}
	stdout := cmd.OutOrStdout()
	if o.output == "" && isTerminal(stdout) {
		return usagef("refusing to write disk bytes to a terminal: use -o FILE, or -o - to insist")
	}
	start := time.Now()
	ref, err := image.ParseSource(refArg)
	if err != nil {
		return usageError{err}
	}
	if o.guest {
		// The guest view reads the qcow2 clusters of a stream in order.
		opts = append(opts, disk.WithReadahead(disk.DefaultReadahead))
	}
	f, err := disk.Open(ctx, ref, opts...)
	if err != nil {
		return err
	}
	defer f.Close()
	var src rangeSource = f
	what := f.Name()
	if o.guest {
		v, err := guest.Open(guestFile{f})
		if err != nil {
			return fmt.Errorf("reading the guest disk of %s: %w", f.Name(), err)
		}
		src, what = v, "the guest disk of "+f.Name()
	}
	for _, r := range ranges {
		if r.off > src.Size() || (r.off == src.Size() && r.n != 0 && src.Size() != 0) {
			return usagef("--range %d:%d starts past the end of %s (%d bytes)", r.off, r.n, what, src.Size())
		}
	}
	var total int64
	for i, r := range ranges {
		if r.n < 0 || r.off+r.n > src.Size() {
			ranges[i].n = src.Size() - r.off
		}
		total += ranges[i].n
	}
	out, err := o.openOutput(ctx, stdout, outfile.WithSize(total), outfile.WithSparse(sparse), outfile.WithDeviceZeroed(o.deviceZeroed))
	if err != nil {
		return err
	}
	var read int64
	var w io.Writer = out
	if o.disk.reg.showProgress() {
		pr := newProgressPrinter(cmd.ErrOrStderr())
		defer pr.close()
		w = &progressWriter{File: out, show: func(n int64, done bool) { pr.show("reading "+what, n, total, done) }}
	}
	for _, r := range ranges {
		m, werr := src.WriteRange(w, r.off, r.n)
		read += m
		if err = werr; err != nil {
			break
		}
	}
	if pw, ok := w.(*progressWriter); ok && err == nil {
		pw.show(pw.n, true)
	}
	if err == nil {
		err = out.Commit()
	} else {
		out.Abort()
	}
	if statsFormat != "" {
		o.printStats(statsFormat, cmd.ErrOrStderr(), f, read, time.Since(start))
	}
	return err
}

// progressWriter counts the bytes written to, and skipped in, an output
// for read's progress.
type progressWriter struct {
	*outfile.File
	n    int64
	show func(n int64, done bool)
}

func (w *progressWriter) Write(p []byte) (int, error) {
	n, err := w.File.Write(p)
	w.n += int64(n)
	w.show(w.n, false)
	return n, err
}

func (w *progressWriter) Skip(n int64) error {
	err := w.File.Skip(n)
	if err == nil {
		w.n += n
		w.show(w.n, false)
	}
	return err
}

// rangeSource is what read writes ranges of: the disk file, or with
// --guest its guest view.
type rangeSource interface {
	Size() int64
	WriteRange(w io.Writer, off, n int64) (int64, error)
}

// openOutput opens -o by outfile's rule; "", "-" and /dev/stdout are the
// command's stdout.
func (o *readOptions) openOutput(ctx context.Context, stdout io.Writer, opts ...outfile.Option) (*outfile.File, error) {
	switch o.output {
	case "", "-", "/dev/stdout":
		return outfile.Stream(stdout, "stdout"), nil
	}
	return outfile.Create(ctx, o.output, opts...)
}

func (o *readOptions) printStats(format string, w io.Writer, f *disk.File, read int64, took time.Duration) {
	st := readStats{File: f.Name(), Size: f.Size(), Format: string(f.Format()), Read: read, Seconds: took.Seconds(), Stats: f.Stats()}
	signed := ""
	if h, ok := f.Signed(); ok {
		st.Signed = h.String()
		signed = ", signature verified for " + h.String()
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.Encode(st)
		return
	}
	fmt.Fprintf(w, "read %s of %s (%s, %s) in %.3fs: %d requests, %s fetched (TOC %s in %d), %d chunks fetched, %d cache hits, %d from --cache-dir, %d zero chunks, %d retries%s\n",
		size.Format(read), f.Name(), size.Format(f.Size()), f.Format(), took.Seconds(), st.Requests, size.Format(st.BytesFetched),
		size.Format(st.TOCBytes), st.TOCRequests, st.ChunksFetched, st.CacheHits, st.DiskCacheHits, st.ZeroChunks, st.Retries, signed)
}
