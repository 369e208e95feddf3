package toc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of skipped values, as encoding/json does.
const maxJSONDepth = 10000

// jsonScanner reads JSON (RFC 8259) from a byte slice value by value, for
// DecodeZstdChunkedTOC: it lets the decoder see every key of an object (to
// refuse repeated ones) and every null, which encoding/json's Unmarshal
// hides, without the cost of encoding/json's Decoder.Token. Strings must be
// valid UTF-8. Errors name the byte offset.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: "+format, append([]any{s.i}, args...)...)
}

// ws skips white space.
func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// what describes the next value for an error message.
func (s *jsonScanner) what() string {
	switch c := s.peek(); {
	case c == 0:
		return "the end of the JSON"
	case c == 'n':
		return "null"
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	default:
		return fmt.Sprintf("%q", c)
	}
}

// literal consumes lit if it comes next.
func (s *jsonScanner) literal(lit string) bool {
	if s.peek() != lit[0] || len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// null consumes a null if it comes next.
func (s *jsonScanner) null() bool { return s.literal("null") }

// object reads an object, or null if nullOK, calling field with each key
// (lower-cased by the caller if it wants) before its value, which field
// must read.
func (s *jsonScanner) object(nullOK bool, field func(key string) error) error {
	if nullOK && s.null() {
		return nil
	}
	if s.peek() != '{' {
		return s.errorf("got %s, want an object", s.what())
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.errorf("got %s, want an object key", s.what())
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.errorf("got %s after an object key, want ':'", s.what())
		}
		s.i++
		if err := field(key); err != nil {
			return fmt.Errorf("%q: %w", key, err)
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("got %s in an object, want ',' or '}'", s.what())
		}
	}
}

// array reads an array, or null if nullOK, calling elem for each element,
// which elem must read.
func (s *jsonScanner) array(nullOK bool, elem func() error) error {
	if nullOK && s.null() {
		return nil
	}
	if s.peek() != '[' {
		return s.errorf("got %s, want an array", s.what())
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errorf("got %s in an array, want ',' or ']'", s.what())
		}
	}
}

// str reads a string.
func (s *jsonScanner) str() (string, error) {
	if s.peek() != '"' {
		return "", s.errorf("got %s, want a string", s.what())
	}
	start := s.i
	s.i++
	escaped := false
	for {
		if s.i >= len(s.b) {
			return "", s.errorf("unterminated string")
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			raw := s.b[start:s.i]
			if !utf8.Valid(raw) {
				return "", s.errorf("string is not valid UTF-8")
			}
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil { // the escapes
				return "", s.errorf("bad string: %w", err)
			}
			return v, nil
		case c == '\\':
			escaped = true
			s.i += 2 // json.Unmarshal checks the escape itself
		case c < 0x20:
			return "", s.errorf("control character %#x in a string", c)
		default:
			s.i++
		}
	}
}

// number reads a number and returns its text.
func (s *jsonScanner) number() (string, error) {
	s.ws()
	start := s.i
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch n := digits(); {
	case n == 0:
		return "", s.errorf("got %s, want a number", s.what())
	case n > 1 && s.b[s.i-n] == '0':
		return "", s.errorf("number with a leading zero")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return "", s.errorf("number without digits after '.'")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return "", s.errorf("number without exponent digits")
		}
	}
	return string(s.b[start:s.i]), nil
}

// integer reads a number that must be a 64-bit integer written without a
// fraction or exponent.
func (s *jsonScanner) integer() (int64, error) {
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return 0, s.errorf("got %s, want an integer", s.what())
	}
	text, err := s.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, s.errorf("%s is not a 64-bit integer", text)
	}
	return n, nil
}

// skip reads any value.
func (s *jsonScanner) skip() error { return s.skipDepth(0) }

func (s *jsonScanner) skipDepth(depth int) error {
	if depth > maxJSONDepth {
		return s.errorf("values nested more than %d deep", maxJSONDepth)
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(false, func(string) error { return s.skipDepth(depth + 1) })
	case c == '[':
		return s.array(false, func() error { return s.skipDepth(depth + 1) })
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || c >= '0' && c <= '9':
		_, err := s.number()
		return err
	case s.literal("true"), s.literal("false"), s.null():
		return nil
	default:
		return s.errorf("got %s, want a JSON value", s.what())
	}
}

// end checks that nothing but white space is left.
func (s *jsonScanner) end() error {
	if s.peek() != 0 || s.i < len(s.b) {
		return errors.New("unexpected data after the TOC object")
	}
	return nil
}
