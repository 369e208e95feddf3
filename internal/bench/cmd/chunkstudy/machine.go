package main

import (
	"fmt"

	"github.com/lazydisk/lazydisk/internal/bench/benchutil"
)

// humanBytes formats a byte count in KiB or MiB with three significant
// figures.
func humanBytes(n float64) string {
	switch {
	case n >= 100*benchutil.MiB:
		return fmt.Sprintf("%.0f MiB", n/benchutil.MiB)
	case n >= 10*benchutil.MiB:
		return fmt.Sprintf("%.1f MiB", n/benchutil.MiB)
	case n >= benchutil.MiB:
		return fmt.Sprintf("%.2f MiB", n/benchutil.MiB)
	case n >= 100*benchutil.KiB:
		return fmt.Sprintf("%.0f KiB", n/benchutil.KiB)
	case n >= 10*benchutil.KiB:
		return fmt.Sprintf("%.1f KiB", n/benchutil.KiB)
	default:
		return fmt.Sprintf("%.2f KiB", n/benchutil.KiB)
	}
}
