package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
)

// usageError marks errors in how a command was called (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// checkTextOrJSON checks an output format flag: text or json.
func checkTextOrJSON(flag, v string) error {
	if v != "text" && v != "json" {
		return usagef("--%s must be text or json, not %q", flag, v)
	}
	return nil
}

// printJSON writes v to w as indented JSON, for --format json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Completions of the flags several commands share.
var (
	completeTextJSON  = cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp)
	completePlatforms = cobra.FixedCompletions([]string{"linux/amd64", "linux/arm64", "linux/s390x", "linux/ppc64le"}, cobra.ShellCompDirectiveNoFileComp)
)

// oneLine keeps an error message to one line, as users read it in CI logs.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// registryOptions are the flags every command takes: how to reach
// registries, and what to print besides the result (progress, --quiet,
// --verbose).
type registryOptions struct {
	plainHTTP bool
	insecure  bool
	verbose   bool
	quiet     bool
	progress  string
	authfile  string
	creds     string
	token     string
	// transport, when set, replaces the HTTP transport (tests).
	transport http.RoundTripper
	// stderr is the command's, for progress; errw the same for writers on
	// several goroutines (the log, serve's --run command).
	stderr io.Writer
	errw   *syncWriter
}

func (r *registryOptions) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.BoolVar(&r.plainHTTP, "plain-http", false, "use plain HTTP for registries (always on for localhost, 127.0.0.1 and [::1])")
	f.BoolVar(&r.insecure, "insecure", false, "skip TLS certificate verification for registries")
	f.BoolVarP(&r.verbose, "verbose", "v", false, "log what lazydisk does to stderr: HTTP requests (never their credentials, tokens or signed URLs' queries), serve's connections")
	f.BoolVar(&r.verbose, "debug", false, "the same as --verbose")
	f.BoolVarP(&r.quiet, "quiet", "q", false, "print only results and errors: no progress, no summaries on stderr")
	f.StringVar(&r.progress, "progress", "auto", "bytes, rate and ETA of long phases on stderr: auto (when it is a terminal), always or never")
	f.StringVar(&r.authfile, "authfile", "", "registry credentials file, as login writes it (default: $REGISTRY_AUTH_FILE, else the Docker config)")
	f.StringVar(&r.creds, "creds", "", "USER:PASS for every registry this command talks to (instead of stored credentials)")
	f.StringVar(&r.token, "registry-token", "", "a bearer token for every registry this command talks to")
	_ = cmd.MarkPersistentFlagFilename("authfile", "json")
	_ = cmd.RegisterFlagCompletionFunc("creds", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("registry-token", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("progress", cobra.FixedCompletions([]string{"auto", "always", "never"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		r.stderr = cmd.ErrOrStderr()
		r.errw = &syncWriter{w: r.stderr}
		switch r.progress {
		case "auto", "always", "never":
		default:
			return usagef("--progress must be auto, always or never, not %q", r.progress)
		}
		if r.creds != "" && r.token != "" {
			return usagef("--creds and --registry-token cannot be combined")
		}
		if r.creds != "" && !strings.Contains(r.creds, ":") {
			return usagef("--creds must be USER:PASS")
		}
		return nil
	}
}

// authFile is the credentials file login and logout write.
func (r *registryOptions) authFile() (string, error) {
	if r.authfile != "" {
		return r.authfile, nil
	}
	return image.AuthFile()
}

// keychain finds the credentials the flags ask for: --creds or
// --registry-token for every registry; else --authfile or
// $REGISTRY_AUTH_FILE first, then the Docker config and its helpers.
func (r *registryOptions) keychain() authn.Keychain {
	switch {
	case r.creds != "":
		user, pass, _ := strings.Cut(r.creds, ":")
		return image.StaticKeychain(authn.AuthConfig{Username: user, Password: pass})
	case r.token != "":
		return image.StaticKeychain(authn.AuthConfig{RegistryToken: r.token})
	case r.authfile != "":
		return authn.NewMultiKeychain(image.AuthFileKeychain(r.authfile), authn.DefaultKeychain)
	case os.Getenv("REGISTRY_AUTH_FILE") != "":
		return authn.NewMultiKeychain(image.AuthFileKeychain(os.Getenv("REGISTRY_AUTH_FILE")), authn.DefaultKeychain)
	}
	return nil
}

// showProgress reports whether progress goes to stderr.
func (r *registryOptions) showProgress() bool {
	if r.quiet || r.stderr == nil {
		return false
	}
	return r.progress == "always" || r.progress == "auto" && isTerminal(r.stderr)
}

// info is where summaries for people go: stderr, or nowhere with --quiet.
func (r *registryOptions) info(cmd *cobra.Command) io.Writer {
	if r.quiet {
		return io.Discard
	}
	return cmd.ErrOrStderr()
}

// logger is the --verbose log on stderr (nil without --verbose).
func (r *registryOptions) logger() *slog.Logger {
	if !r.verbose || r.errw == nil {
		return nil
	}
	return slog.New(slog.NewTextHandler(r.errw, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// imageOptions are the options for reaching images the flags ask for, with
// lazydisk's user agent.
func (r *registryOptions) imageOptions() []image.Option {
	opts := []image.Option{image.WithUserAgent("lazydisk/" + version())}
	if l := r.logger(); l != nil {
		opts = append(opts, image.WithLogger(l))
	}
	if k := r.keychain(); k != nil {
		opts = append(opts, image.WithKeychain(k))
	}
	if r.plainHTTP {
		opts = append(opts, image.WithPlainHTTP())
	}
	if r.insecure {
		opts = append(opts, image.WithInsecureTLS())
	}
	if r.transport != nil {
		opts = append(opts, image.WithTransport(r.transport))
	}
	return opts
}

// diskOptions are the registry options for disk.Open.
func (r *registryOptions) diskOptions() []disk.Option {
	return []disk.Option{disk.WithImageOptions(r.imageOptions()...)}
}

func newRootCmd() *cobra.Command {
	reg := &registryOptions{}
	root := &cobra.Command{
		Use:   "lazydisk",
		Short: "Seekable, verifiable VM disk images in container registries",
		Long: `lazydisk repackages containerDisk images (a qcow2 or raw VM disk under /disk/
in an OCI image) into seekable eStargz or zstd:chunked layers, so that a reader
can fetch only the chunks of the disk it needs instead of the whole multi-GB layer.

Image references:
  docker://HOST/REPO:TAG     a registry image (also HOST/REPO@sha256:...; "docker://" is optional)
  oci:DIR[:TAG]              an OCI image layout directory
  docker-archive:FILE[:REF]  a "docker save" tarball (source only)
  disk:PATH                  a local qcow2/raw file, packaged as a containerDisk (source only)
  PATH                       an existing local path, taken for what it is: a directory with an
                             oci-layout file is oci:PATH, a tar docker-archive:PATH (source only),
                             another file disk:PATH (source only)

Exit codes:
  0    success
  1    failure
  2    usage error: unknown command or flag, wrong arguments
  3    verify, read --key, serve --key: no signature
  4    a bad signature
  5    content that does not match its signature
  130  interrupted by SIGINT (after cleaning up)
  143  stopped by SIGTERM (after cleaning up)`,
		Version: strings.TrimPrefix(strings.TrimSuffix(versionLine(), "\n"), "lazydisk "),
		// A root without subcommand: help; an unknown one: a usage error.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.Name())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			return usagef("%s (run 'lazydisk --help' for the commands)", msg)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
		SuggestionsMinimumDistance: 2,
		SilenceUsage:               true,
		SilenceErrors:              true,
		DisableAutoGenTag:          true,
	}
	root.SetVersionTemplate("lazydisk {{.Version}}\n")
	reg.addFlags(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newConvertCmd(reg), newTocCmd(reg), newAnnotateCmd(reg), newReadCmd(reg), newServeCmd(reg), newMountCmd(reg), newStoreCmd(reg), newDemoCmd(), newVersionCmd())
	root.AddCommand(newSignCmd(reg), newVerifyCmd(reg), newKeygenCmd(reg), newLoginCmd(reg), newLogoutCmd(reg), newCopyCmd(reg))
	return root
}

// parsePlatformFlag parses --platform: nil when it is empty.
func parsePlatformFlag(s string) (*v1.Platform, error) {
	if s == "" {
		return nil, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return nil, usagef("--platform %q: use os/arch[/variant], for example linux/amd64", s)
	}
	return p, nil
}

// exactArgs is cobra.ExactArgs with a usage error and the command's usage line.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d arguments, got %d (usage: %s)", cmd.Name(), n, len(args), cmd.UseLine())
		}
		return nil
	}
}

// parseSrcDst parses a command's source and destination references and
// checks that the destination can be written, before any work is done.
func parseSrcDst(srcArg, dstArg string) (src, dst image.Reference, err error) {
	if src, err = image.ParseSource(srcArg); err != nil {
		return src, dst, usageError{err}
	}
	if dst, err = image.ParseDestination(dstArg); err != nil {
		return src, dst, usageError{err}
	}
	if err = dst.CheckWritable(); err != nil {
		return src, dst, usageError{err}
	}
	return src, dst, nil
}

// completeRef suggests the reference transports for positional arguments.
func completeRef(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if strings.Contains(toComplete, ":") {
		return nil, cobra.ShellCompDirectiveDefault
	}
	return []string{"docker://", "oci:", "docker-archive:", "disk:"}, cobra.ShellCompDirectiveNoSpace
}

var errNoFormat = errors.New("choose the output format: --estargz or --zstd-chunked")
