// Command benchread measures lazy reads of a VM disk in a registry against
// what the tools that are not lazy do: download the whole gzip layer of the
// containerDisk and decompress it (nbdkit's curl plugin with the tar and gzip
// filters, CDI's importer). It packages a disk of at least 1 GiB three ways
// (the original single-stream gzip layer, eStargz, zstd:chunked), pushes the
// three images to one distribution registry on 127.0.0.1, and then, side by
// side in one run:
//
//   - (a) a cold 4 KiB read at random offsets: disk.Open plus ReadAt with a
//     fresh File (no cache, new connections), against downloading and
//     decompressing the gzip layer; it also checks that the bytes fetched are
//     at most the TOC plus two compressed chunks;
//   - (b) a read of the whole disk (File.WriteRange, as `lazydisk read --range
//     all` does), against the same download and decompression.
//
// Both sides check their bytes: lazydisk verifies every chunk, and the
// baseline's disk bytes are compared with the file's sha256. It prints
// Markdown tables for docs/benchmarks.md and exits 1 when a goal is missed.
// bench/run.sh -read (part of make bench) runs it.
package main

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"

	"github.com/lazydisk/lazydisk/bench/benchreg"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
)

type config struct {
	disk  string
	work  string
	reads int
	runs  int
	seed  uint64
	prof  string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.disk, "disk", ".bench/disk-3g.img", "the VM disk (at least 1 GiB)")
	flag.StringVar(&cfg.work, "work", ".bench/work", "scratch directory: the registry's storage and the gzip tar")
	flag.IntVar(&cfg.reads, "reads", 5, "cold 4 KiB reads per format, at random offsets; the median counts")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of each whole-disk read; the median counts")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the random offsets")
	flag.StringVar(&cfg.prof, "cpuprofile", "", "write a CPU profile of the whole-disk reads to this file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchread:", err)
		if errors.Is(err, benchutil.ErrGoalMissed) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, cfg config) error {
	fi, err := os.Stat(cfg.disk)
	if err != nil {
		return err
	}
	if fi.Size() < 1<<30 {
		return fmt.Errorf("%s is %d bytes; the benchmark wants at least 1 GiB", cfg.disk, fi.Size())
	}
	host, stopReg, err := benchreg.Start(cfg.work)
	if err != nil {
		return err
	}
	defer stopReg()

	fmt.Println("## Lazy reads from a registry (`make bench`, bench/cmd/benchread)")
	fmt.Println()
	benchutil.PrintMachine(os.Stdout)
	fmt.Printf("Disk: %s, %s bytes; registry: distribution v3 in-process on 127.0.0.1 (filesystem storage).\n\n", filepath.Base(cfg.disk), benchutil.Commas(fi.Size()))

	wantSum, err := benchreg.FileSHA256(cfg.disk)
	if err != nil {
		return err
	}
	refs, err := benchreg.Push(ctx, "benchread", cfg.disk, cfg.work, host)
	if err != nil {
		return err
	}
	missed := false
	base, err := baselines(ctx, refs["gzip"], wantSum, cfg.runs)
	if err != nil {
		return err
	}
	fmt.Printf("Baseline (download the %s gzip layer and decompress it, klauspost gzip, median of %d): %.2f s, %.0f MB/s of disk.\n\n",
		benchutil.HumanBytes(float64(base.layer)), cfg.runs, base.time.Seconds(), benchutil.MBps(fi.Size(), base.time))

	fmt.Println("(a) Cold 4 KiB read at a random offset (fresh File each time: manifest, TOC and chunk), median:")
	fmt.Println()
	fmt.Println("| format | lazydisk | baseline | ratio (goal >= 50x) | requests | bytes fetched | TOC (and footer) + 2 chunks |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, format := range []string{"estargz", "zstd:chunked"} {
		r, err := coldReads(ctx, refs[format], cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", format, err)
		}
		ratio := base.time.Seconds() / r.time.Seconds()
		ok := ratio >= 50 && r.bytesOK
		missed = missed || !ok
		fmt.Printf("| %s | %.1f ms | %.2f s | %.0fx %s | %d | %s | %s %s |\n", format, r.time.Seconds()*1000, base.time.Seconds(), ratio, benchutil.Mark(ratio >= 50),
			r.requests, benchutil.Commas(r.bytes), benchutil.Commas(r.bound), benchutil.Mark(r.bytesOK))
	}
	fmt.Println()
	fmt.Println("(b) The whole disk (`--range all`: parallel range requests, decompression and verification), median:")
	fmt.Println()
	fmt.Println("| format | lazydisk | MB/s | baseline MB/s | ratio (goal >= 1.0x) | requests | bytes fetched |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	if cfg.prof != "" {
		pf, err := os.Create(cfg.prof)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, format := range []string{"estargz", "zstd:chunked"} {
		r, err := wholeReads(ctx, refs[format], wantSum, cfg.runs)
		if err != nil {
			return fmt.Errorf("%s: %w", format, err)
		}
		ratio := base.time.Seconds() / r.time.Seconds()
		missed = missed || ratio < 1.0
		fmt.Printf("| %s | %.2f s | %.0f | %.0f | %.2fx %s | %d | %s |\n", format, r.time.Seconds(), benchutil.MBps(fi.Size(), r.time),
			benchutil.MBps(fi.Size(), base.time), ratio, benchutil.Mark(ratio >= 1.0), r.requests, benchutil.Commas(r.bytes))
	}
	fmt.Println()
	if missed {
		return benchutil.ErrGoalMissed
	}
	return nil
}

type baseline struct {
	time  time.Duration
	layer int64
}

// baselines downloads and decompresses the gzip layer runs times, checks
// the disk's sha256, and returns the median time.
func baselines(ctx context.Context, ref string, wantSum [32]byte, runs int) (baseline, error) {
	var times []time.Duration
	var b baseline
	for range runs {
		start := time.Now()
		n, sum, err := downloadAndDecompress(ctx, ref)
		if err != nil {
			return b, fmt.Errorf("baseline: %w", err)
		}
		if sum != wantSum {
			return b, errors.New("baseline: the disk's sha256 differs")
		}
		times = append(times, time.Since(start))
		b.layer = n
	}
	b.time = benchreg.Median(times)
	return b, nil
}

// downloadAndDecompress GETs the image's only layer over a new connection,
// as a plain HTTP client does (no digest check of the compressed stream),
// gunzips it as one stream and hashes the disk file in the tar.
func downloadAndDecompress(ctx context.Context, ref string) (int64, [32]byte, error) {
	var sum [32]byte
	r, err := image.Parse(ref)
	if err != nil {
		return 0, sum, err
	}
	img, err := remote.Image(r.Name, remote.WithContext(ctx))
	if err != nil {
		return 0, sum, err
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, sum, err
	}
	repo := r.Name.Context()
	url := "http://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr() + "/blobs/" + m.Layers[0].Digest.String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, sum, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, sum, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, sum, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	cr := &benchutil.CountReader{R: resp.Body}
	zr, err := gzip.NewReader(bufio.NewReaderSize(cr, 1<<20))
	if err != nil {
		return 0, sum, err
	}
	t := tar.NewReader(zr)
	for {
		h, err := t.Next()
		if err != nil {
			return 0, sum, fmt.Errorf("finding disk/disk.img: %w", err)
		}
		if h.Name == "disk/disk.img" {
			break
		}
	}
	hash := sha256.New()
	if _, err := io.Copy(hash, t); err != nil {
		return 0, sum, err
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return 0, sum, err
	}
	copy(sum[:], hash.Sum(nil))
	return cr.N, sum, nil
}

type coldResult struct {
	time            time.Duration
	requests, bytes int64
	bound           int64
	bytesOK         bool
}

// coldReads opens a fresh File and reads 4 KiB at a random offset, reads
// times, and returns the median time and the worst bytes against the bound.
func coldReads(ctx context.Context, ref string, cfg config) (coldResult, error) {
	var res coldResult
	r, err := image.Parse(ref)
	if err != nil {
		return res, err
	}
	res.bytesOK = true
	ix, err := benchreg.LayerIndex(ctx, ref)
	if err != nil {
		return res, err
	}
	rng := rand.New(rand.NewPCG(cfg.seed, 4096))
	var times []time.Duration
	for range cfg.reads {
		tr := remote.DefaultTransport.(*http.Transport).Clone()
		start := time.Now()
		f, err := disk.Open(ctx, r, disk.WithImageOptions(image.WithKeychain(authn.NewMultiKeychain()), image.WithTransport(tr)), disk.WithCacheSize(0))
		if err != nil {
			return res, err
		}
		off := rng.Int64N(f.Size() - 4096)
		p := make([]byte, 4096)
		if _, err := f.ReadAt(p, off); err != nil {
			f.Close()
			return res, err
		}
		times = append(times, time.Since(start))
		st := f.Stats()
		chunks, err := benchreg.ChunkBytes(ix, off, 2)
		bound := benchreg.TOCBytes(ix) + chunks
		f.Close()
		tr.CloseIdleConnections()
		if err != nil {
			return res, err
		}
		if st.BytesFetched > bound {
			res.bytesOK = false
		}
		if st.BytesFetched-bound >= res.bytes-res.bound || res.bytes == 0 {
			res.requests, res.bytes, res.bound = st.Requests, st.BytesFetched, bound
		}
	}
	res.time = benchreg.Median(times)
	return res, nil
}

type wholeResult struct {
	time            time.Duration
	requests, bytes int64
}

// wholeReads reads the whole disk with a fresh File, runs times, checks
// its sha256 and returns the median time.
func wholeReads(ctx context.Context, ref string, wantSum [32]byte, runs int) (wholeResult, error) {
	var res wholeResult
	r, err := image.Parse(ref)
	if err != nil {
		return res, err
	}
	var times []time.Duration
	for range runs {
		tr := remote.DefaultTransport.(*http.Transport).Clone()
		start := time.Now()
		f, err := disk.Open(ctx, r, disk.WithImageOptions(image.WithKeychain(authn.NewMultiKeychain()), image.WithTransport(tr)))
		if err != nil {
			return res, err
		}
		h := sha256.New()
		_, err = f.WriteRange(h, 0, f.Size())
		took := time.Since(start)
		st := f.Stats()
		f.Close()
		tr.CloseIdleConnections()
		if err != nil {
			return res, err
		}
		if [32]byte(h.Sum(nil)) != wantSum {
			return res, errors.New("the disk's sha256 differs")
		}
		times = append(times, took)
		res.requests, res.bytes = st.Requests, st.BytesFetched
	}
	res.time = benchreg.Median(times)
	return res, nil
}
