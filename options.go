package lazydisk

import (
	"errors"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/convert"
	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/sign"
)

// Option configures Convert. Invalid or conflicting options make Convert
// fail before it reads anything.
type Option func(*options) error

type options struct {
	convert        []convert.Option
	image          []image.Option
	platform       *v1.Platform
	signer         signature.SignerVerifier
	sign           []sign.Option
	copySignatures bool
	onWrite        func()
	diskFormat     image.DiskFormat
	skipConverted  bool
}

// WithConvertOptions adds options for the conversion itself: the format
// (convert.WithFormat), chunk size, compression level, --force, staging
// directory and progress callback. The default is convert's defaults:
// eStargz with 256 KiB chunks.
func WithConvertOptions(opts ...convert.Option) Option {
	return func(o *options) error { o.convert = append(o.convert, opts...); return nil }
}

// WithImageOptions adds options for reaching the source and the destination
// (credentials, transport, plain HTTP, TLS, user agent), used for reading,
// writing, copying signatures and signing alike. The default is image.Read's
// defaults.
func WithImageOptions(opts ...image.Option) Option {
	return func(o *options) error { o.image = append(o.image, opts...); return nil }
}

// WithPlatform converts only the image for p of a multi-platform source,
// and refuses a single-image source for another platform; for a disk:
// source, it is the platform of the containerDisk built. The default
// converts every image of an index, and builds disk: images for linux on
// this machine's architecture.
func WithPlatform(p v1.Platform) Option {
	return func(o *options) error {
		if p.OS == "" || p.Architecture == "" {
			return errors.New("a platform needs an OS and an architecture, such as linux/amd64")
		}
		o.platform = &p
		return nil
	}
}

// WithSigner signs the result with s (see sign.LoadPrivateKey), with the
// sign options opts (sign.WithSignatureFormat and the others), once it is
// written: the converted image has a new digest that the source's
// signatures do not cover. The default signs nothing.
func WithSigner(s signature.SignerVerifier, opts ...sign.Option) Option {
	return func(o *options) error {
		if s == nil {
			return errors.New("WithSigner needs a signer (sign.LoadPrivateKey)")
		}
		o.signer, o.sign = s, opts
		return nil
	}
}

// WithCopySignatures sets whether Convert copies the signatures attached
// to the source's manifests that the conversion kept byte for byte (an image
// already in the chosen format), which stay valid at the destination. Only
// registries and OCI layouts hold signatures. The default is true.
func WithCopySignatures(copy bool) Option {
	return func(o *options) error { o.copySignatures = copy; return nil }
}

// WithOnWrite calls f once the conversion is done, before the destination is
// written (the lazydisk command says "writing DST" then). The default calls
// nothing.
func WithOnWrite(f func()) Option {
	return func(o *options) error { o.onWrite = f; return nil }
}

// WithDiskFormat re-encodes the disk of a disk: source while converting
// (image.WithDiskFormat): image.DiskRaw writes the guest's disk as raw,
// image.DiskQcow2 as an uncompressed qcow2. Convert then reads the guest
// disk back from the destination and checks that its sha256 is the
// source's (ConvertResult.Disk), failing with ErrGuestMismatch otherwise.
// Other sources are refused unless f is image.DiskKeep, the default.
func WithDiskFormat(f image.DiskFormat) Option {
	return func(o *options) error {
		f, err := image.ParseDiskFormat(string(f))
		o.diskFormat = f
		return err
	}
}

// WithSkipIfConverted makes Convert record the source's digest on what it
// writes, in the annotation AnnotationSourceDigest of the top manifest or
// index, and first look at the destination: when it already records the
// digest src resolves to now, Convert converts and writes nothing and
// returns the destination's digest with ConvertResult.Skipped set. That makes
// a conversion job idempotent per source digest, with the registry as the only
// state: rerun it, and only sources that changed are converted. With
// WithSigner, a skipped destination is signed only if the signer's key does
// not already verify it (a run that converted but failed to sign is
// completed, not skipped forever).
//
// The record names the source only, not the options: to convert the same
// source again with another format or chunk size into the same destination,
// run once without it. Because the top manifest gains an annotation, a
// source manifest the conversion would have kept byte for byte is not kept,
// and its signatures are not copied. The default is false: nothing is
// recorded and the destination is not read.
func WithSkipIfConverted(skip bool) Option {
	return func(o *options) error { o.skipConverted = skip; return nil }
}

// makeOptions applies opts over the defaults and checks them together.
func makeOptions(opts []Option) (options, error) {
	o := options{copySignatures: true, diskFormat: image.DiskKeep}
	for _, opt := range opts {
		if opt == nil {
			return o, errors.New("a nil lazydisk.Option")
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	if err := convert.CheckOptions(o.convert...); err != nil {
		return o, err
	}
	if err := image.CheckOptions(o.image...); err != nil {
		return o, err
	}
	return o, nil
}
