package nbd

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in       string
		network  string
		addr     string
		loopback bool
		err      string
	}{
		{"unix:///run/disk.sock", "unix", "/run/disk.sock", true, ""},
		{"unix://disk.sock", "unix", filepath.Join(wd, "disk.sock"), true, ""},
		{"tcp://127.0.0.1:10809", "tcp", "127.0.0.1:10809", true, ""},
		{"tcp://127.0.0.1", "tcp", "127.0.0.1:10809", true, ""},
		{"tcp://127.0.0.1:0/", "tcp", "127.0.0.1:0", true, ""},
		{"tcp://[::1]:10810", "tcp", "[::1]:10810", true, ""},
		{"tcp://[::1]", "tcp", "[::1]:10809", true, ""},
		{"tcp://localhost:10809", "tcp", "localhost:10809", true, ""},
		{"tcp://0.0.0.0:10809", "tcp", "0.0.0.0:10809", false, ""},
		{"tcp://:10809", "tcp", ":10809", false, ""},
		{"tcp://192.0.2.1:10809", "tcp", "192.0.2.1:10809", false, ""},
		{"tcp://[2001:db8::1]:10809", "tcp", "[2001:db8::1]:10809", false, ""},
		{"unix://", "", "", false, "no socket path"},
		{"tcp://127.0.0.1:70000", "", "", false, "not a number"},
		{"tcp://127.0.0.1:x", "", "", false, "not a number"},
		{"tcp://::1:10809", "", "", false, "IPv6 address in brackets"},
		{"127.0.0.1:10809", "", "", false, "or tcp://HOST:PORT"},
		{"nbd://127.0.0.1", "", "", false, "or tcp://HOST:PORT"},
		{"/run/disk.sock", "unix", "/run/disk.sock", true, ""},
		{"disk.sock", "unix", filepath.Join(wd, "disk.sock"), true, ""},
		{"/run/a:b.sock", "", "", false, "use unix:///PATH"},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseAddress(%q) = %v, %v; want an error saying %q", tt.in, a, err, tt.err)
			}
			continue
		}
		if err != nil || a.Network != tt.network || a.Addr != tt.addr {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %s %s", tt.in, a, err, tt.network, tt.addr)
			continue
		}
		if got := a.Loopback(); got != tt.loopback {
			t.Errorf("%q: Loopback() = %t", tt.in, got)
		}
	}
}

func TestURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr   net.Addr
		export string
		want   string
	}{
		{&net.UnixAddr{Name: "/run/disk.sock", Net: "unix"}, "", "nbd+unix:///?socket=/run/disk.sock"},
		{&net.UnixAddr{Name: "/tmp/a b&c.sock", Net: "unix"}, "disk/vm.qcow2", "nbd+unix:///disk/vm.qcow2?socket=/tmp/a%20b%26c.sock"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10809}, "", "nbd://127.0.0.1:10809/"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 5000}, "x y", "nbd://[::1]:5000/x%20y"},
	}
	for _, tt := range tests {
		if got := URI(tt.addr, tt.export); got != tt.want {
			t.Errorf("URI(%v, %q) = %q, want %q", tt.addr, tt.export, got, tt.want)
		}
	}
}

// TestListen checks the unix socket cases: a stale socket is replaced, a
// live one or another file is refused, and Close removes the socket.
func TestListen(t *testing.T) {
	t.Parallel()
	dir := filepath.Dir(socketPath(t))

	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	ln, err := Listen(Address{Network: "unix", Addr: stale})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	if _, err := Listen(Address{Network: "unix", Addr: stale}); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("Listen over a live socket: %v; want ErrAddressInUse", err)
	}
	ln.Close()
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("Close left the socket: %v", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Address{Network: "unix", Addr: file}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("Listen touched a regular file")
	}

	ln, err = Listen(Address{Network: "tcp", Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if u := URI(ln.Addr(), ""); !strings.HasPrefix(u, "nbd://127.0.0.1:") {
		t.Errorf("URI of a TCP listener: %q", u)
	}
}
