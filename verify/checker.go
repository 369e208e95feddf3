package verify

import (
	"context"
	"errors"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/lazydisk/lazydisk/image"
)

// Checker checks the signature of the images a lazy reader opens, by one
// key: disk.WithSignature(verify.NewChecker(v)) makes disk.Open call
// CheckSignature first and read only what the signature covers. It is how
// the signature check reaches the reader without the reader linking this
// package and sigstore.
type Checker struct {
	v    signature.Verifier
	opts []Option
}

// NewChecker returns a Checker of signatures by v (load it with
// LoadPublicKey); opts choose the accepted forms and required annotations as
// for Signature. Options that do not apply to Signature (WithDeep,
// WithPlatform) are ignored.
func NewChecker(v signature.Verifier, opts ...Option) (*Checker, error) {
	if v == nil {
		return nil, errors.New("no public key to verify with (verify.LoadPublicKey)")
	}
	if _, err := newOptions(opts); err != nil {
		return nil, err
	}
	return &Checker{v: v, opts: opts}, nil
}

// CheckSignature is Signature with the Checker's key and options, reaching
// ref with the image options ro (added to the Checker's own): it returns the
// digest of the manifest or index ref names once a valid signature over it
// is found, and an error matching ErrNoSignature or ErrBadSignature
// otherwise.
func (c *Checker) CheckSignature(ctx context.Context, ref image.Reference, ro ...image.Option) (v1.Hash, error) {
	opts := append(slices.Clip(c.opts), WithImageOptions(ro...))
	return Signature(ctx, ref, c.v, opts...)
}
