package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/internal/guest"
	"github.com/lazydisk/lazydisk/qcow2"
)

// DiskFormat is the format a disk: source's disk is written in.
type DiskFormat string

const (
	// DiskKeep keeps the file as it is (the default).
	DiskKeep DiskFormat = "keep"
	// DiskRaw writes the guest's disk as raw, disk/<name>.img: a compressed
	// qcow2's clusters decompressed, its holes as runs of zeros, which the
	// seekable writers store as zero chunks.
	DiskRaw DiskFormat = "raw"
	// DiskQcow2 writes an uncompressed qcow2 (version 3, 64 KiB clusters)
	// with the same guest content, so chunk compression works and a guest
	// read maps to one chunk.
	DiskQcow2 DiskFormat = "qcow2"
)

// ParseDiskFormat parses raw, qcow2 or keep ("" is keep).
func ParseDiskFormat(s string) (DiskFormat, error) {
	switch DiskFormat(s) {
	case "", DiskKeep:
		return DiskKeep, nil
	case DiskRaw, DiskQcow2:
		return DiskFormat(s), nil
	}
	return "", fmt.Errorf("disk format %q: use raw, qcow2 or keep", s)
}

// WithDiskFormat re-encodes the disk of a disk: source while its layer is
// streamed (see DiskFormat); the guest's content stays bit for bit the
// same, and DiskConversionOf reports its sha256. A qcow2 that the qcow2
// reader refuses (backing file, encryption, corrupt) fails Read. Other
// transports ignore it. The default is DiskKeep.
func WithDiskFormat(f DiskFormat) Option {
	return func(o *options) error {
		if _, err := ParseDiskFormat(string(f)); err != nil {
			return err
		}
		o.diskFormat = f
		return nil
	}
}

// DiskConversion describes the disk of a disk: image built with
// WithDiskFormat.
type DiskConversion struct {
	// File is the disk's path in the image, Source the file it came from.
	File   string `json:"file"`
	Source string `json:"source"`
	// SourceFormat and Format are the disk formats (qcow2 or raw) before and after.
	SourceFormat string `json:"sourceFormat"`
	Format       string `json:"format"`
	// SourceSize is the source file's size.
	SourceSize int64 `json:"sourceSize"`
	// VirtualSize is the guest disk's size; Size the new file's.
	VirtualSize int64 `json:"virtualSize"`
	Size        int64 `json:"size"`
	// GuestSHA256 is the sha256 of the guest disk read from the source, once
	// the layer has been streamed whole.
	GuestSHA256 string `json:"guestSHA256,omitempty"`
}

// DiskConversionOf returns what WithDiskFormat did to the disk of img, a
// disk: image; false for other images and DiskKeep.
func DiskConversionOf(img v1.Image) (DiskConversion, bool) {
	di, ok := img.(*diskImage)
	if !ok || di.layer.enc == nil {
		return DiskConversion{}, false
	}
	e := di.layer.enc
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.info, true
}

// diskEncoding is how a disk layer re-encodes its file.
type diskEncoding struct {
	target DiskFormat
	// layout is the uncompressed qcow2's, for DiskQcow2.
	layout *qcow2.Layout

	mu   sync.Mutex
	info DiskConversion
}

// fileAt is an open file as a guest.File.
type fileAt struct {
	*os.File
	size int64
}

func (f fileAt) Size() int64 { return f.size }

// newDiskEncoding opens the disk at path (size bytes) to plan writing it
// as target.
func newDiskEncoding(r Reference, path string, size int64, target DiskFormat) (*diskEncoding, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", r, err)
	}
	defer f.Close()
	v, err := guest.Open(fileAt{f, size})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r, err)
	}
	base := filepath.Base(path)
	e := &diskEncoding{target: target, info: DiskConversion{
		Source: path, SourceSize: size, SourceFormat: v.Format(), Format: string(target), VirtualSize: v.Size(),
	}}
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	switch target {
	case DiskRaw:
		e.info.File, e.info.Size = containerDiskDir+stem+".img", v.Size()
	case DiskQcow2:
		es, err := v.Extents(0, v.Size())
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", r, err)
		}
		var data []qcow2.Extent
		for _, x := range es {
			if !x.Zero {
				data = append(data, qcow2.Extent{Offset: x.Offset, Length: x.Length, Kind: qcow2.Data})
			}
		}
		if e.layout, err = qcow2.NewLayout(v.Size(), data); err != nil {
			return nil, fmt.Errorf("planning the qcow2 of %s: %w", r, err)
		}
		e.info.File, e.info.Size = containerDiskDir+stem+".qcow2", e.layout.Size()
	}
	return e, nil
}

// write writes the re-encoded disk read from f to w, and records the
// guest's sha256.
func (e *diskEncoding) write(w io.Writer, f *os.File, size int64) error {
	v, err := guest.Open(fileAt{f, size})
	if err != nil {
		return err
	}
	h := sha256.New()
	switch e.target {
	case DiskRaw:
		n, err := v.WriteRange(io.MultiWriter(w, h), 0, v.Size())
		if err != nil {
			return err
		}
		if n != e.info.Size {
			return fmt.Errorf("wrote %d bytes of a %d-byte guest disk", n, e.info.Size)
		}
	case DiskQcow2:
		if err := e.layout.Write(w, v, h); err != nil {
			return err
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.info.GuestSHA256 != "" && e.info.GuestSHA256 != sum {
		return fmt.Errorf("the guest disk of %s changed while it was read (sha256 %s, earlier %s)", e.info.Source, sum, e.info.GuestSHA256)
	}
	e.info.GuestSHA256 = sum
	return nil
}
