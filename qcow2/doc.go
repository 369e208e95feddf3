// Package qcow2 reads the guest (virtual) disk of a qcow2 image: Image is an
// io.ReaderAt of the disk the guest sees, over any io.ReaderAt of the qcow2
// file, such as a disk.File that fetches chunks from a registry as they are
// read. Extents reports which ranges hold data, read as zeros, or are not
// allocated, so NBD block status and sparse copies need not read them.
//
// It reads versions 2 and 3: L1 and L2 tables, standard and extended L2
// entries (subclusters), zero clusters and subclusters, unallocated clusters
// (zeros, as there is no backing file), and compressed clusters with deflate
// or zstd. Metadata is checked before it is used: tables and clusters past
// the end of the file, L2 tables or data overlapping other metadata, and
// sizes that overflow are refused (ErrCorrupt). Memory is bounded: L2 tables
// and decompressed clusters are kept in caches with a byte limit.
//
// Layout plans and streams a new uncompressed qcow2 of a guest disk (what
// `convert --disk-format qcow2` writes): its size is known before the first
// byte, so it can be a tar entry.
//
// It deliberately does not modify images, follow backing files, decrypt, read
// external data files or snapshots, or look at refcounts (which only
// matter to writers); images that need any of these are refused with an
// error that errors.Is matches against the sentinels in errors.go. The spec
// is qemu's docs/interop/qcow2.txt; no Go qcow2 module was usable here (see
// docs/qcow2.md), so the reader is written from the spec.
package qcow2
