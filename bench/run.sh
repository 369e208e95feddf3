#!/usr/bin/env bash
# run.sh is `make bench`: it builds bin/benchconvert (and bin/lazydisk, for
# the peak-memory check), builds or reuses the test disks with mkdisk.sh and
# runs benchconvert, passing its arguments on:
#
#   bash bench/run.sh                # eStargz vs estargz.Build, peak RSS (docs/benchmarks.md)
#   bash bench/run.sh -chunk-study   # chunk-size study (docs/chunk-size.md)
#   bash bench/run.sh -read          # lazy reads vs download + gunzip (bin/benchread)
#   bash bench/run.sh -serve         # lazydisk serve vs nbdkit curl+tar+gzip (bin/benchserve;
#                                    # needs nbdkit: apt-get install nbdkit)
#   bash bench/run.sh -guest         # serve --guest of a compressed qcow2 vs serve + qemu-img
#                                    # convert, and vs qemu-nbd on a downloaded copy (bin/benchserve)
#   bash bench/run.sh -sparse        # read --range all of a 20 GiB sparse raw disk to a file vs
#                                    # qemu-img convert through serve and a dense write
#   bash bench/run.sh -store         # podman pull through lazydisk store vs a plain podman pull
#                                    # (bin/benchstore; root, apt-get install podman fuse3)
#   bash bench/run.sh -load          # 64 NBD clients doing random 4 KiB reads for 60 s against
#                                    # serve, both formats (bin/benchserve -load)
#
# With -zstd-chunk-study it instead builds bin/chunkstudy, builds or reuses
# two versions of a disk with mkversions.sh and runs chunkstudy, passing the
# other arguments on (docs/zstd-chunking.md); it needs neither package
# convert nor bin/lazydisk:
#
#   bash bench/run.sh -zstd-chunk-study
#
# BENCH_CACHE sets the cache directory for disks and scratch files (default
# .bench in the repository). The exit status is benchconvert's: 1 when a
# goal is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cache=${BENCH_CACHE:-.bench}
study=false
zstd_study=false
read=false
serve=false
sparse=false
store=false
load=false
guest=false
rest=()
for arg in "$@"; do
	case $arg in
	-chunk-study | --chunk-study | -chunk-study=true | --chunk-study=true) study=true ;;
	-zstd-chunk-study | --zstd-chunk-study)
		zstd_study=true
		continue
		;;
	-read | --read)
		read=true
		continue
		;;
	-serve | --serve)
		serve=true
		continue
		;;
	-sparse | --sparse)
		sparse=true
		continue
		;;
	-store | --store)
		store=true
		continue
		;;
	-load | --load)
		load=true
		continue
		;;
	-guest | --guest)
		guest=true
		continue
		;;
	esac
	rest+=("$arg")
done

if $zstd_study; then
	go -C bench build -o "$root/bin/chunkstudy" ./cmd/chunkstudy
	bash bench/mkversions.sh "$cache"
	exec bin/chunkstudy -versions "$cache/versions" "${rest[@]}"
fi

if $read; then
	go -C bench build -o "$root/bin/benchread" ./cmd/benchread
	bash bench/mkdisk.sh "$cache"
	mkdir -p "$cache/work"
	exec bin/benchread -disk "$cache/disk-3g.img" -work "$cache/work" "${rest[@]}"
fi

if $sparse; then
	go -C bench build -o "$root/bin/benchserve" ./cmd/benchserve
	go build -trimpath -o bin/lazydisk ./cmd/lazydisk
	bash bench/mkdisk.sh -sparse "$cache"
	mkdir -p "$cache/work"
	exec bin/benchserve -sparse "$cache/disk-20g.img" -work "$cache/work" -lazydisk bin/lazydisk "${rest[@]}"
fi

if $store; then
	command -v podman >/dev/null || {
		echo "run.sh: podman is missing; the store benchmark drives it: apt-get install podman fuse3" >&2
		exit 2
	}
	go -C bench build -o "$root/bin/benchstore" ./cmd/benchstore
	go build -trimpath -o bin/lazydisk ./cmd/lazydisk
	bash bench/mkdisk.sh "$cache"
	mkdir -p "$cache/work"
	exec bin/benchstore -disk "$cache/disk-3g.qcow2" -work "$cache/work" -lazydisk bin/lazydisk "${rest[@]}"
fi

if $load; then
	go -C bench build -o "$root/bin/benchserve" ./cmd/benchserve
	go build -trimpath -o bin/lazydisk ./cmd/lazydisk
	bash bench/mkdisk.sh "$cache"
	mkdir -p "$cache/work"
	exec bin/benchserve -load -disk "$cache/disk-3g.qcow2" -work "$cache/work" -lazydisk bin/lazydisk "${rest[@]}"
fi

if $guest; then
	go -C bench build -o "$root/bin/benchserve" ./cmd/benchserve
	go build -trimpath -o bin/lazydisk ./cmd/lazydisk
	bash bench/mkdisk.sh -compressed "$cache"
	mkdir -p "$cache/work"
	exec bin/benchserve -guest "$cache/disk-3g-c.qcow2" -work "$cache/work" -lazydisk bin/lazydisk "${rest[@]}"
fi

if $serve; then
	command -v nbdkit >/dev/null || {
		echo "run.sh: nbdkit is missing; the serve benchmark compares with it: apt-get install nbdkit" >&2
		exit 2
	}
	go -C bench build -o "$root/bin/benchserve" ./cmd/benchserve
	go build -trimpath -o bin/lazydisk ./cmd/lazydisk
	bash bench/mkdisk.sh "$cache"
	mkdir -p "$cache/work"
	exec bin/benchserve -disk "$cache/disk-3g.qcow2" -work "$cache/work" -lazydisk bin/lazydisk "${rest[@]}"
fi

go -C bench build -o "$root/bin/benchconvert" ./cmd/benchconvert
if ! $study; then
	go build -trimpath -o bin/lazydisk ./cmd/lazydisk
fi
bash bench/mkdisk.sh "$cache"
exec bin/benchconvert -disk "$cache/disk-550m.qcow2" -big "$cache/disk-3g.img" \
	-lazydisk bin/lazydisk -work "$cache/work" "$@"
