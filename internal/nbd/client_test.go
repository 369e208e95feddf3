package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// This file is a minimal NBD client for the tests, written from the spec
// rather than from the server, and strict: a reply that breaks the spec is
// an error.

// startServer serves exports on a unix socket until the test ends, and
// fails the test if Serve does not return promptly then.
func startServer(t *testing.T, exports []Export, opts ...Option) (*Server, string) {
	t.Helper()
	s, err := New(exports, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	return s, serveOn(t, s, ln)
}

// serveOn runs s.Serve on ln until the test ends; it returns the address.
func serveOn(t *testing.T, s *Server, ln net.Listener) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return 10 s after its context was cancelled")
		}
	})
	return ln.Addr().String()
}

// socketPath returns a path for a unix socket, short enough for sun_path.
func socketPath(t *testing.T) string {
	dir := t.TempDir()
	if len(dir) > 80 {
		var err error
		if dir, err = os.MkdirTemp("", "nbd"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return filepath.Join(dir, "nbd.sock")
}

type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
	// set by the handshake
	size       int64
	tflags     uint16
	structured bool
	cookie     uint64
}

// dial connects; every read and write must finish within 10 s.
func dial(t *testing.T, addr string) *client {
	t.Helper()
	network := "unix"
	if _, _, err := net.SplitHostPort(addr); err == nil {
		network = "tcp"
	}
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) write(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// greet reads the server's greeting and sends client flags.
func (c *client) greet(flags uint32) error {
	var g [18]byte
	if _, err := io.ReadFull(c.r, g[:]); err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if binary.BigEndian.Uint64(g[0:]) != nbdMagic || binary.BigEndian.Uint64(g[8:]) != optMagic {
		return fmt.Errorf("bad greeting % x", g)
	}
	if hf := binary.BigEndian.Uint16(g[16:]); hf != flagFixedNewstyle|flagNoZeroes {
		return fmt.Errorf("handshake flags %#x", hf)
	}
	return c.write(binary.BigEndian.AppendUint32(nil, flags))
}

func (c *client) sendOption(opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, optMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return c.write(append(b, data...))
}

type optReply struct {
	typ  uint32
	data []byte
}

func (c *client) readOptReply(opt uint32) (optReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return optReply{}, fmt.Errorf("reading an option reply: %w", err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != repMagic {
		return optReply{}, fmt.Errorf("option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		return optReply{}, fmt.Errorf("reply to option %d, want %d", o, opt)
	}
	r := optReply{typ: binary.BigEndian.Uint32(h[12:]), data: make([]byte, binary.BigEndian.Uint32(h[16:]))}
	if _, err := io.ReadFull(c.r, r.data); err != nil {
		return optReply{}, fmt.Errorf("reading option reply data: %w", err)
	}
	return r, nil
}

// option sends an option and reads its replies up to the final one (an ack
// or an error).
func (c *client) option(opt uint32, data []byte) ([]optReply, error) {
	if err := c.sendOption(opt, data); err != nil {
		return nil, err
	}
	var rs []optReply
	for {
		r, err := c.readOptReply(opt)
		if err != nil {
			return rs, err
		}
		rs = append(rs, r)
		if r.typ == repAck || r.typ&(1<<31) != 0 {
			return rs, nil
		}
	}
}

// mustAck sends an option that must succeed with exactly an ack.
func (c *client) mustAck(opt uint32, data []byte) {
	c.t.Helper()
	rs, err := c.option(opt, data)
	if err != nil || len(rs) != 1 || rs[0].typ != repAck {
		c.t.Fatalf("option %d: replies %+v, err %v; want one ack", opt, rs, err)
	}
}

func infoData(name string, reqs ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reqs)))
	for _, r := range reqs {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

func metaData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// info is what NBD_REP_INFO replies said.
type info struct {
	size                        int64
	tflags                      uint16
	name, description           *string
	minBlock, prefBlock, maxBlk uint32
}

// parseInfo checks the replies of a successful NBD_OPT_INFO or NBD_OPT_GO.
func parseInfo(rs []optReply) (info, error) {
	var in info
	seenExport := false
	for i, r := range rs {
		if i == len(rs)-1 {
			if r.typ != repAck {
				return in, fmt.Errorf("final reply type %#x, want ack", r.typ)
			}
			break
		}
		if r.typ != repInfo || len(r.data) < 2 {
			return in, fmt.Errorf("reply %d: type %#x, %d bytes; want NBD_REP_INFO", i, r.typ, len(r.data))
		}
		d := r.data[2:]
		switch binary.BigEndian.Uint16(r.data) {
		case infoExport:
			if len(d) != 10 {
				return in, fmt.Errorf("NBD_INFO_EXPORT of %d bytes", len(d))
			}
			seenExport = true
			in.size = int64(binary.BigEndian.Uint64(d))
			in.tflags = binary.BigEndian.Uint16(d[8:])
		case infoName:
			s := string(d)
			in.name = &s
		case infoDescription:
			s := string(d)
			in.description = &s
		case infoBlockSize:
			if len(d) != 12 {
				return in, fmt.Errorf("NBD_INFO_BLOCK_SIZE of %d bytes", len(d))
			}
			in.minBlock = binary.BigEndian.Uint32(d)
			in.prefBlock = binary.BigEndian.Uint32(d[4:])
			in.maxBlk = binary.BigEndian.Uint32(d[8:])
		default:
			return in, fmt.Errorf("unrequested info type %d", binary.BigEndian.Uint16(r.data))
		}
	}
	if !seenExport {
		return in, errors.New("no NBD_INFO_EXPORT before the ack")
	}
	return in, nil
}

// connect runs a whole handshake with NBD_OPT_GO: structured replies and
// base:allocation if asked for.
func connect(t *testing.T, addr, name string, structured, meta bool) *client {
	t.Helper()
	c := dial(t, addr)
	if err := c.greet(clientFixedNewstyle | clientNoZeroes); err != nil {
		t.Fatal(err)
	}
	if structured {
		c.mustAck(optStructuredReply, nil)
	}
	if meta {
		rs, err := c.option(optSetMetaContext, metaData(name, metaBaseAllocation))
		if err != nil || len(rs) != 2 || rs[0].typ != repMetaContext || rs[1].typ != repAck {
			t.Fatalf("NBD_OPT_SET_META_CONTEXT: %+v, %v", rs, err)
		}
		if id := binary.BigEndian.Uint32(rs[0].data); id != metaBaseAllocationID || string(rs[0].data[4:]) != metaBaseAllocation {
			t.Fatalf("meta context reply %d %q", id, rs[0].data[4:])
		}
	}
	rs, err := c.option(optGo, infoData(name))
	if err != nil {
		t.Fatal(err)
	}
	in, err := parseInfo(rs)
	if err != nil {
		t.Fatalf("NBD_OPT_GO: %v", err)
	}
	c.size, c.tflags, c.structured = in.size, in.tflags, structured
	return c
}

// req is a request as the client sent it.
type req struct {
	typ, flags uint16
	off        uint64
	length     uint32
	cookie     uint64
}

// send sends a request (with payload for a write) and returns it.
func (c *client) send(typ, flags uint16, off uint64, length uint32, payload []byte) (req, error) {
	c.cookie++
	r := req{typ: typ, flags: flags, off: off, length: length, cookie: c.cookie*7919 + 1}
	b := binary.BigEndian.AppendUint32(nil, reqMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, r.cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return r, c.write(append(b, payload...))
}

// reply is a whole reply to one request.
type reply struct {
	errno   uint32
	msg     string // of a structured error
	data    []byte // a read's bytes, holes filled with zeros
	chunks  []uint16
	holes   int // OFFSET_HOLE chunks
	descs   [][2]uint32
	ctxID   uint32
	simple  bool
	covered int64
	spans   [][2]uint64 // content chunks: offset, length
}

// replies reads replies until every request in reqs has its whole reply,
// checking each against the spec. Replies may come in any order.
func (c *client) replies(reqs ...req) (map[uint64]*reply, error) {
	pending := make(map[uint64]req, len(reqs))
	for _, r := range reqs {
		pending[r.cookie] = r
	}
	got := make(map[uint64]*reply)
	for len(pending) > 0 {
		var m [4]byte
		if _, err := io.ReadFull(c.r, m[:]); err != nil {
			return got, fmt.Errorf("reading a reply: %w", err)
		}
		switch magic := binary.BigEndian.Uint32(m[:]); magic {
		case simpleReplyMagic:
			var h [12]byte
			if _, err := io.ReadFull(c.r, h[:]); err != nil {
				return got, err
			}
			cookie := binary.BigEndian.Uint64(h[4:])
			q, ok := pending[cookie]
			if !ok {
				return got, fmt.Errorf("simple reply to unknown cookie %d", cookie)
			}
			if c.structured && q.typ == cmdRead {
				return got, errors.New("simple reply to a read after structured replies were negotiated")
			}
			rep := &reply{simple: true, errno: binary.BigEndian.Uint32(h[:])}
			if q.typ == cmdRead && rep.errno == 0 {
				rep.data = make([]byte, q.length)
				if _, err := io.ReadFull(c.r, rep.data); err != nil {
					return got, err
				}
			}
			got[cookie] = rep
			delete(pending, cookie)

		case structuredReplyMagic:
			if !c.structured {
				return got, errors.New("structured reply without negotiation")
			}
			var h [16]byte
			if _, err := io.ReadFull(c.r, h[:]); err != nil {
				return got, err
			}
			flags, typ := binary.BigEndian.Uint16(h[0:]), binary.BigEndian.Uint16(h[2:])
			cookie := binary.BigEndian.Uint64(h[4:])
			payload := make([]byte, binary.BigEndian.Uint32(h[12:]))
			if _, err := io.ReadFull(c.r, payload); err != nil {
				return got, err
			}
			q, ok := pending[cookie]
			if !ok {
				return got, fmt.Errorf("chunk for unknown cookie %d", cookie)
			}
			rep := got[cookie]
			if rep == nil {
				rep = &reply{}
				if q.typ == cmdRead {
					rep.data = make([]byte, q.length)
				}
				got[cookie] = rep
			}
			if err := rep.chunk(q, typ, payload); err != nil {
				return got, fmt.Errorf("cookie %d: %w", cookie, err)
			}
			if flags&^replyFlagDone != 0 {
				return got, fmt.Errorf("chunk flags %#x", flags)
			}
			if flags&replyFlagDone != 0 {
				if rep.errno == 0 && q.typ == cmdRead && rep.covered != int64(q.length) {
					return got, fmt.Errorf("read reply covers %d of %d bytes", rep.covered, q.length)
				}
				if rep.errno == 0 && q.typ == cmdBlockStatus && len(rep.descs) == 0 {
					return got, errors.New("block status reply without descriptors")
				}
				delete(pending, cookie)
			}
		default:
			return got, fmt.Errorf("reply magic %#x", magic)
		}
	}
	return got, nil
}

// chunk adds one structured chunk to the reply to q.
func (rep *reply) chunk(q req, typ uint16, p []byte) error {
	rep.chunks = append(rep.chunks, typ)
	inRange := func(off uint64, n uint64) error {
		if n == 0 || off < q.off || off+n > q.off+uint64(q.length) {
			return fmt.Errorf("chunk [%d, +%d) outside the request [%d, +%d)", off, n, q.off, q.length)
		}
		for _, s := range rep.spans {
			if off < s[0]+s[1] && s[0] < off+n {
				return fmt.Errorf("chunk [%d, +%d) overlaps chunk [%d, +%d)", off, n, s[0], s[1])
			}
		}
		rep.spans = append(rep.spans, [2]uint64{off, n})
		rep.covered += int64(n)
		return nil
	}
	switch typ {
	case replyTypeOffsetData:
		if q.typ != cmdRead || len(p) < 9 {
			return fmt.Errorf("OFFSET_DATA of %d bytes for command %d", len(p), q.typ)
		}
		off := binary.BigEndian.Uint64(p)
		if err := inRange(off, uint64(len(p)-8)); err != nil {
			return err
		}
		copy(rep.data[off-q.off:], p[8:])
	case replyTypeOffsetHole:
		if q.typ != cmdRead || len(p) != 12 {
			return fmt.Errorf("OFFSET_HOLE of %d bytes for command %d", len(p), q.typ)
		}
		rep.holes++
		if err := inRange(binary.BigEndian.Uint64(p), uint64(binary.BigEndian.Uint32(p[8:]))); err != nil {
			return err
		}
	case replyTypeBlockStatus:
		if q.typ != cmdBlockStatus || len(p) < 12 || (len(p)-4)%8 != 0 || rep.descs != nil {
			return fmt.Errorf("BLOCK_STATUS of %d bytes for command %d", len(p), q.typ)
		}
		rep.ctxID = binary.BigEndian.Uint32(p)
		for p = p[4:]; len(p) > 0; p = p[8:] {
			if binary.BigEndian.Uint32(p) == 0 {
				return errors.New("zero-length block status descriptor")
			}
			rep.descs = append(rep.descs, [2]uint32{binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])})
		}
	case replyTypeError:
		if len(p) < 6 || int(binary.BigEndian.Uint16(p[4:])) > len(p)-6 {
			return fmt.Errorf("ERROR chunk of %d bytes", len(p))
		}
		rep.errno = binary.BigEndian.Uint32(p)
		if rep.errno == 0 {
			return errors.New("error chunk with error 0")
		}
		rep.msg = string(p[6 : 6+binary.BigEndian.Uint16(p[4:])])
	default:
		return fmt.Errorf("unexpected chunk type %d", typ)
	}
	return nil
}

// do sends one request and returns its reply.
func (c *client) do(typ, flags uint16, off uint64, length uint32, payload []byte) (*reply, error) {
	q, err := c.send(typ, flags, off, length, payload)
	if err != nil {
		return nil, err
	}
	got, err := c.replies(q)
	if err != nil {
		return nil, err
	}
	return got[q.cookie], nil
}

// expectClosed checks that the server closes the connection (without
// sending anything more than skip bytes).
func (c *client) expectClosed(skip int) error {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("waiting for the server to close: %w (after %d bytes)", err, len(b))
	}
	if len(b) > skip {
		return fmt.Errorf("server sent %d bytes before closing, want at most %d", len(b), skip)
	}
	return nil
}
