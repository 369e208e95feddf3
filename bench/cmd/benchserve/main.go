// Command benchserve measures `lazydisk serve` against what serves a
// containerDisk over NBD without it: nbdkit's curl plugin with the tar and
// gzip filters, reading the original gzip layer from the registry
// (`nbdkit curl URL --filter=tar --filter=gzip tar-entry=disk/disk.img`),
// which downloads and decompresses the whole layer before it answers. It
// packages a qcow2 disk of at least 1 GiB three ways (the original gzip
// layer, eStargz, zstd:chunked), pushes the images to one distribution
// registry on 127.0.0.1, and then, side by side in one run, with fresh
// server processes (bin/lazydisk serve, nbdkit) each time:
//
//   - (a) the first 4 KiB read at a random offset: from starting the server
//     to qemu-io having the bytes (checked against the file); lazydisk's
//     bytes fetched must be exactly the TOC and the chunks under the read;
//   - (b) `qemu-img convert -f qcow2 -O raw` of the disk, from starting the
//     server to the raw file written (its sha256 checked), with lazydisk's
//     readahead and without it;
//   - (c) a copy of the qcow2 file with nbdcopy through `lazydisk serve`
//     against `lazydisk read --range all` (the lazy reader's full speed),
//     with the CPU time of each process. This is measured and printed, not
//     a goal: the server does the reader's work plus sending every byte on
//     the socket, and nbdcopy's own CPU competes for the same cores, so on
//     a machine with few cores the copy cannot reach the read's speed.
//
// With -sparse DISK it measures instead, on a large raw disk that is mostly
// zeros (mkdisk.sh's 20 GiB ext4 holding about 540 MB of files):
//
//   - (d) the whole disk to a raw file: `lazydisk read --range all -o FILE`,
//     which leaves holes where the TOC says zeros, against `qemu-img convert
//     -f raw -O raw` through `lazydisk serve` (which finds the holes with NBD
//     block status) and against `lazydisk read --sparse=never`, the dense
//     write lazydisk did before: time and the output's allocated size.
//
// With -load it measures instead (e): -clients NBD clients (64) each doing
// random 4 KiB reads, one after the other, for -duration (60 s) against
// `lazydisk serve` of each format: reads/s, latency percentiles, errors,
// the server's peak RSS and its CPU time per read.
//
// With -guest QCOW2 it measures instead the guest view of a compressed
// qcow2 containerDisk (mkdisk.sh -compressed: the 3 GiB disk, qemu-img
// convert -c):
//
//   - (f) the guest's disk into a raw file: nbdcopy through `lazydisk serve
//     --guest`, which decompresses the qcow2 clusters itself, against
//     `qemu-img convert -f qcow2 -O raw` through `lazydisk serve` (the file
//     view), sha256 checked (goal: >= 1.0x);
//   - (g) the first 4 KiB guest read at a random offset with data, through
//     `lazydisk serve --guest`, against a downloaded copy: the gzip layer
//     fetched and unpacked, then served by `qemu-nbd -r -f qcow2` (goal:
//     >= 50x).
//
// It prints Markdown tables for docs/benchmarks.md and exits 1 when a goal
// of (a) or (b) is missed. bench/run.sh -serve (part of make bench) runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/lazydisk/lazydisk/bench/benchreg"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"github.com/lazydisk/lazydisk/toc"
)

