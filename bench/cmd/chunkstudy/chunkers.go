package main

import (
	"bytes"
	"fmt"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"hash/crc32"
	"math"
	"math/bits"

	"go.podman.io/storage/pkg/chunked/compressor"
)

// A span is a run of a disk file that becomes one chunk of the TOC: a
// data chunk, or a zeros chunk that readers never fetch.
type span struct {
	off, size int64
	zeros     bool
}

// zeroRule says which runs of zero bytes become zeros chunks.
type zeroRule struct {
	name string
	// align is the granularity of zero runs: 1 for any byte run
	// (containers/storage), 4096 for runs of whole 4 KiB-aligned blocks;
	// 0 when no runs are cut out and only data chunks that happen to be
	// all zero become zeros chunks.
	align int
	// min is the shortest run that is cut out, in bytes.
	min int
}

var (
	// zerosWhole cuts no runs out: a chunk that is all zero becomes a zeros
	// chunk, others stay data.
	zerosWhole = zeroRule{name: "all-zero chunks", align: 0}
	// zerosBytes1K is containers/storage's rule (holesThreshold): any run of
	// at least 1 KiB of zero bytes, wherever it starts.
	zerosBytes1K = zeroRule{name: "runs >= 1 KiB", align: 1, min: 1 << 10}
	// zerosBlocks4K cuts out runs of whole zero 4 KiB blocks at 4 KiB-aligned
	// file offsets.
	zerosBlocks4K = zeroRule{name: "4 KiB blocks", align: 4 << 10, min: 4 << 10}
	// zerosBlocks64K cuts out runs of at least 16 whole zero 4 KiB blocks.
	zerosBlocks64K = zeroRule{name: "runs >= 64 KiB of 4 KiB blocks", align: 4 << 10, min: 64 << 10}
)

// A chunker splits a whole disk file into spans that tile it. Boundaries
// depend on the file's bytes only.
type chunker struct {
	name  string
	zeros zeroRule
	// split appends the chunks of data, a run of the file without zero
	// runs that starts at file offset base.
	split func(data []byte, base int64, out []span) []span
	// whole, when set, chunks the whole file itself, zero runs included
	// (containers/storage's own chunker).
	whole func(data []byte) []span
}

func (c chunker) String() string { return c.name + ", zeros: " + c.zeros.name }

// chunk splits the file data into spans.
func (c chunker) chunk(data []byte) []span {
	if c.whole != nil {
		return c.whole(data)
	}
	var out []span
	if c.zeros.align == 0 {
		out = c.split(data, 0, out)
		for i := range out {
			out[i].zeros = allZero(data[out[i].off : out[i].off+out[i].size])
		}
		return out
	}
	var start int64
	for _, z := range zeroRuns(data, c.zeros) {
		if z.off > start {
			out = c.split(data[start:z.off], start, out)
		}
		out = append(out, z)
		start = z.off + z.size
	}
	if start < int64(len(data)) {
		out = c.split(data[start:], start, out)
	}
	return out
}

var zeroBlock [64 << 10]byte

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// zeroRuns returns the zero runs of data that rule cuts out, in order, as
// zeros spans.
func zeroRuns(data []byte, rule zeroRule) []span {
	var out []span
	if rule.align == 1 {
		i := 0
		for i < len(data) {
			j := bytes.IndexByte(data[i:], 0)
			if j < 0 {
				break
			}
			i += j
			end := i + 1
			for end < len(data) && data[end] == 0 {
				end++
			}
			if end-i >= rule.min {
				out = append(out, span{off: int64(i), size: int64(end - i), zeros: true})
			}
			i = end
		}
		return out
	}
	a := rule.align
	run := -1 // start of the current run of zero blocks, or -1
	flush := func(end int) {
		if run >= 0 && end-run >= rule.min {
			out = append(out, span{off: int64(run), size: int64(end - run), zeros: true})
		}
		run = -1
	}
	for off := 0; off < len(data); off += a {
		end := min(off+a, len(data))
		if allZero(data[off:end]) {
			if run < 0 {
				run = off
			}
			continue
		}
		flush(off)
	}
	flush(len(data))
	return out
}

