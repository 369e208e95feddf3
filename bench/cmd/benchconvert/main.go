// Command benchconvert measures the eStargz writer of package convert on
// real VM disks. By default it converts one containerDisk tar twice, with
// estargz.Build's defaults and with convert.WriteEStargz's defaults, prints
// the two side by side, then runs `lazydisk convert` on a 3 GiB disk and
// reports its peak RSS. With -chunk-study it instead converts each disk
// with every candidate chunk size and reports output size, TOC size and
// what random reads of the disk file cost.
//
// Tables are Markdown, for docs/benchmarks.md and docs/chunk-size.md. The
// command exits with status 1 when a goal of the benchmark is missed. It
// does not build the disks: bench/run.sh (make bench) runs
// bench/mkdisk.sh first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/lazydisk/lazydisk/bench/benchutil"
)

type config struct {
	disk     string // the realistic disk, converted side by side
	big      string // the 3 GiB disk for the peak-memory check
	lazydisk string // the CLI binary for the peak-memory check
	work     string // where tars and outputs are written and removed
	chunk    int    // chunk size of the conversions (library and CLI); 0 for their default
	runs     int    // runs of convert.WriteEStargz; the median counts
	study    bool
	zstd     bool // also benchmark zstd:chunked against containers/storage's writer
	samples  int
	seed     uint64
}

func main() {
	var cfg config
	flag.StringVar(&cfg.disk, "disk", ".bench/disk-550m.qcow2", "realistic VM disk to convert")
	flag.StringVar(&cfg.big, "big", ".bench/disk-3g.img", "3 GiB disk for the peak-memory check (and the chunk study); empty to skip")
	flag.StringVar(&cfg.lazydisk, "lazydisk", "bin/lazydisk", "lazydisk binary for the peak-memory check")
	flag.StringVar(&cfg.work, "work", "", "scratch directory for tars and outputs (default: the directory of -disk)")
	flag.IntVar(&cfg.chunk, "chunk-size", 0, "chunk size in bytes for the benchmark's conversions, library and CLI (default: their default)")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of convert.WriteEStargz in the benchmark; the median wall time counts")
	flag.BoolVar(&cfg.study, "chunk-study", false, "measure every candidate chunk size instead of running the benchmark")
	flag.BoolVar(&cfg.zstd, "zstd", true, "also benchmark convert.WriteZstdChunked against containers/storage's compressor.ZstdCompressor")
	flag.IntVar(&cfg.samples, "samples", 2000, "random reads per read size in the chunk study")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the random read offsets in the chunk study")
	measureCmd := flag.Bool("measure", false, "run the command given as arguments and print its peak RSS, wall and CPU time as JSON (used by the benchmark itself)")
	flag.Parse()
	if *measureCmd {
		if err := measure(context.Background(), flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "benchconvert:", err)
			os.Exit(2)
		}
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchconvert: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if cfg.runs < 1 || cfg.samples < 1 {
		fmt.Fprintln(os.Stderr, "benchconvert: -runs and -samples must be at least 1")
		os.Exit(2)
	}
	if cfg.work == "" {
		cfg.work = filepath.Dir(cfg.disk)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if cfg.study {
		err = runStudy(ctx, os.Stdout, cfg)
	} else {
		err = runBench(ctx, os.Stdout, cfg)
	}
	if errors.Is(err, benchutil.ErrGoalMissed) {
		fmt.Fprintln(os.Stderr, "benchconvert:", err)
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchconvert:", err)
		os.Exit(2)
	}
}