type config struct {
	disk     string
	work     string
	lazydisk string
	reads    int
	runs     int
	seed     uint64
	sparse   string
	load     bool
	clients  int
	duration time.Duration
	guest    string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.disk, "disk", ".bench/disk-3g.qcow2", "the qcow2 VM disk (at least 1 GiB)")
	flag.StringVar(&cfg.work, "work", ".bench/work", "scratch directory: the registry's storage, sockets, nbdkit's temporary file, the copies")
	flag.StringVar(&cfg.lazydisk, "lazydisk", "bin/lazydisk", "the lazydisk binary")
	flag.IntVar(&cfg.reads, "reads", 5, "first 4 KiB reads per server, at random offsets; the median counts")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of each whole-disk copy; the median counts")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the random offsets")
	flag.StringVar(&cfg.guest, "guest", "", "measure (f) and (g), the guest view of a compressed qcow2 (serve --guest), on this qcow2 instead of (a)-(c)")
	flag.StringVar(&cfg.sparse, "sparse", "", "measure (d), sparse whole-disk copies, on this raw disk instead of (a)-(c)")
	flag.BoolVar(&cfg.load, "load", false, "measure (e), many clients doing random 4 KiB reads, instead of (a)-(c)")
	flag.IntVar(&cfg.clients, "clients", 64, "with -load, NBD clients at once")
	flag.DurationVar(&cfg.duration, "duration", time.Minute, "with -load, how long the clients read")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchserve:", err)
		if errors.Is(err, benchutil.ErrGoalMissed) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

// bench is one run's setup.
type bench struct {
	cfg     config
	refs    map[string]string
	blobURL string
	size    int64
	qcowSum [32]byte // of the qcow2 file
	rawSum  [32]byte // of qemu-img convert -O raw of it
	indexes map[string]*toc.Index
	disk    *os.File
}

func run(ctx context.Context, cfg config) error {
	if cfg.sparse != "" {
		return runSparse(ctx, cfg)
	}
	if cfg.load {
		return runLoad(ctx, cfg)
	}
	if cfg.guest != "" {
		return runGuest(ctx, cfg)
	}
	for _, t := range []string{"qemu-img", "qemu-io", "nbdcopy", "nbdkit"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s is missing: apt-get install qemu-utils libnbd-bin nbdkit", t)
		}
	}
	f, err := os.Open(cfg.disk)
	if err != nil {
		return err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != "QFI\xfb" {
		return fmt.Errorf("%s is not a qcow2 file", cfg.disk)
	}
	fi, err := f.Stat()
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

	b := &bench{cfg: cfg, size: fi.Size(), disk: f, indexes: map[string]*toc.Index{}}
	if b.qcowSum, err = benchreg.FileSHA256(cfg.disk); err != nil {
		return err
	}
	raw := filepath.Join(cfg.work, "benchserve-want.raw")
	if _, err := tool(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", cfg.disk, raw); err != nil {
		return err
	}
	b.rawSum, err = benchreg.FileSHA256(raw)
	os.Remove(raw)
	if err != nil {
		return err
	}
	if b.refs, err = benchreg.Push(ctx, "benchserve", cfg.disk, cfg.work, host); err != nil {
		return err
	}
	if b.blobURL, err = benchreg.BlobURL(ctx, b.refs["gzip"]); err != nil {
		return err
	}
	for _, format := range []string{"estargz", "zstd:chunked"} {
		if b.indexes[format], err = benchreg.LayerIndex(ctx, b.refs[format]); err != nil {
			return err
		}
	}
	gzipLayer, err := benchreg.Layer(ctx, b.refs["gzip"])
	if err != nil {
		return err
	}

	fmt.Println("## Serving a disk over NBD (`make bench`, bench/cmd/benchserve)")
	fmt.Println()
	benchutil.PrintMachine(os.Stdout)
	virtual, err := virtualSize(ctx, cfg.disk)
	if err != nil {
		return err
	}
	fmt.Printf("Disk: %s, a qcow2 file of %s bytes (virtual size %s), its gzip layer %s; registry: distribution v3 in-process on 127.0.0.1 (filesystem storage).\n",
		filepath.Base(cfg.disk), benchutil.Commas(b.size), benchutil.HumanBytes(float64(virtual)), benchutil.HumanBytes(float64(gzipLayer.Size)))
	fmt.Printf("nbdkit: `nbdkit -r -U SOCKET --filter=tar --filter=gzip curl %s tar-entry=%s` (%s).\n\n", "http://127.0.0.1:PORT/v2/bench/gzip/blobs/sha256:...", benchreg.DiskPath, nbdkitVersion(ctx))

	missed := false
	if ok, err := b.firstReads(ctx); err != nil {
		return err
	} else if !ok {
		missed = true
	}
	if ok, err := b.converts(ctx); err != nil {
		return err
	} else if !ok {
		missed = true
	}
	if err := b.copies(ctx); err != nil {
		return err
	}
	if missed {
		return benchutil.ErrGoalMissed
	}
	return nil
}