// fixedSplit cuts at every multiple of size of the file offset.
func fixedSplit(size int) func([]byte, int64, []span) []span {
	return func(data []byte, base int64, out []span) []span {
		off, end := base, base+int64(len(data))
		for off < end {
			next := min((off/int64(size)+1)*int64(size), end)
			out = append(out, span{off: off, size: next - off})
			off = next
		}
		return out
	}
}

// cstorageRollsumBits is containers/storage's RollsumBits: a data chunk
// ends where the low 16 bits of the rolling sum are all ones.
const cstorageRollsumBits = 16

// cstorageHolesThreshold is containers/storage's holesThreshold.
const cstorageHolesThreshold = 1 << 10

// cstorageChunks chunks data exactly as containers/storage's
// writeZstdChunkedStream chunks a file (go.podman.io/storage
// pkg/chunked/compressor/compressor.go, v1.65.0): one RollSum for the whole
// file, never reset; a run of at least 1 KiB of zero bytes is a zeros chunk
// and ends the data chunk before it; its bytes are rolled into the sum but
// no split is tested inside it; shorter zero runs are data like any byte.
// It is written over a byte slice rather than the original's byte-at-a-time
// state machine, and TestCStorageChunksMatch checks that the boundaries
// are the same.
func cstorageChunks(data []byte) []span {
	rs := compressor.NewRollSum()
	var out []span
	start, i := 0, 0
	n := len(data)
	for i < n {
		end := i + 1 // the bytes [i, end) are rolled one by one
		if data[i] == 0 {
			for end < n && data[end] == 0 {
				end++
			}
			if end-i >= cstorageHolesThreshold {
				if i > start {
					out = append(out, span{off: int64(start), size: int64(i - start)})
				}
				for range end - i {
					rs.Roll(0)
				}
				out = append(out, span{off: int64(i), size: int64(end - i), zeros: true})
				i, start = end, end
				continue
			}
		}
		for ; i < end; i++ {
			rs.Roll(data[i])
			if rs.OnSplitWithBits(cstorageRollsumBits) {
				out = append(out, span{off: int64(start), size: int64(i + 1 - start)})
				start = i + 1
			}
		}
	}
	if start < n {
		out = append(out, span{off: int64(start), size: int64(n - start)})
	}
	return out
}

// rollsumSplit is containers/storage's rolling sum with another number of
// bits and with bounds: a chunk ends where the low bits of the sum are all
// ones and it is at least min bytes long, or when it reaches max bytes (0:
// no bound). The sum starts afresh in each run between zero runs.
func rollsumSplit(nbits uint32, minSize, maxSize int) func([]byte, int64, []span) []span {
	return func(data []byte, base int64, out []span) []span {
		rs := compressor.NewRollSum()
		start := 0
		for i, b := range data {
			rs.Roll(b)
			size := i + 1 - start
			if (size >= minSize && rs.OnSplitWithBits(nbits)) || size == maxSize {
				out = append(out, span{off: base + int64(start), size: int64(size)})
				start = i + 1
			}
		}
		if start < len(data) {
			out = append(out, span{off: base + int64(start), size: int64(len(data) - start)})
		}
		return out
	}
}

// gearTable is FastCDC's table of 256 random 64-bit values, here the first
// 256 outputs of SplitMix64 seeded with 0.
var gearTable = func() (t [256]uint64) {
	var s uint64
	for i := range t {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		t[i] = z ^ (z >> 31)
	}
	return t
}()

