package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// maxExtents bounds the extents one request takes from an Extenter: past
// it, a read treats the rest as data and a block status reply stops early.
const maxExtents = 1 << 16

// request is a transmission phase request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
}

func parseRequest(h *[reqHeaderLen]byte) (request, error) {
	if m := binary.BigEndian.Uint32(h[0:4]); m != reqMagic {
		return request{}, fmt.Errorf("%w: request magic %#x", errProtocol, m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(h[4:6]),
		typ:    binary.BigEndian.Uint16(h[6:8]),
		cookie: binary.BigEndian.Uint64(h[8:16]),
		off:    binary.BigEndian.Uint64(h[16:24]),
		length: binary.BigEndian.Uint32(h[24:28]),
	}, nil
}

// transmit reads requests until the client sends NBD_CMD_DISC or hangs up,
// or breaks the protocol. Reads and block status queries run concurrently,
// up to the in-flight limits; transmit returns once their replies are sent.
func (c *conn) transmit(ctx context.Context, sess *session) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, c.srv.opts.maxInFlight)
	bufs := semaphore.NewWeighted(c.srv.budget)
	st := &c.srv.stats

	inline := false // the last request was answered inline
	for {
		if inline {
			c.finish()
			inline = false
		}
		if c.broken.Load() {
			// A reply failed: the requests still buffered are not answered.
			return nil
		}
		var h [reqHeaderLen]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				c.log.Debug("nbd client hung up without NBD_CMD_DISC")
				return nil
			}
			return fmt.Errorf("reading a request: %w", err)
		}
		req, err := parseRequest(&h)
		if err != nil {
			c.nc.Close() // hard disconnect: replies in flight are dropped
			return err
		}
		c.busy.Add(1)
		c.touch()
		inline = true
		switch req.typ {
		case cmdDisc:
			c.finish()
			return nil

		case cmdRead:
			st.reads.Add(1)
			if errno, msg := c.checkRead(sess, req); errno != 0 {
				c.replyError(sess, req, errno, msg)
				continue
			}
			// The read's piece buffer is taken here, so that a connection
			// whose replies are not taken stops being read from.
			piece := min(int64(req.length), c.srv.piece)
			if err := bufs.Acquire(ctx, piece); err != nil {
				return err
			}
			slots <- struct{}{}
			inline = false
			wg.Go(func() {
				defer func() { <-slots; bufs.Release(piece); c.finish() }()
				c.read(sess, req, piece)
			})

		case cmdBlockStatus:
			st.blockStatus.Add(1)
			if errno, msg := c.checkBlockStatus(sess, req); errno != 0 {
				c.replyError(sess, req, errno, msg)
				continue
			}
			slots <- struct{}{}
			inline = false
			wg.Go(func() {
				defer func() { <-slots; c.finish() }()
				c.blockStatus(sess, req)
			})

		case cmdFlush:
			// Nothing is ever written, so there is nothing to flush.
			st.flushes.Add(1)
			if req.flags != 0 {
				c.replyError(sess, req, errInvalid, "NBD_CMD_FLUSH takes no flags")
				continue
			}
			c.sendOrClose(simpleReply(req.cookie, 0))

		case cmdWrite:
			st.writes.Add(1)
			if int64(req.length) > int64(c.srv.opts.maxRequest) {
				c.nc.Close()
				return fmt.Errorf("%w: write of %d bytes is larger than the maximum request (%d)", errProtocol, req.length, c.srv.opts.maxRequest)
			}
			if _, err := io.CopyN(io.Discard, c.r, int64(req.length)); err != nil {
				return fmt.Errorf("reading the payload of a write: %w", err)
			}
			c.replyError(sess, req, errPerm, "the export is read-only")

		case cmdTrim, cmdWriteZeroes:
			st.writes.Add(1)
			c.replyError(sess, req, errPerm, "the export is read-only")

		default:
			st.unknown.Add(1)
			c.replyError(sess, req, errInvalid, fmt.Sprintf("unknown command %d", req.typ))
		}
	}
}

// finish records that a request has been answered.
func (c *conn) finish() {
	c.touch()
	c.busy.Add(-1)
}

