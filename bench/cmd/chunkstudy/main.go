// Command chunkstudy chooses the chunking of zstd:chunked layers by
// measurement. It runs candidate chunkers (fixed-size, containers/storage's
// rolling sum, bounded content-defined chunkers) over two versions of the
// same VM disk, raw and qcow2, and reports for each: chunk count, TOC
// size, compressed size with one zstd frame per chunk, the cost of random
// reads, how much of v2 a pull can reuse from v1, and chunking speed on
// one core.
//
// It simulates the writer rather than running it: the chunk frames are
// zstd level 3 EncodeAll calls and the TOC is built in containers/storage's
// shape, so it needs neither package convert nor a registry. The disks come
// from bench/mkversions.sh; `bash bench/run.sh
// -zstd-chunk-study` builds them and runs this. Tables are Markdown, for
// docs/zstd-chunking.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"hash/crc32"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

type config struct {
	dir       string // the disks of mkversions.sh
	samples   int    // random reads per read size
	seed      uint64 // of the random read offsets
	speedRuns int    // timed chunking runs per chunker; the best counts
	cstorage  bool   // also time containers/storage's own writer
	only      string // run only the chunkers whose name contains this
}

func main() {
	var cfg config
	flag.StringVar(&cfg.dir, "versions", ".bench/versions", "directory of the disks that bench/mkversions.sh builds")
	flag.IntVar(&cfg.samples, "samples", 2000, "random reads per read size")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the random read offsets")
	flag.IntVar(&cfg.speedRuns, "speed-runs", 2, "timed chunking runs of each chunker on each v1 disk; the best counts")
	flag.BoolVar(&cfg.cstorage, "cstorage-speed", true, "also time containers/storage's writer (compressor.NoCompression) on v1.qcow2")
	flag.StringVar(&cfg.only, "only", "", "run only the chunkers whose description contains this string")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chunkstudy: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if cfg.samples < 1 || cfg.speedRuns < 1 {
		fmt.Fprintln(os.Stderr, "chunkstudy: -samples and -speed-runs must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "chunkstudy:", err)
		os.Exit(1)
	}
}

// result is everything measured for one chunker.
type result struct {
	c     chunker
	speed map[string]float64      // MB/s of chunking v1, per format
	disks []*diskResult           // per disk, in the order of studyDisks
	dedup map[string]*dedupResult // per "format/v2 version"
}

func run(ctx context.Context, w io.Writer, cfg config) error {
	start := time.Now()
	benchutil.PrintMachine(w)
	disks, unmap, err := openDisks(cfg.dir, cfg.samples, cfg.seed)
	if err != nil {
		return err
	}
	defer unmap()

	var chunkers []chunker
	for _, c := range studyChunkers() {
		if strings.Contains(c.String(), cfg.only) {
			chunkers = append(chunkers, c)
		}
	}
	results := make([]*result, len(chunkers))
	for i, c := range chunkers {
		results[i] = &result{c: c, speed: map[string]float64{}, disks: make([]*diskResult, len(disks)), dedup: map[string]*dedupResult{}}
	}

	// Speed first, alone on the machine: the writer's chunker runs on one
	// core. One untimed pass over the disks first, so that no chunker pays
	// for the first touch of their pages.
	for _, d := range disks {
		crc32.Checksum(d.data, castagnoli)
	}
	for _, r := range results {
		for _, d := range disks {
			if d.version != "v1" {
				continue
			}
			fmt.Fprintf(os.Stderr, "chunkstudy: timing %s on %s\n", r.c, d.name)
			best, err := timeChunker(ctx, r.c, d.data, cfg.speedRuns)
			if err != nil {
				return err
			}
			r.speed[d.format] = benchutil.MBps(int64(len(d.data)), best)
		}
	}
	var ref refSpeeds
	for _, d := range disks {
		if d.version == "v1" && d.format == "qcow2" {
			if ref, err = measureRefSpeeds(ctx, d, cfg.cstorage); err != nil {
				return err
			}
		}
	}

	// Then every chunker on every disk, on all cores.
	enc, err := newEncoder()
	if err != nil {
		return err
	}
	cache := &frameCache{m: make(map[[32]byte]int64)}
	type job struct {
		r *result
		i int // index of the disk
	}
	jobs := make(chan job)
	g, gctx := errgroup.WithContext(ctx)
	for range runtime.GOMAXPROCS(0) {
		g.Go(func() error {
			for j := range jobs {
				d := disks[j.i]
				fmt.Fprintf(os.Stderr, "chunkstudy: %s on %s\n", j.r.c, d.name)
				dr, err := measure(gctx, j.r.c, d, enc, cache)
				if err != nil {
					return err
				}
				j.r.disks[j.i] = dr
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for _, r := range results {
			for i := range disks {
				select {
				case jobs <- job{r, i}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}

	bounds := map[string]float64{}
	for i1, v1 := range disks {
		if v1.version != "v1" {
			continue
		}
		for i2, v2 := range disks {
			if v2.format != v1.format || v2.version == "v1" {
				continue
			}
			key := v1.format + "/" + v2.version
			fmt.Fprintf(os.Stderr, "chunkstudy: 4 KiB blocks of %s in %s\n", v2.name, v1.name)
			if bounds[key], err = blockDedup(ctx, v1, v2); err != nil {
				return err
			}
			for _, r := range results {
				dr := dedup(r.disks[i1], r.disks[i2])
				r.dedup[key] = &dr
			}
		}
	}

	streams := map[string]int64{}
	for _, d := range disks {
		if d.version == "v1" {
			fmt.Fprintf(os.Stderr, "chunkstudy: %s as one zstd stream\n", d.name)
			if streams[d.name], err = streamSize(d); err != nil {
				return err
			}
		}
	}

	printReport(w, cfg, disks, results, bounds, ref, streams)
	fmt.Fprintf(w, "Run time: %s.\n", time.Since(start).Round(time.Second))
	return nil
}

// timeChunker returns the best wall time of runs chunkings of data.
func timeChunker(ctx context.Context, c chunker, data []byte, runs int) (time.Duration, error) {
	var best time.Duration
	for i := range runs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		t := time.Now()
		spans := c.chunk(data)
		d := time.Since(t)
		if err := checkTiling(spans, int64(len(data))); err != nil {
			return 0, fmt.Errorf("%s: %w", c, err)
		}
		if i == 0 || d < best {
			best = d
		}
	}
	return best, nil
}
