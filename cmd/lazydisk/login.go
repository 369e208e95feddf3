package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lazydisk/lazydisk/image"
)

type loginOptions struct {
	reg           *registryOptions
	username      string
	password      string
	passwordStdin bool
	noCheck       bool
}

func newLoginCmd(reg *registryOptions) *cobra.Command {
	o := &loginOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "login REGISTRY",
		Short: "Store credentials for a registry in the auth file",
		Long: `Check credentials with the registry (as docker login does) and store them
for later commands in the auth file: --authfile, else $REGISTRY_AUTH_FILE, else
the Docker config ($DOCKER_CONFIG/config.json or ~/.docker/config.json), which
docker, podman, skopeo and crane read too. The file keeps its other entries and
is written atomically, mode 0600.

The password comes from --password-stdin, --password (visible to other users in
the process list), or is asked when stdin is a terminal.

Credentials can also be given per command, without storing them: --creds
USER:PASS or --registry-token TOKEN (for CI).`,
		Example: `  lazydisk login quay.io -u myuser
  echo "$QUAY_TOKEN" | lazydisk login quay.io -u 'myorg+robot' --password-stdin
  lazydisk login --authfile ./auth.json localhost:5000 -u ci --password-stdin < secret.txt`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.username, "username", "u", "", "user name (required)")
	f.StringVarP(&o.password, "password", "p", "", "password (prefer --password-stdin)")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from stdin")
	f.BoolVar(&o.noCheck, "no-check", false, "store the credentials without asking the registry whether it accepts them")
	_ = cmd.RegisterFlagCompletionFunc("username", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("password", cobra.NoFileCompletions)
	return cmd
}

func (o *loginOptions) run(cmd *cobra.Command, registry string) error {
	if o.username == "" {
		return usagef("login needs --username (-u)")
	}
	if o.passwordStdin && o.password != "" {
		return usagef("--password and --password-stdin cannot be combined")
	}
	pw := o.password
	switch {
	case o.passwordStdin:
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	case pw == "":
		in, ok := cmd.InOrStdin().(*os.File)
		if !ok || !term.IsTerminal(int(in.Fd())) {
			return usagef("no password: pass --password-stdin (or --password), or run on a terminal to be asked")
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Password for %s at %s: ", o.username, registry)
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return fmt.Errorf("reading the password: %w", err)
		}
		pw = string(b)
	}
	auth := authn.AuthConfig{Username: o.username, Password: pw}
	if !o.noCheck {
		if err := image.CheckCredentials(cmd.Context(), registry, auth, o.reg.imageOptions()...); err != nil {
			return err
		}
	}
	path, err := o.reg.authFile()
	if err != nil {
		return err
	}
	if err := image.Login(cmd.Context(), path, registry, auth); err != nil {
		return fmt.Errorf("storing the credentials in %s: %w", path, err)
	}
	fmt.Fprintf(o.reg.info(cmd), "Login Succeeded: credentials for %s stored in %s\n", registry, path)
	return nil
}

func newLogoutCmd(reg *registryOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Remove a registry's credentials from the auth file",
		Long: `Remove the credentials stored for a registry from the auth file login writes
(--authfile, else $REGISTRY_AUTH_FILE, else the Docker config). It fails when
there were none.`,
		Example: `  lazydisk logout quay.io`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := reg.authFile()
			if err != nil {
				return err
			}
			removed, err := image.Logout(cmd.Context(), path, args[0])
			if err != nil {
				return fmt.Errorf("removing the credentials from %s: %w", path, err)
			}
			if !removed {
				return fmt.Errorf("%s has no credentials for %s", path, args[0])
			}
			fmt.Fprintf(reg.info(cmd), "Removed the credentials for %s from %s\n", args[0], path)
			return nil
		},
	}
}
