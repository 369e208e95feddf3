#!/bin/sh
# Writes the seed corpus of FuzzOpen: small qcow2 images (512-byte
# clusters) that qemu-img and qemu-io make, in the go test fuzz format.
# Run from the qcow2 directory: sh testdata/mkfuzzseeds.sh
set -eu
out=testdata/fuzz/FuzzOpen
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
seed() { # name qemu-img-create-options qemu-io-commands...
	name=$1 opts=$2
	shift 2
	qemu-img create -q -f qcow2 -o "$opts" "$tmp/$name" 8k
	for c in "$@"; do qemu-io -f qcow2 -c "$c" "$tmp/$name" >/dev/null; done
	{ echo 'go test fuzz v1'; printf '[]byte("'; od -An -v -tx1 "$tmp/$name" | tr -d ' \n' | sed 's/\(..\)/\\x\1/g'; echo '")'; } >"$out/$name"
}
seed v3-deflate cluster_size=512 'write -c -P 0x41 0 512' 'write -P 0x42 1k 512' 'write -z 2k 512'
seed v3-zstd cluster_size=512,compression_type=zstd 'write -c -P 0x43 512 512' 'write -z -u 1k 512'
seed v2 cluster_size=512,compat=0.10 'write -P 0x44 0 1k' 'write -z 2k 512'
