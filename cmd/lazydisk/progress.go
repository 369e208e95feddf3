package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/size"
)

// isTerminal reports whether w is a terminal; progress goes only there.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressPrinter draws one status line per layer on a terminal:
// bytes read, rate and time left.
type progressPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	key   string
	width int
}

func newProgressPrinter(w io.Writer) *progressPrinter { return &progressPrinter{w: w} }

func (p *progressPrinter) update(pr convert.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := fmt.Sprintf("%s/%d/%s", pr.Platform, pr.Layer, pr.Digest)
	if key != p.key {
		p.key, p.start = key, time.Now()
	}
	name := fmt.Sprintf("layer %d/%d", pr.Layer+1, pr.Layers)
	if pr.Platform != "" {
		name = pr.Platform + " " + name
	}
	elapsed := time.Since(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(pr.Read) / elapsed
	}
	line := fmt.Sprintf("%s  %s", name, size.Format(pr.Read))
	if pr.Total > 0 {
		line += fmt.Sprintf(" / %s (%d%%)", size.Format(pr.Total), pr.Read*100/pr.Total)
	}
	line += fmt.Sprintf("  %s/s", size.Format(int64(rate)))
	if pr.Total > 0 && rate > 0 && !pr.Done {
		left := time.Duration(float64(pr.Total-pr.Read) / rate * float64(time.Second)).Round(time.Second)
		line += fmt.Sprintf("  ETA %s", left)
	}
	pad := max(0, p.width-len(line))
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	if pr.Done {
		fmt.Fprintln(p.w)
		p.width = 0
	}
}

// close ends an unfinished status line.
func (p *progressPrinter) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.width > 0 {
		fmt.Fprintln(p.w)
	}
}
