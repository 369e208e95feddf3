package tarstream

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func build(t *testing.T, format tar.Format, recordFill int, names ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i, n := range names {
		data := strings.Repeat("x", i*300)
		h := &tar.Header{Typeflag: tar.TypeReg, Name: n, Size: int64(len(data)), Mode: 0o644, Format: format}
		if strings.HasSuffix(n, "/") {
			h = &tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755, Format: format}
			data = ""
		}
		if format == tar.FormatPAX {
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v"}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, data)
	}
	tw.Close()
	b.Write(make([]byte, recordFill))
	return b.Bytes()
}

// reassemble concatenates what the scanner reports, in order.
func reassemble(t *testing.T, src []byte) ([]byte, int) {
	t.Helper()
	sc := NewScanner(bytes.NewReader(src))
	var out bytes.Buffer
	n := 0
	for {
		e, err := sc.Next()
		out.Write(sc.PrevPad())
		if err == io.EOF {
			out.Write(sc.Trailer())
			return out.Bytes(), n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		out.Write(e.Raw)
		if n%2 == 0 { // read some payloads, leave others to Next
			io.Copy(&out, e.Payload)
		} else {
			var p bytes.Buffer
			io.Copy(&p, e.Payload)
			out.Write(p.Bytes())
		}
	}
}

func TestScannerLossless(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("d", 120) + "/" + strings.Repeat("f", 120)
	for _, tc := range []struct {
		name   string
		format tar.Format
		fill   int
	}{
		{"ustar", tar.FormatUSTAR, 0},
		{"pax", tar.FormatPAX, 0},
		{"gnu", tar.FormatGNU, 0},
		{"record fill", tar.FormatPAX, 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			names := []string{"a/", "a/b", "a/c", "a/d"}
			if tc.format != tar.FormatUSTAR {
				names = append(names, long)
			}
			src := build(t, tc.format, tc.fill, names...)
			got, n := reassemble(t, src)
			if n != len(names) {
				t.Errorf("scanned %d entries, want %d", n, len(names))
			}
			if !bytes.Equal(got, src) {
				t.Fatalf("reassembled %d bytes differ from the %d source bytes", len(got), len(src))
			}
		})
	}
}

func TestScannerRejects(t *testing.T) {
	t.Parallel()
	// An old GNU sparse entry: a GNU header with type 'S' and an empty map.
	sparse := build(t, tar.FormatGNU, 0, "s", "t")
	sparse[156] = tar.TypeGNUSparse
	copy(sparse[148:156], "        ")
	sum := 0
	for _, c := range sparse[:512] {
		sum += int(c)
	}
	copy(sparse[148:156], fmt.Sprintf("%06o\x00 ", sum))
	for name, tc := range map[string]struct {
		src  []byte
		want error
	}{
		"empty":     {nil, ErrNotTar},
		"garbage":   {bytes.Repeat([]byte("garbage!"), 128), ErrNotTar},
		"dotdot":    {build(t, tar.FormatPAX, 0, "a/../../b"), ErrUnsafePath},
		"absolute":  {build(t, tar.FormatPAX, 0, "/etc/shadow"), ErrUnsafePath},
		"truncated": {build(t, tar.FormatPAX, 0, "a", "b", "c")[:1100], ErrInvalid},
		"sparse":    {sparse, ErrSparse},
	} {
		sc := NewScanner(bytes.NewReader(tc.src))
		var err error
		for err == nil {
			var e *Entry
			if e, err = sc.Next(); err == nil {
				_, err = io.Copy(io.Discard, e.Payload)
			}
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func TestCleanName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"./disk/": "disk", "disk/x.img": "disk/x.img", "/a//b/": "a/b", ".": ""} {
		if got := CleanName(in); got != want {
			t.Errorf("CleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
