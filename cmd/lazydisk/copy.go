package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk"
)

type copyOptions struct {
	reg    *registryOptions
	format string
	noSigs bool
}

func newCopyCmd(reg *registryOptions) *cobra.Command {
	o := &copyOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy an image or index as it is, with its signatures",
		Long: `Copy the image or index SRC names to DST byte for byte, so that its digest,
and the digests of the images an index lists, stay the same; then copy the
signatures attached to them (Sigstore bundle referrers and legacy .sig images),
which stay valid. For air-gapped flows: an OCI layout mirrored into an offline
registry, or a registry image saved into a layout, keeps its signatures.

Blobs are written first and the manifest (or index.json) last, so a failed copy
leaves no half-written image; signatures follow the image. Nothing is converted
or checked: verify the result with lazydisk verify.`,
		Example: `  # A signed layout into an offline registry
  lazydisk copy oci:fedora:41 docker://registry.local:5000/vm/fedora:41
  lazydisk verify --key cosign.pub docker://registry.local:5000/vm/fedora:41

  # A registry image into a layout, for transfer
  lazydisk copy quay.io/containerdisks/fedora:41 oci:transfer:fedora-41`,
		Args:              exactArgs(2),
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	f.BoolVar(&o.noSigs, "no-signatures", false, "do not copy the signatures")
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	return cmd
}

func (o *copyOptions) run(ctx context.Context, cmd *cobra.Command, srcArg, dstArg string) error {
	if err := checkTextOrJSON("format", o.format); err != nil {
		return err
	}
	src, dst, err := parseSrcDst(srcArg, dstArg)
	if err != nil {
		return err
	}
	res, err := lazydisk.Copy(ctx, src, dst, lazydisk.WithImageOptions(o.reg.imageOptions()...), lazydisk.WithCopySignatures(!o.noSigs))
	if err != nil {
		return err
	}
	if o.format == "json" {
		return printJSON(cmd.OutOrStdout(), res)
	}
	w := o.reg.info(cmd)
	fmt.Fprintf(w, "copied %s %s to %s\n", res.MediaType, res.Digest, res.Destination)
	if n := res.CopiedSignatures; n != nil {
		fmt.Fprintf(w, "copied its signatures: %d bundle, %d legacy\n", n.Bundles, n.Legacy)
	}
	fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
	return nil
}
