package sign

import (
	"fmt"
	"time"
)

// Format selects the signature forms Manifest writes.
type Format string

const (
	// FormatBoth writes a bundle referrer and a legacy .sig signature, for
	// every consumer. It is the default.
	FormatBoth Format = "both"
	// FormatBundle writes only the Sigstore bundle as an OCI 1.1 referrer
	// (cosign >= 3's default form).
	FormatBundle Format = "bundle"
	// FormatLegacy writes only the legacy image tagged sha256-<hex>.sig
	// (cosign < 3, podman, skopeo).
	FormatLegacy Format = "legacy"
)

// ParseFormat parses "both", "bundle" or "legacy".
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatBoth, FormatBundle, FormatLegacy:
		return f, nil
	}
	return "", fmt.Errorf("unknown signature format %q: use both, bundle or legacy", s)
}

func (f Format) bundle() bool { return f == FormatBoth || f == FormatBundle }
func (f Format) legacy() bool { return f == FormatBoth || f == FormatLegacy }

// Option configures Manifest.
type Option func(*options)

type options struct {
	format      Format
	recursive   bool
	annotations map[string]string
	identity    string
	now         func() time.Time
}

func defaults() options {
	return options{format: FormatBoth, recursive: true, now: time.Now}
}

// WithFormat chooses the signature forms to write. The default is FormatBoth.
func WithFormat(f Format) Option { return func(o *options) { o.format = f } }

// WithRecursive makes Manifest sign, for an index, every image and index it
// lists too (a puller that picks its platform first verifies that image's own
// digest). The default is true; it does not matter for an image.
func WithRecursive(r bool) Option { return func(o *options) { o.recursive = r } }

// WithAnnotations adds claims to the signatures: the optional section of a
// legacy payload and the subject annotations of a bundle's statement, as
// `cosign sign -a` does. `cosign verify -a` and verify.WithAnnotations check
// them. The default is none.
func WithAnnotations(a map[string]string) Option {
	return func(o *options) { o.annotations = a }
}

// WithIdentity sets the docker-reference a legacy payload claims, such as
// "registry.example.com/vm/fedora". podman and containers/image policies
// compare it with the reference an image is pulled by (cosign does not). The
// default is the signed image's repository for docker:// references and none
// for oci: layouts: give the repository a layout will be pushed to.
func WithIdentity(repo string) Option { return func(o *options) { o.identity = repo } }

// WithClock sets the time written in the created annotation of bundle
// referrers. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

func (o *options) check() error {
	switch o.format {
	case FormatBoth, FormatBundle, FormatLegacy:
	default:
		return fmt.Errorf("unknown signature format %q: use both, bundle or legacy", o.format)
	}
	if o.now == nil {
		return fmt.Errorf("WithClock needs a function")
	}
	return nil
}
