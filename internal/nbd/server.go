package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// DefaultMaxRequest is the default largest read a client may ask for in
	// one request, and the maximum block size the server advertises: 32 MiB,
	// the largest request the spec says clients should send.
	DefaultMaxRequest = 32 << 20
	// DefaultMaxInFlight is the default number of requests of one connection
	// the server handles at once.
	DefaultMaxInFlight = 16
	// DefaultMaxConns is the default number of connections open at once.
	DefaultMaxConns = 64
	// DefaultHandshakeTimeout is the default time a client has from
	// connecting to entering the transmission phase: 10 s. Real clients
	// take milliseconds.
	DefaultHandshakeTimeout = 10 * time.Second
	// logInterval is the least time between two log lines of one kind
	// about connections refused, evicted or failing their handshake; the
	// next line says how many were left out.
	logInterval = time.Second
	// DefaultBlockSize is the default preferred block size of an export.
	DefaultBlockSize = 4096
	// DefaultReplyTimeout is the default time a client has to take in one
	// reply (32 MiB at most) before the server gives up on it.
	DefaultReplyTimeout = time.Minute
	// DefaultConnMemory is the default bound on the read buffers of one
	// connection's requests in flight, without WithMemory: 64 MiB.
	DefaultConnMemory = 64 << 20
	// MinConnMemory is the least WithMemory may leave each connection:
	// 64 KiB, the smallest piece a reply is read and sent in.
	MinConnMemory = 64 << 10
	// replyPiece is the most a read reads from its backend before sending
	// it: a larger reply is read and sent in pieces, one piece buffer at a
	// time, so that its memory does not grow with the request.
	replyPiece = 1 << 20
)

// Backend is what an export serves: its bytes and its size.
//
// ReadAt follows io.ReaderAt and may be called concurrently, from several
// connections at once; the server never reads outside [0, Size). A Backend
// whose reads need a context binds it when it is made. Serve waits for the
// ReadAt calls in flight before it returns, so they should end once that
// context is done. *io.SectionReader and *bytes.Reader are Backends.
type Backend interface {
	io.ReaderAt
	// Size is the export's size in bytes. It must not change while the
	// export is served.
	Size() int64
}

// Extenter is an optional capability of a Backend, found by type assertion:
// it reports which ranges read as zeros without being stored, such as the
// zero chunks of a lazily fetched disk. The server reports those ranges as
// holes to NBD_CMD_BLOCK_STATUS (base:allocation) and answers reads of them
// without calling ReadAt.
type Extenter interface {
	// Extents returns consecutive extents that start at off and cover
	// [off, off+length), or a prefix of it: it may stop early, and the server
	// asks again for the rest or treats it as data. Extents past
	// off+length are ignored; an extent's Length must be positive. It may
	// be called concurrently.
	Extents(off, length int64) ([]Extent, error)
}

// Extent is a run of bytes of an export.
type Extent struct {
	// Length is the extent's length in bytes.
	Length int64
	// Zero says the extent reads as zeros and is not stored: it is reported
	// as NBD_STATE_HOLE|NBD_STATE_ZERO.
	Zero bool
}

// Export is one disk the server offers.
type Export struct {
	// Name is what clients ask for. A client asking for the empty name gets
	// the export named "" if there is one, otherwise the first export.
	Name string
	// Description is shown to people, for instance by nbdinfo --list.
	Description string
	// Backend holds the export's bytes.
	Backend Backend
	// BlockSize is the preferred block size advertised to clients that ask
	// (NBD_INFO_BLOCK_SIZE): the size and alignment of efficient reads,
	// such as the backend's chunk size. It must be a power of two from 512
	// to the maximum request size. The default is DefaultBlockSize (4096).
	// The minimum block size is always 1: any offset and length are served.
	BlockSize int
}

// Option configures a Server.
type Option func(*options) error

type options struct {
	log              *slog.Logger
	maxRequest       int
	maxInFlight      int
	maxConns         int
	handshakeTimeout time.Duration
	replyTimeout     time.Duration
	memory           int64
}

// WithLogger sets where the server logs connections, protocol violations
// and backend errors. The default discards them.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.log = l
		}
		return nil
	}
}

