package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/internal/validate"
)

// The acceptance goals of the eStargz writer.
const (
	goalThroughputRatio = 8.0                 // at least, against estargz.Build's defaults
	goalSizeRatio       = 1.05                // at most, against estargz.Build's output
	goalPeakRSS         = 256 * benchutil.MiB // at most, converting the 3 GiB disk
)

// conversion is one timed conversion of the tar.
type conversion struct {
	name, settings string
	in             int64 // uncompressed input bytes (the tar)
	wall           time.Duration
	runs           []time.Duration // every run's wall time, sorted, when there were several
	out            int64           // output bytes
	toc            *blobTOC
}

// runBench converts the realistic disk's tar with estargz.Build and with
// convert.WriteEStargz, then checks the CLI's peak memory on the big disk.
func runBench(ctx context.Context, w io.Writer, cfg config) error {
	benchutil.PrintMachine(w)
	if err := os.MkdirAll(cfg.work, 0o755); err != nil {
		return err
	}
	tarPath := filepath.Join(cfg.work, "bench-input.tar")
	buildPath := filepath.Join(cfg.work, "bench-build.esgz")
	oursPath := filepath.Join(cfg.work, "bench-ours.esgz")
	defer func() {
		for _, p := range []string{tarPath, buildPath, oursPath} {
			os.Remove(p)
		}
	}()

	fi, err := os.Stat(cfg.disk)
	if err != nil {
		return fmt.Errorf("realistic disk: %w (run bench/mkdisk.sh first)", err)
	}
	tarSize, err := makeDiskTar(ctx, tarPath, cfg.disk)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "input: %s (%s bytes) as %s in a containerDisk tar of %s bytes\n\n",
		cfg.disk, benchutil.Commas(fi.Size()), diskEntryName(cfg.disk), benchutil.Commas(tarSize))

	fmt.Fprintln(os.Stderr, "benchconvert: running estargz.Build (gzip 9, about a minute per 500 MB)")
	build, buildTOC, err := runBuild(ctx, tarPath, buildPath)
	if err != nil {
		return err
	}
	if err := checkTOC(buildPath, buildTOC); err != nil {
		return fmt.Errorf("estargz.Build output: %w", err)
	}
	runtime.GC()
	debug.FreeOSMemory()

	fmt.Fprintf(os.Stderr, "benchconvert: running convert.WriteEStargz %d times\n", cfg.runs)
	var (
		ours *conversion
		blob *convert.Blob
		runs []time.Duration
	)
	for range cfg.runs {
		c, b, err := runOurs(ctx, tarPath, oursPath, cfg.chunk)
		if err != nil {
			return err
		}
		if blob != nil && b.Digest != blob.Digest {
			return fmt.Errorf("convert.WriteEStargz wrote %s, then %s from the same tar", blob.Digest, b.Digest)
		}
		ours, blob = c, b
		runs = append(runs, c.wall)
	}
	slices.Sort(runs)
	ours.wall = runs[len(runs)/2]
	if len(runs) > 1 {
		ours.runs = runs
	}
	checkStart := time.Now()
	if err := checkOurs(ctx, oursPath, blob); err != nil {
		return fmt.Errorf("convert.WriteEStargz output: %w", err)
	}
	checkTime := time.Since(checkStart)

	printComparison(w, build, ours)
	fmt.Fprintf(w, "\nBoth outputs open with estargz.Open and pass VerifyTOC; ours also matches its Blob's size and digest, and every chunk of it matches its chunkDigest (internal/validate.EStargz, %.1f s).\n\n", checkTime.Seconds())

	var missed []string
	tr := benchutil.MBps(ours.in, ours.wall) / benchutil.MBps(build.in, build.wall)
	sr := float64(ours.out) / float64(build.out)
	missed = goalLine(w, missed, "throughput ratio", fmt.Sprintf("%.1fx (goal >= %gx)", tr, goalThroughputRatio), tr >= goalThroughputRatio)
	missed = goalLine(w, missed, "size ratio", fmt.Sprintf("%.3fx (goal <= %gx)", sr, goalSizeRatio), sr <= goalSizeRatio)

	if cfg.big != "" {
		rss, err := runPeakRSS(ctx, w, cfg, "--estargz")
		if err != nil {
			return err
		}
		missed = goalLine(w, missed, "peak RSS", fmt.Sprintf("%.1f MiB (goal <= %d MiB)", float64(rss)/benchutil.MiB, goalPeakRSS/benchutil.MiB), rss <= goalPeakRSS)
	}
	if cfg.zstd {
		zm, err := runZstdBench(ctx, w, cfg, tarPath)
		if err != nil {
			return err
		}
		missed = append(missed, zm...)
	}
	if len(missed) > 0 {
		return fmt.Errorf("%w: %s", benchutil.ErrGoalMissed, strings.Join(missed, ", "))
	}
	fmt.Fprintln(w, "\nall goals met")
	return nil
}

