package main

import (
	"fmt"
	"github.com/lazydisk/lazydisk/bench/benchutil"
	"io"
	"strings"
)

// extrapolateTo is the disk file size the TOC is scaled to.
const extrapolateTo = 10 * benchutil.GiB

func printReport(w io.Writer, cfg config, disks []*disk, results []*result, bounds map[string]float64, ref refSpeeds, streams map[string]int64) {
	fmt.Fprintln(w, "Disks:")
	fmt.Fprintln(w)
	for _, d := range disks {
		fmt.Fprintf(w, "- %s: %s bytes\n", d.name, benchutil.Commas(int64(len(d.data))))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Single-core reference speeds on disk-v1.qcow2: sha256 %.0f MB/s, zstd level %d EncodeAll of 256 KiB chunks %.0f MB/s", ref.sha256, studyLevel, ref.zstd)
	if ref.cstorage > 0 {
		fmt.Fprintf(w, ", containers/storage's writer without compression (compressor.NoCompression) %.0f MB/s", ref.cstorage)
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Random reads: %d per read size at offsets aligned to %s, uniform over the disk file (PCG seed %d).\n\n",
		cfg.samples, benchutil.SizeName(readAlign), cfg.seed)

	for _, format := range []string{"qcow2", "raw"} {
		v1 := -1
		for i, d := range disks {
			if d.format == format && d.version == "v1" {
				v1 = i
			}
		}
		if v1 < 0 {
			continue
		}
		printChunks(w, disks[v1], v1, results, streams[disks[v1].name])
		printReads(w, disks[v1], v1, results)
		printDedup(w, format, results, bounds)
	}
}

// row starts a table row with the chunker's two columns.
func row(r *result) []string { return []string{r.c.name, r.c.zeros.name} }

func table(w io.Writer, head []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	align := make([]string, len(head))
	for i := range align {
		align[i] = "---:"
		if i < 2 {
			align[i] = "---"
		}
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(align, " | "))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Fprintln(w)
}

func printChunks(w io.Writer, d *disk, i int, results []*result, stream int64) {
	scale := float64(extrapolateTo) / float64(len(d.data))
	var ref *diskResult
	for _, r := range results {
		if r.c.name == "fixed 1 MiB" && r.c.zeros == zerosBlocks4K {
			ref = r.disks[i]
		}
	}
	fmt.Fprintf(w, "### %s: chunks, compressed size, TOC, chunking speed\n\n", d.name)
	fmt.Fprintf(w, "Frames: the sum of the chunks' zstd frames, i.e. the blob without tar headers, TOC and tar-split (the file as one zstd level %d stream, not seekable: %.1f MB). TOC: containers/storage's JSON and one zstd frame of it; \"@ %d GiB\" scales it linearly to a disk file of that size. Speed: finding the boundaries (zero runs included) of this file on one core, best of the timed runs; \"> 30,000\" means that it costs next to nothing (only the scan for zero blocks).\n\n", studyLevel, float64(stream)/benchutil.MB, extrapolateTo/benchutil.GiB)
	var rows [][]string
	for _, r := range results {
		dr := r.disks[i]
		vs := "n/a"
		if ref != nil {
			vs = fmt.Sprintf("%+.2f%%", (float64(dr.frames)/float64(ref.frames)-1)*100)
		}
		mean := 0.0
		if dr.dataChunks > 0 {
			mean = float64(dr.dataBytes) / float64(dr.dataChunks)
		}
		rows = append(rows, append(row(r),
			benchutil.Commas(int64(dr.dataChunks)), benchutil.Commas(int64(dr.zeroChunks)), benchutil.HumanBytes(mean),
			fmt.Sprintf("%.1f", float64(dr.frames)/benchutil.MB), vs,
			benchutil.HumanBytes(float64(dr.tocZstd)),
			benchutil.Commas(int64(float64(dr.tocEntries)*scale)),
			benchutil.HumanBytes(float64(dr.tocJSON)*scale), benchutil.HumanBytes(float64(dr.tocZstd)*scale),
			speedCell(r.speed[d.format])))
	}
	g := extrapolateTo / benchutil.GiB
	table(w, []string{"chunker", "zeros chunks from", "data chunks", "zeros chunks", "mean data chunk", "frames MB", "frames vs fixed 1 MiB",
		"TOC zstd", fmt.Sprintf("TOC entries @ %d GiB", g), fmt.Sprintf("TOC JSON @ %d GiB", g), fmt.Sprintf("TOC zstd @ %d GiB", g), "chunking MB/s"}, rows)
}

func printReads(w io.Writer, d *disk, i int, results []*result) {
	fmt.Fprintf(w, "### %s: mean cost of one random read\n\n", d.name)
	fmt.Fprintln(w, "Fetch: compressed bytes of the data chunks the read overlaps; decompress: their uncompressed bytes, all of which are decompressed and hashed. Zeros chunks cost nothing.")
	fmt.Fprintln(w)
	head := []string{"chunker", "zeros chunks from"}
	for _, rs := range readSizes {
		head = append(head, benchutil.SizeName(rs)+" fetch", benchutil.SizeName(rs)+" decompress")
	}
	var rows [][]string
	for _, r := range results {
		cells := row(r)
		for _, rc := range r.disks[i].reads {
			cells = append(cells, benchutil.HumanBytes(rc.fetch), benchutil.HumanBytes(rc.decompress))
		}
		rows = append(rows, cells)
	}
	table(w, head, rows)
}

func printDedup(w io.Writer, format string, results []*result, bounds map[string]float64) {
	fmt.Fprintf(w, "### %s: what a pull of v2 reuses from v1\n\n", format)
	fmt.Fprintln(w, "Reused: share of v2's bytes in data chunks whose digest v1 has (chunks a registry or containers/storage's chunk cache need not fetch). Fetch: compressed bytes of the other data chunks, each distinct chunk once, and their share of v2's frames. The first row is the bound for any chunking with 4 KiB-aligned boundaries: the share of v2's non-zero 4 KiB blocks whose content is somewhere in v1.")
	fmt.Fprintln(w)
	versions := []string{"v2-inplace", "v2-rebuilt"}
	head := []string{"chunker", "zeros chunks from"}
	bound := []string{"4 KiB blocks (bound)", ""}
	for _, v := range versions {
		head = append(head, v+" reused", v+" fetch MB", v+" fetch share")
		bound = append(bound, fmt.Sprintf("%.1f%%", bounds[format+"/"+v]*100), "", "")
	}
	rows := [][]string{bound}
	for _, r := range results {
		cells := row(r)
		for _, v := range versions {
			dd := r.dedup[format+"/"+v]
			cells = append(cells,
				fmt.Sprintf("%.1f%%", float64(dd.reusedBytes)/float64(dd.dataBytes)*100),
				fmt.Sprintf("%.1f", float64(dd.fetch)/benchutil.MB),
				fmt.Sprintf("%.1f%%", float64(dd.fetch)/float64(dd.frames)*100))
		}
		rows = append(rows, cells)
	}
	table(w, head, rows)
}

// speedCell formats a chunking speed; beyond 30,000 MB/s the number says
// nothing but that the chunker costs nothing next to compression.
func speedCell(v float64) string {
	if v > 30000 {
		return "> 30,000"
	}
	return benchutil.Commas(int64(v))
}
