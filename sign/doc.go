// Package sign signs container images with a cosign key, offline, in the two
// forms cosign and its consumers read: a Sigstore bundle attached to the
// manifest as an OCI 1.1 referrer (cosign >= 3, with the referrers tag schema
// on registries without the referrers API) and the legacy image tagged
// sha256-<digest>.sig (cosign < 3, podman, skopeo and containers/image
// sigstoreSigned policies). A signature covers a manifest digest; the
// manifest pins the config, the layers and their TOC annotations, so one
// signature covers every byte of a seekable image (package verify follows
// that chain). Images in registries (docker://) and OCI layouts (oci:) can be
// signed; Copy carries signatures along when an image is copied unchanged.
//
// Keys are cosign's: LoadPrivateKey reads the encrypted PEM that
// `cosign generate-key-pair` and GenerateKeyPair write.
//
// The package does not talk to a transparency log, Fulcio or a timestamp
// authority (no keyless signing), and it does not verify: see package verify.
package sign