// goalLine prints one goal and whether it was met, and adds name to missed
// if not.
func goalLine(w io.Writer, missed []string, name, value string, ok bool) []string {
	verdict := "ok"
	if !ok {
		verdict = "MISSED"
		missed = append(missed, name)
	}
	fmt.Fprintf(w, "%s: %s %s\n", name, value, verdict)
	return missed
}

// runBuild converts the tar with estargz.Build's defaults (gzip level 9,
// 4 MiB chunks), reading its blob to the end into outPath.
func runBuild(ctx context.Context, tarPath, outPath string) (*conversion, digest.Digest, error) {
	in, err := os.Open(tarPath)
	if err != nil {
		return nil, "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, "", err
	}
	out, err := os.Create(outPath)
	if err != nil {
		return nil, "", err
	}
	defer out.Close()

	start := time.Now()
	blob, err := estargz.Build(io.NewSectionReader(in, 0, fi.Size()), estargz.WithContext(ctx))
	if err != nil {
		return nil, "", fmt.Errorf("estargz.Build: %w", err)
	}
	n, err := io.Copy(out, blob)
	if cerr := blob.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", fmt.Errorf("writing estargz.Build's blob to %s: %w", outPath, err)
	}
	wall := time.Since(start)
	toc, err := readTOC(outPath)
	if err != nil {
		return nil, "", err
	}
	return &conversion{
		name:     "estargz.Build",
		settings: "defaults: gzip 9, 4 MiB chunks",
		in:       fi.Size(),
		wall:     wall,
		out:      n,
		toc:      toc,
	}, blob.TOCDigest(), nil
}

// runOurs converts the tar with convert.WriteEStargz's defaults, or with
// chunkSize if it is not 0, into outPath.
func runOurs(ctx context.Context, tarPath, outPath string, chunkSize int) (*conversion, *convert.Blob, error) {
	w, err := timedWrite(ctx, tarPath, outPath, chunkSize, "convert.WriteEStargz", convert.WriteEStargz)
	if err != nil {
		return nil, nil, err
	}
	toc, err := readTOC(outPath)
	if err != nil {
		return nil, nil, err
	}
	return &conversion{
		name: "convert.WriteEStargz",
		settings: fmt.Sprintf("%s: gzip %d, %s chunks, %d workers",
			w.settings, convert.DefaultGzipLevel, benchutil.SizeName(w.chunkSize), runtime.GOMAXPROCS(0)),
		in:   w.in,
		wall: w.wall,
		out:  w.blob.Size,
		toc:  toc,
	}, w.blob, nil
}

// timed is one timed run of one of our writers.
type timed struct {
	blob      *convert.Blob
	in        int64
	wall      time.Duration
	settings  string // "defaults" or "-chunk-size"
	chunkSize int
}

