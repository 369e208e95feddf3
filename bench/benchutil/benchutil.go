// Package benchutil holds what the benchmark programs share: the machine
// line every result is printed with, units, and number formatting.
package benchutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Units: MB is 10^6 bytes (throughput, compressed sizes); KiB, MiB and GiB
// are powers of two (memory, chunks, reads, TOCs).
const (
	MB  = 1e6
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// ErrGoalMissed is returned by a benchmark that ran but missed a goal.
var ErrGoalMissed = errors.New("a benchmark goal was missed")

// Mark is what a result table prints beside a ratio: "ok" when the goal is
// met, else "MISSED".
func Mark(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// PrintMachine prints the date, the machine and the Go version, which
// every result needs next to it.
func PrintMachine(w io.Writer) {
	fmt.Fprintf(w, "date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d cores (nproc), GOMAXPROCS %d, %s, %s RAM, Linux %s, load average %s at start\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), procField("/proc/cpuinfo", "model name"), memTotal(),
		strings.TrimSpace(readProc("/proc/sys/kernel/osrelease")), loadAverage())
	fmt.Fprintf(w, "go: %s %s/%s\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// MBps is a throughput in MB/s.
func MBps(n int64, d time.Duration) float64 { return float64(n) / MB / d.Seconds() }

// SizeName names a chunk or read size: "64 KiB", "1 MiB".
func SizeName(n int) string {
	if n >= MiB && n%MiB == 0 {
		return fmt.Sprintf("%d MiB", n/MiB)
	}
	return fmt.Sprintf("%d KiB", n/KiB)
}

// Commas formats n with thousands separators.
func Commas(n int64) string {
	if n < 0 {
		return "-" + Commas(-n)
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func readProc(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return string(b)
}

func memTotal() string {
	kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64)
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

func loadAverage() string {
	f := strings.Fields(readProc("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// procField returns the value of the first "key: value" line of a /proc
// file whose key is key, or "unknown".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// HumanBytes formats a byte count in KiB or MiB with three significant
// figures.
func HumanBytes(n float64) string {
	switch {
	case n >= 100*MiB:
		return fmt.Sprintf("%.0f MiB", n/MiB)
	case n >= 10*MiB:
		return fmt.Sprintf("%.1f MiB", n/MiB)
	case n >= MiB:
		return fmt.Sprintf("%.2f MiB", n/MiB)
	case n >= 100*KiB:
		return fmt.Sprintf("%.0f KiB", n/KiB)
	case n >= 10*KiB:
		return fmt.Sprintf("%.1f KiB", n/KiB)
	default:
		return fmt.Sprintf("%.2f KiB", n/KiB)
	}
}

// The random reads both chunk studies cost out: page-sized to large reads
// of a guest, at page-aligned offsets.
var ReadSizes = []int{4 * KiB, 64 * KiB, 1 * MiB}

// ReadAlign aligns the random reads, like a guest's page-sized I/O.
const ReadAlign = 4 * KiB

// RandomOffsets returns, per read size in ReadSizes, n offsets of reads
// that fit in a file of size bytes, aligned to ReadAlign. The studies use
// the same generator and seed, so their read costs compare.
func RandomOffsets(size int64, n int, seed uint64) map[int][]int64 {
	rng := rand.New(rand.NewPCG(seed, 0x6c617a796469736b))
	out := make(map[int][]int64)
	for _, rs := range ReadSizes {
		slots := (size-int64(rs))/ReadAlign + 1
		offs := make([]int64, n)
		for i := range offs {
			offs[i] = rng.Int64N(slots) * ReadAlign
		}
		out[rs] = offs
	}
	return out
}

// CountReader counts the bytes read through it in N.
type CountReader struct {
	R io.Reader
	N int64
}

func (c *CountReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}
