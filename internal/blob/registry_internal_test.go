package blob

import (
	"strings"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                 string
		first, last, total int64
		ok                 bool
	}{
		{in: "bytes 0-9/100", first: 0, last: 9, total: 100, ok: true},
		{in: "bytes 99-99/100", first: 99, last: 99, total: 100, ok: true},
		{in: "bytes 5-14/*", first: 5, last: 14, total: -1, ok: true},
		{in: ""},
		{in: "bytes 0-9"},
		{in: "bytes */100"},     // the unsatisfied-range form of a 416
		{in: "bytes 0-100/100"}, // last beyond the total
		{in: "bytes 9-0/100"},
		{in: "bytes -1-9/100"},
		{in: "bytes +0-9/100"},
		{in: "bytes 0-9/-100"},
		{in: "items 0-9/100"},
		{in: "bytes 0-9/100, bytes 20-29/100"},
		{in: "bytes 0-99999999999999999999/*"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			first, last, total, ok := parseContentRange(tt.in)
			if ok != tt.ok || (ok && (first != tt.first || last != tt.last || total != tt.total)) {
				t.Errorf("parseContentRange(%q) = %d, %d, %d, %t; want %d, %d, %d, %t",
					tt.in, first, last, total, ok, tt.first, tt.last, tt.total, tt.ok)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{in: "https://reg.example.com/v2/x/blobs/sha256:ab", want: "https://reg.example.com/v2/x/blobs/sha256:ab"},
		{in: "https://s3.example.com/b/o?X-Amz-Signature=sekrit&X-Amz-Expires=300", want: "https://s3.example.com/b/o?X-Amz-Expires=REDACTED&X-Amz-Signature=REDACTED"},
		{in: "https://user:sekrit@storage.example.com/o#sekrit", want: "https://storage.example.com/o"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want || strings.Contains(got, "sekrit") {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExcerpt(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", maxExcerpt) // two bytes each: the cut falls inside one
	tests := []struct {
		raw, want string
	}{
		{raw: "", want: ""},
		{raw: "  boom\r\n\tagain  ", want: "boom again"},
		{raw: "bad \xff byte", want: "bad ? byte"},
		{raw: long, want: long[:maxExcerpt] + "…"},
	}
	for _, tt := range tests {
		if got := excerpt(nil, []byte(tt.raw)); got != tt.want {
			t.Errorf("excerpt(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}
