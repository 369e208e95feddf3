package annotate

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
)

// BlobsOf returns an Opener of the layer blobs of the image ref names, in a
// registry (with range requests, retried) or an OCI layout, reached with
// opts as image.Read reaches it. It is the Opener for Image and Index when
// the image was read with image.Read.
func BlobsOf(ref image.Reference, opts ...image.Option) Opener {
	return func(ctx context.Context, d v1.Descriptor) (Blob, error) {
		return blob.Open(ctx, ref, d, opts)
	}
}
