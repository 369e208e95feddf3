#!/usr/bin/env bash
# Regenerates sample.qcow2.gz, the small containerDisk payload that
# `lazydisk demo` converts: a 24 MiB ext4 filesystem holding the Debian
# license texts and perl's pure-Perl library (text, so it compresses like a
# real root filesystem), as qcow2, gzipped for the repository.
# Needs e2fsprogs and qemu-utils. Timestamps and UUIDs are fixed so that
# reruns on the same input give the same bytes.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/etc" "$work/root/usr/share"
cp -r /usr/share/common-licenses "$work/root/usr/share/"
cp -r /usr/share/perl5 "$work/root/usr/share/"
echo "lazydisk sample disk" > "$work/root/etc/motd"
find "$work/root" -exec touch -h -d @1700000000 {} +
export E2FSPROGS_FAKE_TIME=1700000000
mke2fs -q -t ext4 -b 4096 -U 6c617a79-6469-736b-0000-73616d706c65 \
  -E hash_seed=6c617a79-6469-736b-0000-000000000001,root_owner=0:0 \
  -d "$work/root" "$work/sample.raw" 24M
qemu-img convert -f raw -O qcow2 "$work/sample.raw" "$work/sample.qcow2"
gzip -9 -n -c "$work/sample.qcow2" > sample.qcow2.gz
ls -l sample.qcow2.gz
