// Command benchstore measures podman pulling a containerDisk through
// `lazydisk store` (the additional layer store) against a plain `podman
// pull` of the original gzip image, side by side in one run, from one
// distribution registry on 127.0.0.1 (Debian's podman 4.3, its storage
// isolated in a scratch directory, a fresh one per measurement):
//
//   - (a) from starting `podman pull` to the first 4 KiB of the disk read
//     at a random offset through `podman image mount` (pull, mount, open,
//     read; the bytes checked against the file; median of -reads fresh
//     pulls), goal >= 50x sooner than the
//     plain pull, and the layer bytes the registry sent, goal <= the TOC
//     plus 2 chunks per read;
//   - (b) a full sequential read of the disk through the mount (1 MiB
//     reads, as `cat > /dev/null`; readahead on), from starting the pull,
//     against the plain pull followed by the same read: goal >= 1.0x its
//     throughput.
//
// It prints Markdown tables for docs/benchmarks.md and exits 1 when a goal
// is missed. `bench/run.sh -store` (part of make bench) runs it.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazydisk/lazydisk/bench/benchreg"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

type config struct {
	disk     string
	work     string
	lazydisk string
	seed     uint64
	reads    int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.disk, "disk", ".bench/disk-3g.qcow2", "the qcow2 VM disk (at least 1 GiB)")
	flag.StringVar(&cfg.work, "work", ".bench/work", "scratch directory: the registry's storage, podman's storage, the store's mount point")
	flag.StringVar(&cfg.lazydisk, "lazydisk", "bin/lazydisk", "the lazydisk binary")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the random offset of the first read")
	flag.IntVar(&cfg.reads, "reads", 3, "fresh pulls and first reads per image; the median time and the most bytes count")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchstore:", err)
		if errors.Is(err, benchutil.ErrGoalMissed) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

// result is one measurement.
type result struct {
	name              string
	pull, first, full time.Duration
	firstBytes        int64 // layer bytes sent by the time the first 4 KiB were read
	fullBytes         int64
	want              int64 // TOC + 2 chunks under the read
	layerSize         int64
}

