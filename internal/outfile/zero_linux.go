package outfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// zeroRange has the kernel zero [off, off+n) of a block device without
// sending zeros through memory (BLKZEROOUT by way of fallocate). off and n
// are multiples of the device's logical block size.
func zeroRange(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// logicalBlockSize is the device's logical block size, 512 when unknown.
func logicalBlockSize(f *os.File) int64 {
	if n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET); err == nil && n > 0 {
		return int64(n)
	}
	return 512
}
