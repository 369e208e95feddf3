package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// printMachine prints the date, the machine and the Go version, which every
// result needs next to it (as benchconvert does).
func printMachine(w io.Writer) {
	fmt.Fprintf(w, "date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d cores (nproc), GOMAXPROCS %d, %s, %s RAM, Linux %s, load average %s at start\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), procField("/proc/cpuinfo", "model name"), memTotal(),
		strings.TrimSpace(readProc("/proc/sys/kernel/osrelease")), loadAverage())
	fmt.Fprintf(w, "go: %s %s/%s\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
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

// Units: MB is 10^6 bytes (throughput, sizes of compressed data), KiB and
// MiB are 2^10 and 2^20 bytes (chunks, reads, TOCs).
const (
	mb  = 1e6
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

func mbps(n int64, d time.Duration) float64 { return float64(n) / mb / d.Seconds() }

// sizeName names a chunk or read size: "64 KiB", "1 MiB".
func sizeName(n int) string {
	if n >= mib && n%mib == 0 {
		return fmt.Sprintf("%d MiB", n/mib)
	}
	return fmt.Sprintf("%d KiB", n/kib)
}

// humanBytes formats a byte count in KiB or MiB with three significant
// figures.
func humanBytes(n float64) string {
	switch {
	case n >= 100*mib:
		return fmt.Sprintf("%.0f MiB", n/mib)
	case n >= 10*mib:
		return fmt.Sprintf("%.1f MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.2f MiB", n/mib)
	case n >= 100*kib:
		return fmt.Sprintf("%.0f KiB", n/kib)
	case n >= 10*kib:
		return fmt.Sprintf("%.1f KiB", n/kib)
	default:
		return fmt.Sprintf("%.2f KiB", n/kib)
	}
}

// commas formats n with thousands separators.
func commas(n int64) string {
	if n < 0 {
		return "-" + commas(-n)
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