// checkRange returns EINVAL and why if [off, off+length) is empty or not
// within the export.
func checkRange(sess *session, req request) (uint32, string) {
	if req.length == 0 {
		return errInvalid, "length is zero"
	}
	if req.off > uint64(sess.size) || uint64(req.length) > uint64(sess.size)-req.off {
		return errInvalid, fmt.Sprintf("range [%d, +%d) is past the end of the export (%d bytes)", req.off, req.length, sess.size)
	}
	return 0, ""
}

func (c *conn) checkRead(sess *session, req request) (uint32, string) {
	allowed := uint16(0)
	if sess.structured {
		allowed |= cmdFlagDF
	}
	if req.flags&^allowed != 0 {
		return errInvalid, fmt.Sprintf("invalid read flags %#x", req.flags)
	}
	if int64(req.length) > int64(c.srv.opts.maxRequest) {
		return errInvalid, fmt.Sprintf("read of %d bytes is larger than the maximum request (%d)", req.length, c.srv.opts.maxRequest)
	}
	return checkRange(sess, req)
}

func (c *conn) checkBlockStatus(sess *session, req request) (uint32, string) {
	if !sess.blockStatus {
		return errInvalid, "no metadata context was negotiated for this export"
	}
	if req.flags&^cmdFlagReqOne != 0 {
		return errInvalid, fmt.Sprintf("invalid block status flags %#x", req.flags)
	}
	return checkRange(sess, req)
}

// segment is a run of a read or block status reply: zero bytes, or data.
type segment struct {
	off, length int64
	zero        bool
	data        []byte
}

// read answers a valid NBD_CMD_READ, reading at most piece bytes of the
// backend at a time into one buffer: a reply larger than that is read and
// sent in pieces. The first piece is read before the connection's writer is
// taken, so that small reads run concurrently; the others between writes.
func (c *conn) read(sess *session, req request, piece int64) {
	st := &c.srv.stats
	b := sess.export.Backend
	off, n := int64(req.off), int64(req.length)

	segs := []segment{{off: off, length: n}}
	if ex, ok := b.(Extenter); ok && sess.structured {
		var err error
		if segs, err = extents(ex, off, n, true); err != nil {
			c.backendFailed(sess, req, err)
			return
		}
	}
	var parts []segment
	largest := int64(0)
	for _, s := range segs {
		if s.zero {
			parts = append(parts, s)
			continue
		}
		for p, end := s.off, s.off+s.length; p < end; p += piece {
			l := min(piece, end-p)
			parts = append(parts, segment{off: p, length: l})
			largest = max(largest, l)
		}
	}
	buf := c.srv.getBuf(largest)
	defer c.srv.putBuf(buf)
	first := slices.IndexFunc(parts, func(s segment) bool { return !s.zero })
	if first >= 0 {
		if err := readFull(b, buf[:parts[first].length], parts[first].off); err != nil {
			c.backendFailed(sess, req, err)
			return
		}
	}

	c.wmu.Lock()
	defer c.wmu.Unlock()
	// A simple reply, and a read with NBD_CMD_FLAG_DF that is more than one
	// piece, are one header and then all the data, zeros spelled out: a
	// backend failure after the header can only close the connection.
	if !sess.structured || (req.flags&cmdFlagDF != 0 && len(parts) > 1) {
		var h []byte
		if !sess.structured {
			h = simpleReply(req.cookie, 0)[0]
		} else {
			h = chunkHeader(replyFlagDone, replyTypeOffsetData, req.cookie, uint32(8+n))
			h = binary.BigEndian.AppendUint64(h, uint64(off))
		}
		if !c.sendLocked(net.Buffers{h}) {
			return
		}
		for i, s := range parts {
			if s.zero {
				st.zeroBytes.Add(s.length)
				if !c.sendLocked(zeroBuffers(s.length)) {
					return
				}
				continue
			}
			if i != first {
				if err := readFull(b, buf[:s.length], s.off); err != nil {
					st.backendErrors.Add(1)
					st.errors.Add(1)
					c.log.Error("nbd backend failed after the reply began: closing the connection", "offset", req.off, "length", req.length, "err", err)
					c.nc.Close()
					return
				}
			}
			st.bytesRead.Add(s.length)
			if !c.sendLocked(net.Buffers{buf[:s.length]}) {
				return
			}
		}
		return
	}

	for i, s := range parts {
		var flags uint16
		if i == len(parts)-1 {
			flags = replyFlagDone
		}
		if s.zero {
			st.zeroBytes.Add(s.length)
			h := chunkHeader(flags, replyTypeOffsetHole, req.cookie, 12)
			h = binary.BigEndian.AppendUint64(h, uint64(s.off))
			h = binary.BigEndian.AppendUint32(h, uint32(s.length))
			if !c.sendLocked(net.Buffers{h}) {
				return
			}
			continue
		}
		if i != first {
			if err := readFull(b, buf[:s.length], s.off); err != nil {
				// The chunks sent so far stand; the error chunk ends the
				// reply and fails the read.
				c.sendLocked(c.failReply(sess, req, err))
				return
			}
		}
		st.bytesRead.Add(s.length)
		h := chunkHeader(flags, replyTypeOffsetData, req.cookie, uint32(8+s.length))
		h = binary.BigEndian.AppendUint64(h, uint64(s.off))
		if !c.sendLocked(net.Buffers{h, buf[:s.length]}) {
			return
		}
	}
}

