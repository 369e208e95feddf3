// Package cstoragetest runs containers/storage's own partial-pull code, the
// consumer CRI-O and podman use for zstd:chunked layers, over a blob in
// tests: an overlay store in a temporary directory, chunked.NewDiffer and
// store.PrepareStagedLayer, as c/image does when it pulls a layer partially.
//
// It needs Linux, root and overlayfs; tests that call PartialPull are
// skipped, never passed, where those are missing. It does not talk to a
// registry, commit the layer to the store, or check the config's diff_id:
// callers compare Result.UncompressedDigest with it. Importing it needs the
// build tags exclude_graphdriver_btrfs and exclude_graphdriver_devicemapper.
package cstoragetest

import "github.com/opencontainers/go-digest"

// Result is what containers/storage computed while staging the layer.
type Result struct {
	// TOCDigest is the TOC digest c/storage verified (the manifest-checksum).
	TOCDigest digest.Digest
	// UncompressedDigest is the digest of the tar c/storage rebuilt from
	// the tar-split and the staged files; c/image requires it to equal the
	// config's diff_id.
	UncompressedDigest digest.Digest
	// Size is the uncompressed size of the layer.
	Size int64
	// Fallback is set, along with the error, when c/storage declined the
	// partial pull with chunked.ErrFallbackToOrdinaryLayerDownload: c/image
	// would then pull the whole blob instead of failing.
	Fallback bool
}
