package blob_test

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// anonymous returns options that read no credentials from the machine
// running the tests.
func anonymous() []image.Option {
	return []image.Option{image.WithKeychain(authn.NewMultiKeychain())}
}

func mustParse(t testing.TB, s string) image.Reference {
	t.Helper()
	r, err := image.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return r
}

// randomBytes returns n bytes that depend on seed only.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	r.Read(b)
	return b
}

// pushBlob pushes data as a layer blob to repo of reg and returns a reference
// into repo and the blob's descriptor.
func pushBlob(t testing.TB, reg *testregistry.Registry, repo string, data []byte, opts ...remote.Option) (image.Reference, v1.Descriptor) {
	t.Helper()
	layer := static.NewLayer(data, types.OCILayer)
	r, err := name.NewRepository(reg.Host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(r, layer, append(opts, remote.WithContext(t.Context()))...); err != nil {
		t.Fatalf("pushing a blob to %s: %v", r, err)
	}
	return mustParse(t, "docker://"+r.String()+":latest"), descriptorOf(t, layer)
}

func descriptorOf(t testing.TB, l v1.Layer) v1.Descriptor {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := l.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: n}
}
