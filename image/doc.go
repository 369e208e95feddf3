// Package image parses the image references every lazydisk command and
// package takes, and reads or writes the images they name:
//
//	docker://HOST/REPO:TAG     a registry (also docker://HOST/REPO@DIGEST, or a bare HOST/REPO:TAG)
//	oci:DIR[:TAG]              an OCI image layout directory, read and write
//	docker-archive:FILE[:REF]  the output of `docker save`, read only
//	disk:PATH                  a KubeVirt containerDisk built from a local qcow2 or raw file, read only
//
// It is lazydisk's counterpart of go-containerregistry's name, remote and
// layout packages together: Parse gives a Reference, Read resolves it to a
// go-containerregistry image or index (an Artifact), Write stores one.
// SelectPlatform and CheckPlatform pick the image for a platform.
//
// Every function takes the same Options (WithKeychain, WithTransport,
// WithPlainHTTP, WithInsecureTLS, WithUserAgent, WithJobs, WithPlatform), and
// the packages built on this one (sign, verify, disk, the lazydisk facade)
// pass them through. Registries get credentials from the Docker config and
// credential helpers (authn.DefaultKeychain) and are spoken to over HTTPS,
// except loopback registries (localhost, 127.0.0.0/8, ::1) or with
// WithPlainHTTP. Writes put every blob in place before the manifest or index
// that names it, so an interrupted write never leaves a tag pointing at
// missing content. Packages that make registry requests go-containerregistry
// has no API for (range reads of blobs) get a client under the same policy
// from PullClient, and report failures with RegistryError.
//
// A disk: reference is built into a containerDisk image on the fly (see
// containerdisk.go): disk/ mode 0555 and disk/FILE mode 0444 owned by
// 107:107, timestamps from SOURCE_DATE_EPOCH, nothing held in memory.
//
// The package does not convert, compress or sign anything, or log: it only
// resolves references to go-containerregistry images and indexes, and stores
// them.
package image
