// Command lazydisk converts VM disk images shipped as containerDisks into
// seekable eStargz layers, so that readers can fetch only the chunks of the
// disk they need.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		// A second signal kills the process at once, as without lazydisk's
		// handler.
		signal.Stop(sigs)
		cancel(signalError{s.(syscall.Signal)})
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(code)
}

// signalError is the cause of the context of a command that SIGINT or
// SIGTERM stopped.
type signalError struct{ sig syscall.Signal }

func (s signalError) Error() string { return "interrupted by " + s.name() }

func (s signalError) name() string {
	switch s.sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.sig.String()
}

// run executes the command line args and returns the process exit code.
// When a signal cancelled ctx (its cause is a signalError), the command has
// cleaned up by the time it returns and the code is 128 plus the signal's
// number, as shells report it: 130 for SIGINT, 143 for SIGTERM.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		err = se
	}
	if err == nil {
		return 0
	}
	code := exitCode(err)
	msg := oneLine(err)
	var re reportedError
	if errors.As(err, &re) && re.summary != "" {
		msg = re.summary
	}
	fmt.Fprintf(stderr, "lazydisk: %s\n", msg)
	// A signal is how serve is stopped, not a failure to report in JSON.
	if cmd != nil && jsonFormat(cmd) && !errors.As(err, new(reportedError)) && !errors.As(err, new(signalError)) {
		// Scripts read the error where they read the result.
		je := jsonError{Error: oneLine(err), ExitCode: code}
		if cmd.Annotations[annotationJSONOn] == "stderr" {
			// One line, as the statistics read and serve print there.
			_ = json.NewEncoder(stderr).Encode(je)
		} else {
			_ = printJSON(stdout, je)
		}
	}
	return code
}

// jsonError is what a command run with --format json prints when it fails
// (docs/json.md).
type jsonError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exitCode"`
}

// annotationJSONOn, set to "stderr" on a command, says that it prints its
// JSON result, and so its JSON error, on stderr (read and serve, whose
// stdout is the disk's bytes or the URI).
const annotationJSONOn = "lazydisk/json-on"

// jsonFormat reports whether cmd was asked for --format json (or, for read
// and serve, --stats=json).
func jsonFormat(cmd *cobra.Command) bool {
	for _, name := range []string{"format", "stats"} {
		if f := cmd.Flags().Lookup(name); f != nil && f.Value.String() == "json" {
			return true
		}
	}
	return false
}

// reportedError marks the error of a command that has already printed it
// in its result (verify, annotate --check), so that it is not printed in
// JSON again, and, with a summary, not in full on stderr either.
type reportedError struct {
	err     error
	summary string
}

func (r reportedError) Error() string { return r.err.Error() }
func (r reportedError) Unwrap() error { return r.err }

// exitStatusError is the failure of a command lazydisk ran for the user
// (serve --run), whose exit status lazydisk exits with.
type exitStatusError struct {
	code int
	what string
}

func (e exitStatusError) Error() string {
	return fmt.Sprintf("%s exited with status %d", e.what, e.code)
}

// exitCode is the exit status for a failed command: 2 for usage errors,
// 3, 4 and 5 for a missing or bad signature and content that does not match
// it (see verify --help), a --run command's own status, 1 otherwise.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	var es exitStatusError
	if errors.As(err, &es) {
		return es.code
	}
	var se signalError
	if errors.As(err, &se) {
		return 128 + int(se.sig)
	}
	if code := verifyExitCode(err); code != 0 {
		return code
	}
	return 1
}
