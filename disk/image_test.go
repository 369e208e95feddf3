package disk_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
)

// TestOpenImageErrors checks that OpenImage fails cleanly, closing what it
// opened, for an image that is not there and for bad options.
func TestOpenImageErrors(t *testing.T) {
	t.Parallel()
	ref, err := image.Parse("oci:" + filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := disk.OpenImage(context.Background(), ref); err == nil {
		t.Error("OpenImage of a missing layout succeeded")
	}
	if _, err := disk.OpenImage(context.Background(), ref, disk.WithConcurrency(0)); err == nil {
		t.Error("OpenImage with concurrency 0 succeeded")
	}
	ref, err = image.Parse("disk:" + filepath.Join(t.TempDir(), "x.img"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := disk.OpenImage(context.Background(), ref); !errors.Is(err, image.ErrUnsupported) {
		t.Errorf("OpenImage of a disk: reference: %v, want ErrUnsupported", err)
	}
}
