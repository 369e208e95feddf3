package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/internal/outfile"
	"github.com/lazydisk/lazydisk/sign"
)

type keygenOptions struct {
	reg    *registryOptions
	format string
	prefix string
	force  bool
}

func newKeygenCmd(reg *registryOptions) *cobra.Command {
	o := &keygenOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a cosign key pair (PREFIX.key, PREFIX.pub) for sign and verify",
		Long: `Generate an ECDSA P-256 key pair in cosign's format, as "cosign generate-key-pair"
does: PREFIX.key holds the private key encrypted with a password (PEM
"ENCRYPTED SIGSTORE PRIVATE KEY", mode 0600) and PREFIX.pub the public key (PEM
"PUBLIC KEY"). Keys from either tool work in the other.

The password comes from $COSIGN_PASSWORD (it may be set to the empty string),
or is asked twice when stdin is a terminal. Existing files are not overwritten
unless --force is given.`,
		Example: `  # cosign.key and cosign.pub in the current directory
  lazydisk keygen

  # In CI, with the password from a secret
  COSIGN_PASSWORD="$KEY_PASSWORD" lazydisk keygen --output-key-prefix release`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.prefix, "output-key-prefix", "cosign", "write the keys to PREFIX.key and PREFIX.pub")
	f.BoolVar(&o.force, "force", false, "overwrite existing key files")
	f.StringVar(&o.format, "format", "text", "output format: text or json (the key files' paths)")
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	_ = cmd.MarkFlagFilename("output-key-prefix")
	return cmd
}

// keygenOutput is what keygen --format json prints.
type keygenOutput struct {
	PrivateKey string `json:"privateKey"`
	PublicKey  string `json:"publicKey"`
}

func (o *keygenOptions) run(cmd *cobra.Command) error {
	if err := checkTextOrJSON("format", o.format); err != nil {
		return err
	}
	if o.prefix == "" {
		return usagef("--output-key-prefix must not be empty")
	}
	privPath, pubPath := o.prefix+".key", o.prefix+".pub"
	if !o.force {
		for _, p := range []string{privPath, pubPath} {
			if _, err := os.Stat(p); err == nil {
				return usagef("%s exists: choose another --output-key-prefix, or --force to overwrite it", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	pw, err := keyPassword(cmd, privPath, true)
	if err != nil {
		return err
	}
	priv, pub, err := sign.GenerateKeyPair(pw)
	if err != nil {
		return err
	}
	if err := outfile.WriteFile(cmd.Context(), privPath, priv, 0o600); err != nil {
		return err
	}
	if err := outfile.WriteFile(cmd.Context(), pubPath, pub, 0o644); err != nil {
		return err
	}
	if o.format == "json" {
		return printJSON(cmd.OutOrStdout(), keygenOutput{PrivateKey: privPath, PublicKey: pubPath})
	}
	fmt.Fprintf(o.reg.info(cmd), "Private key written to %s\nPublic key written to %s\n", privPath, pubPath)
	return nil
}
