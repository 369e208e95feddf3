package verify

import "github.com/lazydisk/lazydisk/trust"

// The three ways verification fails, for callers (and exit codes) to tell
// apart with errors.Is. Errors about the registry or the input match none.
// They are the values of package trust, so that the lazy reader, which does
// not link this package, reports the same errors.
var (
	// ErrNoSignature means no signature of the accepted forms is attached
	// to the manifest digest at all.
	ErrNoSignature = trust.ErrNoSignature
	// ErrBadSignature means signatures are attached, but none is a valid
	// signature by the key over this manifest digest with the required
	// annotations: another key signed it, or a signature was copied from
	// another image, altered, or is not a signature.
	ErrBadSignature = trust.ErrBadSignature
	// ErrContentMismatch means the signature is valid but content it covers
	// does not match: a seekable layer without a TOC digest annotation, a
	// TOC, chunk, blob or DiffID that does not match its digest.
	ErrContentMismatch = trust.ErrContentMismatch
)
