#!/usr/bin/env bash
# mkversions.sh builds two versions of the same VM disk, for the zstd:chunked
# chunking study (docs/zstd-chunking.md), into CACHE/versions:
#
#   disk-v1.img, disk-v1.qcow2
#       ext4 holding /usr/bin, /usr/lib/gcc, /usr/include and /usr/sbin
#       (about 540 MB of files), image size 1.2x the content: the same
#       recipe as mkdisk.sh's disk-550m.
#   disk-v2-inplace.img, disk-v2-inplace.qcow2
#       v1 updated in place, as a package update inside the VM does it:
#       debugfs replaces, adds and then deletes files on a copy of v1's image,
#       so unchanged files keep their blocks, new ones go to free blocks
#       and deleted ones leave their old bytes behind.
#   disk-v2-rebuilt.img, disk-v2-rebuilt.qcow2
#       the same v2 tree built from scratch by mke2fs, as an image pipeline
#       does it for each release: every file after the first change moves.
#
# The v2 tree is v1's with these changes, chosen by position in the sorted
# file list so that they spread over the whole disk and are the same on
# every run:
#   - removed: every 25th directory directly under usr/include (a removed
#     -dev package; here llvm-14 and postgresql, 22 MB) and every 90th
#     remaining file (80 files, 3 MB);
#   - modified: every 25th file of at least 16 KiB (91 files, 21 MB).
#     Odd ones are patched: 16 bytes overwritten at a third of the file
#     and 64 bytes inserted at two thirds, which shifts the rest of the file
#     (a small rebuild; the case content-defined chunking is made for).
#     Even ones are rewritten: every byte changed (a full rebuild of the
#     binary; no chunker can reuse anything of it);
#   - added: /usr/lib/git-core and /usr/share/zoneinfo (25 MB, 950 files
#     and 500 symlinks; a new package).
# v2 holds as many bytes of files as v1; 8.5% of them are new or changed.
# The image size stays v1's, the qcow2 files are converted like mkdisk.sh's
# (64 KiB clusters, in order, uncompressed).
#
# Usage: mkversions.sh [CACHE]   (default CACHE: .bench in the current directory)
#
# The set is rebuilt only when its recipe (this script's parameters and the
# byte count of the source directories) or a file's size differs from
# versions/versions.stamp. As with mkdisk.sh, the images are byte-identical
# on every run while the source files are unchanged.
set -euo pipefail

cache=${1:-.bench}
mkdir -p "$cache/versions"
cache=$(cd "$cache" && pwd)
out=$cache/versions

readonly v1_dirs=(usr/bin usr/lib/gcc usr/include usr/sbin)
readonly added_dirs=(usr/lib/git-core usr/share/zoneinfo)
readonly removed_dir_every=25  # every Nth directory directly under usr/include
readonly removed_file_every=90 # every Nth remaining file
readonly modified_every=25     # every Nth file of at least modified_min bytes
readonly modified_min=16384

# shellcheck source=bench/disklib.sh
source "$(dirname "$0")/disklib.sh"
require_dirs "${v1_dirs[@]}" "${added_dirs[@]}"

readonly names=(disk-v1.img disk-v1.qcow2 disk-v2-inplace.img disk-v2-inplace.qcow2
	disk-v2-rebuilt.img disk-v2-rebuilt.qcow2)
recipe="v1 dirs=${v1_dirs[*]} bytes=$(source_bytes "${v1_dirs[@]}")"
recipe+=" added=${added_dirs[*]} bytes=$(source_bytes "${added_dirs[@]}")"
recipe+=" every=$removed_dir_every,$removed_file_every,$modified_every min=$modified_min"

# stamp prints the recipe and the size of every file of the set.
stamp() {
	local n
	echo "$recipe"
	for n in "${names[@]}"; do
		echo "$n size=$(stat -c %s "$out/$n")"
	done
}

