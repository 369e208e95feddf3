package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func readRegistry(ctx context.Context, r Reference, o options) (Artifact, error) {
	ref, opts, err := o.remoteOptions(ctx, r.Name)
	if err != nil {
		return Artifact{}, err
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return Artifact{}, o.registryError(ctx, "reading", r, err)
	}
	switch mt := desc.MediaType; {
	case mt.IsSchema1():
		return Artifact{}, fmt.Errorf("%s is a Docker schema 1 image, which lazydisk does not read; push it again with a current docker or podman: %w", r, ErrUnsupported)
	case mt.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return Artifact{}, o.registryError(ctx, "reading", r, err)
		}
		return Artifact{Index: idx}, nil
	default:
		img, err := desc.Image()
		if err != nil {
			return Artifact{}, o.registryError(ctx, "reading", r, err)
		}
		return Artifact{Image: img}, nil
	}
}

func writeRegistry(ctx context.Context, r Reference, a Artifact, o options) error {
	ref, opts, err := o.remoteOptions(ctx, r.Name)
	if err != nil {
		return err
	}
	var updates chan v1.Update
	forwarded := make(chan struct{})
	if o.progress != nil {
		// go-containerregistry closes the channel when the write ends.
		updates = make(chan v1.Update, 64)
		opts = append(opts, remote.WithProgress(updates))
		go func() {
			defer close(forwarded)
			var last v1.Update
			for u := range updates {
				if u.Error == nil {
					last = u
					o.progress(Progress{Written: u.Complete, Total: u.Total})
				}
			}
			o.progress(Progress{Written: last.Complete, Total: last.Total, Done: true})
		}()
	} else {
		close(forwarded)
	}
	if a.Index != nil {
		err = remote.WriteIndex(ref, a.Index, opts...)
	} else {
		err = remote.Write(ref, a.Image, opts...)
	}
	if updates != nil && err != nil {
		// A write that failed early may not have used the channel.
		select {
		case <-forwarded:
		case <-time.After(time.Second):
		}
	} else {
		<-forwarded
	}
	if err != nil {
		return o.registryError(ctx, "writing", r, err)
	}
	return nil
}

// registryError turns a go-containerregistry error from a request made with
// o's keychain into one line that says what happened and what to do
// (whether credentials were sent, for a 401), matching ErrUnauthorized or
// ErrNotFound where it applies. The original error stays reachable with
// errors.As.
func (o options) registryError(ctx context.Context, op string, r Reference, err error) error {
	sent := credsUnknown
	if auth, rerr := authn.Resolve(ctx, o.keychainOrDefault(), r.Name.Context()); rerr == nil {
		sent = credsNone
		if auth != authn.Anonymous {
			sent = credsSent
		}
	}
	return registryErrorCreds(op, r, "", err, sent)
}

// credsState is whether a request that was refused carried credentials.
type credsState int

const (
	credsUnknown credsState = iota
	credsNone
	credsSent
)

// loginHint says what to do about a 401 from registry reg.
func loginHint(reg string, sent credsState) string {
	switch sent {
	case credsNone:
		return fmt.Sprintf("no credentials were sent (none found for %s): run `lazydisk login %s`, or give --creds USER:PASS, --registry-token or --authfile", reg, reg)
	case credsSent:
		return fmt.Sprintf("the credentials sent for %s were refused: check them, or run `lazydisk login %s` again", reg, reg)
	}
	return fmt.Sprintf("run `lazydisk login %s`, or give --creds USER:PASS, --registry-token or --authfile", reg)
}

// RegistryError is how Read and Write report err, a failed request to the
// registry of r (a *transport.Error from go-containerregistry, such as
// transport.CheckError returns), for callers that make their own requests
// with PullClient. op is "reading" or "writing"; what names the object
// requested, such as "blob sha256:…", when it is not the one r names. The
// error is one line that says what to do, matches ErrUnauthorized (401, 403)
// or ErrNotFound (404), and wraps err.
func RegistryError(op string, r Reference, what string, err error) error {
	return registryErrorCreds(op, r, what, err, credsUnknown)
}

func registryErrorCreds(op string, r Reference, what string, err error, sent credsState) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return fmt.Errorf("%s %s: %w", op, r, err)
	}
	reg := r.Name.Context().RegistryStr()
	repo := r.Name.Context().RepositoryStr()
	code := terr.StatusCode
	check := "the digest"
	if what == "" {
		what, check = fmt.Sprintf("%q", r.Name.Identifier()), "the tag or digest"
	}
	switch {
	case code == http.StatusUnauthorized || hasCode(terr, transport.UnauthorizedErrorCode):
		return &failure{
			msg: fmt.Sprintf("%s %s: registry %s refused credentials for repo %s (%d): %s",
				op, r, reg, repo, code, loginHint(reg, sent)),
			wrapped: []error{ErrUnauthorized, err},
		}
	case code == http.StatusForbidden || hasCode(terr, transport.DeniedErrorCode):
		return &failure{
			msg: fmt.Sprintf("%s %s: registry %s denied access to repo %s (%d): check that your account may %s it, or `lazydisk login %s` as another user",
				op, r, reg, repo, code, verb(op), reg),
			wrapped: []error{ErrUnauthorized, err},
		}
	case code == http.StatusNotFound || hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
		return &failure{
			msg: fmt.Sprintf("%s %s: registry %s has no %s in repo %s (%d): check the repository name and %s",
				op, r, reg, what, repo, code, check),
			wrapped: []error{ErrNotFound, err},
		}
	case code >= 500:
		return &failure{
			msg: fmt.Sprintf("%s %s: registry %s failed with %d %s: try again later, or check the registry's health",
				op, r, reg, code, http.StatusText(code)),
			wrapped: []error{err},
		}
	}
	return fmt.Errorf("%s %s: %w", op, r, err)
}

func hasCode(terr *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range terr.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

func verb(op string) string {
	if op == "writing" {
		return "push to"
	}
	return "pull from"
}
