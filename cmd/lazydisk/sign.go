package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
)

// passwordEnv holds the password of cosign private keys, as cosign reads it.
const passwordEnv = "COSIGN_PASSWORD"

type signOptions struct {
	reg         *registryOptions
	key         string
	sigFormat   string
	recursive   bool
	annotations []string
	identity    string
	format      string
}

func newSignCmd(reg *registryOptions) *cobra.Command {
	o := &signOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "sign --key cosign.key REF",
		Short: "Sign an image or index with a cosign key, offline, in both cosign signature forms",
		Long: `Sign the manifest digest REF resolves to with a cosign private key and attach the
signatures beside the image, in a registry (docker://) or an OCI layout (oci:):

  bundle  a Sigstore bundle as an OCI 1.1 referrer, as cosign >= 3 writes it (on
          registries without the referrers API, such as distribution 2.8/3.x, the
          referrers tag sha256-<hex> lists it)
  legacy  the image tagged sha256-<hex>.sig, which cosign < 3, podman, skopeo and
          containers/image sigstoreSigned policies read

--signature-format both (the default) writes both. For an index, every image and
index it lists is signed too (--recursive=false signs the index alone). Signing
again with the same key and annotations adds nothing.

No transparency log, Fulcio or timestamp authority is used: nothing but the
registry is contacted. Verify with "lazydisk verify --key cosign.pub" or
"cosign verify --key cosign.pub --insecure-ignore-tlog".

The key is cosign's encrypted PEM (lazydisk keygen or cosign generate-key-pair);
its password comes from $COSIGN_PASSWORD, or a prompt when stdin is a terminal.

The signed digest is printed on stdout.`,
		Example: `  # Sign an image in a registry
  COSIGN_PASSWORD=... lazydisk sign --key cosign.key docker://registry.example.com/vm/fedora:41-esgz

  # Sign an OCI layout before pushing it; the signatures travel with
  # "lazydisk convert" from the layout to the registry
  lazydisk sign --key cosign.key --identity registry.example.com/vm/fedora oci:out:latest

  # Only the legacy form, with a claim that "lazydisk verify -a" or "cosign verify -a" can check
  lazydisk sign --key cosign.key --signature-format legacy -a ci.example.com/pipeline=1234 registry.example.com/vm/fedora:41`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "cosign private key file (required; password from $COSIGN_PASSWORD or a prompt)")
	f.StringVar(&o.sigFormat, "signature-format", string(sign.SignatureBoth), "signature forms to write: both, bundle (OCI 1.1 referrer) or legacy (sha256-<hex>.sig tag)")
	f.BoolVar(&o.recursive, "recursive", true, "for an index, sign every image and index it lists too")
	f.StringArrayVarP(&o.annotations, "annotation", "a", nil, "a KEY=VALUE claim to sign along (repeatable), as cosign sign -a")
	f.StringVar(&o.identity, "identity", "", "the docker-reference legacy signatures claim, checked by podman policies (default: the image's repository; none for oci: layouts)")
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	_ = cmd.MarkFlagFilename("key", "key")
	_ = cmd.RegisterFlagCompletionFunc("signature-format", cobra.FixedCompletions([]string{"both", "bundle", "legacy"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	_ = cmd.RegisterFlagCompletionFunc("annotation", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("identity", cobra.NoFileCompletions)
	return cmd
}

func (o *signOptions) run(ctx context.Context, cmd *cobra.Command, refArg string) error {
	if err := checkTextOrJSON("format", o.format); err != nil {
		return err
	}
	sf, err := sign.ParseSignatureFormat(o.sigFormat)
	if err != nil {
		return usagef("--signature-format: %w", err)
	}
	ann, err := parseAnnotations(o.annotations)
	if err != nil {
		return err
	}
	ref, err := image.ParseSource(refArg)
	if err != nil {
		return usageError{err}
	}
	if err := ref.CheckWritable(); err != nil {
		return usageError{err}
	}
	signer, err := loadSigner(cmd, o.key)
	if err != nil {
		return err
	}
	opts := []sign.Option{sign.WithSignatureFormat(sf), sign.WithRecursive(o.recursive), sign.WithAnnotations(ann)}
	if o.identity != "" {
		opts = append(opts, sign.WithIdentity(o.identity))
	}
	opts = append(opts, sign.WithImageOptions(o.reg.imageOptions()...))
	res, err := sign.Manifest(ctx, ref, signer, opts...)
	if err != nil {
		return err
	}
	if o.format == "json" {
		return printJSON(cmd.OutOrStdout(), res)
	}
	printSigned(o.reg.info(cmd), res)
	fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
	return nil
}

// printSigned tells people what was attached where.
func printSigned(w io.Writer, res *sign.Result) {
	for _, s := range res.Signed {
		what := "image"
		if s.MediaType.IsIndex() {
			what = "index"
		}
		if s.Platform != nil {
			what += " " + s.Platform.String()
		}
		var forms []string
		if s.Bundle != nil {
			forms = append(forms, "bundle referrer "+short(*s.Bundle))
		}
		if s.LegacyTag != "" {
			forms = append(forms, "legacy tag "+s.LegacyTag)
		}
		note := ""
		if len(s.Existing) > 0 {
			note = fmt.Sprintf(" (already signed: %s)", joinFormats(s.Existing))
		}
		fmt.Fprintf(w, "signed %s %s: %s%s\n", what, s.Digest, strings.Join(forms, ", "), note)
	}
}

func joinFormats(fs []sign.SignatureFormat) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}

// parseAnnotations parses -a KEY=VALUE flags.
func parseAnnotations(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("-a %q: write KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}

// loadSigner reads and decrypts the cosign private key at path.
func loadSigner(cmd *cobra.Command, path string) (signature.SignerVerifier, error) {
	if path == "" {
		return nil, usagef("--key is required: a cosign private key (make one with lazydisk keygen)")
	}
	pemBytes, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("--key %s: no such file (make a key pair with lazydisk keygen)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading --key: %w", err)
	}
	pw, err := keyPassword(cmd, path, false)
	if err != nil {
		return nil, err
	}
	sv, err := sign.LoadPrivateKey(pemBytes, pw)
	if errors.Is(err, sign.ErrInvalidKey) {
		return nil, usagef("--key %s: %w", path, err)
	}
	if errors.Is(err, sign.ErrKeyPassword) {
		if _, set := os.LookupEnv(passwordEnv); !set && !stdinIsTerminal(cmd) {
			return nil, usagef("--key %s is encrypted, $%s is not set and there is no terminal to ask for its password: set $%s to the key's password",
				path, passwordEnv, passwordEnv)
		}
		return nil, fmt.Errorf("--key %s: %w: set $%s to the key's password", path, err, passwordEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", path, err)
	}
	return sv, nil
}

// stdinIsTerminal reports whether the command's stdin is a terminal, where
// a password can be asked.
func stdinIsTerminal(cmd *cobra.Command) bool {
	in, ok := cmd.InOrStdin().(*os.File)
	return ok && term.IsTerminal(int(in.Fd()))
}

// keyPassword returns $COSIGN_PASSWORD when it is set (even empty), or asks
// on the terminal; without either, the empty password. confirm asks twice.
func keyPassword(cmd *cobra.Command, path string, confirm bool) ([]byte, error) {
	if pw, ok := os.LookupEnv(passwordEnv); ok {
		return []byte(pw), nil
	}
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		if confirm {
			return nil, usagef("set %s to the password for the new key (it may be empty), or run on a terminal to be asked", passwordEnv)
		}
		return nil, nil
	}
	errw := cmd.ErrOrStderr()
	fmt.Fprintf(errw, "Enter password for private key %s: ", path)
	pw, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(errw)
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	if confirm {
		fmt.Fprintf(errw, "Enter password for private key %s again: ", path)
		again, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(errw)
		if err != nil {
			return nil, fmt.Errorf("reading the password: %w", err)
		}
		if string(again) != string(pw) {
			return nil, usagef("the passwords do not match")
		}
	}
	return pw, nil
}
