package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// mapBackend is an in-memory disk whose Extenter reports the extents it was
// made with, at most perCall of them per call so that the server has to ask
// again. zeroReads counts ReadAt calls that touched a zero extent.
type mapBackend struct {
	*io.SectionReader
	extents   []Extent // end to end over the whole disk
	perCall   int
	zeroReads atomic.Int64
}

func (b *mapBackend) Extents(off, length int64) ([]Extent, error) {
	var out []Extent
	pos := int64(0)
	for _, e := range b.extents {
		if pos+e.Length > off && pos < off+length {
			start := max(pos, off)
			// The last extent may run past off+length: the server clips it.
			out = append(out, Extent{Length: pos + e.Length - start, Zero: e.Zero})
			if len(out) == b.perCall {
				break
			}
		}
		pos += e.Length
	}
	return out, nil
}

func (b *mapBackend) ReadAt(p []byte, off int64) (int, error) {
	pos := int64(0)
	for _, e := range b.extents {
		if e.Zero && pos < off+int64(len(p)) && off < pos+e.Length {
			b.zeroReads.Add(1)
		}
		pos += e.Length
	}
	return b.SectionReader.ReadAt(p, off)
}

// newDisk returns size random bytes with the given extents, whose zero ones
// are zeros; the extents must add up to size.
func newDisk(t testing.TB, seed uint64, extents []Extent) ([]byte, *mapBackend) {
	t.Helper()
	var size int64
	for _, e := range extents {
		size += e.Length
	}
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, seed))
	pos := int64(0)
	for _, e := range extents {
		if !e.Zero {
			for i := pos; i < pos+e.Length; i++ {
				data[i] = byte(rng.Uint32()) | 1 // never zero, so data reads cannot pass as holes
			}
		}
		pos += e.Length
	}
	return data, &mapBackend{SectionReader: io.NewSectionReader(bytes.NewReader(data), 0, size), extents: extents, perCall: 3}
}

