// Command mkimage builds lazydisk's own container image, as `make image`
// runs it: a multi-platform OCI image index, written to an OCI image layout,
// of a static lazydisk binary per platform on an empty base, with no Docker
// daemon and no base image download.
//
// Each image has two layers. The first, the same for every platform, holds
// what a static binary needs from a distribution: the CA certificates (copied
// from the build machine's Debian ca-certificates bundle), /etc/passwd and
// /etc/group with a non-root user (lazydisk, 65532:65532, the uid distroless
// uses for nonroot), its home directory and /tmp. The second holds the binary
// at /usr/local/bin/lazydisk. The config runs it as that user, with
// SSL_CERT_FILE set. Every timestamp is the -created time (make passes
// SOURCE_DATE_EPOCH, or the commit time), so the same inputs give the same
// digests. The index and each manifest carry the OCI annotations
// org.opencontainers.image.{source,revision,version,created}; the configs carry
// them as labels.
//
// It does not build the binaries (make does, with CGO_ENABLED=0, -trimpath
// and -ldflags=-s -w) and does not push: `skopeo copy --all oci:DIR:TAG
// docker://...` or `lazydisk convert` (which makes the layers seekable) do.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The OCI annotation keys (image-spec annotations.md) the image carries.
const (
	annotationCreated  = "org.opencontainers.image.created"
	annotationSource   = "org.opencontainers.image.source"
	annotationRevision = "org.opencontainers.image.revision"
	annotationVersion  = "org.opencontainers.image.version"
	annotationTitle    = "org.opencontainers.image.title"
	annotationRefName  = "org.opencontainers.image.ref.name"
)