if [[ -f $out/versions.stamp ]] && [[ "$(stamp 2>/dev/null)" == "$(cat "$out/versions.stamp")" ]]; then
	echo "mkversions.sh: reusing $out" >&2
	exit 0
fi
echo "mkversions.sh: building $out" >&2
rm -f "$out/versions.stamp"
for n in "${names[@]}"; do rm -f "$out/$n"; done

work=$(mktemp -d "$cache/versions-work.XXXXXX")
trap 'cleanup; rm -rf "$work"' EXIT

# v1.
kib=$(source_kib "${v1_dirs[@]}")
bytes=$(((kib * 1024 * 6 / 5 + (1 << 20) - 1) / (1 << 20) * (1 << 20)))
stage_tree "${v1_dirs[@]}"
mkfs "$out/disk-v1.img" "$bytes"

# The changes, as lists of paths relative to the root, from the staged v1
# tree.
(cd "$stage" && find usr/include -mindepth 1 -maxdepth 1 -type d | LC_ALL=C sort) |
	awk -v n="$removed_dir_every" 'NR % n == 0' >"$work/removed-dirs"
(cd "$stage" && find usr -type f -printf '%s %p\n' | LC_ALL=C sort -k 2) |
	awk 'NR == FNR { gone[$0] = 1; next }
		{ split($2, p, "/"); if (!gone[p[1] "/" p[2] "/" p[3]]) print }' "$work/removed-dirs" - >"$work/files"
awk -v n="$modified_every" -v min="$modified_min" '$1 >= min && ++k % n == 7 { print $2 }' \
	"$work/files" >"$work/modified"
awk 'NR == FNR { mod[$0] = 1; next } !mod[$2] { print $2 }' "$work/modified" "$work/files" |
	awk -v n="$removed_file_every" 'NR % n == 31' >"$work/removed-files"

# New contents of the modified files, in $work/new/N for the Nth.
mkdir "$work/new"
i=0
while IFS= read -r p; do
	i=$((i + 1))
	src=$stage/$p dst=$work/new/$i
	if ((i % 2)); then
		size=$(stat -c %s "$src")
		a=$((size / 3)) b=$((size * 2 / 3))
		{
			head -c "$a" "$src"
			printf 'lazydisk v2 edit'
			dd if="$src" bs=64K iflag=skip_bytes,count_bytes skip="$((a + 16))" count="$((b - a - 16))" status=none
			printf '%-64s' 'inserted by mkversions.sh, shifting the rest of the file'
			tail -c "+$((b + 1))" "$src"
		} >"$dst"
	else
		LC_ALL=C tr '\000-\377' '\001-\377\000' <"$src" >"$dst"
	fi
	chmod --reference="$src" "$dst"
	touch -d "@$epoch" "$dst"
done <"$work/modified"

# The added trees are copied, not linked, so that their times can be set.
mkdir "$work/add"
for d in "${added_dirs[@]}"; do
	mkdir -p "$work/add/$(dirname "$d")"
	cp -a "/$d" "$work/add/$(dirname "$d")/"
done
find "$work/add" -mindepth 1 -exec touch -h -d "@$epoch" {} +

