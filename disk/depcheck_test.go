package disk_test

import (
	"testing"

	"github.com/lazydisk/lazydisk/internal/depcheck"
)

// TestDeps keeps the reader free of the signing stack and containers/storage:
// the signature check reaches it through disk.SignatureChecker.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the dependency check")
	}
	depcheck.AssertNoDependency(t, "github.com/lazydisk/lazydisk/disk", depcheck.SigningAndStorage)
}
