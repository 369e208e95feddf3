package disk

import "errors"

var (
	// ErrChunkDigest means a fetched chunk did not decompress to the bytes
	// its TOC digest names: the blob was corrupted or tampered with.
	ErrChunkDigest = errors.New("chunk does not match its TOC digest")
	// ErrNoTOCDigest means a seekable layer's descriptor has no TOC digest
	// annotation, so its TOC cannot be traced to the manifest.
	ErrNoTOCDigest = errors.New("layer has no TOC digest annotation")
	// ErrFileNotFound means the image has no such file, or no single disk
	// file under /disk/ when no file was named.
	ErrFileNotFound = errors.New("file not found in the image")
	// ErrEmptyDisk means the file is 0 bytes long: there is nothing to read
	// or serve.
	ErrEmptyDisk = errors.New("the disk file is empty")
	// ErrUnverifiable means the file has chunks without a digest in the TOC.
	ErrUnverifiable = errors.New("TOC has no chunk digests to verify the file with")
)
