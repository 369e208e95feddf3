// Package trust holds what the signature checker (package verify) and the
// lazy reader (package disk) share about the chain of trust signature ->
// manifest -> TOC digest annotation -> TOC -> chunk: the errors that tell its
// failures apart with errors.Is.
//
// It is a leaf on purpose: it imports nothing from lazydisk or sigstore, so
// that a program that reads disks can match these errors without linking the
// signature verifier. It does not check anything itself.
package trust

import "errors"

// The three ways a chain of trust fails, for callers (and exit codes) to tell
// apart with errors.Is. verify.ErrNoSignature, verify.ErrBadSignature and
// verify.ErrContentMismatch are these same values.
var (
	// ErrNoSignature means no signature of the accepted forms is attached
	// to the manifest digest at all.
	ErrNoSignature = errors.New("no signature")
	// ErrBadSignature means signatures are attached, but none is a valid
	// signature by the key over this manifest digest with the required
	// annotations: another key signed it, or a signature was copied from
	// another image, altered, or is not a signature.
	ErrBadSignature = errors.New("bad signature")
	// ErrContentMismatch means the signature is valid but content it covers
	// does not match: a seekable layer without a TOC digest annotation, a
	// TOC, chunk, blob or DiffID that does not match its digest.
	ErrContentMismatch = errors.New("content does not match the signed manifest")
)