// testExtents is a disk of 4 MiB + 1000 bytes, with zero runs at the start,
// in the middle (aligned and not) and at the end.
var testExtents = []Extent{
	{Length: 64 << 10, Zero: true},
	{Length: 300 << 10},
	{Length: 1 << 20, Zero: true},
	{Length: 4096},
	{Length: 4096, Zero: true},
	{Length: 1000},
	{Length: 100, Zero: true},
	{Length: 1<<20 + 500},
	{Length: 2<<20 - (64<<10 + 300<<10 + 8192 + 1600) + 1000, Zero: true},
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	b := bytes.NewReader(make([]byte, 4096))
	tests := []struct {
		name    string
		exports []Export
		opts    []Option
		want    error
	}{
		{"no exports", nil, nil, ErrInvalidExport},
		{"no backend", []Export{{Name: "a"}}, nil, ErrInvalidExport},
		{"duplicate name", []Export{{Name: "a", Backend: b}, {Name: "a", Backend: b}}, nil, ErrInvalidExport},
		{"NUL in name", []Export{{Name: "a\x00", Backend: b}}, nil, ErrInvalidExport},
		{"long description", []Export{{Backend: b, Description: string(make([]byte, 5000))}}, nil, ErrInvalidExport},
		{"block size not a power of two", []Export{{Backend: b, BlockSize: 3000}}, nil, ErrInvalidExport},
		{"block size too small", []Export{{Backend: b, BlockSize: 256}}, nil, ErrInvalidExport},
		{"block size over max request", []Export{{Backend: b, BlockSize: 1 << 20}}, []Option{WithMaxRequest(512 << 10)}, ErrInvalidExport},
		{"max request too small", []Export{{Backend: b}}, []Option{WithMaxRequest(4096)}, ErrInvalidOption},
		{"max in flight zero", []Export{{Backend: b}}, []Option{WithMaxInFlight(0)}, ErrInvalidOption},
		{"max conns zero", []Export{{Backend: b}}, []Option{WithMaxConns(0)}, ErrInvalidOption},
		{"handshake timeout zero", []Export{{Backend: b}}, []Option{WithHandshakeTimeout(0)}, ErrInvalidOption},
		{"reply timeout negative", []Export{{Backend: b}}, []Option{WithReplyTimeout(-time.Second)}, ErrInvalidOption},
		{"memory zero", []Export{{Backend: b}}, []Option{WithMemory(0)}, ErrInvalidOption},
		{"memory under 64 KiB a connection", []Export{{Backend: b}}, []Option{WithMemory(MinConnMemory*DefaultMaxConns - 1)}, ErrInvalidOption},
		{"least memory", []Export{{Backend: b}}, []Option{WithMemory(MinConnMemory), WithMaxConns(1)}, nil},
		{"valid", []Export{{Name: "a", Backend: b}, {Name: "b", Backend: b, BlockSize: 65536}}, []Option{WithMaxRequest(1 << 20), WithLogger(nil)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.exports, tt.opts...)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestExportName(t *testing.T) {
	t.Parallel()
	data, b := newDisk(t, 1, testExtents)
	_, addr := startServer(t, []Export{{Name: "disk", Backend: b}})
	for _, tt := range []struct {
		name     string
		flags    uint32
		export   string
		noZeroes bool
	}{
		{"zeroes", clientFixedNewstyle, "disk", false},
		{"no zeroes", clientFixedNewstyle | clientNoZeroes, "disk", true},
		{"default export", clientFixedNewstyle | clientNoZeroes, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, addr)
			if err := c.greet(tt.flags); err != nil {
				t.Fatal(err)
			}
			if err := c.sendOption(optExportName, []byte(tt.export)); err != nil {
				t.Fatal(err)
			}
			var h [10]byte
			if _, err := io.ReadFull(c.r, h[:]); err != nil {
				t.Fatal(err)
			}
			size, flags := binary.BigEndian.Uint64(h[:]), binary.BigEndian.Uint16(h[8:])
			if size != uint64(len(data)) {
				t.Errorf("size %d, want %d", size, len(data))
			}
			want := tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagCanMultiConn
			if flags != want {
				t.Errorf("transmission flags %#x, want %#x (no DF without structured replies)", flags, want)
			}
			// Send a read before looking for the zeroes: with NO_ZEROES the
			// next bytes must be its reply.
			q, err := c.send(cmdRead, 0, 4096, 512, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.noZeroes {
				var z [124]byte
				if _, err := io.ReadFull(c.r, z[:]); err != nil {
					t.Fatal(err)
				}
				if z != [124]byte{} {
					t.Fatalf("reserved bytes are not zero: % x", z)
				}
			}
			got, err := c.replies(q)
			if err != nil {
				t.Fatal(err)
			}
			if r := got[q.cookie]; !r.simple || r.errno != 0 || !bytes.Equal(r.data, data[4096:4608]) {
				t.Fatalf("read after NBD_OPT_EXPORT_NAME: %+v", r)
			}
		})
	}
	t.Run("unknown export closes", func(t *testing.T) {
		t.Parallel()
		c := dial(t, addr)
		if err := c.greet(clientFixedNewstyle); err != nil {
			t.Fatal(err)
		}
		if err := c.sendOption(optExportName, []byte("nope")); err != nil {
			t.Fatal(err)
		}
		if err := c.expectClosed(0); err != nil {
			t.Fatal(err)
		}
	})
}

func TestInfoAndGo(t *testing.T) {
	t.Parallel()
	small := bytes.NewReader(make([]byte, 1<<20))
	_, big := newDisk(t, 2, testExtents)
	_, addr := startServer(t, []Export{
		{Name: "small", Description: "a small disk", Backend: small},
		{Name: "big", Backend: big, BlockSize: 65536},
	}, WithMaxRequest(8<<20))

	c := dial(t, addr)
	if err := c.greet(clientFixedNewstyle | clientNoZeroes); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	for _, tt := range []struct {
		name string
		data []byte
		want info
	}{
		{"export only", infoData("small"), info{size: 1 << 20}},
		{"default is the first export", infoData("", infoName), info{size: 1 << 20, name: str("small")}},
		{"everything", infoData("small", infoName, infoDescription, infoBlockSize, 99),
			info{size: 1 << 20, name: str("small"), description: str("a small disk"), minBlock: 1, prefBlock: 4096, maxBlk: 8 << 20}},
		{"block size of the other export", infoData("big", infoBlockSize, infoDescription),
			info{size: big.Size(), minBlock: 1, prefBlock: 65536, maxBlk: 8 << 20}},
	} {
		rs, err := c.option(optInfo, tt.data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseInfo(rs)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		tt.want.tflags = tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagCanMultiConn
		if g, w := got.String(), tt.want.String(); g != w {
			t.Errorf("%s: info %s, want %s", tt.name, g, w)
		}
	}
	for _, tt := range []struct {
		name string
		opt  uint32
		data []byte
		want uint32
	}{
		{"unknown export", optInfo, infoData("nope"), repErrUnknown},
		{"GO to an unknown export", optGo, infoData("nope"), repErrUnknown},
		{"name longer than the data", optInfo, []byte{0, 0, 0, 9, 'a', 0, 0}, repErrInvalid},
		{"count without requests", optGo, []byte{0, 0, 0, 0, 0, 2, 0, 1}, repErrInvalid},
		{"trailing bytes", optInfo, append(infoData("small"), 0), repErrInvalid},
	} {
		rs, err := c.option(tt.opt, tt.data)
		if err != nil || len(rs) != 1 || rs[0].typ != tt.want {
			t.Errorf("%s: replies %+v, %v; want one %#x", tt.name, rs, err, tt.want)
		}
	}
	// After all that, structured replies then GO: DF is advertised now.
	c.mustAck(optStructuredReply, nil)
	rs, err := c.option(optGo, infoData("big"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := parseInfo(rs)
	if err != nil {
		t.Fatal(err)
	}
	if in.tflags&tflagSendDF == 0 || in.size != big.Size() {
		t.Fatalf("GO: %+v", in)
	}
	c.structured = true
	if r, err := c.do(cmdRead, cmdFlagDF, 0, 4096, nil); err != nil || r.errno != 0 {
		t.Fatalf("read after GO: %+v, %v", r, err)
	}
}

func (in info) String() string {
	deref := func(s *string) string {
		if s == nil {
			return "<none>"
		}
		return fmt.Sprintf("%q", *s)
	}
	return fmt.Sprintf("size %d flags %#x name %s description %s block sizes %d/%d/%d",
		in.size, in.tflags, deref(in.name), deref(in.description), in.minBlock, in.prefBlock, in.maxBlk)
}

func TestListAndAbort(t *testing.T) {
	t.Parallel()
	b := bytes.NewReader(make([]byte, 4096))
	_, addr := startServer(t, []Export{{Name: "one", Description: "first", Backend: b}, {Name: "two", Backend: b}})
	c := dial(t, addr)
	if err := c.greet(clientFixedNewstyle); err != nil {
		t.Fatal(err)
	}
	rs, err := c.option(optList, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs[:len(rs)-1] {
		if r.typ != repServer {
			t.Fatalf("reply type %#x, want NBD_REP_SERVER", r.typ)
		}
		n := binary.BigEndian.Uint32(r.data)
		names = append(names, string(r.data[4:4+n])+"|"+string(r.data[4+n:]))
	}
	if fmt.Sprint(names) != "[one|first two|]" || rs[len(rs)-1].typ != repAck {
		t.Fatalf("NBD_OPT_LIST: %v, final %#x", names, rs[len(rs)-1].typ)
	}
	if rs, err := c.option(optList, []byte("x")); err != nil || len(rs) != 1 || rs[0].typ != repErrInvalid {
		t.Fatalf("NBD_OPT_LIST with data: %+v, %v", rs, err)
	}
	c.mustAck(optAbort, nil)
	if err := c.expectClosed(0); err != nil {
		t.Fatal(err)
	}
}

func TestMetaContext(t *testing.T) {
	t.Parallel()
	_, b := newDisk(t, 3, testExtents)
	s, addr := startServer(t, []Export{{Name: "disk", Backend: b}, {Name: "other", Backend: bytes.NewReader(make([]byte, 8192))}})

	c := dial(t, addr)
	if err := c.greet(clientFixedNewstyle); err != nil {
		t.Fatal(err)
	}
	contexts := func(opt uint32, data []byte) (string, error) {
		rs, err := c.option(opt, data)
		if err != nil {
			return "", err
		}
		out := ""
		for _, r := range rs {
			switch r.typ {
			case repMetaContext:
				out += fmt.Sprintf("%d:%s ", binary.BigEndian.Uint32(r.data), r.data[4:])
			case repAck:
				out += "ack"
			default:
				out += fmt.Sprintf("%#x", r.typ)
			}
		}
		return out, nil
	}
	for _, tt := range []struct {
		name string
		opt  uint32
		data []byte
		want string
	}{
		{"set before structured replies", optSetMetaContext, metaData("disk", metaBaseAllocation), "0x80000003"},
		{"list everything", optListMetaContext, metaData("disk"), "0:base:allocation ack"},
		{"list base:", optListMetaContext, metaData("", "base:"), "0:base:allocation ack"},
		{"list another namespace", optListMetaContext, metaData("disk", "qemu:dirty-bitmap:x", "base:nope"), "ack"},
		{"list an unknown export", optListMetaContext, metaData("nope"), "0x80000006"},
		{"list with a bad query count", optListMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 5}, "0x80000003"},
		{"list with a query past the end", optListMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 'b'}, "0x80000003"},
	} {
		got, err := contexts(tt.opt, tt.data)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	c.mustAck(optStructuredReply, nil)
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"set", metaData("disk", metaBaseAllocation), "1:base:allocation ack"},
		{"set base: selects nothing", metaData("disk", "base:"), "ack"},
		{"set an unknown export", metaData("nope", metaBaseAllocation), "0x80000006"},
		{"set for the other export", metaData("other", "x-foo:bar", metaBaseAllocation), "1:base:allocation ack"},
	} {
		got, err := contexts(optSetMetaContext, tt.data)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	// The last SET named "other", so block status on "disk" is refused.
	rs, err := c.option(optGo, infoData("disk"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseInfo(rs); err != nil {
		t.Fatal(err)
	}
	c.structured = true
	r, err := c.do(cmdBlockStatus, 0, 0, 4096, nil)
	if err != nil || r.errno != errInvalid {
		t.Fatalf("block status without a context for this export: %+v, %v", r, err)
	}
	if st := s.Stats(); st.BlockStatus != 1 || st.Errors != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestReads compares reads of random ranges with the disk's bytes, with
// simple replies, structured replies with and without an Extenter, and DF.
// Requests are pipelined, so replies come back concurrently and out of
// order.
func TestReads(t *testing.T) {
	t.Parallel()
	t.Run("default memory", func(t *testing.T) { t.Parallel(); testReads(t) })
	// With the least memory, replies are read and sent in 64 KiB pieces.
	t.Run("least memory", func(t *testing.T) { t.Parallel(); testReads(t, WithMemory(MinConnMemory*DefaultMaxConns)) })
}

func testReads(t *testing.T, opts ...Option) {
	data, mb := newDisk(t, 4, testExtents)
	plain := bytes.NewReader(data)
	s, addr := startServer(t, []Export{{Name: "map", Backend: mb}, {Name: "plain", Backend: plain}}, append(opts, WithMaxInFlight(4))...)

	for _, tt := range []struct {
		name, export string
		structured   bool
		flags        uint16
	}{
		{"simple", "map", false, 0},
		{"structured", "map", true, 0},
		{"structured without extents", "plain", true, 0},
		{"structured DF", "map", true, cmdFlagDF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := connect(t, addr, tt.export, tt.structured, false)
			rng := rand.New(rand.NewPCG(uint64(len(tt.name)), 9))
			var reqs []req
			for i := range 64 {
				var off, n int64
				switch i {
				case 0:
					off, n = 0, int64(len(data)) // the whole disk
				case 1:
					off, n = int64(len(data))-1, 1 // the last byte
				case 2:
					off, n = 64<<10-1, 2 // across the first zero run's end
				default:
					n = 1 + rng.Int64N(300<<10)
					off = rng.Int64N(int64(len(data)) - n + 1)
				}
				q, err := c.send(cmdRead, tt.flags, uint64(off), uint32(n), nil)
				if err != nil {
					t.Fatal(err)
				}
				reqs = append(reqs, q)
			}
			got, err := c.replies(reqs...)
			if err != nil {
				t.Fatal(err)
			}
			holes := 0
			for _, q := range reqs {
				r := got[q.cookie]
				if r.errno != 0 {
					t.Fatalf("read [%d, +%d): error %d %q", q.off, q.length, r.errno, r.msg)
				}
				if !bytes.Equal(r.data, data[q.off:q.off+uint64(q.length)]) {
					t.Fatalf("read [%d, +%d) differs from the disk", q.off, q.length)
				}
				if (tt.flags&cmdFlagDF != 0 || !tt.structured) && len(r.chunks) > 1 {
					t.Fatalf("DF read [%d, +%d) came in %d chunks", q.off, q.length, len(r.chunks))
				}
				holes += r.holes
			}
			// The whole-disk read crosses every zero run, so a structured
			// reply over an Extenter must have sent holes.
			if tt.structured && tt.export == "map" && tt.flags == 0 && holes == 0 {
				t.Errorf("no OFFSET_HOLE chunks")
			}
			if tt.export == "plain" && holes != 0 {
				t.Errorf("%d OFFSET_HOLE chunks without an Extenter", holes)
			}
		})
	}
	t.Cleanup(func() {
		if st := s.Stats(); st.Reads != 4*64 || st.Errors != 0 || st.ZeroBytes == 0 || st.BytesRead == 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestHolesAreNotRead checks that structured reads of zero extents do not
// call ReadAt there, and that DF reads still get them as data.
func TestHolesAreNotRead(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 5, testExtents)
	_, addr := startServer(t, []Export{{Backend: mb}})
	c := connect(t, addr, "", true, false)
	r, err := c.do(cmdRead, 0, 0, uint32(len(data)), nil)
	if err != nil || r.errno != 0 || !bytes.Equal(r.data, data) {
		t.Fatalf("read: %v, errno %d", err, r.errno)
	}
	want := []uint16{replyTypeOffsetHole, replyTypeOffsetData, replyTypeOffsetHole, replyTypeOffsetData, replyTypeOffsetHole,
		replyTypeOffsetData, replyTypeOffsetHole, replyTypeOffsetData, replyTypeOffsetHole}
	// A data extent larger than a reply piece (1 MiB) comes in several
	// data chunks.
	got := slices.CompactFunc(slices.Clone(r.chunks), func(a, b uint16) bool { return a == b && a == replyTypeOffsetData })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("chunks %v, want %v with data chunks of up to 1 MiB", r.chunks, want)
	}
	if n := mb.zeroReads.Load(); n != 0 {
		t.Errorf("%d ReadAt calls touched zero extents", n)
	}
	// A read wholly inside a hole is one hole chunk, even with DF.
	r, err = c.do(cmdRead, cmdFlagDF, 500<<10, 8192, nil)
	if err != nil || r.errno != 0 || fmt.Sprint(r.chunks) != fmt.Sprint([]uint16{replyTypeOffsetHole}) {
		t.Errorf("DF read of a hole: %+v, %v", r, err)
	}
}

func TestBlockStatus(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 6, testExtents)
	size := uint64(len(data))
	_, addr := startServer(t, []Export{{Name: "map", Backend: mb}, {Name: "plain", Backend: bytes.NewReader(data)}})

	c := connect(t, addr, "map", true, true)
	const hz = stateHole | stateZero
	for _, tt := range []struct {
		name        string
		flags       uint16
		off         uint64
		length      uint32
		want        [][2]uint32
		wantErrno   uint32
		description string
	}{
		{name: "start", off: 0, length: 1 << 20, want: [][2]uint32{{64 << 10, hz}, {300 << 10, 0}, {1<<20 - 364<<10, hz}}},
		{name: "unaligned middle", off: 64<<10 + 300<<10 + 1<<20 - 10, length: 10 + 4096 + 4096 + 1000 + 100 + 5,
			want: [][2]uint32{{10, hz}, {4096, 0}, {4096, hz}, {1000, 0}, {100, hz}, {5, 0}}},
		{name: "req one", flags: cmdFlagReqOne, off: 10, length: 1 << 20, want: [][2]uint32{{64<<10 - 10, hz}}},
		{name: "req one shorter than the extent", flags: cmdFlagReqOne, off: 10, length: 100, want: [][2]uint32{{100, hz}}},
		{name: "end", off: size - 1000, length: 1000, want: [][2]uint32{{1000, hz}}},
		{name: "past the end", off: size - 1000, length: 1001, wantErrno: errInvalid},
		{name: "length zero", off: 0, length: 0, wantErrno: errInvalid},
		{name: "bad flag", flags: cmdFlagDF, off: 0, length: 512, wantErrno: errInvalid},
	} {
		r, err := c.do(cmdBlockStatus, tt.flags, tt.off, tt.length, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if r.errno != tt.wantErrno || fmt.Sprint(r.descs) != fmt.Sprint(tt.want) {
			t.Errorf("%s: errno %d descs %v, want %d %v", tt.name, r.errno, r.descs, tt.wantErrno, tt.want)
		}
		if r.errno == 0 && r.ctxID != metaBaseAllocationID {
			t.Errorf("%s: context ID %d", tt.name, r.ctxID)
		}
	}
	// The whole disk, however many calls the Extenter needs.
	r, err := c.do(cmdBlockStatus, 0, 0, uint32(size), nil)
	if err != nil || r.errno != 0 {
		t.Fatalf("whole disk: %+v, %v", r, err)
	}
	var want [][2]uint32
	for _, e := range testExtents {
		var f uint32
		if e.Zero {
			f = hz
		}
		want = append(want, [2]uint32{uint32(e.Length), f})
	}
	if fmt.Sprint(r.descs) != fmt.Sprint(want) {
		t.Errorf("whole disk: %v, want %v", r.descs, want)
	}

	// Without an Extenter, everything is data.
	c = connect(t, addr, "plain", true, true)
	r, err = c.do(cmdBlockStatus, 0, 4096, 1<<20, nil)
	if err != nil || fmt.Sprint(r.descs) != fmt.Sprint([][2]uint32{{1 << 20, 0}}) {
		t.Errorf("plain: %+v, %v", r, err)
	}
	// Without a meta context, block status is refused.
	c = connect(t, addr, "map", true, false)
	if r, err := c.do(cmdBlockStatus, 0, 0, 4096, nil); err != nil || r.errno != errInvalid {
		t.Errorf("without a context: %+v, %v", r, err)
	}
}

// failBackend fails reads that reach past failAt, and Extents when failExtents.
type failBackend struct {
	*bytes.Reader
	failAt      int64
	failExtents bool
	badExtent   bool
}

func (b *failBackend) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > b.failAt {
		return 0, errors.New("registry said 503 for https://example.invalid/blob?sig=secret")
	}
	return b.Reader.ReadAt(p, off)
}

func (b *failBackend) Extents(off, length int64) ([]Extent, error) {
	switch {
	case b.failExtents:
		return nil, errors.New("no index")
	case b.badExtent:
		return []Extent{{Length: 0}}, nil
	}
	return []Extent{{Length: length}}, nil
}

// shortBackend claims more bytes than it has.
type shortBackend struct{ *bytes.Reader }

func (b shortBackend) Size() int64 { return b.Reader.Size() + 4096 }

func TestBackendErrors(t *testing.T) {
	t.Parallel()
	data := make([]byte, 1<<20)
	s, addr := startServer(t, []Export{
		{Name: "fail", Backend: &failBackend{Reader: bytes.NewReader(data), failAt: 512 << 10}},
		{Name: "extents", Backend: &failBackend{Reader: bytes.NewReader(data), failAt: 1 << 20, failExtents: true}},
		{Name: "bad", Backend: &failBackend{Reader: bytes.NewReader(data), failAt: 1 << 20, badExtent: true}},
		{Name: "short", Backend: shortBackend{bytes.NewReader(data)}},
	})
	for _, tt := range []struct {
		export     string
		structured bool
		typ        uint16
		off        uint64
	}{
		{"fail", false, cmdRead, 512 << 10},
		{"fail", true, cmdRead, 512 << 10},
		{"extents", true, cmdRead, 0},
		{"extents", true, cmdBlockStatus, 0},
		{"bad", true, cmdRead, 0},
		{"bad", true, cmdBlockStatus, 0},
		{"short", false, cmdRead, 1<<20 - 4096},
		{"short", true, cmdRead, 1<<20 - 4096},
	} {
		c := connect(t, addr, tt.export, tt.structured, tt.structured)
		r, err := c.do(tt.typ, 0, tt.off, 8192, nil)
		if err != nil || r.errno != errIO {
			t.Fatalf("%+v: reply %+v, %v; want EIO", tt, r, err)
		}
		if tt.structured && (r.msg == "" || bytes.Contains([]byte(r.msg), []byte("secret"))) {
			t.Errorf("%+v: error message %q", tt, r.msg)
		}
		// The connection is still usable.
		if r, err := c.do(cmdFlush, 0, 0, 0, nil); err != nil || r.errno != 0 {
			t.Fatalf("%+v: flush after the error: %+v, %v", tt, r, err)
		}
	}
	if st := s.Stats(); st.BackendErrors != 8 || st.Errors != 8 {
		t.Errorf("stats %+v", st)
	}
}

// checkServes checks that a new connection gets correct data: whatever
// went before did not break the server.
func checkServes(t *testing.T, addr string, data []byte) {
	t.Helper()
	c := connect(t, addr, "", true, false)
	r, err := c.do(cmdRead, 0, 8192, 65536, nil)
	if err != nil || r.errno != 0 || !bytes.Equal(r.data, data[8192:8192+65536]) {
		t.Fatalf("a new connection cannot read: %+v, %v", r, err)
	}
	if _, err := c.send(cmdDisc, 0, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.expectClosed(0); err != nil {
		t.Fatal(err)
	}
}

// TestHostileHandshakes sends broken or hostile handshakes. The server must
// close the connection (or refuse the option and go on), and keep serving
// others.
func TestHostileHandshakes(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 7, testExtents)
	s, addr := startServer(t, []Export{{Backend: mb}}, WithHandshakeTimeout(300*time.Millisecond))

	opt := func(o uint32, length uint32, data []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, optMagic)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, length)
		return append(b, data...)
	}
	var many []byte
	for range maxOptions + 1 {
		many = append(many, opt(optList, 0, nil)...)
	}
	for _, tt := range []struct {
		name  string
		flags uint32
		send  []byte
		// replies the client may read before the close
		skip int
	}{
		{name: "no fixed newstyle", flags: clientNoZeroes},
		{name: "unknown client flags", flags: clientFixedNewstyle | 1<<5},
		{name: "bad option magic", flags: clientFixedNewstyle, send: []byte("IHAVEOPX\x00\x00\x00\x01\x00\x00\x00\x00")},
		{name: "oversized option", flags: clientFixedNewstyle, send: opt(optInfo, maxOptionLen+1, nil), skip: 20 + 64},
		{name: "oversized export name", flags: clientFixedNewstyle, send: opt(optExportName, 1<<30, []byte("abc"))},
		{name: "too many options", flags: clientFixedNewstyle, send: many, skip: maxOptions * 64},
		{name: "silent", flags: clientFixedNewstyle},
		{name: "silent mid-option", flags: clientFixedNewstyle, send: opt(optList, 10, []byte("abc"))},
		{name: "hangs up", flags: clientFixedNewstyle, send: opt(optList, 0, nil)[:10]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			if err := c.greet(tt.flags); err != nil {
				t.Fatal(err)
			}
			// The server may close the connection before, or while, the
			// client sends: that is the answer these tests look for.
			if err := c.write(tt.send); len(tt.send) > 0 && err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatal(err)
			}
			if tt.name == "hangs up" {
				c.nc.(*net.UnixConn).CloseWrite()
			}
			start := time.Now()
			if err := c.expectClosed(tt.skip); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("closing took %s", d)
			}
			checkServes(t, addr, data)
		})
	}
	t.Run("unknown options are refused", func(t *testing.T) {
		c := dial(t, addr)
		if err := c.greet(clientFixedNewstyle); err != nil {
			t.Fatal(err)
		}
		for _, o := range []uint32{4, 5, 11, 12, 1 << 31} {
			rs, err := c.option(o, bytes.Repeat([]byte{0xff}, 1000))
			if err != nil || len(rs) != 1 || rs[0].typ != repErrUnsup {
				t.Fatalf("option %d: %+v, %v; want NBD_REP_ERR_UNSUP", o, rs, err)
			}
		}
		rs, err := c.option(optStructuredReply, []byte("x"))
		if err != nil || len(rs) != 1 || rs[0].typ != repErrInvalid {
			t.Fatalf("NBD_OPT_STRUCTURED_REPLY with data: %+v, %v", rs, err)
		}
		// And the handshake can still finish.
		rs, err = c.option(optGo, infoData(""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseInfo(rs); err != nil {
			t.Fatal(err)
		}
		if r, err := c.do(cmdRead, 0, 0, 512, nil); err != nil || r.errno != 0 {
			t.Fatalf("read: %+v, %v", r, err)
		}
	})
	// Each of the 9 hostile handshakes counts. Once, under heavy load (the
	// race detector on 2 cores shared with other work, load average 14),
	// a tenth was counted with every check above passing; more is logged,
	// not failed.
	if st := s.Stats(); st.HandshakeFailures < 9 {
		t.Errorf("handshake failures %d, want 9", st.HandshakeFailures)
	} else if st.HandshakeFailures > 9 {
		t.Logf("handshake failures %d, want 9: a well-behaved connection's handshake took longer than 300 ms", st.HandshakeFailures)
	}
}

// TestHostileRequests sends bad requests in the transmission phase. Each
// gets its error and the connection stays usable, or the server closes it.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 8, testExtents)
	size := uint64(len(data))
	s, addr := startServer(t, []Export{{Backend: mb}}, WithMaxRequest(1<<20))

	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprint("structured=", structured), func(t *testing.T) {
			t.Parallel()
			c := connect(t, addr, "", structured, false)
			for _, tt := range []struct {
				name       string
				typ, flags uint16
				off        uint64
				length     uint32
				payload    []byte
				want       uint32
			}{
				{name: "unknown command", typ: 42, length: 512, want: errInvalid},
				{name: "cache is not offered", typ: 5, length: 512, want: errInvalid},
				{name: "read past the end", typ: cmdRead, off: size - 100, length: 101, want: errInvalid},
				{name: "read beyond the end", typ: cmdRead, off: size + 4096, length: 1, want: errInvalid},
				{name: "read with offset overflow", typ: cmdRead, off: 1<<64 - 1, length: 2, want: errInvalid},
				{name: "read of length zero", typ: cmdRead, off: 0, length: 0, want: errInvalid},
				{name: "oversized read", typ: cmdRead, off: 0, length: 1<<20 + 1, want: errInvalid},
				{name: "read with FUA", typ: cmdRead, flags: 1, length: 512, want: errInvalid},
				{name: "read with an unknown flag", typ: cmdRead, flags: 1 << 9, length: 512, want: errInvalid},
				{name: "write", typ: cmdWrite, off: 4096, length: 3000, payload: bytes.Repeat([]byte("w"), 3000), want: errPerm},
				{name: "write of length zero", typ: cmdWrite, want: errPerm},
				{name: "trim", typ: cmdTrim, off: 0, length: 1 << 30, want: errPerm},
				{name: "write zeroes", typ: cmdWriteZeroes, off: 0, length: 4096, want: errPerm},
				{name: "flush", typ: cmdFlush, want: 0},
				{name: "flush with a flag", typ: cmdFlush, flags: cmdFlagReqOne, want: errInvalid},
				{name: "block status without a context", typ: cmdBlockStatus, length: 4096, want: errInvalid},
			} {
				r, err := c.do(tt.typ, tt.flags, tt.off, tt.length, tt.payload)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if r.errno != tt.want {
					t.Errorf("%s: error %d, want %d", tt.name, r.errno, tt.want)
				}
				if structured && tt.want != 0 && r.simple {
					t.Errorf("%s: simple error reply after structured replies were negotiated", tt.name)
				}
				// Still usable, and in sync.
				r, err = c.do(cmdRead, 0, 100, 1000, nil)
				if err != nil || r.errno != 0 || !bytes.Equal(r.data, data[100:1100]) {
					t.Fatalf("%s: read afterwards: %+v, %v", tt.name, r, err)
				}
			}
			if structured {
				// DF is only for connections that negotiated structured replies.
				return
			}
			if r, err := c.do(cmdRead, cmdFlagDF, 0, 512, nil); err != nil || r.errno != errInvalid {
				t.Errorf("DF without structured replies: %+v, %v", r, err)
			}
		})
	}
	for _, tt := range []struct {
		name string
		send func(c *client) error
	}{
		{"write too big to drain", func(c *client) error {
			_, err := c.send(cmdWrite, 0, 0, 1<<20+1, []byte("some"))
			return err
		}},
		{"bad request magic", func(c *client) error {
			return c.write(make([]byte, reqHeaderLen))
		}},
		{"hangs up mid-request", func(c *client) error {
			if err := c.write([]byte{0x25, 0x60, 0x95}); err != nil {
				return err
			}
			return c.nc.(*net.UnixConn).CloseWrite()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := connect(t, addr, "", false, false)
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			if err := c.expectClosed(0); err != nil {
				t.Fatal(err)
			}
			checkServes(t, addr, data)
		})
	}
	t.Cleanup(func() {
		if st := s.Stats(); st.Writes != 2*4+1 || st.Unknown != 4 || st.Flushes != 4 {
			t.Errorf("stats %+v", st)
		}
	})
}

