// Package lazydisk holds the workflows the lazydisk command runs, as one
// library call each, for programs that want the whole job rather than its
// parts: Convert reads an image, converts its layers to eStargz or
// zstd:chunked, writes the result, copies the source's signatures that stay
// valid and signs the result.
//
// The parts are packages of their own: image (references, registries and
// layouts), convert (the writers and image conversion), toc (a seekable
// layer's index), annotate, sign, verify, and disk (the lazy reader). This
// package only wires them, which is why it, and not convert, may import
// sign. It does not log; progress is reported through callbacks.
package lazydisk
