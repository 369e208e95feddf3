package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxOptionLen bounds the data of one option. The longest valid one is a
	// meta context request naming a 4 KiB export with a few 4 KiB queries.
	maxOptionLen = 64 << 10
	// maxOptions bounds the options of one handshake.
	maxOptions = 128
)

// conn is one client connection.
type conn struct {
	srv *Server
	nc  net.Conn
	r   *bufio.Reader
	log *slog.Logger

	wmu sync.Mutex // serialises replies
	// broken is set once a reply failed and the connection was closed.
	broken atomic.Bool
	// busy counts requests read and not yet answered; last is when the
	// connection last started or finished one (UnixNano), or connected;
	// transmitting is set once the handshake is done.
	busy         atomic.Int64
	last         atomic.Int64
	transmitting atomic.Bool
}

// idleSince reports whether c may be closed to make room for another
// connection, and since when it has been idle: in its handshake, or in
// transmission with no request being answered.
func (c *conn) idleSince() (int64, bool) {
	if c.transmitting.Load() && c.busy.Load() > 0 {
		return 0, false
	}
	return c.last.Load(), true
}

// touch records activity on c.
func (c *conn) touch() { c.last.Store(time.Now().UnixNano()) }

// session is what the handshake agreed for the transmission phase.
type session struct {
	export      *Export
	size        int64
	structured  bool // NBD_OPT_STRUCTURED_REPLY was acknowledged
	blockStatus bool // base:allocation was selected for this export
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		srv: s,
		nc:  nc,
		r:   bufio.NewReaderSize(nc, 64<<10),
		log: s.opts.log.With("conn", s.lastID.Add(1), "remote", nc.RemoteAddr().String()),
	}
	c.touch()
	return c
}

func (s *Server) serveConn(ctx context.Context, c *conn) {
	nc := c.nc
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	defer nc.Close()

	c.log.Debug("nbd connection opened")
	sess, err := c.handshake()
	if err != nil {
		s.stats.handshakeFailures.Add(1)
		if ctx.Err() == nil {
			if n, ok := s.logs[logHandshake].allow(); ok {
				c.log.Warn("nbd handshake failed", "err", err, "failed_since_last_line", n)
			}
		}
		return
	}
	if sess == nil {
		c.log.Debug("nbd client aborted the handshake")
		return
	}
	c.touch()
	c.transmitting.Store(true)
	c.log = c.log.With("export", sess.export.Name)
	c.log.Debug("nbd transmission started", "structured_replies", sess.structured, "block_status", sess.blockStatus)
	if err := c.transmit(ctx, sess); err != nil && ctx.Err() == nil {
		c.log.Warn("nbd connection ended", "err", err)
		return
	}
	c.log.Debug("nbd connection closed")
}

// negotiation is the state option haggling builds up.
type negotiation struct {
	noZeroes   bool
	structured bool
	// metaExport is the export base:allocation was selected for by the last
	// NBD_OPT_SET_META_CONTEXT, or nil.
	metaExport *Export
}