// server is one way of serving the disk.
type server struct {
	name      string
	format    string // the image served
	readahead string // lazydisk's --readahead; "" for the default
	guest     bool   // lazydisk serve --guest
}

var (
	nbdkitServer = server{name: "nbdkit curl+tar+gzip", format: "gzip"}
	lazyServers  = []server{{name: "lazydisk serve", format: "estargz"}, {name: "lazydisk serve", format: "zstd:chunked"}}
)

func (s server) String() string {
	if s.guest {
		return fmt.Sprintf("%s --guest (%s)", s.name, s.format)
	}
	if s.readahead != "" {
		return fmt.Sprintf("%s --readahead %s (%s)", s.name, s.readahead, s.format)
	}
	return fmt.Sprintf("%s (%s)", s.name, s.format)
}

// proc is a running server process.
type proc struct {
	cmd    *exec.Cmd
	uri    string
	dir    string       // its socket's directory, removed when it has exited
	stderr bytes.Buffer // lazydisk's, but for the ready line; complete once exited is closed
	exited chan struct{}
	err    error // cmd.Wait's
}

var readyLine = regexp.MustCompile(`^serving /?\S+ \(\d+ bytes, [^)]+\) at (nbd\S+)$`)

// start starts s on a fresh unix socket and returns once it accepts
// connections.
func (b *bench) start(ctx context.Context, s server) (*proc, error) {
	dir, err := os.MkdirTemp(b.cfg.work, "sock-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "s")
	p := &proc{dir: dir, exited: make(chan struct{})}
	if s.format == "gzip" {
		pid := filepath.Join(dir, "pid")
		p.cmd = exec.CommandContext(ctx, "nbdkit", "-r", "-f", "-U", sock, "-P", pid,
			"--filter=tar", "--filter=gzip", "curl", b.blobURL, "tar-entry="+benchreg.DiskPath)
		p.cmd.Env = append(os.Environ(), "TMPDIR="+dir) // where the gzip filter keeps the disk
		p.cmd.Stderr = &p.stderr
		if err := p.cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		go func() { p.err = p.cmd.Wait(); close(p.exited) }()
		// nbdkit writes its pid file once it accepts connections.
		for {
			if b, err := os.ReadFile(pid); err == nil && len(b) > 0 {
				break
			}
			select {
			case <-p.exited:
				os.RemoveAll(dir)
				return nil, fmt.Errorf("nbdkit exited before it was ready: %v: %s", p.err, &p.stderr)
			case <-time.After(time.Millisecond):
			}
		}
		p.uri = "nbd+unix:///?socket=" + sock
		return p, nil
	}
	args := []string{"serve", b.refs[s.format], "--listen", "unix://" + sock, "--stats=json"}
	if s.readahead != "" {
		args = append(args, "--readahead", s.readahead)
	}
	if s.guest {
		args = append(args, "--guest")
	}
	p.cmd = exec.CommandContext(ctx, b.cfg.lazydisk, args...)
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
				continue
			}
			p.stderr.WriteString(sc.Text() + "\n")
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.uri = <-ready:
		return p, nil
	case <-p.exited:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lazydisk serve exited before listening: %v: %s", p.err, &p.stderr)
	}
}

// stop stops the server with SIGTERM and returns what lazydisk printed
// with --stats=json, and the CPU time the server took.
func (p *proc) stop() (serveStats, error) {
	var st serveStats
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	os.RemoveAll(p.dir)
	st.cpu = cpuOf(p.cmd)
	// lazydisk exits 143 once it has stopped for SIGTERM, as shells report
	// a command SIGTERM stopped.
	if ee, ok := p.err.(*exec.ExitError); p.err != nil && (!ok || ee.ExitCode() != 143) {
		return st, fmt.Errorf("the server exited: %w: %s", p.err, &p.stderr)
	}
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				return st, fmt.Errorf("lazydisk serve --stats=json printed %q: %w", line, err)
			}
		}
	}
	return st, nil
}

