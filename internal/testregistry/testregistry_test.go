package testregistry_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lazydisk/lazydisk/internal/testregistry"
)

func TestPushPullAndRange(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)

	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host + "/test/random:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing: %v", err)
	}

	got, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pulling: %v", err)
	}
	wantDigest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if gotDigest != wantDigest {
		t.Errorf("pulled digest %s, pushed %s", gotDigest, wantDigest)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer := layers[1]
	dgst, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}

	stored, err := os.ReadFile(reg.BlobPath(dgst.String()))
	if err != nil {
		t.Fatalf("reading stored blob: %v", err)
	}
	if !bytes.Equal(stored, want) {
		t.Errorf("BlobPath content differs from the pushed layer")
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet,
		fmt.Sprintf("http://%s/v2/test/random/blobs/%s", reg.Host, dgst), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=10-29")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range request: status %d, want 206", resp.StatusCode)
	}
	if !bytes.Equal(body, want[10:30]) {
		t.Errorf("range body %x, want %x", body, want[10:30])
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	var seen atomic.Int32
	reg := testregistry.Start(t, testregistry.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			if r.URL.Path == "/v2/fault/tags/list" {
				http.Error(w, "scripted", http.StatusTeapot)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))

	tests := []struct {
		path string
		want int
	}{
		{"/v2/", http.StatusOK},
		{"/v2/fault/tags/list", http.StatusTeapot},
		{"/v2/missing/manifests/latest", http.StatusNotFound},
	}
	for _, tt := range tests {
		resp, err := http.Get("http://" + reg.Host + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s: status %d, want %d", tt.path, resp.StatusCode, tt.want)
		}
	}
	if got := seen.Load(); got != int32(len(tests)) {
		t.Errorf("middleware saw %d requests, want %d", got, len(tests))
	}
}

func TestBlobPath(t *testing.T) {
	t.Parallel()
	r := &testregistry.Registry{RootDir: "/root"}
	got := r.BlobPath("sha256:abcdef")
	want := "/root/docker/registry/v2/blobs/sha256/ab/abcdef/data"
	if got != want {
		t.Errorf("BlobPath = %q, want %q", got, want)
	}
}
