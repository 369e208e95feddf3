// Command lazydisk converts VM disk images shipped as containerDisks into
// seekable eStargz layers, so that readers can fetch only the chunks of the
// disk they need.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
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
	err := root.ExecuteContext(ctx)
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		fmt.Fprintf(stderr, "lazydisk: %s\n", se)
		return 128 + int(se.sig)
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "lazydisk: %s\n", oneLine(err))
	return exitCode(err)
}

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
	if code := verifyExitCode(err); code != 0 {
		return code
	}
	return 1
}