// WithMaxRequest sets the largest read a client may ask for in one request,
// from 64 KiB to 1 GiB; larger reads fail with EINVAL, and a connection
// sending a larger write is closed. It is advertised as the maximum block
// size. The default is DefaultMaxRequest (32 MiB).
func WithMaxRequest(n int) Option {
	return func(o *options) error {
		if n < 64<<10 || n > 1<<30 {
			return fmt.Errorf("%w: maximum request %d is out of range: use 64 KiB to 1 GiB", ErrInvalidOption, n)
		}
		o.maxRequest = n
		return nil
	}
}

// WithMaxInFlight sets how many requests of one connection are handled at
// once, from 1 to 1024. Whatever it is, the read buffers of one connection's
// requests in flight total at most its share of WithMemory (64 MiB by
// default). The default is DefaultMaxInFlight (16).
func WithMaxInFlight(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 1024 {
			return fmt.Errorf("%w: requests in flight %d is out of range: use 1 to 1024", ErrInvalidOption, n)
		}
		o.maxInFlight = n
		return nil
	}
}

// WithMemory bounds the read buffers of all connections together to n
// bytes: each of the WithMaxConns connections may hold n/WithMaxConns bytes
// of replies being read or sent, which must be at least MinConnMemory
// (64 KiB). A reply larger than its connection's share, or than 1 MiB, is
// read from the backend and sent in pieces. A connection whose client does
// not take its replies holds its share and no more: the server stops reading
// its requests until the client reads (or the reply timeout closes it), and
// other connections are not affected. The default is DefaultConnMemory
// (64 MiB) per connection.
func WithMemory(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("%w: memory must be positive, got %d", ErrInvalidOption, n)
		}
		o.memory = n
		return nil
	}
}

// WithMaxConns sets how many connections may be open at once. When a
// client connects while that many are open, the server makes room by
// closing the connection idle the longest: one still in its handshake, or
// one in transmission with no request being answered. If every connection
// is busy, it closes the new one. The default is DefaultMaxConns (64).
func WithMaxConns(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: maximum connections must be at least 1, got %d", ErrInvalidOption, n)
		}
		o.maxConns = n
		return nil
	}
}

// WithHandshakeTimeout sets how long a client has from connecting to
// entering the transmission phase, so that a silent client cannot hold a
// connection. The default is DefaultHandshakeTimeout (10 s).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: handshake timeout must be positive, got %s", ErrInvalidOption, d)
		}
		o.handshakeTimeout = d
		return nil
	}
}

// WithReplyTimeout sets how long a client has to take in one reply. A
// client that stops reading replies is disconnected after it, so that it
// cannot hold its connection's requests in flight forever; an idle client
// is never disconnected. The default is DefaultReplyTimeout (1 minute).
func WithReplyTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: reply timeout must be positive, got %s", ErrInvalidOption, d)
		}
		o.replyTimeout = d
		return nil
	}
}

// Server serves exports over NBD. Its methods may be called concurrently;
// Serve may run on several listeners at once.
type Server struct {
	exports []Export
	byName  map[string]*Export
	def     *Export
	opts    options
	// budget bounds the read buffers of one connection's requests in
	// flight, and piece is the most one of them reads at once.
	budget, piece int64
	bufs          sync.Pool // of *[]byte of piece bytes

	mu     sync.Mutex
	conns  map[*conn]struct{} // connections open now, evicted ones left out
	lastID atomic.Int64       // numbers connections in the log
	stats  counters
	logs   [numLogKinds]rateLimit
}

