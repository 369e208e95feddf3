package toc_test

import (
	"testing"

	"github.com/lazydisk/lazydisk/internal/depcheck"
)

// TestDeps keeps toc free of the signing stack and containers/storage (its
// format constants are copied from containers/storage rather than imported).
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the dependency check")
	}
	depcheck.AssertNoDependency(t, "github.com/lazydisk/lazydisk/toc", depcheck.SigningAndStorage)
}
