package image_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/lazydisk/lazydisk/image"
)

// TestLoginLogout checks that Login and Logout change only their
// registry's entry, that AuthFileKeychain reads what Login wrote, and that
// Docker Hub is stored under the key docker login uses.
func TestLoginLogout(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"credHelpers":{"gcr.io":"gcloud"},"auths":{"other.example.com":{"auth":"eDp5"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := image.Login(ctx, path, "quay.io", authn.AuthConfig{Username: "u", Password: "p:w"}); err != nil {
		t.Fatal(err)
	}
	if err := image.Login(ctx, path, "docker.io", authn.AuthConfig{Username: "hub", Password: "x"}); err != nil {
		t.Fatal(err)
	}
	var f struct{ CredHelpers map[string]string }
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &f); err != nil || f.CredHelpers["gcr.io"] != "gcloud" {
		t.Errorf("Login lost the file's other fields: %s", b)
	}
	k := image.AuthFileKeychain(path)
	for reg, want := range map[string]authn.AuthConfig{
		"quay.io":           {Username: "u", Password: "p:w"},
		"index.docker.io":   {Username: "hub", Password: "x"},
		"other.example.com": {Username: "x", Password: "y"},
		"none.example.com":  {},
	} {
		r, _ := name.NewRegistry(reg)
		a, err := k.Resolve(r)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := a.Authorization()
		if *got != want {
			t.Errorf("credentials for %s: %+v, want %+v", reg, *got, want)
		}
	}
	if removed, err := image.Logout(ctx, path, "quay.io"); !removed || err != nil {
		t.Errorf("Logout = %v, %v", removed, err)
	}
	if removed, err := image.Logout(ctx, path, "quay.io"); removed || err != nil {
		t.Errorf("Logout again = %v, %v; want false", removed, err)
	}
	if _, err := image.AuthFile(); err != nil {
		t.Error(err)
	}
}
