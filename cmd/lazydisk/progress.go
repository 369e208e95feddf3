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

// progressPrinter draws one status line per phase on a terminal: bytes
// done, rate and time left. Updates of the same phase come at most every
// 100 ms.
type progressPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	last  time.Time
	key   string
	width int
}

func newProgressPrinter(w io.Writer) *progressPrinter { return &progressPrinter{w: w} }

// convert shows a convert.Progress.
func (p *progressPrinter) convert(pr convert.Progress) {
	name := fmt.Sprintf("layer %d/%d", pr.Layer+1, pr.Layers)
	if pr.Platform != "" {
		name = pr.Platform + " " + name
	}
	p.phase(name, name+" "+pr.Digest, pr.Read, pr.Total, pr.Done)
}

// show shows that phase name has done n bytes of total (0: unknown); done
// ends its line.
func (p *progressPrinter) show(name string, n, total int64, done bool) {
	p.phase(name, name, n, total, done)
}

// phase is show for a phase that key tells apart from others of the same
// name.
func (p *progressPrinter) phase(name, key string, n, total int64, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if key != p.key {
		if p.width > 0 {
			fmt.Fprintln(p.w)
			p.width = 0
		}
		p.key, p.start = key, now
	} else if !done && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(n) / elapsed
	}
	line := fmt.Sprintf("%s  %s", name, size.Format(n))
	if total > 0 {
		line += fmt.Sprintf(" / %s (%d%%)", size.Format(total), n*100/total)
	}
	line += fmt.Sprintf("  %s/s", size.Format(int64(rate)))
	if total > 0 && rate > 0 && !done {
		left := time.Duration(float64(total-n) / rate * float64(time.Second)).Round(time.Second)
		line += fmt.Sprintf("  ETA %s", left)
	}
	pad := max(0, p.width-len(line))
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	if done {
		fmt.Fprintln(p.w)
		p.width, p.key = 0, ""
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
