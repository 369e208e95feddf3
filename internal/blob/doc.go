// Package blob gives random access to one blob, as an io.ReaderAt with a
// size: a layer in a registry, read with one HTTP range request per ReadAt; a
// blob in an OCI image layout; or a local file. It counts the requests and
// bytes each read costs, for `lazydisk toc` to print and tests to assert.
//
// It does not check content: a blob's digest cannot be verified from random
// reads, so callers verify what they read (toc checks each chunk against its
// TOC digest). It does not cache, merge or split reads, or send multi-range
// requests: each ReadAt is one request for exactly the bytes asked, repeated
// for what is still missing when a failure may pass (RetryPolicy).
package blob
