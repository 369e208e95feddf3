// Package nbd is a small read-only NBD (Network Block Device) server: it
// serves disks, each an io.ReaderAt with a size, over any net.Listener (a
// unix socket, or TCP on 127.0.0.1). It is what `lazydisk serve` is to
// expose a lazily fetched disk image with. No Go NBD library is available
// to us, so the protocol (NetworkBlockDevice/nbd doc/proto.md) is
// implemented here. Its tests read through it with qemu-img, qemu-io,
// nbdinfo and nbdcopy; simple replies are kept for the Linux kernel client,
// which the tests do not run.
//
// It speaks the fixed newstyle handshake with NBD_OPT_EXPORT_NAME, INFO, GO,
// LIST, ABORT, STRUCTURED_REPLY and LIST/SET_META_CONTEXT for
// "base:allocation", and serves NBD_CMD_READ (simple or structured replies,
// holes where a Backend that is an Extenter reports zeros), NBD_CMD_FLUSH
// (nothing to do) and NBD_CMD_BLOCK_STATUS. Requests of one connection are
// answered concurrently, and several connections may share one Backend.
// ParseAddress, Listen and URI give the listener for a unix:// or tcp://
// address (replacing a unix socket left by a server that is gone) and the
// NBD URI (doc/uri.md) clients connect with.
//
// It deliberately does not write: exports are read-only, and NBD_CMD_WRITE,
// TRIM and WRITE_ZEROES fail with EPERM. It has no TLS (NBD_OPT_STARTTLS is
// unsupported, so keep it on a unix socket or loopback), no oldstyle or
// non-fixed newstyle handshake, no extended headers, no NBD_CMD_CACHE, and
// no authentication. It does not cache or read ahead: that is the Backend's
// business.
package nbd
