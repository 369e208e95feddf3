package image_test

import (
	"os"
	"testing"

	"github.com/lazydisk/lazydisk/internal/clitest"
)

// TestMain checks, after the tests, that /dev/null is still a character
// device: this package writes layouts and files for users.
func TestMain(m *testing.M) { os.Exit(clitest.RunCheckingDevNull(m)) }
