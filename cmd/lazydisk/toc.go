package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"text/tabwriter"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/internal/guest"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/toc"
)

type tocOptions struct {
	reg      *registryOptions
	platform string
	layer    string
	format   string
	chunks   bool
	guest    bool
}

func newTocCmd(reg *registryOptions) *cobra.Command {
	o := &tocOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "toc REF",
		Short: "Show the index (TOC) of an image's seekable layers, fetched with range requests",
		Long: `Read the table of contents of each eStargz or zstd:chunked layer of REF without
downloading the layer: the footer and TOC come from the end of the blob with one or
two range requests. For each layer it shows the format, the TOC digest and whether
it matches the layer's annotation, and the files with their sizes and chunk counts
(--chunks lists every chunk). It ends with the bytes it fetched.

With --guest it also opens the disk (the single file under /disk/) as read
does, reads its first verified chunks, and shows the disk's format (qcow2 or
raw) and the size of the guest's disk: the virtual size of a qcow2 file,
with its version, cluster size and compression type.

Exit status 1 when a layer's TOC does not match its annotation or is malformed;
layers that are not seekable are reported, not errors.`,
		Example: `  lazydisk toc quay.io/containerdisks/fedora:41-esgz
  lazydisk toc --layer 0 --chunks oci:out:latest
  lazydisk toc --platform linux/arm64 --format json docker://registry.example.com/vm/fedora:41
  lazydisk toc --guest quay.io/containerdisks/fedora:41-esgz   # and the disk's format and virtual size`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.platform, "platform", "", "the image of an index to read (os/arch[/variant]; default: this machine's)")
	f.StringVar(&o.layer, "layer", "", "only this layer: its index (0 is the first) or its digest")
	f.StringVar(&o.format, "format", "text", "output format: text or json (table: text, as earlier versions named it)")
	f.BoolVar(&o.chunks, "chunks", false, "list every chunk of every file")
	f.BoolVar(&o.guest, "guest", false, "also read the disk's header: its format (qcow2 or raw) and the guest's disk size")
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	_ = cmd.RegisterFlagCompletionFunc("platform", completePlatforms)
	_ = cmd.RegisterFlagCompletionFunc("layer", cobra.NoFileCompletions)
	return cmd
}

// tocOutput is what `lazydisk toc --format json` prints.
type tocOutput struct {
	Reference string     `json:"reference"`
	Digest    v1.Hash    `json:"digest"`
	Layers    []layerTOC `json:"layers"`
	// Requests and BytesFetched count the range requests for layer data.
	Requests     int64 `json:"requests"`
	BytesFetched int64 `json:"bytesFetched"`
	// Disk is the disk's format and guest size, with --guest.
	Disk *diskInfo `json:"disk,omitempty"`
}

// diskInfo is what toc --guest says of the disk file.
type diskInfo struct {
	File        string `json:"file"`
	FileSize    int64  `json:"fileSize"`
	Format      string `json:"diskFormat"`
	VirtualSize int64  `json:"virtualSize"`
	// qcow2 only
	Version     int    `json:"qcow2Version,omitempty"`
	ClusterSize int64  `json:"clusterSize,omitempty"`
	Compression string `json:"compressionType,omitempty"`
	ExtendedL2  bool   `json:"extendedL2,omitempty"`
}