// serveStats is the part of lazydisk serve --stats=json read here, and
// the server's CPU time.
type serveStats struct {
	cpu             time.Duration
	Requests        int64 `json:"requests"`
	BytesFetched    int64 `json:"bytesFetched"`
	TOCBytes        int64 `json:"tocBytes"`
	ChunksFetched   int64 `json:"chunksFetched"`
	ReadaheadChunks int64 `json:"readaheadChunks"`
	ReadaheadHits   int64 `json:"readaheadHits"`
	NBD             struct {
		Connections   int64 `json:"connections"`
		Errors        int64 `json:"errors"`
		BackendErrors int64 `json:"backendErrors"`
	} `json:"nbd"`
}

// firstReads is (a).
func (b *bench) firstReads(ctx context.Context) (bool, error) {
	rng := rand.New(rand.NewPCG(b.cfg.seed, 4096))
	offs := make([]int64, b.cfg.reads)
	for i := range offs {
		offs[i] = rng.Int64N((b.size-4096)/4096) * 4096
	}
	fmt.Printf("(a) The first 4 KiB read at a random offset: from starting the server to qemu-io having the bytes (`qemu-io -r -f raw -c 'read -v OFF 4k'`, checked against the file), median of %d:\n\n", len(offs))
	fmt.Println("| server | first read | ratio (goal >= 50x) | bytes fetched (worst) | TOC + chunks under the read |")
	fmt.Println("|---|---:|---:|---:|---:|")
	base, _, err := b.firstRead(ctx, nbdkitServer, offs)
	if err != nil {
		return false, err
	}
	fmt.Printf("| %s | %.2f s | 1x | the whole layer | |\n", nbdkitServer, base.Seconds())
	ok := true
	for _, s := range lazyServers {
		t, worst, err := b.firstRead(ctx, s, offs)
		if err != nil {
			return false, err
		}
		ratio := base.Seconds() / t.Seconds()
		good := ratio >= 50 && worst.fetched == worst.bound
		ok = ok && good
		fmt.Printf("| %s | %.1f ms | %.0fx %s | %s | %s %s |\n", s, t.Seconds()*1000, ratio, benchutil.Mark(ratio >= 50),
			benchutil.Commas(worst.fetched), benchutil.Commas(worst.bound), benchutil.Mark(worst.fetched == worst.bound))
	}
	fmt.Println()
	return ok, nil
}

type fetched struct{ fetched, bound int64 }

// firstRead times the first read at each offset with a fresh server, and
// returns the median and lazydisk's read that fetched the most beyond its
// bound.
func (b *bench) firstRead(ctx context.Context, s server, offs []int64) (time.Duration, fetched, error) {
	var times []time.Duration
	var worst fetched
	want := make([]byte, 4096)
	for i, off := range offs {
		if _, err := b.disk.ReadAt(want, off); err != nil {
			return 0, worst, err
		}
		start := time.Now()
		p, err := b.start(ctx, s)
		if err != nil {
			return 0, worst, err
		}
		got, err := qemuRead(ctx, p.uri, off, 4096)
		took := time.Since(start)
		st, serr := p.stop()
		if err = errors.Join(err, serr); err != nil {
			return 0, worst, fmt.Errorf("%s: %w", s, err)
		}
		if !bytes.Equal(got, want) {
			return 0, worst, fmt.Errorf("%s: the 4 KiB at %d differ from the file's", s, off)
		}
		times = append(times, took)
		fmt.Fprintf(os.Stderr, "benchserve: (a) %s, read %d at %d: %s\n", s, i+1, off, took.Round(time.Millisecond))
		if ix := b.indexes[s.format]; ix != nil {
			chunks, err := benchreg.ReadBytes(ix, off, 4096)
			if err != nil {
				return 0, worst, err
			}
			f := fetched{st.BytesFetched, benchreg.TOCBytes(ix) + chunks}
			if worst.bound == 0 || f.fetched-f.bound > worst.fetched-worst.bound {
				worst = f
			}
		}
	}
	return benchreg.Median(times), worst, nil
}

