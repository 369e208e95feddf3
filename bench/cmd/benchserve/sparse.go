package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lazydisk/lazydisk/bench/benchreg"
	"github.com/lazydisk/lazydisk/bench/benchutil"
)

// runSparse is (d): a mostly-zero raw disk, whole, into a raw file, three
// ways, with the time and the output's allocation of each.
func runSparse(ctx context.Context, cfg config) error {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return fmt.Errorf("qemu-img is missing: apt-get install qemu-utils")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(cfg.sparse, &st); err != nil {
		return err
	}
	if st.Size < 20<<30 || st.Blocks*512 >= 1<<30 {
		return fmt.Errorf("%s: %d bytes, %d allocated; (d) wants a raw disk of at least 20 GiB with less than 1 GiB allocated", cfg.sparse, st.Size, st.Blocks*512)
	}
	want, err := benchreg.FileSHA256(cfg.sparse)
	if err != nil {
		return err
	}
	host, stopReg, err := benchreg.Start(cfg.work)
	if err != nil {
		return err
	}
	defer stopReg()
	b := &bench{cfg: cfg, size: st.Size}
	if b.refs, err = benchreg.Push(ctx, "benchserve", cfg.sparse, cfg.work, host); err != nil {
		return err
	}

	fmt.Println("## Sparse output (`make bench`, bench/cmd/benchserve -sparse)")
	fmt.Println()
	benchutil.PrintMachine(os.Stdout)
	fmt.Printf("Disk: %s, a raw file of %s bytes (%s), %s allocated; registry: distribution v3 in-process on 127.0.0.1.\n\n",
		filepath.Base(cfg.sparse), benchutil.Commas(st.Size), benchutil.HumanBytes(float64(st.Size)), benchutil.HumanBytes(float64(st.Blocks*512)))
	fmt.Printf("(d) The whole disk into a new raw file on this machine's ext4 (sha256 checked), from starting the command (and the server) to the file written, median of %d; allocated is the output's `stat` blocks:\n\n", cfg.runs)
	fmt.Println("| format | read --range all (sparse) | allocated | serve + qemu-img convert -O raw | allocated | read --sparse=never (dense, before) | allocated | sparse read vs qemu-img | vs dense |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range lazyServers {
		read := func(sparse string) func(_, out string) (time.Duration, error) {
			return func(_, out string) (time.Duration, error) {
				return tool(ctx, b.cfg.lazydisk, "read", b.refs[s.format], "--range", "all", "--sparse", sparse, "-o", out)
			}
		}
		sparse, err := b.timed(ctx, "(d) read --range all", server{format: s.format}, want, read("auto"))
		if err != nil {
			return err
		}
		qemu, err := b.timed(ctx, "(d) qemu-img convert", s, want, func(uri, out string) (time.Duration, error) {
			return tool(ctx, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out)
		})
		if err != nil {
			return err
		}
		dense, err := b.timed(ctx, "(d) read --sparse=never", server{format: s.format}, want, read("never"))
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %.2f s | %s | %.2f s | %s | %.2f s | %s | %.2fx | %.2fx |\n", s.format,
			sparse.time.Seconds(), benchutil.HumanBytes(float64(sparse.alloc)),
			qemu.time.Seconds(), benchutil.HumanBytes(float64(qemu.alloc)),
			dense.time.Seconds(), benchutil.HumanBytes(float64(dense.alloc)),
			qemu.time.Seconds()/sparse.time.Seconds(), dense.time.Seconds()/sparse.time.Seconds())
	}
	fmt.Println()
	return nil
}