type layerTOC struct {
	Index     int    `json:"index"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Seekable  bool   `json:"seekable"`
	Format    string `json:"format,omitempty"`
	TOCDigest string `json:"tocDigest,omitempty"`
	// Annotated is the TOC digest annotation, "" if the layer has none.
	Annotated string    `json:"annotated,omitempty"`
	Error     string    `json:"error,omitempty"`
	Files     []fileTOC `json:"files,omitempty"`
}

type fileTOC struct {
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	Size       int64      `json:"size"`
	Digest     string     `json:"digest,omitempty"`
	Chunks     int        `json:"chunks"`
	ZeroChunks int        `json:"zeroChunks,omitempty"`
	ChunkList  []chunkTOC `json:"chunkList,omitempty"`
}

type chunkTOC struct {
	Offset           int64  `json:"offset"`
	Size             int64  `json:"size"`
	CompressedOffset int64  `json:"compressedOffset"`
	CompressedSize   int64  `json:"compressedSize"`
	Digest           string `json:"digest,omitempty"`
	Zero             bool   `json:"zero,omitempty"`
}

// errBadTOC marks a layer whose index is wrong, for the exit status.
var errBadTOC = errors.New("a layer's TOC is invalid or does not match its annotation")

func (o *tocOptions) run(ctx context.Context, cmd *cobra.Command, refArg string) error {
	if o.format == "table" {
		o.format = "text"
	}
	if err := checkTextOrJSON("format", o.format); err != nil {
		return err
	}
	ref, err := image.ParseSource(refArg)
	if err != nil {
		return usageError{err}
	}
	p, err := parsePlatformFlag(o.platform)
	if err != nil {
		return err
	}
	if p == nil {
		p = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	ropts := o.reg.imageOptions()
	if p != nil {
		ropts = append(ropts, image.WithPlatform(*p))
	}
	art, err := image.Read(ctx, ref, ropts...)
	if err != nil {
		return err
	}
	img := art.Image
	switch {
	case art.Index != nil:
		if img, err = image.SelectPlatform(art.Index, *p); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
	case o.platform != "":
		if err := image.CheckPlatform(img, *p); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("reading the manifest of %s: %w", ref, err)
	}
	if err := image.CheckManifest(m); err != nil {
		return err
	}
	out := tocOutput{Reference: ref.String()}
	if out.Digest, err = img.Digest(); err != nil {
		return err
	}
	sel, err := o.selectLayers(m.Layers)
	if err != nil {
		return err
	}
	bad := false
	for _, i := range sel {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := o.readLayer(ctx, ref, ropts, i, m.Layers[i], &out)
		if err != nil {
			return err
		}
		bad = bad || l.Error != ""
		out.Layers = append(out.Layers, l)
	}
	if o.guest {
		if out.Disk, err = o.diskInfo(ctx, ref, ropts); err != nil {
			return err
		}
	}
	if o.format == "json" {
		if err := printJSON(cmd.OutOrStdout(), out); err != nil {
			return err
		}
	} else {
		o.printTable(cmd.OutOrStdout(), out)
	}
	if bad {
		return errBadTOC
	}
	return nil
}

// diskInfo opens the disk of ref as read does and reads its format.
func (o *tocOptions) diskInfo(ctx context.Context, ref image.Reference, ropts []image.Option) (*diskInfo, error) {
	f, err := disk.Open(ctx, ref, disk.WithImageOptions(ropts...))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v, err := guest.Open(guestFile{f})
	if err != nil {
		return nil, fmt.Errorf("reading the guest disk of %s: %w", f.Name(), err)
	}
	d := &diskInfo{File: f.Name(), FileSize: f.Size(), Format: v.Format(), VirtualSize: v.Size()}
	if q := v.Qcow2(); q != nil {
		d.Version, d.ClusterSize, d.Compression, d.ExtendedL2 = q.Version(), q.ClusterSize(), q.Compression().String(), q.ExtendedL2()
	}
	return d, nil
}

// selectLayers returns the indexes of the layers --layer names (all by default).
func (o *tocOptions) selectLayers(layers []v1.Descriptor) ([]int, error) {
	if o.layer == "" {
		all := make([]int, len(layers))
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	if n, err := strconv.Atoi(o.layer); err == nil {
		if n < 0 || n >= len(layers) {
			return nil, usagef("--layer %d: the image has %d layers (0 to %d)", n, len(layers), len(layers)-1)
		}
		return []int{n}, nil
	}
	for i, d := range layers {
		if d.Digest.String() == o.layer || d.Digest.Hex == o.layer {
			return []int{i}, nil
		}
	}
	return nil, usagef("--layer %q: no layer with that index or digest", o.layer)
}

// readLayer reads one layer's index through range requests.
func (o *tocOptions) readLayer(ctx context.Context, ref image.Reference, ropts []image.Option, i int, d v1.Descriptor, out *tocOutput) (layerTOC, error) {
	l := layerTOC{Index: i, Digest: d.Digest.String(), MediaType: string(d.MediaType), Size: d.Size}
	b, err := blob.Open(ctx, ref, d, ropts)
	if err != nil {
		return l, fmt.Errorf("layer %d: %w", i, err)
	}
	defer func() {
		st := b.Stats()
		out.Requests += st.Requests
		out.BytesFetched += st.Bytes
		b.Close()
	}()
	ix, err := toc.Read(b, b.Size(), d.Annotations)
	switch {
	case errors.Is(err, toc.ErrNotSeekable):
		return l, nil
	case errors.Is(err, toc.ErrInvalid) || errors.Is(err, toc.ErrTOCDigest) || errors.Is(err, toc.ErrBothTOCs):
		l.Seekable, l.Error = true, oneLine(err)
		return l, nil
	case err != nil:
		return l, fmt.Errorf("layer %d: %w", i, err)
	}
	l.Seekable, l.Format, l.TOCDigest, l.Annotated = true, string(ix.Format), ix.Digest.String(), ix.Annotated.String()
	for _, f := range ix.Files {
		ft := fileTOC{Name: f.Name, Type: f.Type, Size: f.Size, Digest: f.Digest.String(), Chunks: len(f.Chunks)}
		for _, c := range f.Chunks {
			if c.Zero {
				ft.ZeroChunks++
			}
			if o.chunks {
				ft.ChunkList = append(ft.ChunkList, chunkTOC{Offset: c.Offset, Size: c.Size, CompressedOffset: c.CompressedOffset,
					CompressedSize: c.CompressedSize, Digest: c.Digest.String(), Zero: c.Zero})
			}
		}
		l.Files = append(l.Files, ft)
	}
	return l, nil
}

func (o *tocOptions) printTable(w io.Writer, out tocOutput) {
	fmt.Fprintf(w, "%s %s\n", out.Reference, out.Digest)
	for _, l := range out.Layers {
		fmt.Fprintf(w, "\nlayer %d %s  %s  %s\n", l.Index, l.Digest, l.MediaType, size.Format(l.Size))
		switch {
		case !l.Seekable:
			fmt.Fprintln(w, "  not seekable: no eStargz or zstd:chunked index; make it seekable with `lazydisk convert`")
			continue
		case l.Error != "":
			fmt.Fprintf(w, "  INVALID: %s\n", l.Error)
			continue
		}
		match := "matches the layer's annotation"
		if l.Annotated == "" {
			match = "NO annotation on the layer: lazy readers refuse it; add one with `lazydisk annotate`"
		}
		fmt.Fprintf(w, "  %s, TOC %s (%s)\n", l.Format, l.TOCDigest, match)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tSIZE\tCHUNKS\tZEROS")
		for _, f := range l.Files {
			if f.Type != "reg" {
				continue
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", f.Name, f.Size, f.Chunks, f.ZeroChunks)
			for _, c := range f.ChunkList {
				z := ""
				if c.Zero {
					z = " zeros"
				}
				fmt.Fprintf(tw, "    [%d, %d)\t%d\tblob [%d, +%d)\t%s%s\n", c.Offset, c.Offset+c.Size, c.Size, c.CompressedOffset, c.CompressedSize, shortDigest(c.Digest), z)
			}
		}
		tw.Flush()
		if other := countOther(l.Files); other > 0 {
			fmt.Fprintf(w, "  and %d directories, links and other entries\n", other)
		}
	}
	if d := out.Disk; d != nil {
		fmt.Fprintf(w, "\n%s: %s, guest disk %s (%d bytes)", d.File, d.Format, size.Format(d.VirtualSize), d.VirtualSize)
		if d.Format == guest.FormatQcow2 {
			ext := ""
			if d.ExtendedL2 {
				ext = ", extended L2"
			}
			fmt.Fprintf(w, "; qcow2 version %d, %s clusters, compression type %s%s", d.Version, size.Format(d.ClusterSize), d.Compression, ext)
		}
		fmt.Fprintln(w)
	}
	plural := "s"
	if out.Requests == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "\nfetched %s of layer data in %d range request%s\n", size.Format(out.BytesFetched), out.Requests, plural)
}

func countOther(files []fileTOC) int {
	n := 0
	for _, f := range files {
		if f.Type != "reg" {
			n++
		}
	}
	return n
}
