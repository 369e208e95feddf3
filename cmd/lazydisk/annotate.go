package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/annotate"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/outfile"
)

type annotateOptions struct {
	reg        *registryOptions
	check      bool
	format     string
	digestFile string
}

func newAnnotateCmd(reg *registryOptions) *cobra.Command {
	o := &annotateOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "annotate SRC DST | annotate --check SRC",
		Short: "Add or repair the annotations lazy readers need on seekable layers",
		Long: `Read the footer and TOC of each eStargz or zstd:chunked layer of SRC with range
requests, compute the layer annotations lazy readers need (the eStargz TOC digest
and uncompressed size, or zstd:chunked's manifest checksum and positions), and
write SRC with a new manifest to DST. No blob is recompressed; copying within a
registry uploads only the new manifest.

Use it on images that other tools made seekable (BuildKit, nerdctl, ctr-remote,
buildah) or whose annotations a copy stripped. Layers that carry both eStargz and
zstd:chunked annotations are refused. Layers that are not seekable are reported:
make them seekable with lazydisk convert.

With --check nothing is written, and DST is not needed: the exit status is 0
when every annotation is right, 1 when some would change.`,
		Example: `  # Restore the annotations a registry mirror stripped
  lazydisk annotate docker://mirror.example.com/vm/fedora:41 docker://mirror.example.com/vm/fedora:41

  # CI check: fail if an image's annotations are missing or wrong
  lazydisk annotate --check oci:out:latest`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.check && len(args) == 1 {
				return nil
			}
			return exactArgs(2)(cmd, args)
		},
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := ""
			if len(args) == 2 {
				dst = args[1]
			}
			return o.run(cmd.Context(), cmd, args[0], dst)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.check, "check", false, "report what would change and exit 1 if anything would, without writing DST")
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	f.StringVar(&o.digestFile, "digestfile", "", "also write the result's digest to this file")
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	_ = cmd.MarkFlagFilename("digestfile")
	return cmd
}

// errAnnotationsWrong is the --check failure.
var errAnnotationsWrong = errors.New("annotations are missing or wrong (run without --check to fix them)")

func (o *annotateOptions) run(ctx context.Context, cmd *cobra.Command, srcArg, dstArg string) error {
	if err := checkTextOrJSON("format", o.format); err != nil {
		return err
	}
	var src, dst image.Reference
	var err error
	if dstArg == "" { // annotate --check SRC
		src, err = image.ParseSource(srcArg)
		if err != nil {
			return usageError{err}
		}
	} else if src, dst, err = parseSrcDst(srcArg, dstArg); err != nil {
		return err
	}
	if src.Transport != image.Docker && src.Transport != image.OCI {
		return usagef("annotate reads registries and oci: layouts; %s is a %s: reference (convert it instead)", src, src.Transport)
	}
	ropts := o.reg.imageOptions()
	art, err := image.Read(ctx, src, ropts...)
	if err != nil {
		return err
	}
	open := annotate.BlobsOf(src, ropts...)
	res := &annotate.Result{}
	out := image.Artifact{}
	if art.Index != nil {
		out.Index, res, err = annotate.Index(ctx, art.Index, open)
	} else {
		var r *annotate.ImageResult
		out.Image, r, err = annotate.Image(ctx, art.Image, open)
		if r != nil {
			res = &annotate.Result{Digest: r.Digest, Images: []annotate.ImageResult{*r}, Changed: r.Changed}
		}
	}
	if errors.Is(err, annotate.ErrNothingSeekable) {
		o.print(cmd, res)
		return o.reported(err)
	}
	if err != nil {
		return err
	}
	if o.check {
		o.print(cmd, res)
		if res.Changed {
			return o.reported(errAnnotationsWrong)
		}
		return nil
	}
	if err := image.Write(ctx, dst, out, ropts...); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if o.digestFile != "" {
		if err := outfile.WriteFile(ctx, o.digestFile, []byte(res.Digest.String()+"\n"), 0o666); err != nil {
			return fmt.Errorf("--digestfile: %w", err)
		}
	}
	o.print(cmd, res)
	return nil
}

// reported marks err as printed in the --format json result.
func (o *annotateOptions) reported(err error) error {
	if o.format == "json" {
		return reportedError{err: err}
	}
	return err
}

func (o *annotateOptions) print(cmd *cobra.Command, res *annotate.Result) {
	if o.format == "json" {
		_ = printJSON(cmd.OutOrStdout(), res)
		return
	}
	w := o.reg.info(cmd)
	for _, img := range res.Images {
		name := "image"
		if img.Platform != nil {
			name = img.Platform.String()
		}
		fmt.Fprintf(w, "%s %s\n", name, img.Source)
		for _, l := range img.Layers {
			printLayer(w, l)
		}
	}
	if res.Digest.Hex != "" && !o.check {
		fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
	}
}

func printLayer(w io.Writer, l annotate.LayerResult) {
	switch {
	case !l.Seekable:
		fmt.Fprintf(w, "  layer %d %s: %s\n", l.Index, short(l.Digest), l.Note)
		return
	case !l.Changed():
		fmt.Fprintf(w, "  layer %d %s: %s, annotations correct\n", l.Index, short(l.Digest), l.Format)
	default:
		fmt.Fprintf(w, "  layer %d %s: %s\n", l.Index, short(l.Digest), l.Format)
		keys := make([]string, 0, len(l.Set))
		for k := range l.Set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "    set %s=%s\n", k, l.Set[k])
		}
		for _, k := range l.Removed {
			fmt.Fprintf(w, "    remove %s\n", k)
		}
	}
	if l.Note != "" {
		fmt.Fprintf(w, "    note: %s\n", l.Note)
	}
}