// New returns a server of exports, which must have distinct names.
func New(exports []Export, opts ...Option) (*Server, error) {
	o := options{
		log:              slog.New(slog.DiscardHandler),
		maxRequest:       DefaultMaxRequest,
		maxInFlight:      DefaultMaxInFlight,
		maxConns:         DefaultMaxConns,
		handshakeTimeout: DefaultHandshakeTimeout,
		replyTimeout:     DefaultReplyTimeout,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if len(exports) == 0 {
		return nil, fmt.Errorf("%w: no exports to serve", ErrInvalidExport)
	}
	s := &Server{
		exports: append([]Export(nil), exports...),
		byName:  make(map[string]*Export, len(exports)),
		opts:    o,
		budget:  DefaultConnMemory,
		conns:   map[*conn]struct{}{},
	}
	if o.memory > 0 {
		s.budget = o.memory / int64(o.maxConns)
		if s.budget < MinConnMemory {
			return nil, fmt.Errorf("%w: memory %d leaves %d bytes to each of %d connections, less than %d", ErrInvalidOption, o.memory, s.budget, o.maxConns, MinConnMemory)
		}
	}
	s.piece = min(s.budget, replyPiece)
	for i := range s.exports {
		e := &s.exports[i]
		if err := checkExport(e, o.maxRequest); err != nil {
			return nil, fmt.Errorf("%w: export %q: %w", ErrInvalidExport, e.Name, err)
		}
		if _, dup := s.byName[e.Name]; dup {
			return nil, fmt.Errorf("%w: two exports are named %q", ErrInvalidExport, e.Name)
		}
		s.byName[e.Name] = e
	}
	s.def = s.byName[""]
	if s.def == nil {
		s.def = &s.exports[0]
	}
	return s, nil
}

// checkExport validates e and fills in its defaults.
func checkExport(e *Export, maxRequest int) error {
	if e.Backend == nil {
		return errors.New("it has no backend")
	}
	if size := e.Backend.Size(); size < 0 {
		return fmt.Errorf("its size %d is negative", size)
	}
	if err := checkString(e.Name); err != nil {
		return fmt.Errorf("its name %w", err)
	}
	if err := checkString(e.Description); err != nil {
		return fmt.Errorf("its description %w", err)
	}
	if e.BlockSize == 0 {
		e.BlockSize = DefaultBlockSize
	}
	if e.BlockSize < 512 || e.BlockSize > maxRequest || bits.OnesCount(uint(e.BlockSize)) != 1 {
		return fmt.Errorf("its block size %d is not a power of two from 512 to the maximum request (%d)", e.BlockSize, maxRequest)
	}
	return nil
}

// checkString reports whether s is a string the protocol can carry.
func checkString(s string) error {
	if len(s) > maxString {
		return fmt.Errorf("is %d bytes long, more than %d", len(s), maxString)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("contains a NUL byte")
	}
	return nil
}

// lookup returns the export a client asks for by name, or nil.
func (s *Server) lookup(name string) *Export {
	if name == "" {
		return s.def
	}
	return s.byName[name]
}

// Serve accepts connections on ln and serves them until ctx is done or
// Accept fails with an error other than running out of file descriptors.
// It then closes ln and every connection it accepted, waits for their
// handlers (including backend calls in flight) to return, and returns: nil
// when ctx ended it, the Accept error otherwise.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	var wg sync.WaitGroup
	err := s.accept(ctx, ln, &wg)
	cancel()
	stop()
	ln.Close()
	wg.Wait()
	return err
}

func (s *Server) accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !retryable(err) {
				return fmt.Errorf("accepting nbd connections on %s: %w", ln.Addr(), err)
			}
			// Out of file descriptors or buffers: wait for connections to
			// end, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.opts.log.Warn("accepting nbd connections", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		s.stats.connections.Add(1)
		c := s.newConn(nc)
		if !s.admit(c) {
			s.stats.refused.Add(1)
			if n, ok := s.logs[logRefused].allow(); ok {
				s.opts.log.Warn("refusing nbd connection: every connection is busy", "remote", nc.RemoteAddr().String(), "max", s.opts.maxConns, "refused_since_last_line", n)
			}
			nc.Close()
			continue
		}
		wg.Go(func() {
			defer s.leave(c)
			s.serveConn(ctx, c)
		})
	}
}

