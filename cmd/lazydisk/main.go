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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "lazydisk: %s\n", oneLine(err))
	return exitCode(err)
}

// exitCode is the exit status for a failed command: 2 for usage errors,
// 3, 4 and 5 for a missing or bad signature and content that does not match
// it (see verify --help), 1 otherwise.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	if code := verifyExitCode(err); code != 0 {
		return code
	}
	return 1
}
