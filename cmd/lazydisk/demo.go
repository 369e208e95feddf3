package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/sample"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/internal/validate"
)

func newDemoCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Convert the built-in sample disk end to end, offline",
		Long: `Write the built-in sample disk (a 24 MiB ext4 filesystem as qcow2), package
it as a containerDisk, convert it to eStargz into an OCI layout, and check the
result with the estargz reference reader. Needs no registry and no network.`,
		Example: `  lazydisk demo
  lazydisk demo --out ./demo-layout`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd, out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the OCI layout here and keep it (default: a temporary directory, removed afterwards)")
	_ = cmd.MarkFlagDirname("out")
	return cmd
}

func runDemo(ctx context.Context, cmd *cobra.Command, out string) error {
	w := cmd.OutOrStdout()
	work, err := os.MkdirTemp("", "lazydisk-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if out == "" {
		out = filepath.Join(work, "layout")
	}
	diskPath := filepath.Join(work, sample.Name)
	if err := sample.WriteFile(diskPath); err != nil {
		return err
	}
	st, err := os.Stat(diskPath)
	if err != nil {
		return err
	}
	src, dst := "disk:"+diskPath, "oci:"+out+":demo"
	fmt.Fprintf(w, "1. sample disk: %s (%s qcow2, 24 MiB ext4 inside)\n", sample.Name, size.Format(st.Size()))
	fmt.Fprintf(w, "2. lazydisk convert --estargz disk:%s %s\n", sample.Name, dst)

	o := &convertOptions{
		reg: &registryOptions{progress: "never"}, estargz: true, chunkSize: size.Format(convert.DefaultChunkSize),
		format: "text",
	}
	var digestOut strings.Builder
	conv := &cobra.Command{}
	conv.SetOut(&digestOut)
	conv.SetErr(indent(w, "   "))
	if err := o.run(ctx, conv, src, dst); err != nil {
		return err
	}
	fmt.Fprintf(w, "   result: %s", digestOut.String())

	// Read the layer back from the layout and check it the way
	// stargz-snapshotter would: TOC digest from the annotation, every chunk.
	p, err := layout.FromPath(out)
	if err != nil {
		return err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	img, err := idx.Image(im.Manifests[len(im.Manifests)-1].Digest)
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	ld := m.Layers[0]
	tocDigest, err := digest.Parse(ld.Annotations[convert.AnnotationTOCDigest])
	if err != nil {
		return fmt.Errorf("layer has no valid TOC digest annotation: %w", err)
	}
	f, err := os.Open(filepath.Join(out, "blobs", ld.Digest.Algorithm, ld.Digest.Hex))
	if err != nil {
		return err
	}
	defer f.Close()
	sr := io.NewSectionReader(f, 0, ld.Size)
	rep, err := validate.EStargz(ctx, sr, tocDigest)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "3. checked with the estargz reference reader: TOC digest %s matches the annotation,\n", shortDigest(tocDigest.String()))
	fmt.Fprintf(w, "   %d chunks of %d files verified, DiffID and uncompressed size (%s) match\n", rep.Chunks, rep.Files, size.Format(rep.Uncompressed))
	r, err := estargz.Open(sr)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "4. chunks of disk/%s a reader can fetch one by one:\n", sample.Name)
	for off := int64(0); ; {
		ce, ok := r.ChunkEntryForOffset("disk/"+sample.Name, off)
		if !ok {
			break
		}
		fmt.Fprintf(w, "   bytes %8d..%-8d  blob offset %8d  %s\n", ce.ChunkOffset, ce.ChunkOffset+ce.ChunkSize, ce.Offset, ce.ChunkDigest[:19])
		off = ce.ChunkOffset + ce.ChunkSize
	}
	// Read the qcow2 header lazily, as `lazydisk read` does.
	dstRef, err := image.Parse(dst)
	if err != nil {
		return err
	}
	df, err := disk.Open(ctx, dstRef)
	if err != nil {
		return err
	}
	defer df.Close()
	hdr := make([]byte, 512)
	if _, err := df.ReadAt(hdr, 0); err != nil {
		return err
	}
	if string(hdr[:4]) != "QFI\xfb" {
		return fmt.Errorf("the disk read back does not start with the qcow2 magic")
	}
	ds := df.Stats()
	fmt.Fprintf(w, "5. lazydisk read %s --range 0:512: qcow2 header (version %d, virtual size %s),\n", dst, binary.BigEndian.Uint32(hdr[4:]), size.Format(int64(binary.BigEndian.Uint64(hdr[24:]))))
	fmt.Fprintf(w, "   from %d verified chunk of %d: %d reads, %s of the %s layer\n", ds.ChunksFetched, df.Chunks(), ds.Requests, size.Format(ds.BytesFetched), size.Format(df.Layer().Size))
	if out != filepath.Join(work, "layout") {
		fmt.Fprintf(w, "The OCI layout is in %s. Look at it with lazydisk (make build puts it in bin/; go install github.com/lazydisk/lazydisk/cmd/lazydisk@latest in $(go env GOPATH)/bin):\n", out)
		fmt.Fprintf(w, "   lazydisk toc %s\n   lazydisk read %s --range 0:512 -o header.bin\n   lazydisk serve %s --run 'qemu-img info \"$uri\"'\n", out, out, out)
		fmt.Fprintln(w, "and convert your own disk with:")
	} else {
		fmt.Fprintln(w, "Keep the layout with --out DIR. Convert your own disk with lazydisk (make build puts it in bin/):")
	}
	fmt.Fprintln(w, "   lazydisk convert --estargz your.qcow2 oci:out:latest")
	return nil
}

// indent prefixes every line written to w.
func indent(w io.Writer, prefix string) io.Writer {
	return &indentWriter{w: w, prefix: prefix, bol: true}
}

type indentWriter struct {
	w      io.Writer
	prefix string
	bol    bool
}

func (i *indentWriter) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line == "" {
			continue
		}
		if i.bol {
			if _, err := io.WriteString(i.w, i.prefix); err != nil {
				return 0, err
			}
		}
		if _, err := io.WriteString(i.w, line); err != nil {
			return 0, err
		}
		i.bol = strings.HasSuffix(line, "\n")
	}
	return len(p), nil
}