// admit counts c as open, closing the connection idle the longest to make
// room if the maximum is reached, and reports whether it did: not when
// every open connection is busy.
func (s *Server) admit(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= s.opts.maxConns {
		var victim *conn
		var since int64
		for o := range s.conns {
			if t, idle := o.idleSince(); idle && (victim == nil || t < since) {
				victim, since = o, t
			}
		}
		if victim == nil {
			return false
		}
		delete(s.conns, victim)
		victim.nc.Close()
		s.stats.evicted.Add(1)
		if n, ok := s.logs[logEvicted].allow(); ok {
			s.opts.log.Warn("closing the idlest nbd connection to admit a new one", "closed", victim.nc.RemoteAddr().String(),
				"idle", time.Since(time.Unix(0, since)).Round(time.Millisecond), "max", s.opts.maxConns, "closed_since_last_line", n)
		}
	}
	s.conns[c] = struct{}{}
	return true
}

// leave forgets c once its handler has returned.
func (s *Server) leave(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Kinds of rate-limited log lines.
const (
	logRefused = iota
	logEvicted
	logHandshake
	numLogKinds
)

// rateLimit lets one log line of a kind through per logInterval and counts
// the others.
type rateLimit struct {
	mu      sync.Mutex
	last    time.Time
	dropped int64
}

// allow reports whether a line may be logged now and, if so, how many
// were left out since the last one.
func (r *rateLimit) allow() (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.last) >= logInterval {
		n := r.dropped
		r.last, r.dropped = now, 0
		return n, true
	}
	r.dropped++
	return 0, false
}

func retryable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// Stats counts what a Server has done since New.
type Stats struct {
	// Connections counts connections accepted, refused ones included.
	Connections int64 `json:"connections"`
	// Active is how many connections are open now.
	Active int64 `json:"active"`
	// Refused counts connections closed at once because the maximum number
	// of connections was open, all of them busy.
	Refused int64 `json:"refused"`
	// Evicted counts idle connections closed to admit a new one when the
	// maximum number of connections was open.
	Evicted int64 `json:"evicted"`
	// HandshakeFailures counts connections that ended before the
	// transmission phase other than by NBD_OPT_ABORT: a protocol violation,
	// an unknown name in NBD_OPT_EXPORT_NAME, the handshake timeout, or the
	// client hanging up.
	HandshakeFailures int64 `json:"handshakeFailures"`
	// Reads, BlockStatus and Flushes count requests of each kind.
	Reads       int64 `json:"reads"`
	BlockStatus int64 `json:"blockStatus"`
	Flushes     int64 `json:"flushes"`
	// Writes counts NBD_CMD_WRITE, NBD_CMD_TRIM and NBD_CMD_WRITE_ZEROES
	// requests, all refused with EPERM.
	Writes int64 `json:"writes"`
	// Unknown counts requests of commands the server does not know.
	Unknown int64 `json:"unknown"`
	// Errors counts requests answered with an error: invalid requests,
	// writes, and requests whose backend call failed.
	Errors int64 `json:"errors"`
	// BackendErrors counts failed ReadAt and Extents calls.
	BackendErrors int64 `json:"backendErrors"`
	// BytesRead counts bytes that reads got from backends' ReadAt.
	BytesRead int64 `json:"bytesRead"`
	// ZeroBytes counts bytes of reads answered as zeros without calling
	// ReadAt, because an Extenter reported them as zero.
	ZeroBytes int64 `json:"zeroBytes"`
}

type counters struct {
	connections, refused, handshakeFailures atomic.Int64
	evicted                                 atomic.Int64
	reads, blockStatus, flushes, writes     atomic.Int64
	unknown, errors, backendErrors          atomic.Int64
	bytesRead, zeroBytes                    atomic.Int64
}

func (s *Server) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Stats returns what the server has done so far.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Connections:       c.connections.Load(),
		Active:            int64(s.active()),
		Refused:           c.refused.Load(),
		Evicted:           c.evicted.Load(),
		HandshakeFailures: c.handshakeFailures.Load(),
		Reads:             c.reads.Load(),
		BlockStatus:       c.blockStatus.Load(),
		Flushes:           c.flushes.Load(),
		Writes:            c.writes.Load(),
		Unknown:           c.unknown.Load(),
		Errors:            c.errors.Load(),
		BackendErrors:     c.backendErrors.Load(),
		BytesRead:         c.bytesRead.Load(),
		ZeroBytes:         c.zeroBytes.Load(),
	}
}