// timedWrite runs write on the tar at tarPath into outPath and times it,
// from opening the input to closing the output. chunkSize 0 means the
// writer's default.
func timedWrite(ctx context.Context, tarPath, outPath string, chunkSize int, name string,
	write func(context.Context, io.Writer, io.Reader, ...convert.Option) (*convert.Blob, error)) (*timed, error) {
	t := &timed{settings: "defaults", chunkSize: convert.DefaultChunkSize}
	var opts []convert.Option
	if chunkSize != 0 {
		t.settings, t.chunkSize = "-chunk-size", chunkSize
		opts = append(opts, convert.WithChunkSize(chunkSize))
	}
	in, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, err
	}
	t.in = fi.Size()
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	start := time.Now()
	if t.blob, err = write(ctx, out, in, opts...); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", outPath, err)
	}
	t.wall = time.Since(start)
	return t, nil
}

// checkTOC opens the blob with the reference reader and verifies its TOC
// against tocDigest.
func checkTOC(path string, tocDigest digest.Digest) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r, err := estargz.Open(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return fmt.Errorf("estargz.Open: %w", err)
	}
	if _, err := r.VerifyTOC(tocDigest); err != nil {
		return fmt.Errorf("verifying the TOC against %s: %w", tocDigest, err)
	}
	return nil
}

// checkOurs checks WriteEStargz's output: the file has the size and digest
// the Blob reports, the reference reader accepts the TOC and every chunk
// matches its chunkDigest.
func checkOurs(ctx context.Context, path string, blob *convert.Blob) error {
	if err := checkTOC(path, blob.TOCDigest); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("hashing %s: %w", path, err)
	}
	if n != blob.Size {
		return fmt.Errorf("file has %d bytes, Blob.Size says %d", n, blob.Size)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != blob.Digest {
		return fmt.Errorf("file digest is %s, Blob.Digest says %s", got, blob.Digest)
	}
	rep, err := validate.EStargz(ctx, io.NewSectionReader(f, 0, n), blob.TOCDigest)
	if err != nil {
		return err
	}
	if rep.DiffID != blob.DiffID {
		return fmt.Errorf("decompressed digest is %s, Blob.DiffID says %s", rep.DiffID, blob.DiffID)
	}
	return nil
}

func printComparison(w io.Writer, build, ours *conversion) {
	row := func(name, a, b string) { fmt.Fprintf(w, "| %s | %s | %s |\n", name, a, b) }
	row("", build.name, ours.name)
	row("---", "---:", "---:")
	row("settings", build.settings, ours.settings)
	row("input (tar)", benchutil.Commas(build.in)+" B", benchutil.Commas(ours.in)+" B")
	row("wall time", wallCell(build), wallCell(ours))
	row("throughput", fmt.Sprintf("%.1f MB/s", benchutil.MBps(build.in, build.wall)), fmt.Sprintf("%.1f MB/s", benchutil.MBps(ours.in, ours.wall)))
	row("output", benchutil.Commas(build.out)+" B", benchutil.Commas(ours.out)+" B")
	row("compression ratio", fmt.Sprintf("%.3f", float64(build.in)/float64(build.out)), fmt.Sprintf("%.3f", float64(ours.in)/float64(ours.out)))
	row("chunks in TOC", benchutil.Commas(int64(build.toc.countChunks())), benchutil.Commas(int64(ours.toc.countChunks())))
	row("TOC (gzip / JSON)", fmt.Sprintf("%s / %s B", benchutil.Commas(build.toc.size), benchutil.Commas(build.toc.jsonSize)), fmt.Sprintf("%s / %s B", benchutil.Commas(ours.toc.size), benchutil.Commas(ours.toc.jsonSize)))
}

// wallCell formats a conversion's wall time, with the range when it is the
// median of several runs.
func wallCell(c *conversion) string {
	if len(c.runs) == 0 {
		return fmt.Sprintf("%.1f s", c.wall.Seconds())
	}
	return fmt.Sprintf("%.1f s (median of %d, %.1f-%.1f s)", c.wall.Seconds(), len(c.runs),
		c.runs[0].Seconds(), c.runs[len(c.runs)-1].Seconds())
}

