// Package verify checks the chain of trust of a seekable image from a cosign
// key down to every chunk: a signature by the key over the manifest digest
// (a Sigstore bundle referrer or a legacy sha256-<hex>.sig signature, as
// cosign and package sign write them); the manifest read by that digest; a
// TOC digest annotation on every seekable layer, which the signed manifest
// covers; each TOC, fetched with range requests, matching its annotation;
// and, with WithDeep, every chunk of every file matching its TOC digest, the
// blob matching its layer digest and the uncompressed layer its DiffID.
//
// Signature is the first link alone, for lazy readers: it returns the
// verified manifest digest, and a reader that then reads that manifest by
// digest and checks each chunk against its TOC keeps the chain for every
// byte it returns. NewChecker wraps it for the lazy reader
// (disk.WithSignature), which does not link this package. Image checks the
// whole chain and reports each step. The errors are package trust's, under
// the same names here.
//
// Verification is offline: the key is the only trust root; no transparency
// log, Fulcio certificate or timestamp is needed or consulted, and no
// request goes anywhere but to the image's registry. The package does not
// sign (see package sign), verify keyless signatures, or log.
package verify