// handshake runs the fixed newstyle handshake. It returns the session to
// serve, nil if the client sent NBD_OPT_ABORT, or an error if the
// connection must be closed.
func (c *conn) handshake() (*session, error) {
	if err := c.nc.SetDeadline(time.Now().Add(c.srv.opts.handshakeTimeout)); err != nil {
		return nil, fmt.Errorf("setting the handshake deadline: %w", err)
	}
	greeting := make([]byte, 0, 18)
	greeting = binary.BigEndian.AppendUint64(greeting, nbdMagic)
	greeting = binary.BigEndian.AppendUint64(greeting, optMagic)
	greeting = binary.BigEndian.AppendUint16(greeting, flagFixedNewstyle|flagNoZeroes)
	if _, err := c.nc.Write(greeting); err != nil {
		return nil, fmt.Errorf("sending the greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.r, cf[:]); err != nil {
		return nil, fmt.Errorf("reading client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^(clientFixedNewstyle|clientNoZeroes) != 0 {
		return nil, fmt.Errorf("%w: unknown client flags %#x", errProtocol, flags)
	}
	if flags&clientFixedNewstyle == 0 {
		return nil, fmt.Errorf("%w: client does not speak fixed newstyle", errProtocol)
	}
	st := negotiation{noZeroes: flags&clientNoZeroes != 0}

	for range maxOptions {
		var h [16]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return nil, fmt.Errorf("reading an option: %w", err)
		}
		if m := binary.BigEndian.Uint64(h[:8]); m != optMagic {
			return nil, fmt.Errorf("%w: option magic %#x", errProtocol, m)
		}
		opt := binary.BigEndian.Uint32(h[8:12])
		length := binary.BigEndian.Uint32(h[12:16])
		if length > maxOptionLen {
			if opt != optExportName {
				// Best effort: the connection closes without reading the data.
				_ = c.optReply(opt, repErrTooBig, []byte("option data too long"))
			}
			return nil, fmt.Errorf("%w: option %d has %d bytes of data, more than %d", errProtocol, opt, length, maxOptionLen)
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(c.r, data); err != nil {
			return nil, fmt.Errorf("reading the data of option %d: %w", opt, err)
		}
		sess, done, err := c.option(&st, opt, data)
		if err != nil {
			return nil, fmt.Errorf("answering option %d: %w", opt, err)
		}
		if done {
			if sess != nil {
				if err := c.nc.SetDeadline(time.Time{}); err != nil {
					return nil, fmt.Errorf("clearing the handshake deadline: %w", err)
				}
			}
			return sess, nil
		}
	}
	return nil, fmt.Errorf("%w: more than %d options", errProtocol, maxOptions)
}

// option answers one option. done says the handshake is over: the
// transmission phase starts with sess, or the client aborted (sess nil).
func (c *conn) option(st *negotiation, opt uint32, data []byte) (sess *session, done bool, err error) {
	switch opt {
	case optExportName:
		e := c.srv.lookup(string(data))
		if e == nil {
			// NBD_OPT_EXPORT_NAME cannot fail: the spec says to close.
			return nil, false, fmt.Errorf("client asked for export %q, which does not exist", data)
		}
		sess := st.session(e)
		b := make([]byte, 0, 10+124)
		b = binary.BigEndian.AppendUint64(b, uint64(sess.size))
		b = binary.BigEndian.AppendUint16(b, sess.flags())
		if !st.noZeroes {
			b = append(b, make([]byte, 124)...)
		}
		if _, err := c.nc.Write(b); err != nil {
			return nil, false, err
		}
		return sess, true, nil

	case optAbort:
		// The client may hang up without reading the ack.
		_ = c.optReply(opt, repAck, nil)
		return nil, true, nil

	case optList:
		if len(data) != 0 {
			return nil, false, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
		}
		for i := range c.srv.exports {
			e := &c.srv.exports[i]
			b := binary.BigEndian.AppendUint32(nil, uint32(len(e.Name)))
			b = append(b, e.Name...)
			b = append(b, e.Description...)
			if err := c.optReply(opt, repServer, b); err != nil {
				return nil, false, err
			}
		}
		return nil, false, c.optReply(opt, repAck, nil)

	case optInfo, optGo:
		return c.infoOrGo(st, opt, data)

	case optStructuredReply:
		if len(data) != 0 {
			return nil, false, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_STRUCTURED_REPLY takes no data"))
		}
		st.structured = true
		return nil, false, c.optReply(opt, repAck, nil)

	case optListMetaContext, optSetMetaContext:
		return nil, false, c.metaContext(st, opt, data)

	default:
		// NBD_OPT_STARTTLS, NBD_OPT_EXTENDED_HEADERS and anything newer.
		return nil, false, c.optReply(opt, repErrUnsup, fmt.Appendf(nil, "option %d is not supported", opt))
	}
}

// session returns the session the negotiation gives export e.
func (st *negotiation) session(e *Export) *session {
	return &session{
		export:      e,
		size:        e.Backend.Size(),
		structured:  st.structured,
		blockStatus: st.structured && st.metaExport == e,
	}
}

// flags returns the transmission flags of the session.
func (s *session) flags() uint16 {
	f := tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagCanMultiConn
	if s.structured {
		f |= tflagSendDF
	}
	return f
}

// infoOrGo answers NBD_OPT_INFO and NBD_OPT_GO, whose data is a 32-bit name
// length, the name, a 16-bit count and that many 16-bit NBD_INFO_* requests.
func (c *conn) infoOrGo(st *negotiation, opt uint32, data []byte) (*session, bool, error) {
	p := newParser(data)
	name := p.string32()
	n := p.uint16()
	if !p.ok || len(p.b) != 2*int(n) {
		return nil, false, c.optReply(opt, repErrInvalid, []byte("malformed info request"))
	}
	reqs := make([]uint16, n)
	for i := range reqs {
		reqs[i] = p.uint16()
	}
	if !p.ok {
		return nil, false, c.optReply(opt, repErrInvalid, []byte("malformed info request"))
	}
	e := c.srv.lookup(name)
	if e == nil {
		return nil, false, c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export is named %q", name))
	}
	sess := st.session(e)
	info := binary.BigEndian.AppendUint16(nil, infoExport)
	info = binary.BigEndian.AppendUint64(info, uint64(sess.size))
	info = binary.BigEndian.AppendUint16(info, sess.flags())
	if err := c.optReply(opt, repInfo, info); err != nil {
		return nil, false, err
	}
	for _, r := range reqs {
		var b []byte
		switch r {
		case infoName:
			b = append(binary.BigEndian.AppendUint16(nil, infoName), e.Name...)
		case infoDescription:
			if e.Description == "" {
				continue
			}
			b = append(binary.BigEndian.AppendUint16(nil, infoDescription), e.Description...)
		case infoBlockSize:
			b = binary.BigEndian.AppendUint16(nil, infoBlockSize)
			b = binary.BigEndian.AppendUint32(b, 1)
			b = binary.BigEndian.AppendUint32(b, uint32(e.BlockSize))
			b = binary.BigEndian.AppendUint32(b, uint32(c.srv.opts.maxRequest))
		default:
			continue // the spec says to ignore unknown requests
		}
		if err := c.optReply(opt, repInfo, b); err != nil {
			return nil, false, err
		}
	}
	if err := c.optReply(opt, repAck, nil); err != nil {
		return nil, false, err
	}
	if opt == optGo {
		return sess, true, nil
	}
	return nil, false, nil
}

// metaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT, whose data is a 32-bit export name length, the
// name, a 32-bit query count and that many (32-bit length, query) pairs.
// base:allocation is the one context: "base:allocation" selects or lists
// it, "base:" lists it, and a listing with no queries lists it.
func (c *conn) metaContext(st *negotiation, opt uint32, data []byte) error {
	set := opt == optSetMetaContext
	if set {
		// A failed NBD_OPT_SET_META_CONTEXT still clears the selection.
		st.metaExport = nil
	}
	p := newParser(data)
	name := p.string32()
	n := p.uint32()
	if p.ok && uint64(n) > uint64(len(p.b)/4) {
		p.ok = false
	}
	match := !set && n == 0
	for range n {
		if !p.ok {
			break
		}
		switch q := p.string32(); {
		case q == metaBaseAllocation:
			match = true
		case q == metaBaseNamespace && !set:
			match = true
		}
	}
	if !p.ok || len(p.b) != 0 {
		return c.optReply(opt, repErrInvalid, []byte("malformed meta context request"))
	}
	if set && !st.structured {
		return c.optReply(opt, repErrInvalid, []byte("NBD_OPT_SET_META_CONTEXT needs structured replies first"))
	}
	e := c.srv.lookup(name)
	if e == nil {
		return c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export is named %q", name))
	}
	if match {
		var id uint32 // the spec says listings carry ID 0
		if set {
			id = metaBaseAllocationID
			st.metaExport = e
		}
		b := append(binary.BigEndian.AppendUint32(nil, id), metaBaseAllocation...)
		if err := c.optReply(opt, repMetaContext, b); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}

// optReply sends one option reply.
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := make([]byte, 0, 20+len(data))
	b = binary.BigEndian.AppendUint64(b, repMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	_, err := c.nc.Write(b)
	return err
}

// parser reads big-endian fields of option data; ok turns false, and stays
// so, once a field runs past the end.
type parser struct {
	b  []byte
	ok bool
}

func newParser(b []byte) *parser { return &parser{b: b, ok: true} }

func (p *parser) take(n uint64) []byte {
	if !p.ok || uint64(len(p.b)) < n {
		p.ok = false
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) uint16() uint16 {
	if b := p.take(2); p.ok {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (p *parser) uint32() uint32 {
	if b := p.take(4); p.ok {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// string32 reads a 32-bit length and that many bytes.
func (p *parser) string32() string {
	n := p.uint32()
	return string(p.take(uint64(n)))
}
