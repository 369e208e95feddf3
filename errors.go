package lazydisk

import "errors"

var (
	// ErrDiskFormat means WithDiskFormat asked to re-encode the disk of a
	// source that is not a disk: file.
	ErrDiskFormat = errors.New("cannot re-encode this source's disk")
	// ErrGuestMismatch means the guest disk read back from the destination
	// after WithDiskFormat is not the source's guest disk.
	ErrGuestMismatch = errors.New("the converted guest disk does not match the source's")
)
