package verify

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lazydisk/lazydisk/image"
)

// SignatureFormat is which signature forms are accepted.
type SignatureFormat string

const (
	// SignatureAny accepts a valid signature in either form. It is the default.
	SignatureAny SignatureFormat = "any"
	// SignatureBundle accepts only Sigstore bundle referrers (cosign >= 3).
	SignatureBundle SignatureFormat = "bundle"
	// SignatureLegacy accepts only legacy sha256-<hex>.sig signatures.
	SignatureLegacy SignatureFormat = "legacy"
)

// ParseSignatureFormat parses "any", "bundle" or "legacy".
func ParseSignatureFormat(s string) (SignatureFormat, error) {
	switch f := SignatureFormat(s); f {
	case SignatureAny, SignatureBundle, SignatureLegacy:
		return f, nil
	}
	return "", fmt.Errorf("unknown signature format %q: use any, bundle or legacy", s)
}

// Option configures Signature, Image and NewChecker.
type Option func(*options) error

type options struct {
	format      SignatureFormat
	annotations map[string]string
	deep        bool
	platform    *v1.Platform
	tmpDir      string
	image       []image.Option
	progress    func(Progress)
}

// Progress is what Image reports while WithDeep fetches a layer whole:
// Read of Total bytes of the layer blob Layer. Done is set once per layer,
// last.
type Progress struct {
	Layer       v1.Hash
	Read, Total int64
	Done        bool
}

// WithProgress makes Image report, with WithDeep, the progress of fetching
// each layer to fn. The default reports nothing.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) error { o.progress = fn; return nil }
}

// WithSignatureFormat chooses the accepted signature forms. The default is
// SignatureAny.
func WithSignatureFormat(f SignatureFormat) Option {
	return func(o *options) error {
		if _, err := ParseSignatureFormat(string(f)); err != nil {
			return err
		}
		o.format = f
		return nil
	}
}

// WithAnnotations requires a signature to carry these annotations with these
// values (as `cosign verify -a` does). The default requires none.
func WithAnnotations(a map[string]string) Option {
	return func(o *options) error { o.annotations = a; return nil }
}

// WithDeep makes Image fetch every layer whole and check every chunk of
// every file against the TOC, the blob against its digest and the
// uncompressed layer against the config's DiffID. The default checks the
// TOCs only, with range requests.
func WithDeep(deep bool) Option { return func(o *options) error { o.deep = deep; return nil } }

// WithPlatform makes Image check only the image of an index for this
// platform (the signature is still checked on the index). The default checks
// every image of an index.
func WithPlatform(p v1.Platform) Option {
	return func(o *options) error { o.platform = &p; return nil }
}

// WithTempDir sets where WithDeep stages each layer while checking it (it
// needs room for the largest compressed layer). The default is os.TempDir.
func WithTempDir(dir string) Option { return func(o *options) error { o.tmpDir = dir; return nil } }

// WithImageOptions adds options for reaching the image: credentials, the
// transport, plain HTTP or TLS settings (image.WithKeychain and the others).
// The default is image.Read's defaults.
func WithImageOptions(opts ...image.Option) Option {
	return func(o *options) error { o.image = append(o.image, opts...); return nil }
}

func newOptions(opts []Option) (options, error) {
	o := options{format: SignatureAny}
	for _, opt := range opts {
		if opt == nil {
			return o, errors.New("a nil verify.Option")
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	if err := image.CheckOptions(o.image...); err != nil {
		return o, err
	}
	return o, nil
}