# v2 in place: debugfs on a copy of v1 replaces the modified files, adds
# the new trees, then deletes the removed files and directories.
{
	i=0
	while IFS= read -r p; do
		i=$((i + 1))
		printf 'rm "/%s"\ncd "/%s"\nwrite "%s" "%s"\n' "$p" "$(dirname "$p")" "$work/new/$i" "$(basename "$p")"
	done <"$work/modified"
	(cd "$work/add" && find usr -mindepth 1 | LC_ALL=C sort) | while IFS= read -r p; do
		if [[ -L $work/add/$p ]]; then
			printf 'cd "/%s"\nsymlink "%s" "%s"\n' "$(dirname "$p")" "$(basename "$p")" "$(readlink "$work/add/$p")"
		elif [[ -d $work/add/$p ]]; then
			if [[ ! -d $stage/$p ]]; then printf 'mkdir "/%s"\n' "$p"; fi
		else
			printf 'cd "/%s"\nwrite "%s" "%s"\n' "$(dirname "$p")" "$work/add/$p" "$(basename "$p")"
		fi
	done
	while IFS= read -r p; do printf 'rm "/%s"\n' "$p"; done <"$work/removed-files"
	while IFS= read -r d; do
		(cd "$stage" && find "$d" -depth) | while IFS= read -r p; do
			if [[ -d $stage/$p && ! -L $stage/$p ]]; then
				printf 'rmdir "/%s"\n' "$p"
			else
				printf 'rm "/%s"\n' "$p"
			fi
		done
	done <"$work/removed-dirs"
	# Directories whose entries changed get the fixed mtime, as in the
	# rebuilt image.
	cat "$work/modified" "$work/removed-files" "$work/removed-dirs" |
		xargs -d '\n' -n 1 dirname | LC_ALL=C sort -u |
		awk -v t="$(date -u -d "@$epoch" +%Y%m%d%H%M%S)" '{ printf "sif \"/%s\" mtime %s\n", $0, t }'
} >"$work/inplace.debugfs"
if grep -q '["\\]' "$work/modified" "$work/removed-files" "$work/removed-dirs"; then
	echo "mkversions.sh: a changed path has a quote or backslash; edit the selection" >&2
	exit 1
fi
cp --sparse=always "$out/disk-v1.img" "$out/disk-v2-inplace.img"
run_debugfs "$out/disk-v2-inplace.img" "$work/inplace.debugfs"

# v2 rebuilt: the same changes on the staged tree (replacing links, never
# writing to them: they are the host's files), then mke2fs.
while IFS= read -r d; do rm -rf "${stage:?}/$d"; done <"$work/removed-dirs"
while IFS= read -r p; do rm -f "${stage:?}/$p"; done <"$work/removed-files"
i=0
while IFS= read -r p; do
	i=$((i + 1))
	mv -f "$work/new/$i" "$stage/$p"
done <"$work/modified"
cp -a "$work/add/usr/." "$stage/usr/"
cat "$work/modified" "$work/removed-files" "$work/removed-dirs" |
	xargs -d '\n' -n 1 dirname | LC_ALL=C sort -u | while IFS= read -r d; do
	touch -d "@$epoch" "$stage/$d"
done
for d in "${added_dirs[@]}"; do
	while [[ $d == */* ]]; do
		d=$(dirname "$d")
		touch -d "@$epoch" "$stage/$d"
	done
done
mkfs "$out/disk-v2-rebuilt.img" "$bytes"
cleanup
stage=""

for v in v1 v2-inplace v2-rebuilt; do
	qemu-img convert -m 1 -f raw -O qcow2 -o cluster_size=65536 \
		"$out/disk-$v.img" "$out/disk-$v.qcow2"
done

{
	bytes_of() { awk 'NR == FNR { want[$0] = 1; next } want[$2] { t += $1 } END { print t + 0 }' "$1" "$work/files"; }
	echo "mkversions.sh: removed $(wc -l <"$work/removed-dirs") directories ($(tr '\n' ' ' <"$work/removed-dirs")$(cd / && du -scb $(cat "$work/removed-dirs") | tail -1 | cut -f1) bytes)" \
		"and $(wc -l <"$work/removed-files") files ($(bytes_of "$work/removed-files") bytes);" \
		"modified $(wc -l <"$work/modified") files ($(bytes_of "$work/modified") bytes); added ${added_dirs[*]} ($(source_bytes "${added_dirs[@]}") bytes)"
	for n in "${names[@]}"; do
		echo "mkversions.sh: $n $(stat -c %s "$out/$n") bytes, $(du -k "$out/$n" | cut -f1) KiB allocated"
	done
} >&2
stamp >"$out/versions.stamp"
