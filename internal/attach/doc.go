// Package attach stores and finds the signature artifacts cosign attaches to
// an image by its manifest digest, in a registry or in an OCI image layout:
// the legacy signature image tagged sha256-<hex>.sig, and Sigstore bundles
// as OCI 1.1 referrers, found through the registry's referrers API or the
// referrers tag schema (an index tagged sha256-<hex>). It holds the format
// facts of both forms (media types, annotation keys, the predicate type) and
// checks one signature of either form against a key.
//
// An OCI layout has no referrers API, so in a layout the package keeps the
// same two tags a registry without the API has, as index.json entries; copying
// those tags (Store.CopyFrom) copies the signatures.
//
// It does not sign, decide which signatures are enough, or log: packages sign
// and verify do that on top of it. Layout writes are atomic but not locked
// against concurrent writers; neither are the tag updates of a registry
// without the referrers API (the referrers tag schema has no locking).
package attach
