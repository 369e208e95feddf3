// Package embed is a module outside lazydisk's that uses it only through its
// public packages, as a program embedding lazydisk would: its test converts a
// disk file into a registry on 127.0.0.1 (go-containerregistry's in-process
// registry), signs and verifies the result, and reads the disk lazily under
// the key. If a public API ever needed an internal/ type, this module would
// stop compiling; `make test` runs it.
package embed
