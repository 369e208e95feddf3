package image

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SelectPlatform returns the image of idx for platform p, matching OS,
// architecture and, when p has one, variant. Attestation manifests are never
// picked. It fails with an error matching ErrNoPlatform, which lists the
// platforms idx has, when none matches.
func SelectPlatform(idx v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if err := CheckIndex(im); err != nil {
		return nil, err
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil || isAttestation(d) || !d.MediaType.IsImage() {
			continue
		}
		have = append(have, d.Platform.String())
		if d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture && (p.Variant == "" || d.Platform.Variant == p.Variant) {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for platform %s in the index (it has %v): %w", p.String(), have, ErrNoPlatform)
}

// CheckPlatform reports whether img's config is for platform p, for callers
// that were asked for one platform and got a single image. It fails with an
// error matching ErrNoPlatform when the config names another platform.
func CheckPlatform(img v1.Image, p v1.Platform) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	have := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if have.OS != p.OS || have.Architecture != p.Architecture || p.Variant != "" && have.Variant != p.Variant {
		return fmt.Errorf("the image is for %s, not %s: %w", have.String(), p.String(), ErrNoPlatform)
	}
	return nil
}

// isAttestation matches BuildKit's attestation manifests, which describe
// another image of the index rather than run on a platform.
func isAttestation(d v1.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest"
}
