// Package size parses and formats byte counts for command-line flags:
// "4096", "4K", "1M", "1.5G", "512KiB". Suffixes are binary (K = 1024).
package size

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrSyntax is returned for strings that are not a size.
var ErrSyntax = errors.New("invalid size")

var units = []struct {
	suffix string
	shift  uint
}{
	{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}, {"B", 0},
}

// Parse returns the number of bytes s stands for. It accepts a decimal
// number with an optional suffix K, M, G or T (optionally followed by "iB"
// or "B", any case), meaning powers of 1024.
func Parse(s string) (int64, error) {
	// Accept what Format prints ("1.0 MiB") as well as "1M".
	t := strings.ToUpper(strings.ReplaceAll(s, " ", ""))
	if u := strings.TrimSuffix(t, "IB"); u != t {
		t = u
	} else if len(t) > 1 && t[len(t)-1] == 'B' && strings.ContainsRune("KMGT", rune(t[len(t)-2])) {
		t = t[:len(t)-1]
	}
	shift := uint(0)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, shift = strings.TrimSuffix(t, u.suffix), u.shift
			break
		}
	}
	if t == "" {
		return 0, fmt.Errorf("%w %q: use a number with an optional K, M, G or T suffix", ErrSyntax, s)
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%w %q: use a number with an optional K, M, G or T suffix", ErrSyntax, s)
	}
	v := f * float64(uint64(1)<<shift)
	if v >= math.MaxInt64 || v != math.Trunc(v) {
		return 0, fmt.Errorf("%w %q: not a whole number of bytes", ErrSyntax, s)
	}
	return int64(v), nil
}

// Format renders n bytes for people: "512 B", "4.0 KiB", "1.5 GiB".
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
