// Package sample embeds a small containerDisk payload, a 24 MiB ext4
// filesystem as qcow2, so that `lazydisk demo` and tests can run the whole
// conversion with no registry and no downloads. mksample.sh regenerates it.
package sample

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
)

// Name is the file name the sample disk is written under.
const Name = "sample.qcow2"

//go:embed sample.qcow2.gz
var qcow2gz []byte

// WriteFile writes the sample disk to path.
func WriteFile(path string) error {
	zr, err := gzip.NewReader(bytes.NewReader(qcow2gz))
	if err != nil {
		return fmt.Errorf("reading embedded sample: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, zr); err != nil {
		f.Close()
		return fmt.Errorf("writing sample disk: %w", err)
	}
	return f.Close()
}
