// Package convert repackages container image layers as seekable eStargz
// blobs, so that a reader can later fetch and verify only the chunks of a
// file it needs.
//
// WriteEStargz is the streaming writer: it reads an uncompressed tar stream
// once, splits every regular file into fixed-size chunks, compresses the
// chunks in parallel on all cores as independent gzip members and writes
// them in order, followed by the TOC and the footer that the estargz
// package and stargz-snapshotter read. It does not call estargz.Build, which
// compresses a single large file on one core and needs the whole layer on
// disk first. Output depends only on the input and the chunk size and
// compression level, never on the number of cores.
//
// Image and Index apply the writer to every filesystem layer of an image or
// index, annotate the new layers with their TOC digest and uncompressed size,
// update the config's diff_ids and keep everything else. Layers that already
// are valid eStargz with correct annotations are kept unless WithForce is set.
// The package reads and returns go-containerregistry images; it does not
// parse image references or write destinations.
package convert