// qemuRead reads n bytes at off with qemu-io and returns them.
func qemuRead(ctx context.Context, uri string, off, n int64) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "qemu-io", "-r", "-f", "raw", "-c", fmt.Sprintf("read -v %d %d", off, n), uri).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("qemu-io: %w: %s", err, out)
	}
	var got []byte
	for _, line := range strings.Split(string(out), "\n") {
		head, rest, ok := strings.Cut(line, ":  ")
		if !ok || len(head) != 8 {
			continue
		}
		for i := 0; i < 16 && int64(len(got)) < n && len(rest) >= 3*i+2; i++ {
			c, err := hex.DecodeString(rest[3*i : 3*i+2])
			if err != nil {
				return nil, fmt.Errorf("qemu-io dump line %q", line)
			}
			got = append(got, c[0])
		}
	}
	if int64(len(got)) != n {
		return nil, fmt.Errorf("qemu-io read %d bytes of %d: %s", len(got), n, out)
	}
	return got, nil
}

type copyResult struct {
	time  time.Duration
	alloc int64 // the bytes the output file took on disk (of the last run)
	// cpu and clientCPU are the medians of the CPU time of the server
	// and of the client (for s.name == "", the lazydisk read).
	cpu, clientCPU time.Duration
	st             serveStats // of the last run
}

// timed runs a copy runs times with a fresh server each time (none for
// s.name == ""), checks the output's sha256, and returns the median times
// and the stats of the last run. copyTo returns the client's CPU time.
func (b *bench) timed(ctx context.Context, what string, s server, want [32]byte, copyTo func(uri, out string) (time.Duration, error)) (copyResult, error) {
	var res copyResult
	var times, cpus, clientCPUs []time.Duration
	for i := range b.cfg.runs {
		out := filepath.Join(b.cfg.work, "benchserve-out")
		os.Remove(out)
		start := time.Now()
		var p *proc
		uri := ""
		if s.name != "" {
			var err error
			if p, err = b.start(ctx, s); err != nil {
				return res, err
			}
			uri = p.uri
		}
		clientCPU, err := copyTo(uri, out)
		took := time.Since(start)
		clientCPUs = append(clientCPUs, clientCPU)
		if p != nil {
			st, serr := p.stop()
			err = errors.Join(err, serr)
			res.st = st
			cpus = append(cpus, st.cpu)
			if st.NBD.Errors != 0 || st.NBD.BackendErrors != 0 {
				err = errors.Join(err, fmt.Errorf("the server answered %d requests with errors", st.NBD.Errors))
			}
		}
		if err != nil {
			return res, fmt.Errorf("%s, %s: %w", what, s, err)
		}
		sum, err := benchreg.FileSHA256(out)
		var st syscall.Stat_t
		if serr := syscall.Stat(out, &st); serr == nil {
			res.alloc = st.Blocks * 512
		}
		os.Remove(out)
		if err != nil {
			return res, err
		}
		if sum != want {
			return res, fmt.Errorf("%s, %s: the output's sha256 differs", what, s)
		}
		times = append(times, took)
		fmt.Fprintf(os.Stderr, "benchserve: %s, %s, run %d: %s\n", what, s, i+1, took.Round(time.Millisecond))
	}
	res.time, res.clientCPU = benchreg.Median(times), benchreg.Median(clientCPUs)
	if len(cpus) > 0 {
		res.cpu = benchreg.Median(cpus)
	}
	return res, nil
}

