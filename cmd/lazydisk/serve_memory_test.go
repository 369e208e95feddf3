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
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// nbdConn is a minimal NBD client: fixed newstyle, NBD_OPT_EXPORT_NAME,
// simple replies. It is all a client needs to ask for large reads.
type nbdConn struct {
	net.Conn
	r *bufio.Reader
}

func nbdDial(t *testing.T, sock string) *nbdConn {
	t.Helper()
	nc, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &nbdConn{Conn: nc, r: bufio.NewReader(nc)}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var greeting [18]byte
	if _, err := io.ReadFull(c.r, greeting[:]); err != nil {
		t.Fatalf("reading the greeting: %v", err)
	}
	msg := binary.BigEndian.AppendUint32(nil, 3) // fixed newstyle, no zeroes
	msg = binary.BigEndian.AppendUint64(msg, 0x49484156454F5054)
	msg = binary.BigEndian.AppendUint32(msg, 1) // NBD_OPT_EXPORT_NAME, ""
	msg = binary.BigEndian.AppendUint32(msg, 0)
	if _, err := nc.Write(msg); err != nil {
		t.Fatal(err)
	}
	var export [10]byte
	if _, err := io.ReadFull(c.r, export[:]); err != nil {
		t.Fatalf("reading the export: %v", err)
	}
	nc.SetDeadline(time.Time{})
	return c
}

// request sends NBD_CMD_READ of n bytes at off.
func (c *nbdConn) request(cookie, off uint64, n uint32) error {
	h := binary.BigEndian.AppendUint32(nil, 0x25609513)
	h = binary.BigEndian.AppendUint32(h, 0) // flags, NBD_CMD_READ
	h = binary.BigEndian.AppendUint64(h, cookie)
	h = binary.BigEndian.AppendUint64(h, off)
	h = binary.BigEndian.AppendUint32(h, n)
	_, err := c.Write(h)
	return err
}

// read reads n bytes at off, waiting for the reply at most d.
func (c *nbdConn) read(off uint64, n uint32, d time.Duration) ([]byte, error) {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if err := c.request(off, off, n); err != nil {
		return nil, err
	}
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return nil, err
	}
	if errno := binary.BigEndian.Uint32(h[4:8]); errno != 0 || binary.BigEndian.Uint64(h[8:]) != off {
		return nil, fmt.Errorf("reply %x: errno %d", h, errno)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(c.r, b)
	return b, err
}

// procMemory returns a process's VmRSS and VmHWM in bytes.
func procMemory(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		for name, v := range map[string]*int64{"VmRSS:": &rss, "VmHWM:": &hwm} {
			if rest, ok := strings.CutPrefix(line, name); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				*v = kb << 10
			}
		}
	}
	return rss, hwm
}

// TestServeMemoryBudget runs serve as a process with --memory 256M while 16
// connections each ask for 32 reads of 32 MiB and never read the replies:
// the server stops reading their requests instead of buffering them, stays
// within its budget, and answers another client meanwhile.
func TestServeMemoryBudget(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes the RSS of a race-built process no measure of its budget; make test runs it without -race")
	}
	t.Parallel()
	reg := testregistry.Start(t)
	dir := t.TempDir()
	const size = 40 << 20
	path, _ := diskFile(t, dir, "vm.img", size, 22)
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ref := "docker://" + reg.Host + "/serve/memory:1"
	mustCLI(t, "convert", "--estargz", "disk:"+path, ref)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := socketIn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const budget = 256 << 20
	cmd := exec.CommandContext(ctx, self, "serve", ref, "--listen", "unix://"+sock, "--memory", "256M")
	cmd.Env = offlineEnv(t, execAsLazydisk+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() || !readyLine.MatchString(lines.Text()) {
		t.Fatalf("serve printed %q, not the ready line", lines.Text())
	}
	go io.Copy(io.Discard, stderr)
	pid := cmd.Process.Pid

	var hogs []*nbdConn
	for i := range 16 {
		c := nbdDial(t, sock)
		for j := range 32 {
			if err := c.request(uint64(i*32+j), 0, 32<<20); err != nil {
				t.Fatalf("connection %d, request %d: %v", i, j, err)
			}
		}
		hogs = append(hogs, c)
	}
	// Another client is served meanwhile, exactly.
	normal := nbdDial(t, sock)
	r := rand.New(rand.NewPCG(22, 2))
	var peak int64
	for i := range 50 {
		off := uint64(r.Int64N(size/4096)) * 4096
		got, err := normal.read(off, 4096, 20*time.Second)
		if err != nil {
			t.Fatalf("read %d at %d while the other connections do not read their replies: %v", i, off, err)
		}
		if !bytes.Equal(got, want[off:off+4096]) {
			t.Fatalf("read %d at %d: wrong bytes", i, off)
		}
		rss, _ := procMemory(t, pid)
		peak = max(peak, rss)
		time.Sleep(20 * time.Millisecond)
	}
	_, hwm := procMemory(t, pid)
	for _, c := range hogs {
		c.Close()
	}
	time.Sleep(3 * time.Second)
	after, _ := procMemory(t, pid)
	t.Logf("serve --memory 256M with 16 connections not reading 32 x 32 MiB replies: VmHWM %d MiB, VmRSS %d MiB at most while a client read, %d MiB 3 s after they closed", hwm>>20, peak>>20, after>>20)
	if hwm >= budget {
		t.Errorf("serve's peak RSS is %d MiB, over its --memory of 256 MiB", hwm>>20)
	}
	if _, err := normal.read(0, 4096, 20*time.Second); err != nil {
		t.Errorf("read after the other connections closed: %v", err)
	}
}

func TestPlanMemory(t *testing.T) {
	t.Parallel()
	p, err := planMemory(256<<20, 64<<20, false, 8, 64)
	if err != nil || p.cache != 64<<20 || p.replies != 256<<20-64<<20-64<<20-memoryOverhead {
		t.Errorf("256 MiB: %+v, %v", p, err)
	}
	// The default cache shrinks to a quarter of a small budget.
	if p, err := planMemory(200<<20, 64<<20, false, 8, 64); err != nil || p.cache != 50<<20 {
		t.Errorf("200 MiB: %+v, %v", p, err)
	}
	// A cache the user asked for is kept, and must fit.
	if _, err := planMemory(128<<20, 64<<20, true, 8, 64); err == nil || !strings.Contains(err.Error(), "give it at least 164.0 MiB") {
		t.Errorf("128 MiB with a 64 MiB cache: %v", err)
	}
	if m := defaultMemory(); m < minDefaultMemory || m > maxDefaultMemory {
		t.Errorf("default memory %d", m)
	}
}
