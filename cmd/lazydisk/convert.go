package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/sign"
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
	progress   string
	signKey    string
	sigFormat  string
}

func newConvertCmd(reg *registryOptions) *cobra.Command {
	o := &convertOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "convert --estargz|--zstd-chunked SRC DST",
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

  # Push a signed layout; its signatures are copied along
  lazydisk convert --estargz oci:out:latest docker://registry.example.com/vm/fedora:41`,
		Args:              exactArgs(2),
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
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
	f.StringVar(&o.progress, "progress", "auto", "progress on stderr: auto (when it is a terminal), always or never")
	f.StringVar(&o.signKey, "sign-key", "", "sign the result with this cosign private key (see lazydisk sign)")
	f.StringVar(&o.sigFormat, "signature-format", string(sign.SignatureBoth), "with --sign-key, the signature forms to write: both, bundle or legacy")
	_ = cmd.MarkFlagFilename("sign-key", "key")
	_ = cmd.RegisterFlagCompletionFunc("signature-format", cobra.FixedCompletions([]string{"both", "bundle", "legacy"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	_ = cmd.RegisterFlagCompletionFunc("progress", cobra.FixedCompletions([]string{"auto", "always", "never"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("platform", completePlatforms)
	_ = cmd.RegisterFlagCompletionFunc("chunk-size", cobra.FixedCompletions([]string{"256K", "512K", "1M", "2M", "4M"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("compression-level", cobra.FixedCompletions([]string{"1", "3", "6", "9", "19"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.MarkFlagDirname("tmpdir")
	_ = cmd.MarkFlagFilename("digestfile")
	return cmd
}

// convertOutput is what --format json prints.
type convertOutput struct {
	Destination string `json:"destination"`
	convert.Result
	// CopiedSignatures counts the source's signatures copied to DST.
	CopiedSignatures *sign.Copied `json:"copiedSignatures,omitempty"`
	// Signed is what --sign-key signed.
	Signed *sign.Result `json:"signed,omitempty"`
}

func (o *convertOptions) run(ctx context.Context, cmd *cobra.Command, srcArg, dstArg string) error {
	var format convert.Format
	switch {
	case o.estargz && o.zstd:
		return usagef("--estargz and --zstd-chunked exclude each other: choose one")
	case o.estargz:
		format = convert.FormatEStargz
	case o.zstd:
		format = convert.FormatZstdChunked
	default:
		return usageError{errNoFormat}
	}
	if err := checkTextOrJSON("format", o.format); err != nil {
		return err
	}
	chunk, err := size.Parse(o.chunkSize)
	if err != nil {
		return usagef("--chunk-size: %w", err)
	}
	platform, err := parsePlatformFlag(o.platform)
	if err != nil {
		return err
	}
	sf := sign.SignatureBoth
	if o.sigFormat != "" {
		if sf, err = sign.ParseSignatureFormat(o.sigFormat); err != nil {
			return usagef("--signature-format: %w", err)
		}
	}
	src, dst, err := parseSrcDst(srcArg, dstArg)
	if err != nil {
		return err
	}
	var signer signature.SignerVerifier
	if o.signKey != "" { // before converting, so a wrong password fails fast
		if signer, err = loadSigner(cmd, o.signKey); err != nil {
			return err
		}
	}
	opts := []convert.Option{
		convert.WithFormat(format),
		convert.WithChunkSize(int(min(chunk, 1<<40))),
		convert.WithCompressionLevel(o.level),
		convert.WithForce(o.force),
		convert.WithTempDir(o.tmpDir),
	}
	// Check the options before reading anything.
	if err := convert.CheckOptions(opts...); err != nil {
		return usageError{err}
	}
	showProgress := o.progress == "always" || o.progress == "auto" && isTerminal(cmd.ErrOrStderr())
	if showProgress {
		pr := newProgressPrinter(cmd.ErrOrStderr())
		defer pr.close()
		opts = append(opts, convert.WithProgress(pr.update))
	}

	refOpts := o.reg.imageOptions()
	if platform != nil {
		refOpts = append(refOpts, image.WithPlatform(*platform))
	}
	art, err := image.Read(ctx, src, refOpts...)
	if err != nil {
		return err
	}
	var conv *convert.Converted
	switch {
	case art.Index != nil && platform != nil:
		img, err := image.SelectPlatform(art.Index, *platform)
		if err != nil {
			return err
		}
		conv, err = convert.Image(ctx, img, opts...)
		if err != nil {
			return err
		}
	case art.Index != nil:
		conv, err = convert.Index(ctx, art.Index, opts...)
	case platform != nil && src.Transport != image.Disk:
		if err := image.CheckPlatform(art.Image, *platform); err != nil {
			return err
		}
		conv, err = convert.Image(ctx, art.Image, opts...)
	default:
		conv, err = convert.Image(ctx, art.Image, opts...)
	}
	if err != nil {
		return err
	}
	defer conv.Close()
	if showProgress {
		fmt.Fprintf(cmd.ErrOrStderr(), "writing %s\n", dst)
	}
	if err := image.Write(ctx, dst, image.Artifact{Image: conv.Image, Index: conv.Index}, o.reg.imageOptions()...); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	out := convertOutput{Destination: dst.String(), Result: conv.Result}
	if signable(src) && signable(dst) {
		if keep := keptDigests(art, conv.Result); len(keep) > 0 {
			n, err := sign.Copy(ctx, src, dst, keep, sign.WithImageOptions(o.reg.imageOptions()...))
			if err != nil {
				return fmt.Errorf("copying the signatures of %s to %s: %w", src, dst, err)
			}
			if n.Bundles+n.Legacy > 0 {
				out.CopiedSignatures = &n
			}
		}
	}
	if signer != nil {
		at := dst
		if dst.Transport == image.Docker {
			at.Name = dst.Name.Context().Digest(conv.Result.Digest.String())
		}
		if out.Signed, err = sign.Manifest(ctx, at, signer, sign.WithImageOptions(o.reg.imageOptions()...), sign.WithSignatureFormat(sf)); err != nil {
			return fmt.Errorf("signing %s: %w", dst, err)
		}
	}
	if o.digestFile != "" {
		if err := writeFileAtomic(o.digestFile, []byte(conv.Result.Digest.String()+"\n")); err != nil {
			return fmt.Errorf("writing --digestfile: %w", err)
		}
	}
	if o.format == "json" {
		return printJSON(cmd.OutOrStdout(), out)
	}
	printSummary(cmd.ErrOrStderr(), dst.String(), conv.Result)
	if n := out.CopiedSignatures; n != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "copied the source's signatures of the unchanged manifests: %d bundle, %d legacy\n", n.Bundles, n.Legacy)
	}
	if out.Signed != nil {
		printSigned(cmd.ErrOrStderr(), out.Signed)
	}
	fmt.Fprintln(cmd.OutOrStdout(), conv.Result.Digest)
	return nil
}

// signable reports whether signatures can be attached in r's store.
func signable(r image.Reference) bool {
	return r.Transport == image.Docker || r.Transport == image.OCI
}

// keptDigests returns the digests of the source's manifests that the
// conversion kept byte for byte: their signatures stay valid at DST.
func keptDigests(src image.Artifact, res convert.Result) []v1.Hash {
	in := map[v1.Hash]bool{}
	if src.Image != nil {
		if h, err := src.Image.Digest(); err == nil {
			in[h] = true
		}
	}
	if src.Index != nil {
		if h, err := src.Index.Digest(); err == nil {
			in[h] = true
		}
		if im, err := src.Index.IndexManifest(); err == nil {
			for _, d := range im.Manifests {
				in[d.Digest] = true
			}
		}
	}
	var keep []v1.Hash
	seen := map[v1.Hash]bool{}
	for _, h := range append([]v1.Hash{res.Digest}, imageDigests(res)...) {
		if in[h] && !seen[h] {
			seen[h] = true
			keep = append(keep, h)
		}
	}
	return keep
}

func imageDigests(res convert.Result) []v1.Hash {
	out := make([]v1.Hash, len(res.Images))
	for i, img := range res.Images {
		out[i] = img.Digest
	}
	return out
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

// writeFileAtomic writes data to path through a temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic writes path through a temporary file beside it, renamed into
// place only once write succeeded: a failure leaves no file behind.
func writeAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
