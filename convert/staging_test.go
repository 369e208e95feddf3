package convert

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStaging checks that a conversion's staging directory is locked while
// it exists and removed by remove, and that newStaging sweeps away the
// directories of conversions that are gone, and only those.
func TestStaging(t *testing.T) {
	if !canLock {
		t.Skip("no flock on this system")
	}
	t.Parallel()
	parent := t.TempDir()
	mk := func(name string, lock bool, age time.Duration) string {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if lock {
			if err := os.WriteFile(filepath.Join(dir, stagingLock), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if age > 0 {
			old := time.Now().Add(-age)
			if err := os.Chtimes(dir, old, old); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	killed := mk(stagingPrefix+"1-killed", true, 0)             // lock file, nobody holds it
	oldNoLock := mk(stagingPrefix+"2-old", false, 25*time.Hour) // an older lazydisk's
	newNoLock := mk(stagingPrefix+"3-new", false, time.Hour)    // being created, or recent
	other := mk("something-else", false, 48*time.Hour)
	live, err := newStaging(parent) // holds its lock
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{killed: false, oldNoLock: false, newNoLock: true, other: true, live.dir: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s: exists %t, want %t", filepath.Base(dir), err == nil, want)
		}
	}
	// A second conversion leaves the first, which is running, alone.
	second, err := newStaging(parent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live.dir); err != nil {
		t.Errorf("a running conversion's staging directory was removed: %v", err)
	}
	for _, s := range []*staging{live, second} {
		if err := s.remove(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
			t.Errorf("%s still exists after remove: %v", s.dir, err)
		}
	}
}
