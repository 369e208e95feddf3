// Package outfile opens the files a user names for lazydisk to write: disk
// bytes (read -o), digest files, keys. One rule covers every kind of path:
//
//   - a regular file, or a path that does not exist yet, is written
//     atomically: a temporary file beside it, fsync, rename over it, so a
//     failure leaves the old file (or nothing) behind. An existing file keeps
//     its mode and, where the process may, its owner.
//   - anything else that exists (a block or character device, a FIFO,
//     /dev/stdout, /dev/fd/N) is opened and written in place: never removed,
//     renamed over or truncated. A block device smaller than what is to be
//     written is refused before a byte is written. A socket is refused.
//   - a symlink is followed, and the rule applies to what it points at; the
//     link itself is never replaced.
//
// A File also knows how to leave zeros unwritten (Skip): a hole in a sparse
// regular file, nothing at all on a block device that already reads as
// zeros, zeros written everywhere else. It does not decide which bytes are
// zeros; its callers (the lazy reader's TOC) know that.
package outfile

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/lazydisk/lazydisk/internal/size"
)

// Kind is what a path names, after symlinks.
type Kind int

const (
	// Regular is a regular file or a new path: written atomically.
	Regular Kind = iota
	// BlockDevice is written in place, at offsets from 0.
	BlockDevice
	// CharDevice is written in place as a stream (/dev/null, a tty).
	CharDevice
	// FIFO is written in place as a stream; opening waits for a reader.
	FIFO
	// Descriptor is an open file descriptor named as /dev/stdout,
	// /dev/stderr, /dev/fd/N or /proc/self/fd/N, written as a stream at its
	// current offset.
	Descriptor
)

func (k Kind) String() string {
	switch k {
	case Regular:
		return "regular file"
	case BlockDevice:
		return "block device"
	case CharDevice:
		return "character device"
	case FIFO:
		return "FIFO"
	case Descriptor:
		return "file descriptor"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Sparse says which zeros become holes in a regular file.
type Sparse int

const (
	// SparseAuto leaves holes where the caller says the bytes are zeros
	// (Skip). It is the default.
	SparseAuto Sparse = iota
	// SparseAlways also leaves holes for every aligned 4 KiB block of
	// zeros in what is written (as cp --sparse=always and qemu-img -S 4k).
	SparseAlways
	// SparseNever writes every byte: a fully allocated file.
	SparseNever
)

// ParseSparse parses "auto", "always" or "never".
func ParseSparse(s string) (Sparse, error) {
	switch s {
	case "auto", "":
		return SparseAuto, nil
	case "always":
		return SparseAlways, nil
	case "never":
		return SparseNever, nil
	}
	return 0, fmt.Errorf("sparse mode %q: use auto, always or never", s)
}

// holeBlock is the block size SparseAlways looks for zeros in: the usual
// file system block.
const holeBlock = 4096

type options struct {
	perm         os.FileMode
	need         int64
	sparse       Sparse
	deviceZeroed bool
}

// Option configures Create.
type Option func(*options)

// WithPerm sets the permission bits of a new regular file, less the umask.
// An existing file keeps its mode, less any bit perm does not have (so a
// private key written with 0600 never stays group-readable). The default is
// 0666.
func WithPerm(perm os.FileMode) Option { return func(o *options) { o.perm = perm.Perm() } }

// WithSize says how many bytes will be written, so that a block device too
// small for them is refused before anything is written. The default, -1,
// checks nothing.
func WithSize(n int64) Option { return func(o *options) { o.need = n } }

// WithSparse sets which zeros become holes in a regular file. The default is
// SparseAuto. It changes nothing for devices and streams.
func WithSparse(s Sparse) Option { return func(o *options) { o.sparse = s } }

// WithDeviceZeroed(true) says a block device already reads as zeros wherever
// zeros are to be written, so Skip leaves those regions untouched (as nbdcopy
// --destination-is-zero). The default, false, writes zeros to devices.
func WithDeviceZeroed(zeroed bool) Option { return func(o *options) { o.deviceZeroed = zeroed } }

// File is an output opened by Create. Write appends at its position; Skip
// advances over zeros. Commit makes the output final; Abort drops a regular
// file's temporary copy. A File is not safe for concurrent use.
type File struct {
	name   string // the path as the user named it
	target string // after symlinks; for Regular, the path renamed over
	kind   Kind
	o      options

	f   *os.File      // nil for a Stream
	buf *bufio.Writer // streams are written through it; files and devices at offsets
	pos int64

	tmp       string      // Regular: the temporary file
	keepMode  os.FileMode // Regular: the mode of the file replaced
	owner     *syscall.Stat_t
	devSize   int64 // BlockDevice
	sector    int64 // BlockDevice: its logical block size, the alignment the kernel's zeroing needs
	finished  bool
	zeroWrite bool // BlockDevice: fallocate zeroing failed once; write zeros
}

// Create opens path for writing by the rule in the package doc. ctx bounds
// the wait for a FIFO's reader.
func Create(ctx context.Context, path string, opts ...Option) (*File, error) {
	o := options{perm: 0o666, need: -1}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" {
		return nil, errors.New("no output path given")
	}
	out := &File{name: path, target: path, o: o}
	if fd, ok := descriptor(path); ok {
		return out.openDescriptor(fd)
	}
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return nil, fmt.Errorf("%s: symlink to nothing that can be written (%w)", path, unwrapPath(err))
		}
		out.target = target
		fi, err = os.Stat(target)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return out.createRegular(nil)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	m := fi.Mode()
	switch {
	case m.IsRegular():
		return out.createRegular(fi)
	case m.IsDir():
		return nil, fmt.Errorf("%s is a directory: name a file in it", path)
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		out.kind = BlockDevice
		return out.openDevice()
	case m&fs.ModeCharDevice != 0:
		out.kind = CharDevice
		return out.openStream(ctx)
	case m&fs.ModeNamedPipe != 0:
		out.kind = FIFO
		return out.openStream(ctx)
	case m&fs.ModeSocket != 0:
		return nil, fmt.Errorf("%s is a socket: lazydisk writes files, devices and FIFOs, not sockets", path)
	}
	return nil, fmt.Errorf("%s: cannot write to a file of mode %s", path, m)
}

