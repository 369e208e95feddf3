package main

import (
	"context"
	"fmt"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"go.podman.io/storage/pkg/chunked/compressor"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/toc"
)

// The acceptance goals of the zstd:chunked writer, against
// containers/storage's compressor.ZstdCompressor on the same tar.
const (
	goalZstdDefaultThroughput = 10.0 // at least, against its default level (10)
	goalZstdDefaultSize       = 1.08 // at most, against its default level's output
	goalZstdL3Throughput      = 2.5  // at least, against its level 3
	goalZstdL3Size            = 1.0  // at most, against its level 3's output
)

// zstdRun is one timed zstd:chunked conversion of the tar.
type zstdRun struct {
	name, settings string
	in, out        int64
	wall           time.Duration
	runs           []time.Duration
	tocSize        int64 // compressed TOC bytes (manifest-position)
	tocJSON        int64
}

// runZstdBench converts the tar with compressor.ZstdCompressor at its
// default level and at level 3, and with convert.WriteZstdChunked, prints
// them side by side and checks the goals and the CLI's peak memory.
func runZstdBench(ctx context.Context, w io.Writer, cfg config, tarPath string) ([]string, error) {
	outPath := filepath.Join(cfg.work, "bench-zstd.out")
	defer os.Remove(outPath)
	fmt.Fprintf(w, "\n## zstd:chunked\n\n")

	fmt.Fprintln(os.Stderr, "benchconvert: running compressor.ZstdCompressor at its default level (10; slow)")
	def, err := runCStorageZstd(tarPath, outPath, nil)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "benchconvert: running compressor.ZstdCompressor at level 3")
	three := 3
	l3, err := runCStorageZstd(tarPath, outPath, &three)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "benchconvert: running convert.WriteZstdChunked %d times\n", cfg.runs)
	var ours *zstdRun
	var blob *convert.Blob
	var walls []time.Duration
	for range cfg.runs {
		r, b, err := runOursZstd(ctx, tarPath, outPath, cfg.chunk)
		if err != nil {
			return nil, err
		}
		if blob != nil && b.Digest != blob.Digest {
			return nil, fmt.Errorf("convert.WriteZstdChunked wrote %s, then %s from the same tar", blob.Digest, b.Digest)
		}
		ours, blob = r, b
		walls = append(walls, r.wall)
	}
	slices.Sort(walls)
	ours.wall = walls[len(walls)/2]
	if len(walls) > 1 {
		ours.runs = walls
	}
	f, err := os.Open(outPath)
	if err != nil {
		return nil, err
	}
	rep, err := validate.ZstdChunked(ctx, io.NewSectionReader(f, 0, blob.Size), blob.Annotations)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("convert.WriteZstdChunked output: %w", err)
	}
	if rep.DiffID != blob.DiffID {
		return nil, fmt.Errorf("convert.WriteZstdChunked output decompresses to %s, Blob.DiffID says %s", rep.DiffID, blob.DiffID)
	}

	row := func(name string, cells ...string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, c := range cells {
			fmt.Fprintf(w, " %s |", c)
		}
		fmt.Fprintln(w)
	}
	all := []*zstdRun{def, l3, ours}
	cells := func(f func(r *zstdRun) string) []string {
		var out []string
		for _, r := range all {
			out = append(out, f(r))
		}
		return out
	}
	row("", cells(func(r *zstdRun) string { return r.name })...)
	row("---", "---:", "---:", "---:")
	row("settings", cells(func(r *zstdRun) string { return r.settings })...)
	row("wall time", cells(func(r *zstdRun) string {
		if len(r.runs) == 0 {
			return fmt.Sprintf("%.1f s", r.wall.Seconds())
		}
		return fmt.Sprintf("%.1f s (median of %d, %.1f-%.1f s)", r.wall.Seconds(), len(r.runs), r.runs[0].Seconds(), r.runs[len(r.runs)-1].Seconds())
	})...)
	row("throughput", cells(func(r *zstdRun) string { return fmt.Sprintf("%.1f MB/s", benchutil.MBps(r.in, r.wall)) })...)
	row("output", cells(func(r *zstdRun) string { return benchutil.Commas(r.out) + " B" })...)
	row("TOC (zstd / JSON)", cells(func(r *zstdRun) string {
		return fmt.Sprintf("%s / %s B", benchutil.Commas(r.tocSize), benchutil.Commas(r.tocJSON))
	})...)
	tenGiB := func(r *zstdRun) string {
		scale := float64(10*benchutil.GiB) / float64(r.in)
		return fmt.Sprintf("%.1f / %.1f MiB", float64(r.tocSize)*scale/benchutil.MiB, float64(r.tocJSON)*scale/benchutil.MiB)
	}
	row("TOC for a 10 GiB disk (scaled)", cells(tenGiB)...)
	fmt.Fprintf(w, "\nOurs passes internal/validate.ZstdChunked (checksums, tar-split, every chunk and file digest, DiffID); the %d runs gave the same digest.\n\n", cfg.runs)

	var missed []string
	tput := func(a, b *zstdRun) float64 { return benchutil.MBps(a.in, a.wall) / benchutil.MBps(b.in, b.wall) }
	size := func(a, b *zstdRun) float64 { return float64(a.out) / float64(b.out) }
	missed = goalLine(w, missed, "zstd throughput ratio vs default level", fmt.Sprintf("%.1fx (goal >= %gx)", tput(ours, def), goalZstdDefaultThroughput), tput(ours, def) >= goalZstdDefaultThroughput)
	missed = goalLine(w, missed, "zstd size ratio vs default level", fmt.Sprintf("%.3fx (goal <= %gx)", size(ours, def), goalZstdDefaultSize), size(ours, def) <= goalZstdDefaultSize)
	missed = goalLine(w, missed, "zstd throughput ratio vs level 3", fmt.Sprintf("%.1fx (goal >= %gx)", tput(ours, l3), goalZstdL3Throughput), tput(ours, l3) >= goalZstdL3Throughput)
	missed = goalLine(w, missed, "zstd size ratio vs level 3", fmt.Sprintf("%.3fx (goal <= %gx)", size(ours, l3), goalZstdL3Size), size(ours, l3) <= goalZstdL3Size)
	if cfg.big != "" {
		rss, err := runPeakRSS(ctx, w, cfg, "--zstd-chunked")
		if err != nil {
			return nil, err
		}
		missed = goalLine(w, missed, "zstd peak RSS", fmt.Sprintf("%.1f MiB (goal <= %d MiB)", float64(rss)/benchutil.MiB, goalPeakRSS/benchutil.MiB), rss <= goalPeakRSS)
	}
	return missed, nil
}

