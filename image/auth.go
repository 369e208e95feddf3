package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/lazydisk/lazydisk/internal/outfile"
)

// AuthFile is the registry credentials file Login writes when no other is
// named, as podman and skopeo choose it: $REGISTRY_AUTH_FILE when set, else
// config.json in $DOCKER_CONFIG, else ~/.docker/config.json (the Docker
// config, which the default keychain reads).
func AuthFile() (string, error) {
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		return p, nil
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the Docker config: %w", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// authEntry is one registry's entry in an auth file's "auths".
type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// readAuthFile returns the file's top-level fields and its "auths"; a file
// that does not exist is empty.
func readAuthFile(path string) (map[string]json.RawMessage, map[string]authEntry, error) {
	top, auths := map[string]json.RawMessage{}, map[string]authEntry{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return top, auths, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, nil, fmt.Errorf("%s is not a JSON auth file: %w", path, err)
	}
	if raw, ok := top["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return nil, nil, fmt.Errorf("%s: its \"auths\" are not registry credentials: %w", path, err)
		}
	}
	return top, auths, nil
}

// writeAuthFile replaces the file's "auths", keeping its other fields
// (credential helpers, proxies), atomically and mode 0600 (it holds secrets).
func writeAuthFile(ctx context.Context, path string, top map[string]json.RawMessage, auths map[string]authEntry) error {
	raw, err := json.Marshal(auths)
	if err != nil {
		return err
	}
	top["auths"] = raw
	b, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return outfile.WriteFile(ctx, path, append(b, '\n'), 0o600)
}

// registryKey is how auth files name a registry: its host, and
// "https://index.docker.io/v1/" for Docker Hub, as docker login writes it.
func registryKey(registry string) (string, error) {
	reg, err := name.NewRegistry(strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(registry, "https://"), "http://"), "/"))
	if err != nil {
		return "", fmt.Errorf("%q is not a registry host: %w", registry, ErrInvalidReference)
	}
	if reg.RegistryStr() == name.DefaultRegistry {
		return authn.DefaultAuthKey, nil
	}
	return reg.RegistryStr(), nil
}

// Login stores credentials for registry (a host, such as quay.io or
// localhost:5000) in the auth file at path, in the Docker config format
// that docker, podman, skopeo, crane and the default keychain read. The
// file keeps its other entries and fields. Login does not contact the
// registry; CheckCredentials does.
func Login(ctx context.Context, path, registry string, auth authn.AuthConfig) error {
	key, err := registryKey(registry)
	if err != nil {
		return err
	}
	top, auths, err := readAuthFile(path)
	if err != nil {
		return err
	}
	e := authEntry{IdentityToken: auth.IdentityToken, RegistryToken: auth.RegistryToken}
	if auth.Username != "" || auth.Password != "" {
		e.Auth = base64.StdEncoding.EncodeToString([]byte(auth.Username + ":" + auth.Password))
	}
	auths[key] = e
	return writeAuthFile(ctx, path, top, auths)
}

// Logout removes the credentials for registry from the auth file at path.
// It reports whether there were any.
func Logout(ctx context.Context, path, registry string) (bool, error) {
	key, err := registryKey(registry)
	if err != nil {
		return false, err
	}
	top, auths, err := readAuthFile(path)
	if err != nil {
		return false, err
	}
	if _, ok := auths[key]; !ok {
		return false, nil
	}
	delete(auths, key)
	return true, writeAuthFile(ctx, path, top, auths)
}

// AuthFileKeychain finds credentials in the auth file at path (Docker
// config format; credential helpers are not run), read at each lookup. A
// registry it has no entry for, or a file that does not exist, gets
// authn.Anonymous.
func AuthFileKeychain(path string) authn.Keychain { return authFileKeychain(path) }

type authFileKeychain string

func (k authFileKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	_, auths, err := readAuthFile(string(k))
	if err != nil {
		return nil, err
	}
	key := r.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	e, ok := auths[key]
	if !ok {
		e, ok = auths["https://"+key]
	}
	for k, v := range auths {
		if ok {
			break
		}
		if authHost(k) == authHost(key) {
			e, ok = v, true
		}
	}
	if !ok {
		return authn.Anonymous, nil
	}
	cfg := authn.AuthConfig{IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken}
	if e.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return nil, fmt.Errorf("%s: the credentials for %s are not base64: %w", string(k), key, err)
		}
		cfg.Username, cfg.Password, _ = strings.Cut(string(b), ":")
	}
	return authn.FromConfig(cfg), nil
}

// CheckAuthFile reports what is wrong with the auth file at path, which a
// user named: it must exist and hold registry credentials in the Docker
// config (and containers-auth.json) format. A long-running reader (the
// layer store) checks it once at start; AuthFileKeychain reads it again at
// each lookup, so rotated credentials are picked up.
func CheckAuthFile(path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	_, auths, err := readAuthFile(path)
	if err != nil {
		return err
	}
	for host, e := range auths {
		if e.Auth == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil || !strings.Contains(string(b), ":") {
			return fmt.Errorf("%s: the entry for %s is not base64 of USER:PASSWORD", path, host)
		}
	}
	return nil
}

// authHost is the registry an auth file's key names: "https://HOST/v1/",
// "http://HOST" and "HOST" all name HOST, as podman and docker read them.
func authHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ := strings.Cut(key, "/")
	return host
}

// StaticKeychain gives auth to every registry, for credentials passed on a
// command line (--creds, --registry-token) rather than stored.
func StaticKeychain(auth authn.AuthConfig) authn.Keychain { return staticKeychain{auth} }

type staticKeychain struct{ auth authn.AuthConfig }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(k.auth), nil
}

// CheckCredentials asks registry whether it accepts auth, as docker login
// does: a GET of /v2/ with the credentials (exchanged for a token where the
// registry asks for one). It fails with an error matching ErrUnauthorized
// when the registry refuses them. Registries are reached as opts say.
func CheckCredentials(ctx context.Context, registry string, auth authn.AuthConfig, opts ...Option) error {
	o, err := makeOptions(opts)
	if err != nil {
		return err
	}
	host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(registry, "https://"), "http://"), "/")
	var nopts []name.Option
	if o.plainHTTP || isLoopback(host) {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, nopts...)
	if err != nil {
		return fmt.Errorf("%q is not a registry host: %w", registry, ErrInvalidReference)
	}
	rt, owned, err := o.roundTripper(true)
	if err != nil {
		return err
	}
	if owned != nil {
		defer owned.CloseIdleConnections()
	}
	tr, err := transport.NewWithContext(ctx, reg, authn.FromConfig(auth), transport.NewUserAgent(rt, o.userAgent), nil)
	if err != nil {
		return loginError(reg.RegistryStr(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("logging in to %s: %w", reg.RegistryStr(), err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return loginError(reg.RegistryStr(), err)
	}
	return nil
}

func loginError(reg string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return &failure{
			msg:     fmt.Sprintf("logging in to %s: the registry refused the username and password (%d)", reg, terr.StatusCode),
			wrapped: []error{ErrUnauthorized, err},
		}
	}
	return fmt.Errorf("logging in to %s: %w", reg, err)
}
