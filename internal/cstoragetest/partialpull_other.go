//go:build !linux

package cstoragetest

import (
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
)

// PartialPull skips the test: containers/storage's partial pulls need Linux.
func PartialPull(t testing.TB, _ io.ReaderAt, _ int64, _ digest.Digest, _ map[string]string) (Result, error) {
	t.Helper()
	Skip(t)
	return Result{}, errors.New("unreachable: Skip returned")
}

// Skip skips the test: containers/storage's partial pulls need Linux.
func Skip(t testing.TB) {
	t.Helper()
	t.Skip("skipping: containers/storage partial pulls need Linux (overlay driver)")
}