// descriptor reports whether path names an open file descriptor.
func descriptor(path string) (int, bool) {
	switch path {
	case "/dev/stdout":
		return 1, true
	case "/dev/stderr":
		return 2, true
	}
	for _, p := range []string{"/dev/fd/", "/proc/self/fd/"} {
		if s, ok := strings.CutPrefix(path, p); ok {
			if n, err := strconv.Atoi(s); err == nil && n >= 0 {
				return n, true
			}
		}
	}
	return 0, false
}

func (out *File) openDescriptor(fd int) (*File, error) {
	dup, err := syscall.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", out.name, err)
	}
	syscall.CloseOnExec(dup)
	out.kind = Descriptor
	out.f = os.NewFile(uintptr(dup), out.name)
	out.buf = bufio.NewWriterSize(out.f, 1<<20)
	return out, nil
}

func (out *File) createRegular(old fs.FileInfo) (*File, error) {
	dir, base := filepath.Split(out.target)
	var suffix [6]byte
	rand.Read(suffix[:])
	tmp := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(suffix[:]))
	perm := out.o.perm
	if old != nil {
		perm = old.Mode().Perm() & out.o.perm
		out.keepMode = perm
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			out.owner = st
		}
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", out.name, unwrapPath(err))
	}
	out.kind, out.f, out.tmp = Regular, f, tmp
	return out, nil
}

func (out *File) openDevice() (*File, error) {
	f, err := os.OpenFile(out.target, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", out.name, unwrapPath(err))
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: size of the block device: %w", out.name, err)
	}
	if out.o.need > n {
		f.Close()
		return nil, fmt.Errorf("%s: block device of %s, smaller than the %s to write", out.name, size.Format(n), size.Format(out.o.need))
	}
	out.f, out.devSize, out.sector = f, n, logicalBlockSize(f)
	return out, nil
}

// openStream opens a character device or FIFO for writing, in place. A FIFO's
// open waits for a reader; ctx ends the wait.
func (out *File) openStream(ctx context.Context) (*File, error) {
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(out.target, os.O_WRONLY, 0)
		ch <- opened{f, err}
	}()
	var r opened
	select {
	case r = <-ch:
	case <-ctx.Done():
		// A reader of our own lets the blocked open return, so that no
		// goroutine stays stuck in it; then both ends are closed.
		if rd, err := os.OpenFile(out.target, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			r = <-ch
			rd.Close()
			if r.f != nil {
				r.f.Close()
			}
		}
		return nil, fmt.Errorf("%s: waiting for a reader of the %s: %w", out.name, out.kind, ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", out.name, unwrapPath(r.err))
	}
	out.f = r.f
	out.buf = bufio.NewWriterSize(r.f, 1<<20)
	return out, nil
}

// Stream is a File over w, a stream of the kind Descriptor named name (for
// messages): what a command writes to its standard output.
func Stream(w io.Writer, name string) *File {
	buf := bufio.NewWriterSize(w, 1<<20)
	return &File{name: name, target: name, kind: Descriptor, o: options{perm: 0o666, need: -1}, buf: buf}
}

// Name is the path as the user named it.
func (out *File) Name() string { return out.name }

// Kind is what the path names, after symlinks.
func (out *File) Kind() Kind { return out.kind }

// Written is the position: the bytes written and skipped so far.
func (out *File) Written() int64 { return out.pos }

// holes reports whether Skip may leave a region unwritten.
func (out *File) holes() bool {
	switch out.kind {
	case Regular:
		return out.o.sparse != SparseNever
	case BlockDevice:
		return out.o.deviceZeroed
	}
	return false
}

// Write writes p at the position. With SparseAlways, aligned 4 KiB blocks of
// zeros in p are skipped as Skip would.
func (out *File) Write(p []byte) (int, error) {
	if out.finished {
		return 0, fmt.Errorf("%s: write after the output was closed", out.name)
	}
	if err := out.checkRoom(int64(len(p))); err != nil {
		return 0, err
	}
	if out.o.sparse == SparseAlways && out.holes() {
		return out.writeSparse(p)
	}
	return out.writeAt(p)
}