// runCStorageZstd converts the tar with containers/storage's writer, as
// podman and skopeo do, at level (nil: its default).
func runCStorageZstd(tarPath, outPath string, level *int) (*zstdRun, error) {
	in, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, err
	}
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cw := &countWriter{w: out}
	ann := map[string]string{}
	start := time.Now()
	zw, err := compressor.ZstdCompressor(cw, ann, level)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(zw, in); err != nil {
		return nil, fmt.Errorf("compressor.ZstdCompressor: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressor.ZstdCompressor: %w", err)
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	wall := time.Since(start)
	settings := "default level (10)"
	if level != nil {
		settings = fmt.Sprintf("level %d", *level)
	}
	r := &zstdRun{name: "compressor.ZstdCompressor", settings: settings + ", rollsum chunks, 1 goroutine", in: fi.Size(), out: cw.n, wall: wall}
	if err := r.setTOC(ann); err != nil {
		return nil, err
	}
	return r, nil
}

// runOursZstd converts the tar with convert.WriteZstdChunked's defaults,
// or with chunkSize if it is not 0.
func runOursZstd(ctx context.Context, tarPath, outPath string, chunkSize int) (*zstdRun, *convert.Blob, error) {
	w, err := timedWrite(ctx, tarPath, outPath, chunkSize, "convert.WriteZstdChunked", convert.WriteZstdChunked)
	if err != nil {
		return nil, nil, err
	}
	r := &zstdRun{name: "convert.WriteZstdChunked", in: w.in, out: w.blob.Size, wall: w.wall,
		settings: fmt.Sprintf("%s: level %d, %s chunks, %d workers", w.settings, convert.DefaultZstdLevel, benchutil.SizeName(w.chunkSize), runtime.GOMAXPROCS(0))}
	if err := r.setTOC(w.blob.Annotations); err != nil {
		return nil, nil, err
	}
	return r, w.blob, nil
}

// setTOC takes the TOC sizes from the manifest-position annotation.
func (r *zstdRun) setTOC(ann map[string]string) error {
	pos, err := toc.ParseManifestPosition(ann[toc.AnnotationZstdChunkedManifestPosition])
	if err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	r.tocSize, r.tocJSON = pos.Compressed, pos.Uncompressed
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
