package attach

import "errors"

var (
	// ErrDigestMismatch means content read from a store does not have the
	// digest it was asked for by.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrInvalidSignature is wrapped by every reason CheckLegacy and
	// CheckBundle reject a signature for.
	ErrInvalidSignature = errors.New("invalid signature")
)