func (out *File) writeAt(p []byte) (int, error) {
	var n int
	var err error
	if out.buf != nil {
		n, err = out.buf.Write(p)
	} else {
		n, err = out.f.WriteAt(p, out.pos)
	}
	out.pos += int64(n)
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", out.name, unwrapPath(err))
	}
	return n, nil
}

// writeSparse writes p, leaving out the aligned holeBlock-sized runs of zeros.
func (out *File) writeSparse(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		// The data up to the next block boundary, or a whole block.
		n := min(len(p)-done, holeBlock-int(out.pos%holeBlock))
		chunk := p[done : done+n]
		if n == holeBlock && allZero(chunk) {
			// Count the whole run of zero blocks, then skip it.
			for done+n+holeBlock <= len(p) && allZero(p[done+n:done+n+holeBlock]) {
				n += holeBlock
			}
			out.pos += int64(n)
		} else if m, err := out.writeAt(chunk); err != nil {
			return done + m, err
		}
		done += n
	}
	return done, nil
}

var zeros = make([]byte, 1<<20)

func allZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeros))
		if !bytes.Equal(p[:n], zeros[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// Skip advances over n bytes that are zeros: a hole in a sparse regular file
// or on a block device given WithDeviceZeroed, zeros written otherwise (on a
// block device, by the kernel's zeroing where it can).
func (out *File) Skip(n int64) error {
	if out.finished {
		return fmt.Errorf("%s: write after the output was closed", out.name)
	}
	if n <= 0 {
		return nil
	}
	if err := out.checkRoom(n); err != nil {
		return err
	}
	if out.holes() {
		out.pos += n
		return nil
	}
	if out.kind == BlockDevice && !out.zeroWrite {
		// The kernel zeroes the aligned middle; the ends are written.
		head := min(n, (out.sector-out.pos%out.sector)%out.sector)
		mid := (n - head) / out.sector * out.sector
		if mid > 0 {
			if err := out.writeZeros(head); err != nil {
				return err
			}
			if err := zeroRange(out.f, out.pos, mid); err == nil {
				out.pos += mid
				return out.writeZeros(n - head - mid)
			}
			out.zeroWrite = true // not supported here: write zeros from now on
			n -= head
		}
	}
	return out.writeZeros(n)
}

func (out *File) writeZeros(n int64) error {
	for n > 0 {
		m := min(n, int64(len(zeros)))
		if _, err := out.writeAt(zeros[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// checkRoom refuses writes past the end of a block device.
func (out *File) checkRoom(n int64) error {
	if out.kind == BlockDevice && out.pos+n > out.devSize {
		return fmt.Errorf("%s: writing past the end of the block device (%s)", out.name, size.Format(out.devSize))
	}
	return nil
}

// Commit makes the output final. A regular file gets its size (a trailing
// hole included), is synced and renamed over the target; a block device is
// synced; a stream is flushed. The File is closed either way.
func (out *File) Commit() error {
	if out.finished {
		return nil
	}
	out.finished = true
	var err error
	if out.buf != nil {
		err = out.buf.Flush()
	}
	switch out.kind {
	case Regular:
		err = errors.Join(err, out.f.Truncate(out.pos), out.f.Sync())
		if out.owner != nil {
			// Best effort: only root may give a file away.
			_ = out.f.Chown(int(out.owner.Uid), int(out.owner.Gid))
			err = errors.Join(err, out.f.Chmod(out.keepMode))
		}
		err = errors.Join(err, out.f.Close())
		if err == nil {
			err = os.Rename(out.tmp, out.target)
		}
		if err != nil {
			os.Remove(out.tmp)
		}
	case BlockDevice:
		err = errors.Join(err, out.f.Sync(), out.f.Close())
	default:
		if out.f != nil {
			err = errors.Join(err, out.f.Close())
		}
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out.name, unwrapPath(err))
	}
	return nil
}

// Abort closes the File without making it final: a regular file's
// temporary copy is removed, so the target is as it was. Devices and streams
// keep what was written. Abort after Commit does nothing.
func (out *File) Abort() {
	if out.finished {
		return
	}
	out.finished = true
	if out.buf != nil {
		out.buf.Flush() // a stream's reader gets what was written
	}
	if out.f != nil {
		out.f.Close()
	}
	if out.kind == Regular {
		os.Remove(out.tmp)
	}
}

// WriteFile writes data to path by the rule in the package doc, with the
// permission bits perm for a new file (less the umask).
func WriteFile(ctx context.Context, path string, data []byte, perm os.FileMode) error {
	out, err := Create(ctx, path, WithPerm(perm), WithSize(int64(len(data))))
	if err != nil {
		return err
	}
	if _, err := out.Write(data); err != nil {
		out.Abort()
		return err
	}
	return out.Commit()
}

// unwrapPath drops the *fs.PathError around err: the callers name the path
// themselves, as the user wrote it.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
