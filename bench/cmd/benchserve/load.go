package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lazydisk/lazydisk/bench/benchreg"
	"github.com/lazydisk/lazydisk/bench/benchutil"
)

// runLoad is (e): -clients NBD clients, each on its own connection, doing
// random 4 KiB reads one after the other for -duration against one
// `lazydisk serve` per format, every read checked against the file. It
// reports reads/s, the latency percentiles, errors, the server's peak RSS
// (VmHWM) and its CPU time per read.
func runLoad(ctx context.Context, cfg config) error {
	f, err := os.Open(cfg.disk)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	host, stopReg, err := benchreg.Start(cfg.work)
	if err != nil {
		return err
	}
	defer stopReg()
	b := &bench{cfg: cfg, size: fi.Size(), disk: f}
	if b.refs, err = benchreg.Push(ctx, "benchserve", cfg.disk, cfg.work, host); err != nil {
		return err
	}

	fmt.Println("## Serving many clients (`make bench`, bench/cmd/benchserve -load)")
	fmt.Println()
	benchutil.PrintMachine(os.Stdout)
	fmt.Printf("Disk: %s, %s bytes; registry: distribution v3 in-process on 127.0.0.1. `lazydisk serve REF --listen unix://SOCKET` with its defaults (--memory a quarter of the machine's, at most 2 GiB; 64 MiB cache; 64 connections).\n\n",
		filepath.Base(cfg.disk), benchutil.Commas(b.size))
	fmt.Printf("(e) %d NBD clients, one connection each (fixed newstyle, simple replies), each reading 4 KiB at a random 4 KiB-aligned offset, one read after the other, for %s; every read checked against the file. Latency is from sending the request to having the reply; CPU is the server's user + system time:\n\n", cfg.clients, cfg.duration)
	fmt.Println("| format | reads | reads/s | p50 | p99 | max | errors | server peak RSS | server CPU | CPU per read | chunks fetched |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range lazyServers {
		p, err := b.start(ctx, s)
		if err != nil {
			return err
		}
		sock := strings.TrimPrefix(p.uri, "nbd+unix:///?socket=")
		peak := make(chan int64, 1)
		stopPeak := make(chan struct{})
		go func() {
			var hwm int64
			for {
				if v := vmField(p.cmd.Process.Pid, "VmHWM:"); v > hwm {
					hwm = v
				}
				select {
				case <-stopPeak:
					peak <- hwm
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		res := loadClients(ctx, sock, f, b.size, cfg)
		close(stopPeak)
		hwm := <-peak
		st, err := p.stop()
		if err != nil {
			return err
		}
		lat := res.latencies
		slices.Sort(lat)
		pct := func(q float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(len(lat)-1, int(q*float64(len(lat))))]
		}
		n := int64(len(lat))
		perRead := time.Duration(0)
		if n > 0 {
			perRead = st.cpu / time.Duration(n)
		}
		fmt.Printf("| %s | %s | %s | %.2f ms | %.2f ms | %.1f ms | %d | %s | %.1f s | %.1f µs | %s |\n", s.format,
			benchutil.Commas(n), benchutil.Commas(int64(float64(n)/cfg.duration.Seconds())),
			ms(pct(0.50)), ms(pct(0.99)), ms(pct(1)), res.errors.Load()+st.NBD.Errors,
			benchutil.HumanBytes(float64(hwm)), st.cpu.Seconds(), float64(perRead.Nanoseconds())/1000, benchutil.Commas(st.ChunksFetched))
		if res.firstErr != nil {
			fmt.Fprintf(os.Stderr, "benchserve: (e) %s: first client error: %v\n", s.format, res.firstErr)
		}
		if st.NBD.Errors > 0 {
			fmt.Fprintf(os.Stderr, "benchserve: (e) %s: the server's log:\n%s", s.format, &p.stderr)
		}
	}
	fmt.Println()
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// vmField returns a VmXXX: field of /proc/PID/status in bytes, or 0.
func vmField(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

type loadResult struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    atomic.Int64
	firstErr  error
}

func (r *loadResult) fail(err error) {
	r.errors.Add(1)
	r.mu.Lock()
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.mu.Unlock()
}

// loadClients runs cfg.clients clients on sock for cfg.duration.
func loadClients(ctx context.Context, sock string, want io.ReaderAt, size int64, cfg config) *loadResult {
	res := &loadResult{}
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range cfg.clients {
		wg.Go(func() {
			lat, err := loadClient(ctx, sock, want, size, cfg.seed+uint64(i), res)
			res.mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.mu.Unlock()
			if err != nil {
				res.fail(err)
			}
		})
	}
	wg.Wait()
	return res
}

// loadClient is one client: it connects, then reads until ctx is done.
func loadClient(ctx context.Context, sock string, want io.ReaderAt, size int64, seed uint64, res *loadResult) ([]time.Duration, error) {
	nc, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	// At the end of the run, the read in flight is finished and the client
	// says goodbye: a read abandoned half-way would still be answered, or
	// fail when the server stops, and count as an error.
	nc.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(nc)
	var greeting [18]byte
	if _, err := io.ReadFull(r, greeting[:]); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	hs := binary.BigEndian.AppendUint32(nil, 3) // fixed newstyle, no zeroes
	hs = binary.BigEndian.AppendUint64(hs, 0x49484156454F5054)
	hs = binary.BigEndian.AppendUint32(hs, 1) // NBD_OPT_EXPORT_NAME ""
	hs = binary.BigEndian.AppendUint32(hs, 0)
	if _, err := nc.Write(hs); err != nil {
		return nil, err
	}
	var export [10]byte
	if _, err := io.ReadFull(r, export[:]); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	rng := rand.New(rand.NewPCG(seed, 4096))
	got, exp := make([]byte, 4096), make([]byte, 4096)
	var lat []time.Duration
	for cookie := uint64(1); ctx.Err() == nil; cookie++ {
		off := rng.Int64N(size/4096) * 4096
		req := binary.BigEndian.AppendUint32(nil, 0x25609513)
		req = binary.BigEndian.AppendUint32(req, 0) // flags, NBD_CMD_READ
		req = binary.BigEndian.AppendUint64(req, cookie)
		req = binary.BigEndian.AppendUint64(req, uint64(off))
		req = binary.BigEndian.AppendUint32(req, 4096)
		start := time.Now()
		nc.SetDeadline(start.Add(time.Minute))
		if _, err := nc.Write(req); err != nil {
			return lat, err
		}
		var h [16]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return lat, err
		}
		if errno := binary.BigEndian.Uint32(h[4:8]); errno != 0 || binary.BigEndian.Uint64(h[8:]) != cookie {
			return lat, fmt.Errorf("read at %d: errno %d, cookie %d", off, errno, binary.BigEndian.Uint64(h[8:]))
		}
		if _, err := io.ReadFull(r, got); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(start))
		if _, err := want.ReadAt(exp, off); err != nil {
			return lat, err
		}
		if !bytes.Equal(got, exp) {
			res.fail(fmt.Errorf("read at %d: the bytes differ from the file", off))
		}
	}
	// Say goodbye, so the server counts no error.
	disc := binary.BigEndian.AppendUint32(nil, 0x25609513)
	disc = binary.BigEndian.AppendUint32(disc, 2) // NBD_CMD_DISC
	disc = append(disc, make([]byte, 20)...)
	nc.SetDeadline(time.Now().Add(time.Second))
	nc.Write(disc)
	return lat, nil
}