// fastCDCSplit is FastCDC (Xia et al., USENIX ATC 2016) with normalized
// chunking level 2: a gear hash (fp = fp<<1 + gear[b]) from the min-th
// byte of the chunk on; before avg bytes a chunk ends where the top
// log2(avg)+2 bits of fp are zero, after it where the top log2(avg)-2
// bits are, and at max bytes in any case. avg must be a power of two.
func fastCDCSplit(minSize, avg, maxSize int) func([]byte, int64, []span) []span {
	b := bits.Len(uint(avg)) - 1
	maskS := ^uint64(0) << (64 - (b + 2))
	maskL := ^uint64(0) << (64 - (b - 2))
	cut := func(data []byte) int {
		n := len(data)
		if n <= minSize {
			return n
		}
		n = min(n, maxSize)
		normal := min(avg, n)
		var fp uint64
		i := minSize
		for ; i < normal; i++ {
			fp = fp<<1 + gearTable[data[i]]
			if fp&maskS == 0 {
				return i + 1
			}
		}
		for ; i < n; i++ {
			fp = fp<<1 + gearTable[data[i]]
			if fp&maskL == 0 {
				return i + 1
			}
		}
		return n
	}
	return func(data []byte, base int64, out []span) []span {
		off := 0
		for off < len(data) {
			n := cut(data[off:])
			out = append(out, span{off: base + int64(off), size: int64(n)})
			off += n
		}
		return out
	}
}

// cdcBlock is the block of blockCDCSplit: the file system block, and the
// alignment of everything a disk image moves by (ext4 blocks, qcow2
// clusters).
const cdcBlock = 4 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockCDC is content-defined chunking at 4 KiB-block granularity: chunk
// boundaries are only at 4 KiB-aligned file offsets, and a chunk of at
// least min bytes ends after a block whose CRC-32C is below t1 while the
// chunk is shorter than normal, or below t2 from then on; a chunk ends at
// max bytes in any case. min, normal and max are multiples of 4 KiB.
//
// A change that moves data by whole blocks (which is how files and qcow2
// clusters move) leaves every boundary outside the changed region in place
// relative to the data, as byte-level CDC does, at the cost of one CRC per
// block (several GB/s) instead of a rolling hash over every byte. Shifts
// that are not a multiple of 4 KiB are not recovered from until the next
// zero run; in a disk image they happen only inside a changed file.
type blockCDC struct {
	min, normal, max int
	t1, t2           uint32
}

// blockCDCGeometric ends chunks with one probability per block,
// 4 KiB/(avg-min), so that chunks are min bytes plus a geometric number of
// blocks of mean avg-min (less what max cuts off). For min 192 KiB, avg
// 256 KiB: a block ends the chunk when its CRC-32C is below 2^28.
func blockCDCGeometric(minSize, avg, maxSize int) blockCDC {
	t := uint32((1 << 32) / uint64((avg-minSize)/cdcBlock))
	return blockCDC{min: minSize, normal: minSize, max: maxSize, t1: t, t2: t}
}

// blockCDCNormalized is FastCDC's normalized chunking at block
// granularity: below avg bytes a block ends the chunk with probability
// 1/(n<<level), from avg on with probability 1/(n>>level), where n is avg
// in blocks; chunk sizes then crowd around avg.
func blockCDCNormalized(minSize, avg, maxSize int, level uint) blockCDC {
	n := uint64(avg / cdcBlock)
	return blockCDC{min: minSize, normal: avg, max: maxSize,
		t1: uint32((1 << 32) / (n << level)), t2: uint32(min((1<<32)/max(n>>level, 1), math.MaxUint32))}
}

func (p blockCDC) split(data []byte, base int64, out []span) []span {
	start, i := 0, 0
	for i < len(data) {
		// Blocks are aligned to file offsets; a run can start or end
		// inside one only next to a zero run cut at byte granularity.
		end := min(int((base+int64(i))/cdcBlock+1)*cdcBlock-int(base), len(data))
		h := crc32.Checksum(data[i:end], castagnoli)
		i = end
		size := i - start
		t := p.t1
		if size >= p.normal {
			t = p.t2
		}
		if (size >= p.min && h < t) || size >= p.max {
			out = append(out, span{off: base + int64(start), size: int64(size)})
			start = i
		}
	}
	if start < len(data) {
		out = append(out, span{off: base + int64(start), size: int64(len(data) - start)})
	}
	return out
}

