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
#
# Usage: mkdisk.sh [CACHE]   (default CACHE: .bench in the current directory)
#
# A disk is rebuilt only when its recipe (the script's parameters and the
# byte count of the source directories) or its size differs from the
# .stamp file written next to it, so reruns take a second. The file system
# UUID, hash seed, root owner and creation time are fixed and qemu-img
# writes clusters in order (-m 1), so the layout and content are the same
# on every run, and the images are byte-identical as long as the source
# files are unchanged.
#
# The source trees are not copied: they are hard-linked into a staging
# directory (copied only when CACHE is on another file system than /usr),
# which is removed when mke2fs is done.
set -euo pipefail

cache=${1:-.bench}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

readonly uuid=6c617a79-6469-736b-0000-000000000001
readonly epoch=1704067200 # 2024-01-01T00:00:00Z
readonly small_dirs=(usr/bin usr/lib/gcc usr/include usr/sbin)
readonly big_dirs=(usr/lib/x86_64-linux-gnu usr/lib/llvm-14)
readonly big_bytes=$((3 << 30))

for tool in mke2fs debugfs qemu-img; do
	command -v "$tool" >/dev/null || {
		echo "mkdisk.sh: $tool is missing; install e2fsprogs and qemu-utils" >&2
		exit 1
	}
done
for d in "${small_dirs[@]}" "${big_dirs[@]}"; do
	[[ -d /$d ]] || {
		echo "mkdisk.sh: /$d is missing; the benchmark disks are built from it (edit small_dirs or big_dirs)" >&2
		exit 1
	}
done

stage=""
cleanup() { [[ -z $stage ]] || rm -rf "$stage" "$stage.debugfs" "$stage.log"; }
trap cleanup EXIT

# source_bytes prints the apparent size of the given trees below /.
source_bytes() {
	local d total=0
	for d in "$@"; do
		total=$((total + $(du -sb "/$d" | cut -f1)))
	done
	echo "$total"
}

# source_kib prints the space the given trees use below /, in KiB.
source_kib() {
	local d total=0
	for d in "$@"; do
		total=$((total + $(du -sk "/$d" | cut -f1)))
	done
	echo "$total"
}

# fresh OUT RECIPE succeeds when OUT exists and its stamp records RECIPE
# and OUT's current size.
fresh() {
	local out=$1 recipe=$2
	[[ -f $out && -f $out.stamp ]] || return 1
	[[ "$(cat "$out.stamp")" == "$recipe size=$(stat -c %s "$out")" ]]
}

# stage_tree DIR... links (or copies) the trees into a fresh staging
# directory, $stage, whose own directories get the fixed time.
stage_tree() {
	local d
	stage=$(mktemp -d "$cache/stage.XXXXXX")
	for d in "$@"; do
		mkdir -p "$stage/$(dirname "$d")"
		if [[ $(stat -c %d "/$d") == $(stat -c %d "$stage") ]]; then
			cp -a -l "/$d" "$stage/$(dirname "$d")/"
		else
			cp -a "/$d" "$stage/$(dirname "$d")/"
		fi
	done
	# cp -a keeps the times of the trees; the parents it did not copy get
	# the fixed time.
	for d in "$@"; do
		while [[ $d == */* ]]; do
			d=$(dirname "$d")
			touch -d "@$epoch" "$stage/$d"
		done
	done
	touch -d "@$epoch" "$stage"
}

# mkfs IMAGE BYTES builds an ext4 image of BYTES from the staging directory.
# mke2fs copies every inode's atime and ctime from the host, where reading
# and linking the files changes them, so debugfs then sets both to the
# fixed time.
mkfs() {
	local img=$1 bytes=$2
	rm -f "$img"
	E2FSPROGS_FAKE_TIME=$epoch mke2fs -q -F -t ext4 -b 4096 -I 256 -L bench \
		-U "$uuid" -E "hash_seed=$uuid,root_owner=0:0,nodiscard" \
		-d "$stage" "$img" "$((bytes / 1024))k" >/dev/null
	if find "$stage" -name '*["\\]*' | grep -q .; then
		echo "mkdisk.sh: a source file name has a quote or backslash; inode times are left as copied" >&2
		return
	fi
	(cd "$stage" && find . -mindepth 1 -printf '%P\n') |
		awk -v t="$(date -u -d "@$epoch" +%Y%m%d%H%M%S)" '
			{ for (f = 0; f < 2; f++) printf "sif \"/%s\" %s %s\n", $0, f ? "ctime" : "atime", t }
			END { printf "sif / atime %s\nsif / ctime %s\n", t, t }' >"$stage.debugfs"
	E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$stage.debugfs" "$img" >/dev/null 2>"$stage.log" || {
		cat "$stage.log" >&2
		return 1
	}
	if grep -v '^debugfs ' "$stage.log" | grep -q .; then
		cat "$stage.log" >&2
		return 1
	fi
	rm -f "$stage.debugfs" "$stage.log"
}

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