// runPeakRSS runs `lazydisk convert FORMATFLAG` on the big disk and returns
// the child's peak resident set size in bytes.
func runPeakRSS(ctx context.Context, w io.Writer, cfg config, formatFlag string) (int64, error) {
	fi, err := os.Stat(cfg.big)
	if err != nil {
		return 0, fmt.Errorf("peak-memory disk: %w (run bench/mkdisk.sh first)", err)
	}
	bin, err := filepath.Abs(cfg.lazydisk)
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(bin); err != nil {
		return 0, fmt.Errorf("lazydisk binary: %w (build it with: go build -o bin/lazydisk ./cmd/lazydisk)", err)
	}
	layout := filepath.Join(cfg.work, "bench-oci")
	if err := os.RemoveAll(layout); err != nil {
		return 0, err
	}
	defer os.RemoveAll(layout)
	args := []string{"convert", formatFlag}
	if cfg.chunk != 0 {
		args = append(args, "--chunk-size", strconv.Itoa(cfg.chunk))
	}
	args = append(args, "disk:"+cfg.big, "oci:"+layout+":bench")

	fmt.Fprintf(os.Stderr, "benchconvert: running lazydisk %s\n", strings.Join(args, " "))
	// Go starts children with vfork, and until exec a child shares this
	// process's memory, which the child's ru_maxrss then counts: the
	// encoders of the runs above would show up as lazydisk's. So a fresh,
	// small copy of this program starts lazydisk and reports its usage.
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{"-measure", bin}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("lazydisk %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	var m measurement
	if err := json.Unmarshal(lastLine(out.Bytes()), &m); err != nil {
		return 0, fmt.Errorf("reading the measurement of lazydisk: %w\n%s", err, tail(out.String(), 2000))
	}
	rss, wall, cpu := m.MaxRSS, time.Duration(m.WallNS), time.Duration(m.CPUNS)
	size, err := dirSize(layout)
	if err != nil {
		return 0, fmt.Errorf("measuring the OCI layout lazydisk wrote: %w", err)
	}

	fmt.Fprintf(w, "\nPeak memory: `lazydisk %s`\n\n", strings.Join(args, " "))
	fmt.Fprintf(w, "| disk | wall time | throughput | CPU (user + sys) | peak RSS | OCI layout |\n")
	fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: |\n")
	fmt.Fprintf(w, "| %s (%s bytes) | %.1f s | %.1f MB/s | %.1f s | %.1f MiB | %s B |\n\n",
		filepath.Base(cfg.big), benchutil.Commas(fi.Size()), wall.Seconds(), benchutil.MBps(fi.Size(), wall),
		cpu.Seconds(), float64(rss)/benchutil.MiB, benchutil.Commas(size))
	return rss, nil
}

// measurement is what -measure prints about the command it ran.
type measurement struct {
	MaxRSS int64 `json:"maxRSS"` // bytes
	WallNS int64 `json:"wallNS"`
	CPUNS  int64 `json:"cpuNS"` // user + system
}

// measure runs a command, passing its output through, and prints its wall
// time, CPU time and peak RSS as one JSON line. It runs in a fresh process
// so that the peak RSS is the command's own (see runPeakRSS).
func measure(ctx context.Context, args []string) error {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return err
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return fmt.Errorf("no resource usage on %s", runtime.GOOS)
	}
	return json.NewEncoder(os.Stdout).Encode(measurement{
		MaxRSS: ru.Maxrss * benchutil.KiB, // Linux reports KiB
		WallNS: int64(time.Since(start)),
		CPUNS:  int64(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()),
	})
}

// lastLine returns the last non-empty line of b.
func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

// dirSize sums the sizes of the regular files below dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	return n, err
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
