package image

import "errors"

var (
	// ErrInvalidReference is returned by Parse for strings that are not
	// image references of any supported transport.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrNotFound means the image, tag, repository, layout or file that a
	// reference names does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized means a registry refused the credentials, or their
	// absence (HTTP 401 or 403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnsupported means the reference is valid but the operation is not
	// available for it, such as writing to a docker-archive: or disk: reference.
	ErrUnsupported = errors.New("unsupported")
	// ErrNoPlatform is returned by SelectPlatform and CheckPlatform when
	// there is no image for the requested platform.
	ErrNoPlatform = errors.New("platform not found")
)

// failure is an error whose message is written for the user (one line, with
// what to do) while errors.Is and errors.As still find its sentinel and the
// underlying cause.
type failure struct {
	msg     string
	wrapped []error
}

func (f *failure) Error() string   { return f.msg }
func (f *failure) Unwrap() []error { return f.wrapped }
