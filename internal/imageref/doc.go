// Package imageref parses the image references every lazydisk command takes
// and reads or writes the images they name:
//
//	docker://HOST/REPO:TAG     a registry (also docker://HOST/REPO@DIGEST, or a bare HOST/REPO:TAG)
//	oci:DIR[:TAG]              an OCI image layout directory, read and write
//	docker-archive:FILE[:REF]  the output of `docker save`, read only
//	disk:PATH                  a KubeVirt containerDisk built from a local qcow2 or raw file, read only
//
// Registries get credentials from the Docker config and credential helpers
// (authn.DefaultKeychain) and are spoken to over HTTPS, except loopback
// registries (localhost, 127.0.0.0/8, ::1) or when Options.PlainHTTP is set.
// Writes put every blob in place before the manifest or index that names it,
// so an interrupted write never leaves a tag pointing at missing content.
// Packages that make registry requests go-containerregistry has no API for
// (range reads of blobs) get a client under the same policy from
// Options.PullClient, and report failures with RegistryError.
//
// The package does not convert, compress or sign anything, pick a platform
// out of an index, or log: it only resolves references to go-containerregistry
// images and indexes, and stores them.
package imageref
