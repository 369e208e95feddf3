package convert

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/lazydisk/lazydisk/internal/validate"
	"github.com/lazydisk/lazydisk/toc"
)

// formatSpec is what layer conversion needs to know about a format.
type formatSpec struct {
	// name is the format's name for people.
	name      string
	mediaType types.MediaType
	write     func(ctx context.Context, w io.Writer, r io.Reader, opts ...Option) (*Blob, error)
	// claims reports whether a layer's descriptor says the layer already
	// is in this format, so that it is checked before being converted.
	claims func(desc v1.Descriptor) bool
	// check validates a layer blob against its descriptor's annotations.
	check func(ctx context.Context, sr *io.SectionReader, desc v1.Descriptor) (*validate.Report, error)
}

var formats = map[toc.Format]formatSpec{
	toc.FormatEStargz: {
		name:      "eStargz",
		mediaType: types.OCILayer,
		write:     WriteEStargz,
		claims: func(desc v1.Descriptor) bool {
			_, ok := desc.Annotations[toc.AnnotationTOCDigest]
			_, zstd := desc.Annotations[toc.AnnotationZstdChunkedManifestChecksum]
			return ok && !zstd && desc.Annotations[toc.AnnotationUncompressedSize] != "" &&
				(desc.MediaType == types.OCILayer || desc.MediaType == types.DockerLayer)
		},
		check: func(ctx context.Context, sr *io.SectionReader, desc v1.Descriptor) (*validate.Report, error) {
			dgst, err := digest.Parse(desc.Annotations[toc.AnnotationTOCDigest])
			if err != nil {
				return nil, fmt.Errorf("%w: TOC digest annotation: %w", validate.ErrInvalid, err)
			}
			r, err := validate.EStargz(ctx, sr, dgst)
			if err != nil {
				return nil, err
			}
			if got := strconv.FormatInt(r.Uncompressed, 10); got != desc.Annotations[toc.AnnotationUncompressedSize] {
				return nil, fmt.Errorf("%w: uncompressed size is %s, the annotation says %s", validate.ErrInvalid, got, desc.Annotations[toc.AnnotationUncompressedSize])
			}
			return r, nil
		},
	},
	toc.FormatZstdChunked: {
		name:      "zstd:chunked",
		mediaType: types.OCILayerZStd,
		write:     WriteZstdChunked,
		claims: func(desc v1.Descriptor) bool {
			_, ok := desc.Annotations[toc.AnnotationZstdChunkedManifestChecksum]
			return ok && desc.MediaType == types.OCILayerZStd
		},
		check: func(ctx context.Context, sr *io.SectionReader, desc v1.Descriptor) (*validate.Report, error) {
			return validate.ZstdChunked(ctx, sr, desc.Annotations)
		},
	},
}
