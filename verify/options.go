package verify

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Format is which signature forms are accepted.
type Format string

const (
	// FormatAny accepts a valid signature in either form. It is the default.
	FormatAny Format = "any"
	// FormatBundle accepts only Sigstore bundle referrers (cosign >= 3).
	FormatBundle Format = "bundle"
	// FormatLegacy accepts only legacy sha256-<hex>.sig signatures.
	FormatLegacy Format = "legacy"
)

// ParseFormat parses "any", "bundle" or "legacy".
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatAny, FormatBundle, FormatLegacy:
		return f, nil
	}
	return "", fmt.Errorf("unknown signature format %q: use any, bundle or legacy", s)
}

// Option configures Signature and Image.
type Option func(*options)

type options struct {
	format      Format
	annotations map[string]string
	deep        bool
	platform    *v1.Platform
	tmpDir      string
}

// WithFormat chooses the accepted signature forms. The default is FormatAny.
func WithFormat(f Format) Option { return func(o *options) { o.format = f } }

// WithAnnotations requires a signature to carry these annotations with these
// values (as `cosign verify -a` does). The default requires none.
func WithAnnotations(a map[string]string) Option { return func(o *options) { o.annotations = a } }

// WithDeep makes Image fetch every layer whole and check every chunk of
// every file against the TOC, the blob against its digest and the
// uncompressed layer against the config's DiffID. The default checks the
// TOCs only, with range requests.
func WithDeep(deep bool) Option { return func(o *options) { o.deep = deep } }

// WithPlatform makes Image check only the image of an index for this
// platform (the signature is still checked on the index). The default checks
// every image of an index.
func WithPlatform(p *v1.Platform) Option { return func(o *options) { o.platform = p } }

// WithTempDir sets where WithDeep stages each layer while checking it (it
// needs room for the largest compressed layer). The default is os.TempDir.
func WithTempDir(dir string) Option { return func(o *options) { o.tmpDir = dir } }

func newOptions(opts []Option) (options, error) {
	o := options{format: FormatAny}
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := ParseFormat(string(o.format)); err != nil {
		return o, err
	}
	return o, nil
}
