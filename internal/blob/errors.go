package blob

import "errors"

var (
	// ErrSizeMismatch means the blob's size, as a registry's Content-Range or
	// Content-Length or a layout's file reports it, is not the size its
	// descriptor gives.
	ErrSizeMismatch = errors.New("blob size does not match its descriptor")
	// ErrInvalidResponse means a registry answered a range request with a
	// missing or malformed Content-Range, or with other bytes than were asked.
	ErrInvalidResponse = errors.New("invalid response to a range request")
	// errStalled ends a request that received nothing for RetryPolicy.Stall.
	errStalled = errors.New("no data received")
)

// failure is an error whose message is written for the user (one line) while
// errors.Is and errors.As still find its sentinel and its cause.
type failure struct {
	msg     string
	wrapped []error
}

func (f *failure) Error() string   { return f.msg }
func (f *failure) Unwrap() []error { return f.wrapped }
