package qcow2

import "errors"

var (
	// ErrNotQcow2 means the file does not start with the qcow2 magic.
	ErrNotQcow2 = errors.New("not a qcow2 image")
	// ErrUnsupported means a valid qcow2 image uses a version or feature
	// this reader does not implement (an unknown incompatible feature bit,
	// an unknown compression type, version 1 or above 3).
	ErrUnsupported = errors.New("unsupported qcow2 image")
	// ErrBackingFile means the image has a backing file: its unallocated
	// clusters read from another image. KubeVirt refuses such containerDisks too.
	ErrBackingFile = errors.New("qcow2 image has a backing file")
	// ErrEncrypted means the image is encrypted (AES or LUKS).
	ErrEncrypted = errors.New("qcow2 image is encrypted")
	// ErrExternalData means the image keeps its data in an external data file.
	ErrExternalData = errors.New("qcow2 image has an external data file")
	// ErrCorrupt means the image's header or tables are inconsistent: offsets
	// past the end of the file or unaligned, overlapping metadata, sizes that
	// overflow, or compressed clusters that do not decompress to a cluster.
	ErrCorrupt = errors.New("corrupt qcow2 image")
)
