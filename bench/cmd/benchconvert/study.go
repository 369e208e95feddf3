package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"

	"github.com/lazydisk/lazydisk/convert"
)

// The chunk study's candidates and workload.
var (
	studyChunkSizes = []int{64 * benchutil.KiB, 256 * benchutil.KiB, 512 * benchutil.KiB, 1 * benchutil.MiB, 2 * benchutil.MiB, 4 * benchutil.MiB}
	studyReadSizes  = benchutil.ReadSizes
)

const (
	// readAlign aligns the random reads, like a guest's page-sized I/O.
	readAlign = benchutil.ReadAlign
	// timedReads is how many of the random reads per read size are also
	// decompressed and verified for real, to time the CPU cost.
	timedReads = 200
	// extrapolateTo is the disk size the TOC is scaled to.
	extrapolateTo = 10 * benchutil.GiB
	// openRuns is how often estargz.Open is timed; the best run counts.
	openRuns = 3
)

// chunkResult is what one chunk size gave on one disk.
type chunkResult struct {
	chunkSize int
	blobSize  int64
	tarSize   int64
	wall      time.Duration
	chunks    int
	tocSize   int64         // compressed TOC member
	tocJSON   int64         // TOC JSON
	open      time.Duration // estargz.Open, best of openRuns
	openHeap  uint64        // heap the opened reader holds
	reads     []readCost
}

// readCost is the mean cost of one random read of a given size.
type readCost struct {
	readSize int
	fetch    float64 // compressed bytes fetched
	gunzip   float64 // uncompressed bytes decompressed
	cpu      time.Duration
}

