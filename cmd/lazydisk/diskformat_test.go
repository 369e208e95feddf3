package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazydisk/lazydisk"
)

// TestConvertDiskFormat converts a compressed qcow2 containerDisk with
// --disk-format raw and qcow2: the raw disk file is byte for byte qemu-img
// convert -O raw of the source, the qcow2 passes qemu-img check and
// compares equal to the source, every layer passes the reference
// validators, and the guest sha256s before and after are the guest disk's.
func TestConvertDiskFormat(t *testing.T) {
	t.Parallel()
	needClients(t, "qemu-img")
	dir := t.TempDir()
	qcow, want := compressedQcow2(t, dir)
	sum := sha256.Sum256(want)
	wantSHA := hex.EncodeToString(sum[:])
	for _, tt := range []struct {
		diskFormat, format, file string
	}{
		{"raw", "--estargz", "vm.img"},
		{"raw", "--zstd-chunked", "vm.img"},
		{"qcow2", "--zstd-chunked", "vm.qcow2"},
	} {
		t.Run(tt.diskFormat+tt.format, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "layout")
			var res lazydisk.ConvertResult
			if err := json.Unmarshal([]byte(mustCLI(t, "convert", tt.format, "--disk-format", tt.diskFormat, "--format", "json", "disk:"+qcow, "oci:"+out+":1")), &res); err != nil {
				t.Fatal(err)
			}
			d := res.Disk
			if d == nil || d.GuestSHA256Before != wantSHA || d.GuestSHA256After != wantSHA || d.File != "disk/"+tt.file ||
				d.SourceFormat != "qcow2" || d.Format != tt.diskFormat || d.VirtualSize != int64(len(want)) {
				t.Fatalf("convert --format json disk: %+v; want guest sha256 %s", d, wantSHA)
			}
			img := layoutImage(t, out, "1")
			fileSHA := wantSHA
			if tt.diskFormat == "qcow2" {
				// The qcow2 itself, read back with lazydisk read, is checked
				// by qemu-img.
				q := filepath.Join(t.TempDir(), "out.qcow2")
				mustCLI(t, "read", "oci:"+out+":1", "--range", "all", "-o", q)
				if check := tool(t, "qemu-img", "check", "-f", "qcow2", q); !strings.Contains(check, "No errors were found") {
					t.Errorf("qemu-img check: %s", check)
				}
				tool(t, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", qcow, q)
				var info struct {
					Format      string `json:"format"`
					VirtualSize int64  `json:"virtual-size"`
					ClusterSize int64  `json:"cluster-size"`
				}
				if err := json.Unmarshal([]byte(tool(t, "qemu-img", "info", "--output=json", q)), &info); err != nil {
					t.Fatal(err)
				}
				if info.Format != "qcow2" || info.VirtualSize != int64(len(want)) || info.ClusterSize != 64<<10 {
					t.Errorf("qemu-img info: %+v", info)
				}
				fileSHA = sha256File(t, q)
			}
			if tt.format == "--estargz" {
				checkDiskImage(t, img, tt.file, fileSHA)
			} else {
				checkZstdImage(t, img, tt.file, fileSHA)
			}
		})
	}

	t.Run("text", func(t *testing.T) {
		t.Parallel()
		_, errOut, code := cli(t, "convert", "--zstd-chunked", "--disk-format", "raw", "disk:"+qcow, "oci:"+filepath.Join(t.TempDir(), "l")+":1")
		if code != 0 || !strings.Contains(errOut, "-> disk/vm.img (raw, 24.0 MiB): guest disk 24.0 MiB, sha256 "+wantSHA+" from the source, "+wantSHA+" read back: they match") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{
			{"--disk-format", "vmdk", "disk:" + qcow},
			{"--disk-format", "raw", "oci:" + filepath.Join(dir, "nope") + ":1"},
		} {
			_, errOut, code := cli(t, append(append([]string{"convert", "--estargz"}, args...), "oci:"+filepath.Join(t.TempDir(), "l")+":1")...)
			if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "disk") {
				t.Errorf("convert %v: exit %d, %q", args, code, errOut)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
			t.Errorf("a refused conversion wrote its destination")
		}
	})
}