// getBuf returns a buffer of n bytes, at most a piece, for a reply.
func (s *Server) getBuf(n int64) []byte {
	if n == s.piece {
		if b, ok := s.bufs.Get().(*[]byte); ok {
			return *b
		}
	}
	return make([]byte, n)
}

// putBuf gives back a buffer getBuf returned, so that connections reuse
// piece buffers rather than make garbage at the rate they read.
func (s *Server) putBuf(b []byte) {
	if int64(len(b)) == s.piece {
		s.bufs.Put(&b)
	}
}

// zeros is what zeroBuffers sends zeros from.
var zeros [64 << 10]byte

// zeroBuffers returns n zero bytes to send, without allocating them.
func zeroBuffers(n int64) net.Buffers {
	var out net.Buffers
	for ; n > 0; n -= int64(len(zeros)) {
		out = append(out, zeros[:min(n, int64(len(zeros)))])
	}
	return out
}

// blockStatus answers a valid NBD_CMD_BLOCK_STATUS for base:allocation.
func (c *conn) blockStatus(sess *session, req request) {
	off, n := int64(req.off), int64(req.length)
	segs := []segment{{off: off, length: n}}
	if ex, ok := sess.export.Backend.(Extenter); ok {
		var err error
		if segs, err = extents(ex, off, n, false); err != nil {
			c.backendFailed(sess, req, err)
			return
		}
	}
	if req.flags&cmdFlagReqOne != 0 {
		segs = segs[:1]
	}
	h := chunkHeader(replyFlagDone, replyTypeBlockStatus, req.cookie, uint32(4+8*len(segs)))
	h = binary.BigEndian.AppendUint32(h, metaBaseAllocationID)
	for _, s := range segs {
		var flags uint32
		if s.zero {
			flags = stateHole | stateZero
		}
		h = binary.BigEndian.AppendUint32(h, uint32(s.length))
		h = binary.BigEndian.AppendUint32(h, flags)
	}
	c.sendOrClose(net.Buffers{h})
}

// extents returns the extents ex reports for [off, off+n): consecutive,
// within the range, neighbours of one kind merged. Where ex stops early, it
// asks again from there. After maxExtents extents, the rest is reported as
// data if fill is set, or left out; the rest of a range ex reports nothing
// for is reported as data.
func extents(ex Extenter, off, n int64, fill bool) ([]segment, error) {
	end := off + n
	var segs []segment
	pos := off
	for taken := 0; pos < end && taken < maxExtents; {
		es, err := ex.Extents(pos, end-pos)
		if err != nil {
			return nil, fmt.Errorf("asking for the extents of [%d, %d): %w", pos, end, err)
		}
		if len(es) == 0 {
			fill = true
			break
		}
		for _, e := range es {
			if e.Length <= 0 {
				return nil, fmt.Errorf("%w: length %d at offset %d", errBadExtents, e.Length, pos)
			}
			l := min(e.Length, end-pos)
			if k := len(segs) - 1; k >= 0 && segs[k].zero == e.Zero {
				segs[k].length += l
			} else {
				segs = append(segs, segment{off: pos, length: l, zero: e.Zero})
			}
			pos += l
			taken++
			if pos == end || taken == maxExtents {
				break
			}
		}
	}
	if pos < end && (fill || len(segs) == 0) {
		if k := len(segs) - 1; k >= 0 && !segs[k].zero {
			segs[k].length += end - pos
		} else {
			segs = append(segs, segment{off: pos, length: end - pos})
		}
	}
	return segs, nil
}

