package convert

import "hash/crc32"

// Content-defined chunking for zstd:chunked, chosen by measurement on VM
// disks (docs/zstd-chunking.md): boundaries fall only on 4 KiB-aligned
// offsets of the file, because filesystems and qcow2 move data in whole
// blocks and clusters. A chunk of at least min bytes ends after a block
// whose CRC-32C is below cut, and any chunk ends at max bytes. A newly
// allocated qcow2 cluster shifts everything after it by 64 KiB; with fixed
// chunks that changes every later chunk, with these the boundaries move
// with the data and 77-83% of a disk's chunks survive an OS update.
//
// These constants are part of the output format: changing them changes
// every chunk digest, and with it what a reader can reuse from an earlier
// version of a disk.
const (
	// cdcBlock is the granularity of boundaries and of zero runs.
	cdcBlock = 4 << 10
	// zeroRunMin is the shortest run of all-zero blocks that becomes its
	// own zeros chunk; shorter runs are ordinary data.
	zeroRunMin = 64 << 10
	// maxZeroChunk splits longer zero runs, so that a zero chunk's frame
	// is compressed from a bounded buffer.
	maxZeroChunk = 8 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zeroBlock is shared, read-only input for zero chunks.
var zeroBlock = make([]byte, maxZeroChunk)

// cdc is the chunk boundary rule for an average chunk size.
type cdc struct {
	min, max int
	cut      uint32
}

// newCDC derives the rule from the average chunk size: min is 3/4 of it,
// max twice it, and each block after min ends the chunk with probability
// 4 KiB/(avg-min). For the default 256 KiB: 192 KiB, 512 KiB, and a cut
// when the block's CRC-32C is below 2^28 (p = 1/16).
func newCDC(avg int) cdc {
	minSize := max(avg*3/4/cdcBlock*cdcBlock, cdcBlock)
	blocks := max((avg-minSize)/cdcBlock, 1)
	return cdc{min: minSize, max: 2 * avg, cut: uint32((1 << 32) / uint64(blocks))}
}

// ends reports whether a chunk of n bytes whose last block is b ends here.
func (c cdc) ends(n int, b []byte) bool {
	return n >= c.max || n >= c.min && crc32.Checksum(b, castagnoli) < c.cut
}
