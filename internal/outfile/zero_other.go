//go:build !linux

package outfile

import (
	"errors"
	"os"
)

// zeroRange is not supported off Linux: zeros are written instead.
func zeroRange(*os.File, int64, int64) error { return errors.ErrUnsupported }

func logicalBlockSize(*os.File) int64 { return 512 }