// readFull reads len(p) bytes at off, or fails.
func readFull(b Backend, p []byte, off int64) error {
	n, err := b.ReadAt(p, off)
	if n == len(p) {
		return nil // io.ReaderAt may return io.EOF with the last bytes
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %d bytes at offset %d: %w", len(p), off, err)
}

// backendFailed logs a failed backend call and answers EIO.
func (c *conn) backendFailed(sess *session, req request, err error) {
	c.sendOrClose(c.failReply(sess, req, err))
}

// failReply logs a failed backend call and returns the EIO reply. The
// client gets no detail of the backend's error, which may name storage it
// should not see.
func (c *conn) failReply(sess *session, req request, err error) net.Buffers {
	c.srv.stats.backendErrors.Add(1)
	c.log.Error("nbd backend failed", "offset", req.off, "length", req.length, "err", err)
	return c.errorReply(sess, req, errIO, fmt.Sprintf("input/output error reading [%d, +%d) of the export", req.off, req.length))
}

// replyError answers req with an error.
func (c *conn) replyError(sess *session, req request, errno uint32, msg string) {
	c.sendOrClose(c.errorReply(sess, req, errno, msg))
}

// errorReply counts and logs a failed request and returns its reply: an
// error chunk with msg when structured replies were negotiated, a simple
// reply otherwise.
func (c *conn) errorReply(sess *session, req request, errno uint32, msg string) net.Buffers {
	c.srv.stats.errors.Add(1)
	c.log.Debug("nbd request failed", "command", req.typ, "offset", req.off, "length", req.length, "errno", errno, "reason", msg)
	if !sess.structured {
		return simpleReply(req.cookie, errno)
	}
	msg = msg[:min(len(msg), maxString)]
	h := chunkHeader(replyFlagDone, replyTypeError, req.cookie, uint32(6+len(msg)))
	h = binary.BigEndian.AppendUint32(h, errno)
	h = binary.BigEndian.AppendUint16(h, uint16(len(msg)))
	h = append(h, msg...)
	return net.Buffers{h}
}

// simpleReply returns a simple reply header.
func simpleReply(cookie uint64, errno uint32) net.Buffers {
	h := make([]byte, 0, simpleReplyLen)
	h = binary.BigEndian.AppendUint32(h, simpleReplyMagic)
	h = binary.BigEndian.AppendUint32(h, errno)
	h = binary.BigEndian.AppendUint64(h, cookie)
	return net.Buffers{h}
}

// chunkHeader returns a structured reply chunk header, with room for a
// short payload.
func chunkHeader(flags, typ uint16, cookie uint64, length uint32) []byte {
	h := make([]byte, 0, chunkHeaderLen+min(length, 64))
	h = binary.BigEndian.AppendUint32(h, structuredReplyMagic)
	h = binary.BigEndian.AppendUint16(h, flags)
	h = binary.BigEndian.AppendUint16(h, typ)
	h = binary.BigEndian.AppendUint64(h, cookie)
	h = binary.BigEndian.AppendUint32(h, length)
	return h
}

// sendOrClose writes one whole reply. Replies never interleave. If the
// write fails, or the client does not take the reply within the reply
// timeout, the client is gone or stuck, so the connection is closed: the
// request loop then ends, and later replies fail at once.
func (c *conn) sendOrClose(b net.Buffers) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.sendLocked(b)
}

// sendLocked writes b, with c.wmu held, as sendOrClose does, and reports
// whether it was sent.
func (c *conn) sendLocked(b net.Buffers) bool {
	err := c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.replyTimeout))
	if err == nil {
		_, err = b.WriteTo(c.nc)
	}
	if err != nil {
		c.log.Debug("nbd reply failed", "err", err)
		c.broken.Store(true)
		c.nc.Close()
		return false
	}
	return true
}
