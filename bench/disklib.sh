# disklib.sh holds what mkdisk.sh and mkversions.sh share: the fixed file
# system identity and time, and the functions that stage a tree of this
# machine's /usr and build a reproducible ext4 image from it. It is sourced,
# not run; the caller sets $cache (an absolute directory) first.
#
# The file system UUID, hash seed, root owner and creation time are fixed,
# and every inode's atime and ctime are set to the fixed time after mke2fs,
# so an image depends only on the staged files.

readonly uuid=6c617a79-6469-736b-0000-000000000001
readonly epoch=1704067200 # 2024-01-01T00:00:00Z

for tool in mke2fs debugfs qemu-img; do
	command -v "$tool" >/dev/null || {
		echo "${0##*/}: $tool is missing; install e2fsprogs and qemu-utils" >&2
		exit 1
	}
done

stage=""
cleanup() { [[ -z $stage ]] || rm -rf "$stage" "$stage.debugfs" "$stage.log"; }
trap cleanup EXIT

# require_dirs DIR... fails unless every tree exists below /.
require_dirs() {
	local d
	for d in "$@"; do
		[[ -d /$d ]] || {
			echo "${0##*/}: /$d is missing; the benchmark disks are built from it (edit the script's directory lists)" >&2
			exit 1
		}
	done
}

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
# directory, $stage, whose own directories get the fixed time. The staged
# files are the host's own (hard links): never write to one, replace it.
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

# run_debugfs IMAGE SCRIPT runs a debugfs command file on IMAGE at the fixed
# time and fails, showing debugfs's messages, if any command complained.
run_debugfs() {
	local img=$1 script=$2 log
	log=$(mktemp "$cache/debugfs.XXXXXX")
	E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$script" "$img" >/dev/null 2>"$log" || {
		cat "$log" >&2
		rm -f "$log"
		return 1
	}
	if grep -v '^debugfs ' "$log" | grep -q .; then
		cat "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

# fix_times PATH... prints debugfs commands that set the atime and ctime of
# each image path (relative to the root, one per line on stdin when no
# argument is given) to the fixed time.
fix_times() {
	awk -v t="$(date -u -d "@$epoch" +%Y%m%d%H%M%S)" '
		{ for (f = 0; f < 2; f++) printf "sif \"/%s\" %s %s\n", $0, f ? "ctime" : "atime", t }'
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
		echo "${0##*/}: a source file name has a quote or backslash; inode times are left as copied" >&2
		return
	fi
	{
		(cd "$stage" && find . -mindepth 1 -printf '%P\n') | fix_times
		t=$(date -u -d "@$epoch" +%Y%m%d%H%M%S)
		printf 'sif / atime %s\nsif / ctime %s\n' "$t" "$t"
	} >"$stage.debugfs"
	run_debugfs "$img" "$stage.debugfs"
	rm -f "$stage.debugfs"
}
