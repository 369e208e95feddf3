#!/usr/bin/env bash
# mkdisk.sh builds the VM disks that the conversion benchmark reads, from real
# files of this machine's /usr, into a cache directory:
#
#   CACHE/disk-550m.qcow2  ext4 holding /usr/bin, /usr/lib/gcc, /usr/include and
#                          /usr/sbin (about 540 MB of files), image size 1.2x the
#                          content, converted to qcow2 (64 KiB clusters, no
#                          compression): the realistic disk.
#   CACHE/disk-3g.img      3 GiB raw ext4 holding /usr/lib/x86_64-linux-gnu and
#                          /usr/lib/llvm-14 (about 1.1 GB) and free space: the
#                          disk for the peak-memory check.
#   CACHE/disk-3g.qcow2    disk-3g.img as qcow2 (64 KiB clusters, no compression):
#                          a qcow2 file of about 1.1 GB, for the serve benchmark.
#   CACHE/disk-3g-c.qcow2  with -compressed: disk-3g.img as compressed qcow2
#                          (qemu-img convert -c, deflate, 64 KiB clusters), as the
#                          distributions ship cloud images: for the guest-view
#                          benchmark (benchserve -guest).
#   CACHE/disk-20g.img     with -sparse only: a 20 GiB raw ext4 holding the
#                          realistic disk's files (about 540 MB), a sparse
#                          file, for the sparse-output benchmark.
#
# Usage: mkdisk.sh [-sparse|-compressed] [CACHE]   (default CACHE: .bench in the current directory)
#
# A disk is rebuilt only when its recipe (the script's parameters and the
# byte count of the source directories) or its size differs from the
# .stamp file written next to it, so reruns take a second. The file system
# UUID, hash seed, root owner and creation time are fixed (disklib.sh) and
# qemu-img writes clusters in order (-m 1), so the layout and content are
# the same on every run, and the images are byte-identical as long as the
# source files are unchanged.
#
# The source trees are not copied: they are hard-linked into a staging
# directory (copied only when CACHE is on another file system than /usr),
# which is removed when mke2fs is done.
set -euo pipefail

sparse_only=false
compressed=false
if [[ ${1:-} == -sparse ]]; then
	sparse_only=true
	shift
elif [[ ${1:-} == -compressed ]]; then
	compressed=true
	shift
fi
cache=${1:-.bench}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

readonly small_dirs=(usr/bin usr/lib/gcc usr/include usr/sbin)
readonly big_dirs=(usr/lib/x86_64-linux-gnu usr/lib/llvm-14)
readonly big_bytes=$((3 << 30))

# shellcheck source=bench/disklib.sh
source "$(dirname "$0")/disklib.sh"
require_dirs "${small_dirs[@]}" "${big_dirs[@]}"

# Sparse disk: 20 GiB of ext4, mostly free, as a sparse raw file.
if $sparse_only; then
	sparse="$cache/disk-20g.img"
	sparse_recipe="v1 dirs=${small_dirs[*]} bytes=$(source_bytes "${small_dirs[@]}") image=$((20 << 30))"
	if fresh "$sparse" "$sparse_recipe"; then
		echo "mkdisk.sh: reusing $sparse" >&2
	else
		echo "mkdisk.sh: building $sparse from ${small_dirs[*]}" >&2
		rm -f "$sparse" "$sparse.stamp"
		stage_tree "${small_dirs[@]}"
		mkfs "$sparse.tmp" $((20 << 30))
		cleanup
		stage=""
		mv "$sparse.tmp" "$sparse"
		echo "$sparse_recipe size=$(stat -c %s "$sparse")" >"$sparse.stamp"
	fi
	exit 0
fi

# Realistic disk: 1.2x its content, converted to qcow2.
small="$cache/disk-550m.qcow2"
small_recipe="v2 dirs=${small_dirs[*]} bytes=$(source_bytes "${small_dirs[@]}")"
if fresh "$small" "$small_recipe"; then
	echo "mkdisk.sh: reusing $small" >&2
else
	echo "mkdisk.sh: building $small from ${small_dirs[*]}" >&2
	rm -f "$small" "$small.stamp"
	kib=$(source_kib "${small_dirs[@]}")
	bytes=$(((kib * 1024 * 6 / 5 + (1 << 20) - 1) / (1 << 20) * (1 << 20)))
	stage_tree "${small_dirs[@]}"
	mkfs "$cache/disk-550m.raw" "$bytes"
	cleanup
	stage=""
	qemu-img convert -m 1 -f raw -O qcow2 -o cluster_size=65536 \
		"$cache/disk-550m.raw" "$small.tmp"
	rm -f "$cache/disk-550m.raw"
	mv "$small.tmp" "$small"
	echo "$small_recipe size=$(stat -c %s "$small")" >"$small.stamp"
fi

# Peak-memory disk: a 3 GiB raw image, mostly free space.
big="$cache/disk-3g.img"
big_recipe="v2 dirs=${big_dirs[*]} bytes=$(source_bytes "${big_dirs[@]}") image=$big_bytes"
if fresh "$big" "$big_recipe"; then
	echo "mkdisk.sh: reusing $big" >&2
else
	echo "mkdisk.sh: building $big from ${big_dirs[*]}" >&2
	rm -f "$big" "$big.stamp"
	stage_tree "${big_dirs[@]}"
	mkfs "$big.tmp" "$big_bytes"
	cleanup
	stage=""
	mv "$big.tmp" "$big"
	echo "$big_recipe size=$(stat -c %s "$big")" >"$big.stamp"
fi

# Serve disk: the peak-memory disk as qcow2, which only holds its data.
qcow="$cache/disk-3g.qcow2"
qcow_recipe="v1 from=$(cat "$big.stamp")"
if fresh "$qcow" "$qcow_recipe"; then
	echo "mkdisk.sh: reusing $qcow" >&2
else
	echo "mkdisk.sh: building $qcow from $big" >&2
	rm -f "$qcow" "$qcow.stamp"
	qemu-img convert -m 1 -f raw -O qcow2 -o cluster_size=65536 "$big" "$qcow.tmp"
	mv "$qcow.tmp" "$qcow"
	echo "$qcow_recipe size=$(stat -c %s "$qcow")" >"$qcow.stamp"
fi

# Guest-view disk: the peak-memory disk as compressed qcow2.
if $compressed; then
	cqcow="$cache/disk-3g-c.qcow2"
	cqcow_recipe="v1 from=$(cat "$big.stamp")"
	if fresh "$cqcow" "$cqcow_recipe"; then
		echo "mkdisk.sh: reusing $cqcow" >&2
	else
		echo "mkdisk.sh: building $cqcow from $big (qemu-img convert -c)" >&2
		rm -f "$cqcow" "$cqcow.stamp"
		qemu-img convert -m 1 -c -f raw -O qcow2 -o cluster_size=65536 "$big" "$cqcow.tmp"
		mv "$cqcow.tmp" "$cqcow"
		echo "$cqcow_recipe size=$(stat -c %s "$cqcow")" >"$cqcow.stamp"
	fi
fi
