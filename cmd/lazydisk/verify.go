package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/verify"
)

// Exit codes of commands that verify signatures (verify, and read --key).
const (
	exitNoSignature     = 3
	exitBadSignature    = 4
	exitContentMismatch = 5
)

// verifyExitCode maps verify's failures to their exit codes, 0 if err is none of them.
func verifyExitCode(err error) int {
	switch {
	case errors.Is(err, verify.ErrNoSignature):
		return exitNoSignature
	case errors.Is(err, verify.ErrBadSignature):
		return exitBadSignature
	case errors.Is(err, verify.ErrContentMismatch):
		return exitContentMismatch
	}
	return 0
}

type verifyOptions struct {
	reg         *registryOptions
	key         string
	deep        bool
	sigFormat   string
	annotations []string
	platform    string
	format      string
	tmpDir      string
}

func newVerifyCmd(reg *registryOptions) *cobra.Command {
	o := &verifyOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "verify --key cosign.pub REF",
		Short: "Check an image's signature and its chain of trust down to every TOC (and chunk, with --deep)",
		Long: `Check, and report step by step, the chain that lets a lazy reader trust every byte
it reads from REF (a registry image or an OCI layout; an image or an index):

  1. signature  a valid signature by the key over the manifest digest: a Sigstore
                bundle referrer or a legacy sha256-<hex>.sig signature, as cosign
                and lazydisk sign write them (--signature-format to require one)
  2. manifest   each image manifest (all images of an index, or --platform's) is
                read by its digest, and its config by its digest
  3. TOC        every seekable (eStargz, zstd:chunked) layer carries a TOC digest
                annotation, which the signed manifest covers, and its TOC, fetched
                with range requests, matches it
  4. --deep     every layer is fetched whole: every chunk of every file matches its
                TOC digest, the blob its layer digest and the uncompressed layer the
                config's DiffID

Layers that are not seekable are reported; with --deep their blob and DiffID are
checked too. Verification is offline: the key is the only trust root; no
transparency log, Fulcio or TUF is contacted, only the registry of REF.

Exit status:
  0  every step passed
  1  something could not be read (registry, network, files)
  2  bad usage or input (flags, reference, key file)
  3  no signature: nothing signs this manifest digest (not signed, or changed
     since it was signed, which gives a new digest)
  4  bad signature: signatures exist but none is valid for this key and digest
     (another key, a signature copied from another image, a wrong -a claim)
  5  content does not match: the signature is valid but a TOC annotation is
     missing, or a TOC, chunk, blob or DiffID does not match`,
		Example: `  # Signature and every TOC, with a few range requests
  lazydisk verify --key cosign.pub docker://registry.example.com/vm/fedora:41-esgz

  # Everything down to every chunk, as JSON for a pipeline
  lazydisk verify --key cosign.pub --deep --format json oci:out:latest

  # Require a cosign >= 3 bundle signature carrying a claim
  lazydisk verify --key cosign.pub --signature-format bundle -a ci.example.com/pipeline=1234 registry.example.com/vm/fedora:41`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "cosign public key file (required)")
	f.BoolVar(&o.deep, "deep", false, "fetch every layer whole and check every chunk, the blob digest and the DiffID")
	f.StringVar(&o.sigFormat, "signature-format", string(verify.SignatureAny), "accepted signature forms: any, bundle or legacy")
	f.StringArrayVarP(&o.annotations, "annotation", "a", nil, "require a signed KEY=VALUE claim (repeatable), as cosign verify -a")
	f.StringVar(&o.platform, "platform", "", "check only this image of an index (os/arch[/variant]); the index's signature is still checked")
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	f.StringVar(&o.tmpDir, "tmpdir", "", "directory for staging layers with --deep (default: $TMPDIR); needs room for the largest compressed layer")
	_ = cmd.MarkFlagFilename("key", "pub")
	_ = cmd.MarkFlagDirname("tmpdir")
	_ = cmd.RegisterFlagCompletionFunc("signature-format", cobra.FixedCompletions([]string{"any", "bundle", "legacy"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	_ = cmd.RegisterFlagCompletionFunc("platform", completePlatforms)
	_ = cmd.RegisterFlagCompletionFunc("annotation", cobra.NoFileCompletions)
	return cmd
}

// verifyOutput is what --format json prints: the report and, on failure,
// the reason and the exit status.
type verifyOutput struct {
	*verify.Report
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exitCode"`
}

func (o *verifyOptions) run(ctx context.Context, cmd *cobra.Command, refArg string) error {
	if err := checkTextOrJSON("format", o.format); err != nil {
		return err
	}
	sf, err := verify.ParseSignatureFormat(o.sigFormat)
	if err != nil {
		return usagef("--signature-format: %w", err)
	}
	ann, err := parseAnnotations(o.annotations)
	if err != nil {
		return err
	}
	opts := []verify.Option{verify.WithSignatureFormat(sf), verify.WithAnnotations(ann), verify.WithDeep(o.deep), verify.WithTempDir(o.tmpDir)}
	p, err := parsePlatformFlag(o.platform)
	if err != nil {
		return err
	}
	if p != nil {
		opts = append(opts, verify.WithPlatform(*p))
	}
	ref, err := image.ParseSource(refArg)
	if err != nil {
		return usageError{err}
	}
	if ref.Transport != image.Docker && ref.Transport != image.OCI {
		return usagef("%s: signatures live beside images in registries (docker://) and OCI layouts (oci:); convert it to one first", ref)
	}
	v, err := loadVerifier(o.key)
	if err != nil {
		return err
	}
	opts = append(opts, verify.WithImageOptions(o.reg.imageOptions()...))
	if o.deep && o.reg.showProgress() {
		pr := newProgressPrinter(cmd.ErrOrStderr())
		defer pr.close()
		opts = append(opts, verify.WithProgress(func(p verify.Progress) {
			pr.phase("fetching layer "+shortDigest(p.Layer.String()), p.Layer.String(), p.Read, p.Total, p.Done)
		}))
	}
	rep, err := verify.Image(ctx, ref, v, opts...)
	if rep == nil {
		return err
	}
	if o.format == "json" {
		out := verifyOutput{Report: rep}
		if err != nil {
			out.Error, out.ExitCode = oneLine(err), exitCode(err)
		}
		if jerr := printJSON(cmd.OutOrStdout(), out); jerr != nil {
			return jerr
		}
		if err != nil {
			return reportedError{err: err}
		}
		return nil
	}
	printReport(cmd.OutOrStdout(), rep, err)
	if s := rep.Signature; errors.Is(err, verify.ErrBadSignature) && len(s.Rejected) > 0 && len(s.Verified) == 0 {
		// The report has each signature's reason; say it once.
		n := "1 signature"
		if len(s.Rejected) > 1 {
			n = fmt.Sprintf("%d signatures", len(s.Rejected))
		}
		return reportedError{err: err, summary: fmt.Sprintf("bad signature for %s in %s: %s found, none valid for this key (why: above)", s.Digest, rep.Reference, n)}
	}
	return err
}

// loadVerifier reads the public key at path.
func loadVerifier(path string) (signature.Verifier, error) {
	if path == "" {
		return nil, usagef("--key is required: the cosign public key (cosign.pub)")
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("--key %s: no such file", path)
		}
		return nil, fmt.Errorf("reading --key: %w", err)
	}
	v, err := verify.LoadPublicKey(pemBytes)
	if err != nil {
		return nil, usagef("--key %s: %w", path, err)
	}
	return v, nil
}

// printReport prints each step of the chain, one line each.
func printReport(w io.Writer, rep *verify.Report, err error) {
	fmt.Fprintln(w, rep.Reference)
	s := rep.Signature
	switch {
	case len(s.Verified) > 0:
		var where []string
		for _, f := range s.Verified {
			where = append(where, fmt.Sprintf("%s (%s)", f.Format, shortWhere(f.Where)))
		}
		fmt.Fprintf(w, "  signature  ok    %s signed by the key: %s\n", s.Digest, strings.Join(where, ", "))
		for _, f := range s.Rejected {
			fmt.Fprintf(w, "             also  %s (%s) not valid for this key: %s\n", f.Format, shortWhere(f.Where), f.Reason)
		}
	case len(s.Rejected) > 0:
		fmt.Fprintf(w, "  signature  FAIL  %s: %d signatures found, none valid for this key\n", s.Digest, len(s.Rejected))
		for _, f := range s.Rejected {
			fmt.Fprintf(w, "             FAIL  %s (%s): %s\n", f.Format, shortWhere(f.Where), f.Reason)
		}
		return
	case err != nil && s.Digest == (v1.Hash{}):
		fmt.Fprintf(w, "  reference  FAIL  %s\n", oneLine(err))
		return
	case err != nil:
		fmt.Fprintf(w, "  signature  FAIL  %s\n", oneLine(err))
		return
	}
	for _, im := range rep.Images {
		name := "image"
		if im.Platform != nil {
			name = "image " + im.Platform.String()
		}
		if im.Error != "" {
			fmt.Fprintf(w, "  manifest   FAIL  %s %s: %s\n", name, im.Digest, im.Error)
			continue
		}
		fmt.Fprintf(w, "  manifest   ok    %s %s read by digest, config %s\n", name, im.Digest, short(im.Config))
		for _, l := range im.Layers {
			label := fmt.Sprintf("layer %d", l.Index)
			switch {
			case l.Error != "" && l.Deep == nil:
				fmt.Fprintf(w, "  %-9s  FAIL  %s: %s\n", label, short(l.Digest), l.Error)
				continue
			case !l.Seekable:
				fmt.Fprintf(w, "  %-9s  --    %s not seekable: only a full download checks it against its digest\n", label, short(l.Digest))
			default:
				fmt.Fprintf(w, "  %-9s  ok    %s %s, TOC %s matches its annotation (%s)\n",
					label, short(l.Digest), l.Format, shortDigest(l.TOC), fetched(l.Requests, l.Bytes))
			}
			if l.Deep != nil {
				if l.Error != "" {
					fmt.Fprintf(w, "  %-9s  FAIL  deep: %s\n", label, l.Error)
					continue
				}
				fmt.Fprintf(w, "  %-9s  ok    deep: %d files, %d chunks, blob digest and DiffID %s match\n", label, l.Deep.Files, l.Deep.Chunks, short(l.Deep.DiffID))
			}
		}
	}
	if rep.OK {
		chain := "signature -> manifest -> TOC annotations -> TOCs"
		if rep.Deep {
			chain += " -> chunks, blobs, DiffIDs"
		}
		fmt.Fprintf(w, "verified: %s\n", chain)
	}
}

// fetched says what reading a TOC cost.
func fetched(requests, bytes int64) string {
	plural := "s"
	if requests == 1 {
		plural = ""
	}
	return fmt.Sprintf("%d read%s, %s", requests, plural, size.Format(bytes))
}

func shortWhere(where string) string {
	f := strings.Fields(where)
	for i, s := range f {
		f[i] = shortDigest(s)
	}
	return strings.Join(f, " ")
}
