package fusefs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// FSName is the source and subtype of lazydisk's mounts: /proc/mounts lists
// them as "lazydisk DIR fuse.lazydisk ...".
const FSName = "lazydisk"

// ErrMounted is returned for a directory something live is mounted on.
var ErrMounted = errors.New("already a mount point")

// Server is a mounted tree.
type Server struct {
	srv *fuse.Server
	dir string
}

// Mount mounts root read-only on dir and serves it in the background until
// Unmount, or until the mount is removed from outside (fusermount -u,
// umount), which Wait reports. A dead lazydisk mount left on dir by a killed
// process is cleared first; anything else mounted there is an error matching
// ErrMounted. As root it mounts with mount(2), otherwise with fusermount.
func Mount(dir string, root fs.InodeEmbedder, o Options) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := ClearStale(abs); err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("mount point %s is not a directory", abs)
	}
	timeout := CacheTimeout
	negative := timeout
	if o.NoNegativeCache {
		negative = 0
	}
	flags := uintptr(syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV)
	if o.Writable {
		flags &^= syscall.MS_RDONLY
	}
	opts := &fs.Options{
		AttrTimeout:     &timeout,
		EntryTimeout:    &timeout,
		NegativeTimeout: &negative,
		MountOptions: fuse.MountOptions{
			FsName:           FSName,
			Name:             FSName,
			DirectMount:      true,
			DirectMountFlags: flags,
			AllowOther:       os.Geteuid() == 0,
			MaxReadAhead:     1 << 20,
			MaxWrite:         1 << 20,
			EnableLocks:      false,
		},
	}
	if os.Geteuid() != 0 && !o.Writable {
		opts.MountOptions.Options = []string{"ro"}
	}
	srv, err := fs.Mount(abs, root, opts)
	if err != nil {
		return nil, fmt.Errorf("mounting on %s: %w", abs, err)
	}
	return &Server{srv: srv, dir: abs}, nil
}

// Dir returns the mount point.
func (s *Server) Dir() string { return s.dir }

// Wait returns once the file system is unmounted.
func (s *Server) Wait() { s.srv.Wait() }

// Unmount unmounts the file system. When it is busy (a process has a file
// open, or its working directory in it), it is detached lazily: it leaves
// the namespace at once and the kernel drops it when the last user is gone;
// the reads of those users then fail.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err == nil {
		return nil
	}
	if err := unix.Unmount(s.dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmounting %s: %w", s.dir, err)
	}
	return nil
}

// ClearStale removes a lazydisk mount from dir whose process is gone (its
// file system answers ENOTCONN) and reports whether it did. A live mount of
// any kind on dir is an error matching ErrMounted.
func ClearStale(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(abs))
	if err != nil {
		return false, fmt.Errorf("reading the mount table: %w", err)
	}
	if len(ms) == 0 {
		return false, nil
	}
	m := ms[len(ms)-1]
	var st unix.Stat_t
	err = unix.Stat(abs, &st)
	if m.FSType == "fuse."+FSName && errors.Is(err, unix.ENOTCONN) {
		if err := unix.Unmount(abs, unix.MNT_DETACH); err != nil {
			return false, fmt.Errorf("clearing the stale mount on %s: %w", abs, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("%s is %w (%s): unmount it first", abs, ErrMounted, m.FSType)
}

// Available says why Mount cannot work here, or returns nil: it needs
// /dev/fuse, and root or a fusermount binary.
func Available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("FUSE is not available: %w", err)
	}
	f.Close()
	if os.Geteuid() == 0 {
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			return nil
		}
	}
	return errors.New("FUSE mounts need root or fusermount (apt-get install fuse3)")
}