// gateBackend blocks every ReadAt until gate is closed, and reports each
// call on started.
type gateBackend struct {
	*bytes.Reader
	gate    chan struct{}
	started chan struct{}
}

func (b *gateBackend) ReadAt(p []byte, off int64) (int, error) {
	select {
	case b.started <- struct{}{}:
	default:
	}
	<-b.gate
	return b.Reader.ReadAt(p, off)
}

// TestDisconnectMidReply has clients hang up with replies in flight, one
// while the backend is still reading and one halfway through reading a big
// reply. Other connections go on, and every connection's goroutines end.
func TestDisconnectMidReply(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 9, testExtents)
	gb := &gateBackend{Reader: bytes.NewReader(data), gate: make(chan struct{}), started: make(chan struct{}, 1)}
	s, addr := startServer(t, []Export{{Name: "fast", Backend: mb}, {Name: "slow", Backend: gb}})

	// Hang up while the backend holds the read.
	slow := connect(t, addr, "slow", false, false)
	for range 4 {
		if _, err := slow.send(cmdRead, 0, 0, 1<<20, nil); err != nil {
			t.Fatal(err)
		}
	}
	<-gb.started
	slow.nc.Close()

	// Hang up after a few bytes of a 4 MiB reply.
	big := connect(t, addr, "fast", true, false)
	if _, err := big.send(cmdRead, 0, 0, uint32(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(big.r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	big.nc.Close()

	// Meanwhile, another connection is served.
	checkServes(t, addr, data)
	close(gb.gate)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open 5 s after their clients left", s.Stats().Active)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkServes(t, addr, data)
}

// TestStuckClient has a client send reads and never read the replies: the
// server gives up on it after the reply timeout.
func TestStuckClient(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 15, testExtents)
	s, addr := startServer(t, []Export{{Backend: mb}}, WithReplyTimeout(200*time.Millisecond))
	c := connect(t, addr, "", false, false)
	for range 40 {
		if _, err := c.send(cmdRead, 0, 0, 1<<20, nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server still holds a client that does not read its replies")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// An idle connection is not timed out.
	idle := connect(t, addr, "", true, false)
	time.Sleep(300 * time.Millisecond)
	if r, err := idle.do(cmdRead, 0, 0, 4096, nil); err != nil || !bytes.Equal(r.data, data[:4096]) {
		t.Fatalf("idle connection: %v", err)
	}
}

// TestDisc checks that NBD_CMD_DISC waits for the replies in flight.
func TestDisc(t *testing.T) {
	t.Parallel()
	data, _ := newDisk(t, 10, testExtents)
	gb := &gateBackend{Reader: bytes.NewReader(data), gate: make(chan struct{}), started: make(chan struct{}, 1)}
	_, addr := startServer(t, []Export{{Backend: gb}})
	c := connect(t, addr, "", true, false)
	var reqs []req
	for i := range 3 {
		q, err := c.send(cmdRead, 0, uint64(i)*4096, 4096, nil)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, q)
	}
	<-gb.started
	if _, err := c.send(cmdDisc, 0, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // give a wrong server time to close early
	close(gb.gate)
	got, err := c.replies(reqs...)
	if err != nil {
		t.Fatalf("replies after NBD_CMD_DISC: %v", err)
	}
	for i, q := range reqs {
		if !bytes.Equal(got[q.cookie].data, data[i*4096:(i+1)*4096]) {
			t.Errorf("read %d differs", i)
		}
	}
	if err := c.expectClosed(0); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentConnections reads through several connections at once,
// over TCP on 127.0.0.1, sharing one backend.
func TestConcurrentConnections(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 11, testExtents)
	s, err := New([]Export{{Backend: mb}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, s, ln)
	var wg sync.WaitGroup
	for i := range 4 {
		c := connect(t, addr, "", i%2 == 0, false)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range 20 {
				n := 1 + rng.Int64N(256<<10)
				off := rng.Int64N(int64(len(data)) - n)
				r, err := c.do(cmdRead, 0, uint64(off), uint32(n), nil)
				if err != nil || r.errno != 0 || !bytes.Equal(r.data, data[off:off+n]) {
					t.Errorf("connection %d: read [%d, +%d): %v", i, off, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestMaxConns checks that a connection past the maximum is refused while
// every open connection is busy, and admitted, by closing the idlest one,
// once they are idle.
func TestMaxConns(t *testing.T) {
	t.Parallel()
	data, _ := newDisk(t, 12, testExtents)
	gb := &gateBackend{Reader: bytes.NewReader(data), gate: make(chan struct{}), started: make(chan struct{}, 2)}
	s, addr := startServer(t, []Export{{Backend: gb}}, WithMaxConns(2))
	a := connect(t, addr, "", false, false)
	b := connect(t, addr, "", false, false)
	var reqs [2]req
	for i, c := range []*client{a, b} {
		q, err := c.send(cmdRead, 0, 0, 4096, nil)
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = q
		<-gb.started
	}
	// Both are busy: a third connection is closed at once.
	c := dial(t, addr)
	if err := c.expectClosed(0); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Evicted != 0 {
		t.Fatalf("stats %+v", st)
	}
	close(gb.gate)
	if _, err := a.replies(reqs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := b.replies(reqs[1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := b.do(cmdRead, 0, 0, 4096, nil); err != nil {
		t.Fatal(err)
	}
	// Both are idle: a new connection closes a, idle the longest.
	checkServes(t, addr, data)
	if err := a.expectClosed(0); err != nil {
		t.Errorf("the idlest connection: %v", err)
	}
	if r, err := b.do(cmdRead, 0, 0, 4096, nil); err != nil || r.errno != 0 || !bytes.Equal(r.data, data[:4096]) {
		t.Errorf("the other connection: %+v, %v", r, err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Evicted != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestIdleConnsDoNotLockOut fills every connection slot with clients that
// do nothing, half of them in the handshake and half idle in transmission:
// a new client is still served, within 2 s.
func TestIdleConnsDoNotLockOut(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 13, testExtents)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	s, addr := startServer(t, []Export{{Backend: mb}}, WithLogger(log))
	for i := range DefaultMaxConns {
		if i%2 == 0 {
			connect(t, addr, "", true, false)
		} else {
			c := dial(t, addr)
			if err := c.greet(clientFixedNewstyle); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Active != DefaultMaxConns {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", s.Stats().Active, DefaultMaxConns)
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	for i := range 5 {
		// Each stays open, so each takes a slot.
		c := connect(t, addr, "", true, false)
		r, err := c.do(cmdRead, 0, 8192, 65536, nil)
		if err != nil || r.errno != 0 || !bytes.Equal(r.data, data[8192:8192+65536]) {
			t.Fatalf("new client %d cannot read: %+v, %v", i, r, err)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("5 new clients took %s to be served with every slot taken by idle ones", took)
	}
	st := s.Stats()
	if st.Refused != 0 || st.Evicted != 5 {
		t.Errorf("stats %+v", st)
	}
	// The evictions logged one line, not five.
	mu.Lock()
	n := strings.Count(logs.String(), "closing the idlest nbd connection")
	mu.Unlock()
	if n != 1 {
		t.Errorf("%d log lines about closed idle connections, want 1 (rate-limited)", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestServeCancel cancels Serve with a connection in the handshake, one
// idle in transmission and one whose read the backend holds: Serve closes
// them all, returns once the backend lets go, and leaves no goroutines.
// It does not run in parallel, so that it can count goroutines.
func TestServeCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	data, _ := newDisk(t, 13, testExtents)
	gb := &gateBackend{Reader: bytes.NewReader(data), gate: make(chan struct{}), started: make(chan struct{}, 1)}
	s, err := New([]Export{{Name: "slow", Backend: gb}, {Name: "plain", Backend: bytes.NewReader(data)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	addr := ln.Addr().String()

	handshaking := dial(t, addr)
	if err := handshaking.greet(clientFixedNewstyle); err != nil {
		t.Fatal(err)
	}
	idle := connect(t, addr, "plain", true, false)
	busy := connect(t, addr, "slow", false, false)
	if _, err := busy.send(cmdRead, 0, 0, 4096, nil); err != nil {
		t.Fatal(err)
	}
	<-gb.started

	cancel()
	for _, c := range []*client{handshaking, idle, busy} {
		if err := c.expectClosed(0); err != nil {
			t.Fatalf("after cancel: %v", err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a backend call in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gb.gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return 5 s after cancel")
	}
	if _, err := net.Dial("unix", addr); err == nil {
		t.Error("the listener still accepts")
	}
	if st := s.Stats(); st.Active != 0 {
		t.Errorf("%d connections active after Serve returned", st.Active)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestServeListenerFails checks that Serve returns the Accept error and
// still closes the connections it accepted.
func TestServeListenerFails(t *testing.T) {
	t.Parallel()
	data, mb := newDisk(t, 14, testExtents)
	s, err := New([]Export{{Backend: mb}})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, fail: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), ln) }()
	c := connect(t, inner.Addr().String(), "", false, false)
	if r, err := c.do(cmdRead, 0, 0, 512, nil); err != nil || !bytes.Equal(r.data, data[:512]) {
		t.Fatalf("read: %v", err)
	}
	close(ln.fail)
	select {
	case err := <-done:
		if !errors.Is(err, errListenerBroke) {
			t.Fatalf("Serve: %v, want the listener's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Accept failed")
	}
	if err := c.expectClosed(0); err != nil {
		t.Fatal(err)
	}
}

var errListenerBroke = errors.New("listener broke")

// failingListener fails Accept once fail is closed.
type failingListener struct {
	net.Listener
	fail chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Listener.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-l.fail:
		l.Listener.Close()
		return nil, errListenerBroke
	}
}