// runStudy converts each disk with every candidate chunk size and prints
// what each costs.
func runStudy(ctx context.Context, w io.Writer, cfg config) error {
	benchutil.PrintMachine(w)
	if err := os.MkdirAll(cfg.work, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(w, "Random reads: %d per read size at offsets aligned to %s, uniform over the disk file (PCG seed %d); %d of them are also decompressed and verified on one core to time them.\n\n",
		cfg.samples, benchutil.SizeName(readAlign), cfg.seed, timedReads)
	disks := []string{cfg.disk}
	if cfg.big != "" {
		disks = append(disks, cfg.big)
	}
	for _, disk := range disks {
		if err := studyDisk(ctx, w, cfg, disk); err != nil {
			return err
		}
	}
	return nil
}

func studyDisk(ctx context.Context, w io.Writer, cfg config, disk string) error {
	fi, err := os.Stat(disk)
	if err != nil {
		return fmt.Errorf("chunk study: %w (run bench/mkdisk.sh first)", err)
	}
	diskSize := fi.Size()
	offsets := benchutil.RandomOffsets(diskSize, cfg.samples, cfg.seed)
	outPath := filepath.Join(cfg.work, "study.esgz")
	defer os.Remove(outPath)

	var results []*chunkResult
	for _, cs := range studyChunkSizes {
		fmt.Fprintf(os.Stderr, "benchconvert: %s with %s chunks\n", filepath.Base(disk), benchutil.SizeName(cs))
		res, err := studyChunkSize(ctx, disk, outPath, cs, offsets)
		if err != nil {
			return fmt.Errorf("%s with %s chunks: %w", disk, benchutil.SizeName(cs), err)
		}
		results = append(results, res)
	}
	printStudy(w, disk, diskSize, results)
	return nil
}

func studyChunkSize(ctx context.Context, disk, outPath string, chunkSize int, offsets map[int][]int64) (*chunkResult, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	src, err := streamDiskTar(ctx, disk)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	in := &benchutil.CountReader{R: src}
	start := time.Now()
	blob, err := convert.WriteEStargz(ctx, out, in, convert.WithChunkSize(chunkSize))
	if err != nil {
		return nil, fmt.Errorf("convert.WriteEStargz: %w", err)
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", outPath, err)
	}
	wall := time.Since(start)

	bt, err := readTOC(outPath)
	if err != nil {
		return nil, err
	}
	chunks, err := bt.fileChunks(diskEntryName(disk))
	if err != nil {
		return nil, err
	}
	res := &chunkResult{
		chunkSize: chunkSize,
		blobSize:  blob.Size,
		tarSize:   in.N,
		wall:      wall,
		chunks:    blob.Chunks,
		tocSize:   blob.TOCSize,
		tocJSON:   bt.jsonSize,
	}
	f, err := os.Open(outPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if res.open, res.openHeap, err = measureOpen(io.NewSectionReader(f, 0, blob.Size)); err != nil {
		return nil, err
	}
	for _, rs := range studyReadSizes {
		rc, err := measureReads(ctx, f, chunks, rs, offsets[rs])
		if err != nil {
			return nil, err
		}
		res.reads = append(res.reads, rc)
	}
	return res, nil
}

// measureOpen times estargz.Open, which reads the footer and the TOC,
// parses it and indexes every entry, and measures the heap the resulting
// reader holds.
func measureOpen(sr *io.SectionReader) (time.Duration, uint64, error) {
	var (
		best       time.Duration
		heap       uint64
		before, in runtime.MemStats
	)
	for i := range openRuns {
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		r, err := estargz.Open(sr)
		d := time.Since(start)
		if err != nil {
			return 0, 0, fmt.Errorf("estargz.Open: %w", err)
		}
		if i == 0 || d < best {
			best = d
		}
		runtime.GC()
		runtime.ReadMemStats(&in)
		if in.HeapAlloc > before.HeapAlloc {
			heap = max(heap, in.HeapAlloc-before.HeapAlloc)
		}
		runtime.KeepAlive(r)
	}
	return best, heap, nil
}

// covering returns the chunks that hold any byte of [off, off+n).
func covering(chunks []chunk, off, n int64) []chunk {
	i := sort.Search(len(chunks), func(i int) bool { return chunks[i].off+chunks[i].size > off })
	j := i
	for j < len(chunks) && chunks[j].off < off+n {
		j++
	}
	return chunks[i:j]
}

// measureReads computes the mean bytes fetched and decompressed per read,
// and times the decompression and verification of the first timedReads
// reads on one core, as a lazy reader does them: whole chunks, each
// checked against its chunkDigest.
func measureReads(ctx context.Context, blob io.ReaderAt, chunks []chunk, readSize int, offsets []int64) (readCost, error) {
	rc := readCost{readSize: readSize}
	var fetch, gunzip int64
	for _, off := range offsets {
		for _, c := range covering(chunks, off, int64(readSize)) {
			fetch += c.csize
			gunzip += c.size
		}
	}
	rc.fetch = float64(fetch) / float64(len(offsets))
	rc.gunzip = float64(gunzip) / float64(len(offsets))

	var (
		comp, plain []byte
		zr          *gzip.Reader
		cpu         time.Duration
	)
	timed := offsets[:min(timedReads, len(offsets))]
	for _, off := range timed {
		if err := ctx.Err(); err != nil {
			return rc, err
		}
		for _, c := range covering(chunks, off, int64(readSize)) {
			comp = growTo(comp, c.csize)
			if _, err := blob.ReadAt(comp, c.coff); err != nil {
				return rc, fmt.Errorf("reading chunk at %d: %w", c.coff, err)
			}
			plain = growTo(plain, c.size)
			start := time.Now()
			var err error
			if zr == nil {
				zr, err = gzip.NewReader(bytes.NewReader(comp))
			} else {
				err = zr.Reset(bytes.NewReader(comp))
			}
			if err != nil {
				return rc, fmt.Errorf("decompressing chunk at %d: %w", c.coff, err)
			}
			if _, err := io.ReadFull(zr, plain); err != nil {
				return rc, fmt.Errorf("decompressing chunk at %d: %w", c.coff, err)
			}
			sum := sha256.Sum256(plain)
			cpu += time.Since(start)
			if got := "sha256:" + hex.EncodeToString(sum[:]); got != c.digest {
				return rc, fmt.Errorf("chunk at %d of the file decompresses to %s, the TOC says %s", c.off, got, c.digest)
			}
		}
	}
	rc.cpu = cpu / time.Duration(len(timed))
	return rc, nil
}

// growTo returns b resized to n bytes, reusing its array when it is large
// enough.
func growTo(b []byte, n int64) []byte {
	if int64(cap(b)) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func printStudy(w io.Writer, disk string, diskSize int64, results []*chunkResult) {
	scale := float64(extrapolateTo) / float64(diskSize)
	var ref *chunkResult
	for _, r := range results {
		if r.chunkSize == 4*benchutil.MiB {
			ref = r
		}
	}
	fmt.Fprintf(w, "### %s (%s bytes)\n\n", filepath.Base(disk), benchutil.Commas(diskSize))
	fmt.Fprintln(w, "| chunk size | chunks | blob bytes | compression ratio | size vs 4 MiB | convert MB/s |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		vs := "n/a"
		if ref != nil {
			vs = fmt.Sprintf("%+.2f%%", (float64(r.blobSize)/float64(ref.blobSize)-1)*100)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.3f | %s | %.0f |\n",
			benchutil.SizeName(r.chunkSize), benchutil.Commas(int64(r.chunks)), benchutil.Commas(r.blobSize),
			float64(r.tarSize)/float64(r.blobSize), vs, benchutil.MBps(r.tarSize, r.wall))
	}
	fmt.Fprintln(w)

	g := extrapolateTo / benchutil.GiB
	fmt.Fprintf(w, "TOC as stored, and as estargz.Open reads it (best of %d); the \"@ %d GiB\" columns scale it linearly to a disk of that size.\n\n", openRuns, g)
	fmt.Fprintf(w, "| chunk size | TOC gzip | TOC JSON | estargz.Open | TOC gzip @ %d GiB | TOC JSON @ %d GiB | estargz.Open @ %d GiB | reader heap @ %d GiB |\n", g, g, g, g)
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		ms := float64(r.open) / float64(time.Millisecond)
		fmt.Fprintf(w, "| %s | %s | %s | %.1f ms | %s | %s | %.0f ms | %s |\n",
			benchutil.SizeName(r.chunkSize), benchutil.HumanBytes(float64(r.tocSize)), benchutil.HumanBytes(float64(r.tocJSON)), ms,
			benchutil.HumanBytes(float64(r.tocSize)*scale), benchutil.HumanBytes(float64(r.tocJSON)*scale),
			ms*scale, benchutil.HumanBytes(float64(r.openHeap)*scale))
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "Mean cost of one random read: compressed bytes fetched, bytes decompressed, and CPU time to decompress and verify them (one core).")
	fmt.Fprintln(w)
	head := []string{"chunk size"}
	align := []string{"---:"}
	for _, rs := range studyReadSizes {
		n := benchutil.SizeName(rs)
		head = append(head, n+" fetch", n+" gunzip", n+" CPU")
		align = append(align, "---:", "---:", "---:")
	}
	fmt.Fprintf(w, "| %s |\n| %s |\n", strings.Join(head, " | "), strings.Join(align, " | "))
	for _, r := range results {
		cells := []string{benchutil.SizeName(r.chunkSize)}
		for _, rc := range r.reads {
			cells = append(cells, benchutil.HumanBytes(rc.fetch), benchutil.HumanBytes(rc.gunzip), fmt.Sprintf("%.2f ms", float64(rc.cpu)/float64(time.Millisecond)))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}
