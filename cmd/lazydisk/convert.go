package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk"
	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/outfile"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/sign"
	"github.com/lazydisk/lazydisk/toc"
)

type convertOptions struct {
	reg        *registryOptions
	estargz    bool
	zstd       bool
	chunkSize  string
	level      int
	platform   string
	force      bool
	digestFile string
	format     string
	tmpDir     string
	signKey    string
	sigFormat  string
	diskFormat string
	skip       bool
	fromList   string
	listIndex  int
	// signatureFormat is sigFormat, checked.
	signatureFormat sign.SignatureFormat
}

func newConvertCmd(reg *registryOptions) *cobra.Command {
	o := &convertOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "convert --estargz|--zstd-chunked SRC DST | --from-list FILE",
		Short: "Repackage an image's layers as seekable eStargz or zstd:chunked",
		Long: `Convert every filesystem layer of SRC into a seekable layer and write the result
to DST as an OCI image (or index, for a multi-platform SRC).

--estargz writes eStargz (gzip), which containerd's stargz-snapshotter and the
estargz package read; layers are annotated with their TOC digest
(containerd.io/snapshot/stargz/toc.digest) and uncompressed size
(io.containers.estargz.uncompressed-size).
--zstd-chunked writes zstd:chunked as podman >= 5.1 and CRI-O (containers/storage)
read it for partial pulls; layers get the io.github.containers.zstd-chunked
annotations, the layer's tar is kept byte for byte so its DiffID does not change,
and chunks of zeros are marked so readers make holes instead of fetching them.
Either format converts from the other.

The config's diff_ids are updated and labels, env, history and annotations kept.
Layers that already are valid in the chosen format with correct annotations are
kept as they are unless --force is given. Chunks are compressed on all cores; the
output is byte-for-byte reproducible.

Signatures travel: when SRC and DST are registries or OCI layouts, the
signatures attached to every manifest the conversion keeps byte for byte (an
image already in the chosen format, such as a signed oci: layout pushed to a
registry) are copied to DST, in both forms. A converted image has a new digest
that the source's signatures do not cover: sign it in the same step with
--sign-key (password from $COSIGN_PASSWORD, as for lazydisk sign).

--disk-format re-encodes the disk of a disk: source while converting, in the
same stream: raw writes the guest's disk as disk/<name>.img (a compressed qcow2
decompressed; its unallocated clusters become zero chunks, which readers make
holes of and never fetch), qcow2 writes an uncompressed qcow2 (version 3, 64 KiB
clusters, only the clusters with data allocated) as disk/<name>.qcow2, so the
layer's chunk compression works and a guest read maps to one chunk. keep (the
default) writes the file as it is. The guest disk's sha256 is computed from the
source and again from the written image, read back through the lazy reader; both
are printed (and are in --format json under "disk"), and a difference fails the
command. qcow2 files with a backing file, encryption or an external data file
are refused (docs/qcow2.md).

The result's digest is printed on stdout; a per-layer summary goes to stderr.`,
		Example: `  # Build and convert a containerDisk from a local qcow2, no Docker daemon needed
  lazydisk convert --estargz disk:fedora.qcow2 oci:out:latest

  # Convert a registry image in place under a new tag (CI step after the build)
  lazydisk convert --estargz docker://registry.example.com/vm/fedora:41 docker://registry.example.com/vm/fedora:41-esgz

  # zstd:chunked for podman and CRI-O partial pulls
  lazydisk convert --zstd-chunked docker://registry.example.com/vm/fedora:41 docker://registry.example.com/vm/fedora:41-zstd

  # One platform of a multi-platform image, result as JSON for scripts
  lazydisk convert --estargz --platform linux/arm64 --format json quay.io/containerdisks/fedora:41 oci:fedora-arm:41

  # Mirror offline from a "docker save" tarball, keeping the digest in a file
  lazydisk convert --estargz --digestfile digest.txt docker-archive:fedora.tar oci:mirror:fedora

  # Convert and sign the result in one step (both cosign signature forms)
  COSIGN_PASSWORD=... lazydisk convert --estargz --sign-key cosign.key disk:fedora.qcow2 docker://registry.example.com/vm/fedora:41

  # A compressed qcow2 re-encoded as a raw containerDisk, the guest disk checked by sha256
  lazydisk convert --zstd-chunked --disk-format raw disk:fedora.qcow2 docker://registry.example.com/vm/fedora:41-raw

  # Push a signed layout; its signatures are copied along
  lazydisk convert --estargz oci:out:latest docker://registry.example.com/vm/fedora:41

  # A job run again and again: convert only when the source's digest changed
  lazydisk convert --zstd-chunked --skip-if-converted quay.io/containerdisks/fedora:41 docker://registry.example.com/vm/fedora:41-zstd

  # One pod of a Kubernetes Indexed Job: the pair on line $JOB_COMPLETION_INDEX of a list
  lazydisk convert --zstd-chunked --skip-if-converted --from-list /etc/lazydisk/sources.txt`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.fromList != "" {
				return exactArgs(0)(cmd, args)
			}
			return exactArgs(2)(cmd, args)
		},
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.fromList != "" {
				src, dst, err := o.listPair()
				if err != nil {
					return err
				}
				args = []string{src, dst}
			}
			return o.run(cmd.Context(), cmd, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.estargz, "estargz", false, "convert to eStargz (gzip chunks, read by stargz-snapshotter and the estargz package)")
	f.BoolVar(&o.zstd, "zstd-chunked", false, "convert to zstd:chunked (zstd frames, read by podman >= 5.1 and CRI-O for partial pulls)")
	f.StringVar(&o.chunkSize, "chunk-size", size.Format(convert.DefaultChunkSize), "uncompressed chunk size (64K to 64M): fixed for eStargz, the average of content-defined chunks for zstd:chunked; a random read fetches at least one chunk")
	f.IntVar(&o.level, "compression-level", 0, fmt.Sprintf("gzip level 1-9 for eStargz (default %d), zstd level 1-22 for zstd:chunked (default %d)", convert.DefaultGzipLevel, convert.DefaultZstdLevel))
	f.StringVar(&o.platform, "platform", "", "convert only this platform of an index (os/arch[/variant]); for disk: sources, the image's platform (default: this machine's)")
	f.BoolVar(&o.force, "force", false, "convert layers even if they already are valid eStargz")
	f.StringVar(&o.digestFile, "digestfile", "", "also write the result's digest to this file")
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	f.StringVar(&o.tmpDir, "tmpdir", "", "directory for staging converted layers (default: $TMPDIR); needs room for the compressed output")
	f.StringVar(&o.signKey, "sign-key", "", "sign the result with this cosign private key (see lazydisk sign)")
	f.BoolVar(&o.skip, "skip-if-converted", false, "record the source's digest on DST (annotation "+lazydisk.AnnotationSourceDigest+") and do nothing when DST already records the same digest (signing it if --sign-key does not verify it)")
	f.StringVar(&o.fromList, "from-list", "", "take SRC and DST from this file of \"SRC DST\" lines (blank lines and # comments skipped): the pair numbered --list-index")
	f.IntVar(&o.listIndex, "list-index", -1, "with --from-list, the pair to convert, from 0 (default: $"+jobIndexEnv+", which Kubernetes sets in each pod of an Indexed Job)")
	f.StringVar(&o.sigFormat, "signature-format", string(sign.SignatureBoth), "with --sign-key, the signature forms to write: both, bundle or legacy")
	f.StringVar(&o.diskFormat, "disk-format", string(image.DiskKeep), "for a disk: source, the disk's format in the image: raw (the guest's disk), qcow2 (uncompressed) or keep")
	_ = cmd.RegisterFlagCompletionFunc("disk-format", cobra.FixedCompletions([]string{"keep", "raw", "qcow2"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.MarkFlagFilename("sign-key", "key")
	_ = cmd.RegisterFlagCompletionFunc("signature-format", cobra.FixedCompletions([]string{"both", "bundle", "legacy"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	_ = cmd.RegisterFlagCompletionFunc("platform", completePlatforms)
	_ = cmd.RegisterFlagCompletionFunc("chunk-size", cobra.FixedCompletions([]string{"256K", "512K", "1M", "2M", "4M"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("compression-level", cobra.FixedCompletions([]string{"1", "3", "6", "9", "19"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.MarkFlagDirname("tmpdir")
	_ = cmd.MarkFlagFilename("digestfile")
	_ = cmd.MarkFlagFilename("from-list")
	return cmd
}

func (o *convertOptions) run(ctx context.Context, cmd *cobra.Command, srcArg, dstArg string) error {
	opts, err := o.options(cmd)
	if err != nil {
		return err
	}
	src, dst, err := parseSrcDst(srcArg, dstArg)
	if err != nil {
		return err
	}
	if o.signKey != "" { // before converting, so a wrong password fails fast
		signer, err := loadSigner(cmd, o.signKey)
		if err != nil {
			return err
		}
		opts = append(opts, lazydisk.WithSigner(signer, sign.WithSignatureFormat(o.signatureFormat)))
	}
	if o.reg.showProgress() {
		uploaded := false
		pr := newProgressPrinter(cmd.ErrOrStderr())
		defer pr.close()
		opts = append(opts,
			lazydisk.WithConvertOptions(convert.WithProgress(pr.convert)),
			lazydisk.WithOnWrite(func() { fmt.Fprintf(cmd.ErrOrStderr(), "writing %s\n", dst) }),
			lazydisk.WithImageOptions(image.WithProgress(func(p image.Progress) {
				// The image's upload, the first; not its signatures'.
				if !uploaded {
					pr.show("uploading "+dst.String(), p.Written, p.Total, p.Done)
					uploaded = p.Done
				}
			})))
	}
	res, err := lazydisk.Convert(ctx, src, dst, opts...)
	if err != nil {
		return err
	}
	if o.digestFile != "" {
		if err := outfile.WriteFile(ctx, o.digestFile, []byte(res.Digest.String()+"\n"), 0o666); err != nil {
			return fmt.Errorf("--digestfile: %w", err)
		}
	}
	return o.print(cmd, res)
}

// jobIndexEnv is the variable Kubernetes sets to the completion index in each
// pod of an Indexed Job.
const jobIndexEnv = "JOB_COMPLETION_INDEX"

// maxListSize bounds a --from-list file: a list of references, not data.
const maxListSize = 4 << 20

// listPair returns the SRC and DST of --from-list that --list-index (or
// $JOB_COMPLETION_INDEX) picks.
func (o *convertOptions) listPair() (src, dst string, err error) {
	i := o.listIndex
	if i < 0 {
		v, ok := os.LookupEnv(jobIndexEnv)
		if !ok {
			return "", "", usagef("--from-list needs --list-index N or $%s (set in the pods of an Indexed Job)", jobIndexEnv)
		}
		if i, err = strconv.Atoi(v); err != nil || i < 0 {
			return "", "", usagef("$%s is %q, not an index from 0", jobIndexEnv, v)
		}
	}
	f, err := os.Open(o.fromList)
	if err != nil {
		return "", "", usagef("--from-list: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxListSize+1))
	if err != nil {
		return "", "", fmt.Errorf("--from-list: %w", err)
	}
	if len(b) > maxListSize {
		return "", "", usagef("--from-list %s is larger than %d MiB: it should hold one \"SRC DST\" pair per line", o.fromList, maxListSize>>20)
	}
	n := 0
	for no, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if n == i {
			f := strings.Fields(line)
			if len(f) != 2 {
				return "", "", usagef("--from-list %s line %d: want \"SRC DST\", got %q", o.fromList, no+1, line)
			}
			return f[0], f[1], nil
		}
		n++
	}
	return "", "", usagef("--from-list %s has %d pairs: index %d is out of range (the Job's completions must match the list)", o.fromList, n, i)
}

// options checks the flags and returns the options of lazydisk.Convert
// they ask for, but for signing and progress.
func (o *convertOptions) options(cmd *cobra.Command) ([]lazydisk.Option, error) {
	var format toc.Format
	switch {
	case o.estargz && o.zstd:
		return nil, usagef("--estargz and --zstd-chunked exclude each other: choose one")
	case o.estargz:
		format = toc.FormatEStargz
	case o.zstd:
		format = toc.FormatZstdChunked
	default:
		return nil, usageError{errNoFormat}
	}
	if err := checkTextOrJSON("format", o.format); err != nil {
		return nil, err
	}
	chunk, err := size.Parse(o.chunkSize)
	if err != nil {
		return nil, usagef("--chunk-size: %w", err)
	}
	o.signatureFormat = sign.SignatureBoth
	if o.sigFormat != "" {
		if o.signatureFormat, err = sign.ParseSignatureFormat(o.sigFormat); err != nil {
			return nil, usagef("--signature-format: %w", err)
		}
	}
	conv := []convert.Option{
		convert.WithFormat(format),
		convert.WithChunkSize(int(min(chunk, 1<<40))),
		convert.WithCompressionLevel(o.level),
		convert.WithForce(o.force),
		convert.WithTempDir(o.tmpDir),
	}
	// Check the options before reading anything.
	if err := convert.CheckOptions(conv...); err != nil {
		return nil, usageError{err}
	}
	opts := []lazydisk.Option{lazydisk.WithConvertOptions(conv...), lazydisk.WithImageOptions(o.reg.imageOptions()...), lazydisk.WithSkipIfConverted(o.skip)}
	df, err := image.ParseDiskFormat(o.diskFormat)
	if err != nil {
		return nil, usagef("--disk-format: %w", err)
	}
	opts = append(opts, lazydisk.WithDiskFormat(df))
	platform, err := parsePlatformFlag(o.platform)
	if err != nil {
		return nil, err
	}
	if platform != nil {
		opts = append(opts, lazydisk.WithPlatform(*platform))
	}
	return opts, nil
}

// print writes the result: JSON on stdout, or the summary on stderr and the
// digest on stdout.
func (o *convertOptions) print(cmd *cobra.Command, res *lazydisk.ConvertResult) error {
	if o.format == "json" {
		return printJSON(cmd.OutOrStdout(), res)
	}
	if res.Skipped {
		fmt.Fprintf(o.reg.info(cmd), "%s is already converted from %s: skipped\n", res.Destination, res.SourceDigest)
	} else {
		printSummary(o.reg.info(cmd), res.Destination, res.Result)
	}
	if d := res.Disk; d != nil {
		fmt.Fprintf(o.reg.info(cmd), "disk %s (%s, %s) -> %s (%s, %s): guest disk %s, sha256 %s from the source, %s read back: they match\n",
			d.Source, d.SourceFormat, size.Format(d.SourceSize), d.File, d.Format, size.Format(d.Size), size.Format(d.VirtualSize), d.GuestSHA256Before, d.GuestSHA256After)
	}
	if n := res.CopiedSignatures; n != nil {
		fmt.Fprintf(o.reg.info(cmd), "copied the source's signatures of the unchanged manifests: %d bundle, %d legacy\n", n.Bundles, n.Legacy)
	}
	if res.Signed != nil {
		printSigned(o.reg.info(cmd), res.Signed)
	}
	fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
	return nil
}

// printSummary tells people what happened to each layer.
func printSummary(w io.Writer, dst string, r convert.Result) {
	for _, img := range r.Images {
		name := "image"
		if img.Platform != nil {
			name = img.Platform.String()
		}
		fmt.Fprintf(w, "%s %s\n", name, img.Digest)
		for i, l := range img.Layers {
			switch {
			case l.Kept:
				fmt.Fprintf(w, "  layer %d %s kept: %s\n", i, short(l.Digest), l.Reason)
			default:
				fmt.Fprintf(w, "  layer %d %s -> %s  %s compressed, %s uncompressed, %d chunks, TOC %s\n",
					i, short(l.Source), short(l.Digest), size.Format(l.Size), size.Format(l.UncompressedSize), l.Chunks, shortDigest(l.TOCDigest))
			}
		}
	}
	for _, d := range r.Dropped {
		fmt.Fprintf(w, "dropped %s (%s): it describes the source image\n", short(d.Digest), d.Annotations["vnd.docker.reference.type"])
	}
	fmt.Fprintf(w, "wrote %s\n", dst)
}

func short(h v1.Hash) string { return shortDigest(h.String()) }

// shortDigest abbreviates "sha256:<64 hex>" to 12 hex digits for people.
func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