// The user the image runs as, and where things are in it.
const (
	uid         = 65532
	userName    = "lazydisk"
	home        = "/home/lazydisk"
	binaryPath  = "usr/local/bin/lazydisk"
	caPath      = "etc/ssl/certs/ca-certificates.crt"
	defaultCA   = "/etc/ssl/certs/ca-certificates.crt"
	passwd      = "root:x:0:0:root:/root:/sbin/nologin\n" + userName + ":x:65532:65532:lazydisk:" + home + ":/sbin/nologin\n"
	group       = "root:x:0:\n" + userName + ":x:65532:\n"
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// spec is what to build.
type spec struct {
	// binaries maps a platform ("linux/arm64") to its lazydisk binary, in
	// the order the index lists them.
	platforms []v1.Platform
	binaries  []string
	// caFile is the PEM bundle copied to /etc/ssl/certs/ca-certificates.crt.
	caFile string
	// created is every timestamp in the image.
	created time.Time
	// source, revision and version are the OCI annotations of the same name.
	source, revision, version string
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// binaryFlags collects -binary os/arch[/variant]=PATH flags.
type binaryFlags struct{ s *spec }

func (b binaryFlags) String() string { return "" }

func (b binaryFlags) Set(v string) error {
	p, path, ok := strings.Cut(v, "=")
	if !ok || path == "" {
		return fmt.Errorf("want os/arch=PATH, not %q", v)
	}
	plat, err := v1.ParsePlatform(p)
	if err != nil || plat.OS == "" || plat.Architecture == "" {
		return fmt.Errorf("platform %q: want os/arch[/variant]", p)
	}
	b.s.platforms = append(b.s.platforms, *plat)
	b.s.binaries = append(b.s.binaries, path)
	return nil
}

func run(args []string) error {
	s := &spec{}
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	out := fs.String("out", "", "OCI layout directory to write (replaced)")
	tag := fs.String("tag", "latest", "the layout's tag for the index (org.opencontainers.image.ref.name)")
	fs.Var(binaryFlags{s}, "binary", "os/arch[/variant]=PATH of a static lazydisk binary (repeat per platform)")
	fs.StringVar(&s.caFile, "ca", defaultCA, "the CA certificate bundle to copy into the image")
	epoch := fs.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "image timestamps, seconds since the epoch (default $SOURCE_DATE_EPOCH)")
	fs.StringVar(&s.source, "source", "https://github.com/lazydisk/lazydisk", "org.opencontainers.image.source")
	fs.StringVar(&s.revision, "revision", "", "org.opencontainers.image.revision (the commit)")
	fs.StringVar(&s.version, "version", "", "org.opencontainers.image.version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || len(s.binaries) == 0 || fs.NArg() != 0 {
		return errors.New("usage: mkimage -out DIR -binary os/arch=PATH [-binary ...] [-created EPOCH] [-revision R] [-version V]")
	}
	sec, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil {
		return fmt.Errorf("-created (or SOURCE_DATE_EPOCH) %q: want seconds since the epoch, e.g. $(git log -1 --format=%%ct)", *epoch)
	}
	s.created = time.Unix(sec, 0).UTC()
	idx, err := build(s)
	if err != nil {
		return err
	}
	if err := writeLayout(*out, *tag, idx); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote oci:%s:%s %s\n", *out, *tag, d)
	return nil
}

// build makes the index s describes.
func build(s *spec) (v1.ImageIndex, error) {
	ca, err := os.ReadFile(s.caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificates (on Debian: apt-get install ca-certificates): %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("%s holds no PEM certificate", s.caFile)
	}
	base, err := layer(s.created, []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: caPath, mode: 0o644, data: ca},
		{name: "home/", mode: 0o755},
		{name: home[1:] + "/", mode: 0o700, owner: uid},
		{name: "tmp/", mode: 0o1777},
	})
	if err != nil {
		return nil, err
	}
	anns := map[string]string{
		annotationCreated: s.created.Format(time.RFC3339),
		annotationSource:  s.source,
		annotationTitle:   "lazydisk",
	}
	if s.revision != "" {
		anns[annotationRevision] = s.revision
	}
	if s.version != "" {
		anns[annotationVersion] = s.version
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, p := range s.platforms {
		bin, err := os.ReadFile(s.binaries[i])
		if err != nil {
			return nil, fmt.Errorf("the %s binary: %w", p, err)
		}
		top, err := layer(s.created, []entry{
			{name: "usr/", mode: 0o755},
			{name: "usr/local/", mode: 0o755},
			{name: "usr/local/bin/", mode: 0o755},
			{name: binaryPath, mode: 0o755, data: bin},
		})
		if err != nil {
			return nil, err
		}
		img, err := image(s, p, anns, base, top)
		if err != nil {
			return nil, fmt.Errorf("the %s image: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.Annotations(idx, anns).(v1.ImageIndex), nil
}

// image makes the image of one platform from its two layers.
func image(s *spec, p v1.Platform, anns map[string]string, base, top v1.Layer) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: s.created}, CreatedBy: "mkimage: CA certificates, /etc/passwd, user lazydisk", Comment: "base"}},
		mutate.Addendum{Layer: top, History: v1.History{Created: v1.Time{Time: s.created}, CreatedBy: "mkimage: /" + binaryPath}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.Created = p.OS, p.Architecture, p.Variant, v1.Time{Time: s.created}
	cf.Config = v1.Config{
		User:       strconv.Itoa(uid) + ":" + strconv.Itoa(uid),
		Entrypoint: []string{"/" + binaryPath},
		Cmd:        []string{"--help"},
		Env:        []string{"PATH=" + defaultPath, "HOME=" + home, "SSL_CERT_FILE=/" + caPath},
		WorkingDir: home,
		Labels:     anns,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}

// entry is one file or directory (name ending in /) of a layer.
type entry struct {
	name  string
	mode  int64
	owner int
	data  []byte
}

// layer makes a gzip OCI layer of entries, every one with mtime t. The tar
// is held in memory: the largest entry is the binary, tens of MB.
func layer(t time.Time, entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.owner, Gid: e.owner, ModTime: t, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// writeLayout replaces dir with an OCI layout holding idx under tag.
func writeLayout(dir, tag string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: tag})); err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	return nil
}
