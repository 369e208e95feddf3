package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/internal/nbd"
	"github.com/lazydisk/lazydisk/internal/size"
)

// The memory budget of serve (--memory).
const (
	// memoryFraction is the part of the machine's memory (or of its
	// cgroup's limit, if lower) serve takes by default: a quarter.
	memoryFraction = 4
	// minDefaultMemory and maxDefaultMemory bound the default: 256 MiB
	// to 2 GiB.
	minDefaultMemory = 256 << 20
	maxDefaultMemory = 2 << 30
	// memoryOverhead is what the budget keeps for the program itself: its
	// code, goroutines, the TOC and the garbage collector's slack.
	memoryOverhead = 32 << 20
)

// defaultMemory returns serve's default --memory: a quarter of what the
// machine or the cgroup has, from 256 MiB to 2 GiB.
func defaultMemory() int64 {
	return min(max(physicalMemory()/memoryFraction, minDefaultMemory), maxDefaultMemory)
}

// physicalMemory returns the machine's memory, or its cgroup v2 limit if
// lower, or 0 if neither can be read.
func physicalMemory() int64 {
	var total int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err == nil {
					total = kb << 10
				}
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	return total
}

// memoryPlan is how serve divides its budget.
type memoryPlan struct {
	total, cache, fetches, replies int64
}

// planMemory divides total between the chunk cache (cacheSize if the user
// set it, otherwise the default cache up to a quarter of the budget), the
// fetches in flight (two of disk.DefaultMaxRequest per request, the
// compressed body and what it decompresses to), the program itself, and
// the connections' reply buffers, which get the rest. It fails, with the
// least budget that would do, when the rest leaves a connection less than
// nbd.MinConnMemory.
func planMemory(total, cacheSize int64, cacheSet bool, concurrency, maxConns int) (memoryPlan, error) {
	p := memoryPlan{total: total, cache: cacheSize}
	if !cacheSet {
		p.cache = min(cacheSize, total/4)
	}
	p.fetches = int64(concurrency) * 2 * disk.DefaultMaxRequest
	p.replies = total - p.cache - p.fetches - memoryOverhead
	if need := int64(maxConns) * nbd.MinConnMemory; p.replies < need {
		least := total - p.replies + need
		return p, usagef("--memory %s is too small for a %s chunk cache, %d requests in flight (--concurrency) and %d connections (--max-connections): give it at least %s, or lower those",
			size.Format(total), size.Format(p.cache), concurrency, maxConns, size.Format(least))
	}
	return p, nil
}