func run(ctx context.Context, cfg config) error {
	if os.Geteuid() != 0 {
		return errors.New("podman with overlay storage and FUSE mounts need root")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		return errors.New("podman is missing: apt-get install podman fuse3")
	}
	fi, err := os.Stat(cfg.disk)
	if err != nil {
		return err
	}
	if fi.Size() < 1<<30 {
		return fmt.Errorf("%s is %d bytes; the benchmark wants at least 1 GiB", cfg.disk, fi.Size())
	}
	data, err := os.Open(cfg.disk)
	if err != nil {
		return err
	}
	defer data.Close()
	if err := os.MkdirAll(cfg.work, 0o755); err != nil {
		return err
	}
	work, err := filepath.Abs(cfg.work)
	if err != nil {
		return err
	}
	regRoot, err := os.MkdirTemp(work, "registry-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(regRoot)
	cnt := &testregistry.BlobBytes{}
	reg, stopReg, err := testregistry.Serve(regRoot, cnt.Middleware)
	if err != nil {
		return err
	}
	defer stopReg()
	refs, err := benchreg.Push(ctx, "benchstore", cfg.disk, work, reg.Host)
	if err != nil {
		return err
	}
	wantSum, err := benchreg.FileSHA256(cfg.disk)
	if err != nil {
		return err
	}

	storeRoot, err := os.MkdirTemp(work, "store-")
	if err != nil {
		return err
	}
	defer os.Remove(storeRoot)
	stopStore, err := startStore(ctx, cfg.lazydisk, storeRoot)
	if err != nil {
		return err
	}
	defer stopStore()

	r := rand.New(rand.NewPCG(cfg.seed, 2))
	off := r.Int64N(fi.Size()-4096) &^ 4095
	want := make([]byte, 4096)
	if _, err := data.ReadAt(want, off); err != nil {
		return err
	}
	var results []result
	for _, format := range benchreg.Formats {
		ref := strings.TrimPrefix(refs[format], "docker://")
		layer, err := benchreg.Layer(ctx, refs[format])
		if err != nil {
			return err
		}
		res := result{name: "podman pull (" + format + ")", layerSize: layer.Size}
		store := ""
		if format != "gzip" {
			store = storeRoot
			res.name = "lazydisk store (" + format + ")"
			ix, err := benchreg.LayerIndex(ctx, refs[format])
			if err != nil {
				return err
			}
			res.want = benchreg.TOCBytes(ix) + 2*maxChunk(ix)
		}
		var firsts, pulls []time.Duration
		for pass := 0; pass <= cfg.reads; pass++ { // the first reads, then the whole disk, each on a fresh pull
			if pass == cfg.reads {
				res.first, res.pull = benchreg.Median(firsts), benchreg.Median(pulls)
			}
			p, err := newPodman(work, reg.Host, store)
			if err != nil {
				return err
			}
			base := cnt.Get(layer.Digest.String())
			start := time.Now()
			err = p.run(ctx, "pull", "--tls-verify=false", "--signature-policy", p.policy, ref)
			pulled := time.Since(start)
			var mnt string
			if err == nil {
				mnt, err = p.output(ctx, "image", "mount", ref)
			}
			if err != nil {
				p.close()
				return err
			}
			path := filepath.Join(strings.TrimSpace(mnt), benchreg.DiskPath)
			if pass < cfg.reads {
				got := make([]byte, 4096)
				f, err := os.Open(path)
				if err == nil {
					_, err = f.ReadAt(got, off)
					f.Close()
				}
				firsts, pulls = append(firsts, time.Since(start)), append(pulls, pulled)
				res.firstBytes = max(res.firstBytes, cnt.Get(layer.Digest.String())-base)
				if err == nil && string(got) != string(want) {
					err = fmt.Errorf("%s: the 4 KiB at %d differ from the disk's", res.name, off)
				}
				if err != nil {
					p.close()
					return err
				}
			} else {
				sum, err := readAll(path)
				res.full = time.Since(start)
				res.fullBytes = cnt.Get(layer.Digest.String()) - base
				if err == nil && sum != wantSum {
					err = fmt.Errorf("%s: the disk read through the mount differs", res.name)
				}
				if err != nil {
					p.close()
					return err
				}
			}
			p.run(ctx, "image", "unmount", ref)
			p.close()
			fmt.Fprintf(os.Stderr, "benchstore: %s pass %d done in %s\n", res.name, pass, time.Since(start).Round(time.Millisecond))
		}
		results = append(results, res)
	}
	return report(os.Stdout, results, fi.Size(), off)
}

func maxChunk(ix *toc.Index) int64 {
	var m int64
	for _, f := range ix.Files {
		for _, c := range f.Chunks {
			m = max(m, c.CompressedSize)
		}
	}
	return m
}

// readAll reads the file in 1 MiB reads, as cat does, and returns its
// sha256.
func readAll(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

func report(w io.Writer, rs []result, size, off int64) error {
	benchutil.PrintMachine(w)
	base := rs[0]
	fmt.Fprintf(w, "\n(a) From `podman pull` to the first 4 KiB of the disk at %d through `podman image mount` (qcow2 file %s):\n\n", off, benchutil.HumanBytes(float64(size)))
	fmt.Fprintln(w, "| | pull | first 4 KiB | ratio (goal >= 50x) | layer bytes sent | goal: TOC + 2 chunks |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	missed := false
	for i, r := range rs {
		ratio := float64(base.first) / float64(r.first)
		mark, goal := "", ""
		if i > 0 {
			ok := ratio >= 50
			mark = " " + benchutil.Mark(ok)
			okBytes := r.firstBytes <= r.want
			goal = benchutil.Commas(r.want) + " " + benchutil.Mark(okBytes)
			missed = missed || !ok || !okBytes
		}
		fmt.Fprintf(w, "| %s | %.2f s | %s | %.0fx%s | %s of %s | %s |\n", r.name, r.pull.Seconds(), dur(r.first), ratio, mark,
			benchutil.Commas(r.firstBytes), benchutil.Commas(r.layerSize), goal)
	}
	fmt.Fprintf(w, "\n(b) From `podman pull` to the whole disk read through the mount (1 MiB reads, sha256 checked):\n\n")
	fmt.Fprintln(w, "| | time | MB/s of qcow2 | ratio (goal >= 1.0x) | layer bytes sent |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for i, r := range rs {
		ratio := float64(base.full) / float64(r.full)
		mark := ""
		if i > 0 {
			ok := ratio >= 1.0
			mark = " " + benchutil.Mark(ok)
			missed = missed || !ok
		}
		fmt.Fprintf(w, "| %s | %.2f s | %.0f | %.2fx%s | %s |\n", r.name, r.full.Seconds(), benchutil.MBps(size, r.full), ratio, mark, benchutil.Commas(r.fullBytes))
	}
	if missed {
		return benchutil.ErrGoalMissed
	}
	return nil
}

func dur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// startStore runs `lazydisk store --root root` until the returned function
// stops it with SIGTERM.
func startStore(ctx context.Context, bin, root string) (func(), error) {
	cmd := exec.Command(bin, "store", "--root", root)
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		var seen strings.Builder
		for {
			n, err := pr.Read(buf)
			seen.Write(buf[:n])
			if strings.Contains(seen.String(), "serving the layer store at") {
				ready <- nil
				io.Copy(os.Stderr, pr)
				return
			}
			if err != nil {
				ready <- fmt.Errorf("lazydisk store exited: %s", seen.String())
				return
			}
		}
	}()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		unix.Unmount(root, unix.MNT_DETACH)
	}
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return nil, err
		}
	case <-time.After(30 * time.Second):
		stop()
		return nil, errors.New("lazydisk store is not serving after 30 s")
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
	return stop, nil
}

// podman is a podman with its own storage, configuration and HOME in a
// scratch directory.
type podman struct {
	dir, policy string
	env         []string
}

func newPodman(work, host, store string) (*podman, error) {
	dir, err := os.MkdirTemp(work, "podman-")
	if err != nil {
		return nil, err
	}
	stores := ""
	if store != "" {
		stores = fmt.Sprintf("additionallayerstores = [%q]\n", store+":ref")
	}
	files := map[string]string{
		"storage.conf": fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n[storage.options]\n%s",
			filepath.Join(dir, "root"), filepath.Join(dir, "run"), stores),
		"registries.conf": fmt.Sprintf("unqualified-search-registries = []\n[[registry]]\nlocation = %q\ninsecure = true\n", host),
		"containers.conf": "[engine]\nevents_logger = \"none\"\n",
		"policy.json":     `{"default":[{"type":"insecureAcceptAnything"}]}`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return nil, err
	}
	return &podman{dir: dir, policy: filepath.Join(dir, "policy.json"), env: []string{
		"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir,
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"), "NO_PROXY=*", "no_proxy=*",
	}}, nil
}

func (p *podman) output(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.env
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return string(out), nil
}

func (p *podman) run(ctx context.Context, args ...string) error {
	_, err := p.output(ctx, args...)
	return err
}

// close unmounts what podman mounted below its directory and removes it.
func (p *podman) close() {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], p.dir+"/") {
			ms = append(ms, f[4])
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		unix.Unmount(ms[i], unix.MNT_DETACH)
	}
	os.RemoveAll(p.dir)
}
