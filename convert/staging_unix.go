//go:build unix

package convert

import (
	"errors"
	"os"
	"syscall"
)

// canLock says tryLock works here.
const canLock = true

// tryLock takes an exclusive flock on f without waiting, and reports
// whether it got it.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