// studyChunkers are the candidates, in the order of the tables.
func studyChunkers() []chunker {
	var cs []chunker
	for _, size := range []int{64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20} {
		for _, z := range []zeroRule{zerosWhole, zerosBlocks4K} {
			cs = append(cs, chunker{name: "fixed " + benchutil.SizeName(size), zeros: z, split: fixedSplit(size)})
		}
	}
	cs = append(cs,
		chunker{name: "c/storage rollsum (16 bits)", zeros: zerosBytes1K, whole: cstorageChunks},
		chunker{name: "rollsum 16 bits", zeros: zerosBlocks4K, split: rollsumSplit(16, 0, 0)},
	)
	// 18 bits, the obvious way to a ~256 KiB average, depends on the bytes:
	// the rolling sum's s2 is a weighted sum of 64 bytes, about
	// 390,000 +- 22,000 on random bytes, so its low 18 bits are almost never
	// all ones there (every chunk of compressed or encrypted data would be
	// max bytes long), while on the v1 disk they are every 400 KiB or so.
	// A minimum size makes chunks larger whatever the bytes: 192 KiB plus
	// the ~64 KiB that 16 bits give.
	cs = append(cs, chunker{name: "rollsum 18 bits, 64 KiB-1 MiB", zeros: zerosBytes1K, split: rollsumSplit(18, 64<<10, 1<<20)})
	for _, z := range []zeroRule{zerosBytes1K, zerosBlocks4K} {
		cs = append(cs, chunker{name: "rollsum 16 bits, 192 KiB-1 MiB", zeros: z, split: rollsumSplit(16, 192<<10, 1<<20)})
	}
	for _, z := range []zeroRule{zerosBytes1K, zerosBlocks4K} {
		cs = append(cs, chunker{name: "FastCDC 256 KiB, 64 KiB-1 MiB", zeros: z, split: fastCDCSplit(64<<10, 256<<10, 1<<20)})
	}
	// Block CDC at five sizes, each chunk at least 3/4 and at most twice the
	// average: sizes crowd around the average, as with fixed chunks.
	for _, avg := range []int{64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20} {
		cs = append(cs, chunker{
			name:  fmt.Sprintf("4 KiB-block CDC %s, %s-%s", benchutil.SizeName(avg), benchutil.SizeName(avg*3/4), benchutil.SizeName(avg*2)),
			zeros: zerosBlocks4K,
			split: blockCDCGeometric(avg*3/4, avg, avg*2).split,
		})
	}
	// Other shapes at 256 KiB, and the other zero rule.
	cs = append(cs,
		chunker{name: "4 KiB-block CDC 256 KiB, 192 KiB-512 KiB", zeros: zerosBlocks64K, split: blockCDCGeometric(192<<10, 256<<10, 512<<10).split},
		chunker{name: "4 KiB-block CDC 256 KiB, 224 KiB-512 KiB", zeros: zerosBlocks4K, split: blockCDCGeometric(224<<10, 256<<10, 512<<10).split},
		chunker{name: "4 KiB-block CDC 256 KiB, 128 KiB-512 KiB", zeros: zerosBlocks4K, split: blockCDCGeometric(128<<10, 256<<10, 512<<10).split},
		chunker{name: "4 KiB-block CDC 256 KiB, 64 KiB-1 MiB", zeros: zerosBlocks4K, split: blockCDCGeometric(64<<10, 256<<10, 1<<20).split},
		chunker{name: "4 KiB-block CDC 256 KiB normalized (FastCDC NC2), 64 KiB-1 MiB", zeros: zerosBlocks4K, split: blockCDCNormalized(64<<10, 256<<10, 1<<20, 2).split},
	)
	return cs
}
