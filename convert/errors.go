package convert

import "errors"

var (
	// ErrNotImage is returned when the source is not a container image this
	// package can convert (a schema 1 image, an artifact, a broken config).
	ErrNotImage = errors.New("not a convertible container image")
	// ErrCorruptLayer is returned when a source layer does not match its
	// digest or size, or does not decompress.
	ErrCorruptLayer = errors.New("corrupt or truncated layer")
	// ErrUnsupportedEntry is returned for tar entries a format cannot
	// represent, such as global PAX headers in zstd:chunked.
	ErrUnsupportedEntry = errors.New("unsupported tar entry")
)
