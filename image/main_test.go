package image_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/lazydisk/lazydisk/internal/clitest"
)

// TestMain checks, after the tests, that /dev/null is still a character
// device: this package writes layouts and files for users, and a write by
// rename once replaced /dev/null as root.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := clitest.CheckDevNull(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	os.Exit(code)
}
