package nbd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultPort is the NBD port IANA assigned: 10809.
const DefaultPort = 10809

// Address is where a server listens: a unix socket or a TCP address.
type Address struct {
	// Network is "unix" or "tcp".
	Network string
	// Addr is the socket's path, absolute, or the TCP HOST:PORT.
	Addr string
}

func (a Address) String() string { return a.Network + "://" + a.Addr }

// ParseAddress parses a listen address: unix://PATH (relative to the
// working directory unless it starts with /, so unix:///run/x.sock is
// /run/x.sock), a bare PATH without ':' (a unix socket too, as qemu-nbd -k
// and nbdkit -U take it), or tcp://HOST:PORT, where PORT may be left out for
// DefaultPort and HOST may be an IP address, [IPv6], or a name.
func ParseAddress(s string) (Address, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case !ok && s != "" && !strings.Contains(s, ":"):
		p, err := filepath.Abs(s)
		if err != nil {
			return Address{}, fmt.Errorf("listen address %q: %w", s, err)
		}
		return Address{Network: "unix", Addr: p}, nil
	case !ok:
	case scheme == "unix":
		if rest == "" {
			return Address{}, fmt.Errorf("listen address %q has no socket path: use unix:///PATH", s)
		}
		p, err := filepath.Abs(rest)
		if err != nil {
			return Address{}, fmt.Errorf("listen address %q: %w", s, err)
		}
		return Address{Network: "unix", Addr: p}, nil
	case scheme == "tcp":
		rest = strings.TrimSuffix(rest, "/")
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			// No port: the NBD port.
			host, port = strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]"), strconv.Itoa(DefaultPort)
			if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
				return Address{}, fmt.Errorf("listen address %q: use tcp://HOST:PORT, with an IPv6 address in brackets", s)
			}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return Address{}, fmt.Errorf("listen address %q: port %q is not a number from 0 to 65535", s, port)
		}
		return Address{Network: "tcp", Addr: net.JoinHostPort(host, port)}, nil
	}
	return Address{}, fmt.Errorf("listen address %q: use unix:///PATH or tcp://HOST:PORT (or a bare PATH without ':')", s)
}

// Loopback reports whether only this machine can reach a: a unix socket, or
// a TCP host that is a loopback address or "localhost". An empty host (all
// addresses) is not loopback, nor is a name that resolves to any address
// that is not.
func (a Address) Loopback() bool {
	if a.Network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// Listen listens on a. For a unix socket, a socket file that nothing
// answers on (left by a server that died) is removed first; one that a
// server answers on, or a file that is not a socket, is an error. Closing
// the listener removes the socket file.
func Listen(a Address) (net.Listener, error) {
	if a.Network != "unix" {
		ln, err := net.Listen(a.Network, a.Addr)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", a, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(a.Addr); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listening on %s: %s exists and is not a socket", a, a.Addr)
		}
		c, err := net.Dial("unix", a.Addr)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("listening on %s: a server is answering on %s: %w", a, a.Addr, ErrAddressInUse)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listening on %s: checking the socket left there: %w", a, err)
		}
		if err := os.Remove(a.Addr); err != nil {
			return nil, fmt.Errorf("listening on %s: removing the stale socket: %w", a, err)
		}
	}
	ln, err := net.Listen("unix", a.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", a, err)
	}
	return ln, nil
}

// URI returns the NBD URI (NetworkBlockDevice/nbd doc/uri.md) of the export
// named export on a listener's address: nbd+unix:///EXPORT?socket=PATH or
// nbd://HOST:PORT/EXPORT. qemu, libnbd's tools and nbdkit take it; the empty
// export name asks for the server's default export.
func URI(addr net.Addr, export string) string {
	path := "/" + escape(export, true)
	switch a := addr.(type) {
	case *net.UnixAddr:
		return "nbd+unix://" + path + "?socket=" + escape(a.Name, false)
	case *net.TCPAddr:
		return "nbd://" + net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port)) + path
	}
	return "nbd://" + addr.String() + path
}

// escape percent-encodes s for a URI's path (keeping "/") or a query value.
func escape(s string, inPath bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~/", c) >= 0:
			b.WriteByte(c)
		case inPath && strings.IndexByte("!$'()*+,;=:@", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
