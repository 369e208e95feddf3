// Package testregistry runs a real OCI distribution registry (distribution/v3)
// in-process on 127.0.0.1 for tests, with its storage in a test's temporary
// directory so tests can inspect or corrupt stored blobs, and an optional
// middleware in front of it to script faults.
//
// It does not offer TLS or authentication of its own: script those with
// WithMiddleware. It is meant for tests only.
package testregistry
