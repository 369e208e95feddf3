// Package disk opens the VM disk inside a container image for lazy, verified
// random access: File is an io.ReaderAt over one file of a seekable layer
// (eStargz or zstd:chunked) in a registry or an OCI layout, which fetches
// only the chunks a read covers.
//
// Open reads the image's manifest and the layer's TOC (by range requests),
// and checks the TOC against the TOC digest annotation of the manifest. Each
// chunk is fetched with a range request, decompressed and checked against its
// TOC digest before any of its bytes are returned, so every byte comes from
// content the manifest names. Adjacent missing chunks are fetched with one
// request, independent requests run in parallel, zero chunks are never
// fetched, and verified chunks are kept in a bounded memory cache and, with
// WithCacheDir, in a directory that outlives the process.
//
// With WithSignature, Open first has a SignatureChecker (verify.NewChecker)
// check the image's signature and reads the manifest by the signed digest;
// content that does not match it fails with trust.ErrContentMismatch.
//
// It does not read layers that are not seekable (convert them with
// `lazydisk convert`), apply whiteouts beyond the file it reads, or write.
// It does not link the signature verifier (sigstore), the converter or
// containers/storage itself: embedders of the reader pay only for the
// registry client, the decompressors and toc (TestDeps keeps it so).
package disk
