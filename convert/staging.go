package convert

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Staging directories. Each conversion stages its converted layers in a
// directory of its own, named lazydisk-convert-PID-RANDOM, which it removes
// on every exit path (Converted.Close, or the error that ended it). A
// process killed with SIGKILL cannot, so each conversion first removes the
// staging directories that killed runs left in the same parent: those whose
// lock file no process holds, and those without a lock file (an older
// lazydisk's) that are older than staleStaging.
const (
	stagingPrefix = "lazydisk-convert-"
	// stagingLock is the file in a staging directory that its conversion
	// holds an exclusive flock(2) on while it runs: the kernel releases it
	// when the process dies, however it dies.
	stagingLock = ".lock"
	// staleStaging is the age past which a staging directory without a
	// lock file is taken as left behind: a day.
	staleStaging = 24 * time.Hour
)

// staging is a conversion's staging directory and the lock that marks it
// as in use.
type staging struct {
	dir  string
	lock *os.File
}

// newStaging removes stale staging directories from parent (os.TempDir()
// if empty), then creates and locks a new one.
func newStaging(parent string) (*staging, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	sweepStaging(parent)
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-", stagingPrefix, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("creating staging directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, stagingLock), os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err == nil {
		var ok bool
		if ok, err = tryLock(lock); err == nil && !ok {
			err = errors.New("it is locked by another process")
		}
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("locking staging directory %s: %w", dir, err)
	}
	return &staging{dir: dir, lock: lock}, nil
}

// remove unlocks and removes the staging directory.
func (s *staging) remove() error {
	if s == nil {
		return nil
	}
	s.lock.Close()
	return os.RemoveAll(s.dir)
}

// sweepStaging removes the staging directories in parent that no running
// conversion owns. Errors are ignored: what cannot be removed now is tried
// again by the next conversion.
func sweepStaging(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), stagingPrefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if stale(dir) {
			os.RemoveAll(dir)
		}
	}
}

// stale reports whether no running conversion owns dir.
func stale(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, stagingLock), os.O_RDWR, 0)
	if err != nil || !canLock {
		if f != nil {
			f.Close()
		}
		// No lock file: an older lazydisk's, or one being created this
		// instant. Only age tells.
		fi, err := os.Stat(dir)
		return err == nil && time.Since(fi.ModTime()) > staleStaging
	}
	defer f.Close() // releases the lock taken below
	ok, err := tryLock(f)
	return err == nil && ok
}
