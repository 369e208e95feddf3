package sign

import (
	"errors"
	"fmt"
	"time"

	"github.com/lazydisk/lazydisk/image"
)

// SignatureFormat selects the signature forms Manifest writes.
type SignatureFormat string

const (
	// SignatureBoth writes a bundle referrer and a legacy .sig signature, for
	// every consumer. It is the default.
	SignatureBoth SignatureFormat = "both"
	// SignatureBundle writes only the Sigstore bundle as an OCI 1.1 referrer
	// (cosign >= 3's default form).
	SignatureBundle SignatureFormat = "bundle"
	// SignatureLegacy writes only the legacy image tagged sha256-<hex>.sig
	// (cosign < 3, podman, skopeo).
	SignatureLegacy SignatureFormat = "legacy"
)

// ParseSignatureFormat parses "both", "bundle" or "legacy".
func ParseSignatureFormat(s string) (SignatureFormat, error) {
	switch f := SignatureFormat(s); f {
	case SignatureBoth, SignatureBundle, SignatureLegacy:
		return f, nil
	}
	return "", fmt.Errorf("unknown signature format %q: use both, bundle or legacy", s)
}

func (f SignatureFormat) bundle() bool { return f == SignatureBoth || f == SignatureBundle }
func (f SignatureFormat) legacy() bool { return f == SignatureBoth || f == SignatureLegacy }

// Option configures Manifest and Copy. Invalid options are reported by the
// call they are given to, before anything is signed or copied.
type Option func(*options) error

type options struct {
	format      SignatureFormat
	recursive   bool
	annotations map[string]string
	identity    string
	now         func() time.Time
	image       []image.Option
}

// WithSignatureFormat chooses the signature forms to write. The default is
// SignatureBoth.
func WithSignatureFormat(f SignatureFormat) Option {
	return func(o *options) error {
		if _, err := ParseSignatureFormat(string(f)); err != nil {
			return err
		}
		o.format = f
		return nil
	}
}

// WithRecursive makes Manifest sign, for an index, every image and index it
// lists too (a puller that picks its platform first verifies that image's own
// digest). The default is true; it does not matter for an image.
func WithRecursive(r bool) Option { return func(o *options) error { o.recursive = r; return nil } }

// WithAnnotations adds claims to the signatures: the optional section of a
// legacy payload and the subject annotations of a bundle's statement, as
// `cosign sign -a` does. `cosign verify -a` and verify.WithAnnotations check
// them. The default is none.
func WithAnnotations(a map[string]string) Option {
	return func(o *options) error { o.annotations = a; return nil }
}

// WithIdentity sets the docker-reference a legacy payload claims, such as
// "registry.example.com/vm/fedora". podman and containers/image policies
// compare it with the reference an image is pulled by (cosign does not). The
// default is the signed image's repository for docker:// references and none
// for oci: layouts: give the repository a layout will be pushed to.
func WithIdentity(repo string) Option {
	return func(o *options) error { o.identity = repo; return nil }
}

// WithClock sets the time written in the created annotation of bundle
// referrers. The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("WithClock needs a function")
		}
		o.now = now
		return nil
	}
}

// WithImageOptions adds options for reaching the images and the stores
// beside them: credentials, the transport, plain HTTP or TLS settings
// (image.WithKeychain and the others). The default is image.Read's defaults.
func WithImageOptions(opts ...image.Option) Option {
	return func(o *options) error { o.image = append(o.image, opts...); return nil }
}

// makeOptions applies opts over the defaults and checks them together.
func makeOptions(opts []Option) (options, error) {
	o := options{format: SignatureBoth, recursive: true, now: time.Now}
	for _, opt := range opts {
		if opt == nil {
			return o, errors.New("a nil sign.Option")
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
