// Package convert repackages container image layers as seekable eStargz or
// zstd:chunked blobs, so that a reader can later fetch and verify only the
// chunks of a file it needs.
//
// WriteEStargz and WriteZstdChunked are the streaming writers: they read an
// uncompressed tar stream once, cut every regular file into chunks (fixed
// size for eStargz, content-defined on 4 KiB blocks for zstd:chunked),
// compress the chunks in parallel on all cores as independent gzip members
// or zstd frames, write them in order, and end the blob with the TOC (and,
// for zstd:chunked, the tar-split) that the estargz package,
// stargz-snapshotter and containers/storage read. They do not call
// estargz.Build or containers/storage's compressor, which compress a single
// large file on one core. Output depends only on the input, the chunk size
// and the compression level, never on the number of cores.
//
// Image and Index apply a writer to every filesystem layer of an image or
// index, annotate the new layers as the format requires, update the
// config's diff_ids and keep everything else. Layers that already are valid
// in the target format with correct annotations are kept unless WithForce
// is set. The package reads and returns go-containerregistry images; it does
// not parse image references or write destinations.
package convert
