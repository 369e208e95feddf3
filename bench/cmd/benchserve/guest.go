package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/lazydisk/lazydisk/bench/benchreg"
	"github.com/lazydisk/lazydisk/bench/benchutil"
)

// runGuest is (f) and (g): the guest view of a compressed qcow2.
func runGuest(ctx context.Context, cfg config) error {
	for _, t := range []string{"qemu-img", "qemu-io", "qemu-nbd", "nbdcopy"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s is missing: apt-get install qemu-utils libnbd-bin", t)
		}
	}
	fi, err := os.Stat(cfg.guest)
	if err != nil {
		return err
	}
	virtual, err := virtualSize(ctx, cfg.guest)
	if err != nil {
		return err
	}
	if virtual < 1<<30 {
		return fmt.Errorf("%s: virtual size %d; (f) and (g) want a guest disk of at least 1 GiB", cfg.guest, virtual)
	}
	raw := filepath.Join(cfg.work, "benchserve-guest.raw")
	if _, err := tool(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", cfg.guest, raw); err != nil {
		return err
	}
	defer os.Remove(raw)
	rawSum, err := benchreg.FileSHA256(raw)
	if err != nil {
		return err
	}
	rawFile, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer rawFile.Close()
	offs, err := dataOffsets(ctx, cfg.guest, cfg.reads, cfg.seed)
	if err != nil {
		return err
	}

	host, stopReg, err := benchreg.Start(cfg.work)
	if err != nil {
		return err
	}
	defer stopReg()
	b := &bench{cfg: cfg, size: virtual}
	if b.refs, err = benchreg.Push(ctx, "benchserve", cfg.guest, cfg.work, host); err != nil {
		return err
	}
	if b.blobURL, err = benchreg.BlobURL(ctx, b.refs["gzip"]); err != nil {
		return err
	}
	gzipLayer, err := benchreg.Layer(ctx, b.refs["gzip"])
	if err != nil {
		return err
	}

	fmt.Println("## The guest view of a compressed qcow2 (`make bench`, bench/cmd/benchserve -guest)")
	fmt.Println()
	benchutil.PrintMachine(os.Stdout)
	fmt.Printf("Disk: %s, a compressed qcow2 (`qemu-img convert -c`, deflate, 64 KiB clusters) of %s bytes, guest disk %s; its gzip layer %s; registry: distribution v3 in-process on 127.0.0.1.\n\n",
		filepath.Base(cfg.guest), benchutil.Commas(fi.Size()), benchutil.HumanBytes(float64(virtual)), benchutil.HumanBytes(float64(gzipLayer.Size)))

	missed := false
	fmt.Printf("(f) The guest's disk into a raw file (sha256 checked against `qemu-img convert -O raw` of the qcow2), from starting the server to the file written, median of %d:\n\n", cfg.runs)
	fmt.Println("| format | serve + `qemu-img convert -f qcow2 -O raw` | server CPU | qemu-img CPU | serve --guest + `nbdcopy` | server CPU | nbdcopy CPU | ratio (goal >= 1.0x) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range lazyServers {
		file, err := b.timed(ctx, "(f) qemu-img convert", s, rawSum, func(uri, out string) (time.Duration, error) {
			return tool(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", uri, out)
		})
		if err != nil {
			return err
		}
		s.guest = true
		guest, err := b.timed(ctx, "(f) nbdcopy", s, rawSum, func(uri, out string) (time.Duration, error) {
			return tool(ctx, "nbdcopy", uri, out)
		})
		if err != nil {
			return err
		}
		ratio := file.time.Seconds() / guest.time.Seconds()
		missed = missed || ratio < 1
		fmt.Printf("| %s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2fx %s |\n", s.format, file.time.Seconds(), file.cpu.Seconds(), file.clientCPU.Seconds(),
			guest.time.Seconds(), guest.cpu.Seconds(), guest.clientCPU.Seconds(), ratio, benchutil.Mark(ratio >= 1))
	}
	fmt.Println()

	fmt.Printf("(g) The first 4 KiB guest read at a random offset with data (`qemu-io -r -f raw -c 'read -v OFF 4k'`, checked against the raw disk), from starting to the bytes, median of %d; the downloaded copy is the gzip layer fetched from the registry and unpacked, then `qemu-nbd -r -f qcow2` on it:\n\n", len(offs))
	fmt.Println("| server | first read | ratio (goal >= 50x) |")
	fmt.Println("|---|---:|---:|")
	want := make([]byte, 4096)
	var base []time.Duration
	for i, off := range offs {
		if _, err := rawFile.ReadAt(want, off); err != nil {
			return err
		}
		t, err := b.downloadedRead(ctx, off, want)
		if err != nil {
			return err
		}
		base = append(base, t)
		fmt.Fprintf(os.Stderr, "benchserve: (g) download + qemu-nbd, read %d at %d: %s\n", i+1, off, t.Round(time.Millisecond))
	}
	baseT := benchreg.Median(base)
	fmt.Printf("| download + unpack + qemu-nbd | %.2f s | 1x |\n", baseT.Seconds())
	for _, s := range lazyServers {
		s.guest = true
		var times []time.Duration
		for i, off := range offs {
			if _, err := rawFile.ReadAt(want, off); err != nil {
				return err
			}
			start := time.Now()
			p, err := b.start(ctx, s)
			if err != nil {
				return err
			}
			got, err := qemuRead(ctx, p.uri, off, 4096)
			took := time.Since(start)
			if _, serr := p.stop(); err == nil {
				err = serr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("%s: the 4 KiB at guest offset %d differ from the raw disk's", s, off)
			}
			times = append(times, took)
			fmt.Fprintf(os.Stderr, "benchserve: (g) %s, read %d at %d: %s\n", s, i+1, off, took.Round(time.Millisecond))
		}
		t := benchreg.Median(times)
		ratio := baseT.Seconds() / t.Seconds()
		missed = missed || ratio < 50
		fmt.Printf("| %s | %.1f ms | %.0fx %s |\n", s, t.Seconds()*1000, ratio, benchutil.Mark(ratio >= 50))
	}
	fmt.Println()
	if missed {
		return benchutil.ErrGoalMissed
	}
	return nil
}