// converts is (b).
func (b *bench) converts(ctx context.Context) (bool, error) {
	fmt.Printf("(b) `qemu-img convert -f qcow2 -O raw` of the disk: from starting the server to the raw file written (sha256 checked), median of %d:\n\n", b.cfg.runs)
	fmt.Println("| server | time | MB/s of qcow2 | ratio (goal >= 1.0x) | server CPU | requests | bytes fetched | chunks read ahead (used) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	convert := func(uri, out string) (time.Duration, error) {
		return tool(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", uri, out)
	}
	base, err := b.timed(ctx, "(b) qemu-img convert", nbdkitServer, b.rawSum, convert)
	if err != nil {
		return false, err
	}
	fmt.Printf("| %s | %.2f s | %.0f | 1x | %.2f s | | | |\n", nbdkitServer, base.time.Seconds(), benchutil.MBps(b.size, base.time), base.cpu.Seconds())
	ok := true
	var servers []server
	for _, readahead := range []string{"", "0"} {
		for _, s := range lazyServers {
			s.readahead = readahead
			servers = append(servers, s)
		}
	}
	for _, s := range servers {
		r, err := b.timed(ctx, "(b) qemu-img convert", s, b.rawSum, convert)
		if err != nil {
			return false, err
		}
		ratio := base.time.Seconds() / r.time.Seconds()
		goal := ""
		if s.readahead == "" {
			ok = ok && ratio >= 1
			goal = " " + benchutil.Mark(ratio >= 1)
		}
		fmt.Printf("| %s | %.2f s | %.0f | %.2fx%s | %.2f s | %d | %s | %s (%s) |\n", s, r.time.Seconds(), benchutil.MBps(b.size, r.time), ratio, goal,
			r.cpu.Seconds(), r.st.Requests, benchutil.Commas(r.st.BytesFetched), benchutil.Commas(r.st.ReadaheadChunks), benchutil.Commas(r.st.ReadaheadHits))
	}
	fmt.Println()
	return ok, nil
}

// copies is (c).
func (b *bench) copies(ctx context.Context) error {
	fmt.Printf("(c) The qcow2 file, whole: `lazydisk read --range all -o FILE` against `nbdcopy` through `lazydisk serve` (sha256 checked), median of %d; CPU is lazydisk's (read, or serve), then nbdcopy's, and the server's CPU as a multiple of read's. Measured, not a goal (see docs/benchmarks.md):\n\n", b.cfg.runs)
	fmt.Println("| format | read --range all | CPU | serve + nbdcopy | ratio | CPU (server x read's) | serve --readahead 0 + nbdcopy | ratio | CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	nbdcopy := func(uri, out string) (time.Duration, error) { return tool(ctx, "nbdcopy", uri, out) }
	for _, s := range lazyServers {
		read, err := b.timed(ctx, "(c) read --range all", server{format: s.format}, b.qcowSum, func(_, out string) (time.Duration, error) {
			return tool(ctx, b.cfg.lazydisk, "read", b.refs[s.format], "--range", "all", "-o", out)
		})
		if err != nil {
			return err
		}
		with, err := b.timed(ctx, "(c) nbdcopy", s, b.qcowSum, nbdcopy)
		if err != nil {
			return err
		}
		s.readahead = "0"
		without, err := b.timed(ctx, "(c) nbdcopy", s, b.qcowSum, nbdcopy)
		if err != nil {
			return err
		}
		ratio, ratio0 := read.time.Seconds()/with.time.Seconds(), read.time.Seconds()/without.time.Seconds()
		fmt.Printf("| %s | %.2f s | %.2f s | %.2f s | %.2fx | %.2f s (%.2fx) + %.2f s | %.2f s | %.2fx | %.2f + %.2f s |\n", s.format,
			read.time.Seconds(), read.clientCPU.Seconds(), with.time.Seconds(), ratio, with.cpu.Seconds(), with.cpu.Seconds()/read.clientCPU.Seconds(), with.clientCPU.Seconds(),
			without.time.Seconds(), ratio0, without.cpu.Seconds(), without.clientCPU.Seconds())
	}
	fmt.Println()
	return nil
}

// tool runs a program, fails with its output, and returns the CPU time
// it took.
func tool(ctx context.Context, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return cpuOf(cmd), nil
}

// cpuOf returns the CPU time an exited process took.
func cpuOf(cmd *exec.Cmd) time.Duration {
	if cmd.ProcessState == nil {
		return 0
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

func virtualSize(ctx context.Context, path string) (int64, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, err
	}
	return info.VirtualSize, nil
}

func nbdkitVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "nbdkit", "--version").Output()
	if err != nil {
		return "nbdkit"
	}
	return strings.TrimSpace(string(out))
}
