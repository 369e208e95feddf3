package nbd

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzServe feeds arbitrary client bytes (after the greeting: client flags,
// options, requests) to one connection. The server must not panic, and must
// end the connection once the client hangs up.
func FuzzServe(f *testing.F) {
	opt := func(o uint32, data []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, optMagic)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	request := func(typ, flags uint16, off uint64, length uint32, payload []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, reqMagic)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, 7)
		b = binary.BigEndian.AppendUint64(b, off)
		b = binary.BigEndian.AppendUint32(b, length)
		return append(b, payload...)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	flags := binary.BigEndian.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes)
	f.Add(cat(flags, opt(optStructuredReply, nil), opt(optSetMetaContext, metaData("", metaBaseAllocation)),
		opt(optGo, infoData("", infoBlockSize)), request(cmdRead, 0, 0, 70000, nil),
		request(cmdRead, cmdFlagDF, 60000, 10000, nil), request(cmdBlockStatus, cmdFlagReqOne, 0, 1<<20, nil),
		request(cmdWrite, 0, 0, 5, []byte("hello")), request(cmdFlush, 0, 0, 0, nil), request(cmdDisc, 0, 0, 0, nil)))
	f.Add(cat(binary.BigEndian.AppendUint32(nil, clientFixedNewstyle), opt(optExportName, nil),
		request(cmdRead, 0, 4000, 100, nil), request(cmdTrim, 0, 0, 10, nil), []byte("garbage")))
	f.Add(cat(flags, opt(optList, nil), opt(optInfo, infoData("", infoName, infoDescription)),
		opt(optListMetaContext, metaData("", "base:")), opt(99, []byte("x")), opt(optAbort, nil)))

	_, mb := newDisk(f, 16, testExtents)
	s, err := New([]Export{{Backend: mb}}, WithHandshakeTimeout(time.Second), WithReplyTimeout(time.Second))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cl, sv := net.Pipe()
		done := make(chan struct{})
		go func() {
			s.serveConn(context.Background(), s.newConn(sv))
			close(done)
		}()
		go io.Copy(io.Discard, cl) // take the replies
		cl.Write(in)               // fails once the server hangs up
		cl.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection did not end 5 s after the client hung up")
		}
	})
}