// dataOffsets picks n 4 KiB-aligned guest offsets at random inside the
// data extents qemu-img map reports, so that each read needs a compressed
// cluster.
func dataOffsets(ctx context.Context, qcow string, n int, seed uint64) ([]int64, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "map", "--output=json", "-f", "qcow2", qcow).Output()
	if err != nil {
		return nil, fmt.Errorf("qemu-img map %s: %w", qcow, err)
	}
	var m []struct {
		Start, Length int64
		Data          bool
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, err
	}
	var blocks []int64 // 4 KiB blocks wholly in data
	for _, e := range m {
		if !e.Data {
			continue
		}
		for o := (e.Start + 4095) / 4096 * 4096; o+4096 <= e.Start+e.Length && len(blocks) < 1<<22; o += 4096 {
			blocks = append(blocks, o)
		}
	}
	if len(blocks) == 0 {
		return nil, errors.New(qcow + " has no data")
	}
	rng := rand.New(rand.NewPCG(seed, 4096))
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = blocks[rng.IntN(len(blocks))]
	}
	return offs, nil
}

// downloadedRead times the baseline of (g): fetch the gzip layer, unpack
// the disk, serve it with qemu-nbd and read 4 KiB at off.
func (b *bench) downloadedRead(ctx context.Context, off int64, want []byte) (time.Duration, error) {
	dir, err := os.MkdirTemp(b.cfg.work, "dl-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if dir, err = filepath.Abs(dir); err != nil { // qemu-nbd wants an absolute socket path
		return 0, err
	}
	start := time.Now()
	disk := filepath.Join(dir, "disk.qcow2")
	if err := fetchDisk(ctx, b.blobURL, disk); err != nil {
		return 0, err
	}
	sock, pid := filepath.Join(dir, "s"), filepath.Join(dir, "pid")
	// --fork returns once the socket accepts connections; without
	// --persistent qemu-nbd exits when the client disconnects.
	if _, err := tool(ctx, "qemu-nbd", "-r", "-f", "qcow2", "-k", sock, "--fork", "--pid-file", pid, disk); err != nil {
		return 0, err
	}
	got, err := qemuRead(ctx, "nbd+unix:///?socket="+sock, off, 4096)
	took := time.Since(start)
	if p, perr := os.ReadFile(pid); perr == nil {
		if n, aerr := strconv.Atoi(strings.TrimSpace(string(p))); aerr == nil {
			if proc, ferr := os.FindProcess(n); ferr == nil {
				proc.Kill() // it has normally exited already
			}
		}
	}
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(got, want) {
		return 0, fmt.Errorf("qemu-nbd: the 4 KiB at guest offset %d differ from the raw disk's", off)
	}
	return took, nil
}

// fetchDisk downloads the gzip layer at url and writes its disk entry to path.
func fetchDisk(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			return fmt.Errorf("no %s in the layer: %w", benchreg.DiskPath, err)
		}
		if h.Name != benchreg.DiskPath {
			continue
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}
