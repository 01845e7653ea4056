#!/bin/sh
# Fetch the Debian kernels (and Debian 13's kmod) the VM tests boot, and build
# the module trees they load from.  Nothing is installed on the machine:
# packages are downloaded with apt-get and unpacked with dpkg -x into the
# cache.  Every step leaves a stamp, so a second run takes about a second.
#
# Usage: test/vm/fetch-kernels.sh [CACHE]
#   CACHE defaults to $MODLOADD_TEST_CACHE, else $XDG_CACHE_HOME/modloadd-test,
#   else ~/.cache/modloadd-test.  Prints the cache root on stdout.
#
# Result:
#   CACHE/kernels/6.1/   Debian 12 cloud kernel: vmlinuz, config, kver, lib/modules/KV
#   CACHE/kernels/6.12/  Debian 13 cloud kernel, same layout
#   CACHE/trees/6.1-xz/lib/modules/KV     .ko recompressed as xz (crc32, 1 MiB dictionary)
#   CACHE/trees/6.1-zstd/lib/modules/KV   .ko.zst
#   CACHE/trees/6.1-gzip/lib/modules/KV   .ko.gz
#   CACHE/trees/6.1-none/lib/modules/KV   .ko, as shipped
#   CACHE/trees/6.12-xz/lib/modules/KV    .ko.xz, as shipped
#   CACHE/userland/kmod-trixie/           kmod 34 from Debian 13 with its libraries
# Each tree has been indexed by depmod (6.1-gzip: see kmod-index.py).  A tree's kernel is CACHE/kernels/<name
# up to the first dash>.  Set MODLOADD_TEST_JOBS to bound the parallelism.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${MODLOADD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modloadd-test}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
jobs=${MODLOADD_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}
debs=$cache/debs
mkdir -p "$debs" "$cache/kernels" "$cache/trees" "$cache/userland"

log() { echo "fetch-kernels: $*" >&2; }
die() { log "$*"; exit 1; }

# apt-get download, as root without apt's sandbox user (it cannot write here)
sandbox=""
[ "$(id -u)" -eq 0 ] && sandbox="-o APT::Sandbox::User=root"

# extract DEB... into DIR, atomically, then stamp it
unpack() {
        dir=$1; shift
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp"
        for d in "$@"; do
                dpkg -x "$d" "$dir.tmp"
        done
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
}

# finish a kernel folder: kver, vmlinuz and config next to the modules
kernel_meta() {
        dir=$1
        # Debian 13 ships its modules in /usr/lib/modules: use one layout
        if [ ! -d "$dir/lib/modules" ] && [ -d "$dir/usr/lib/modules" ]; then
                mkdir -p "$dir/lib"
                mv "$dir/usr/lib/modules" "$dir/lib/modules"
        fi
        kv=$(ls "$dir/lib/modules")
        if [ -z "$kv" ] || [ "$(echo "$kv" | wc -l)" -ne 1 ]; then
                die "expected one module folder in $dir/lib/modules"
        fi
        echo "$kv" >"$dir/kver"
        ln -sf "boot/vmlinuz-$kv" "$dir/vmlinuz"
        ln -sf "boot/config-$kv" "$dir/config"
        touch "$dir/.complete-v1"
        log "$dir: $kv, $(find "$dir/lib/modules" -name '*.ko*' | wc -l) modules"
}

# --- Debian 12 (bookworm): the machine's own apt configuration -------------
k61=$cache/kernels/6.1
if [ ! -f "$k61/.complete-v1" ]; then
        meta=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-6\.1\./ {print $2; exit}')
        [ -n "$meta" ] || die "apt-cache depends linux-image-cloud-amd64 names no 6.1 kernel (apt-get update?)"
        pkg=$meta-unsigned
        log "downloading $pkg"
        rm -f "$debs"/linux-image-6.1.*.deb
        # shellcheck disable=SC2086
        (cd "$debs" && apt-get $sandbox -q download "$pkg" >&2)
        unpack "$k61" "$debs"/"$pkg"_*.deb
        kernel_meta "$k61"
fi

# --- Debian 13 (trixie): private apt configuration --------------------------
trixie() { "$here/apt-trixie.sh" "$cache" "$@"; }

k612=$cache/kernels/6.12
if [ ! -f "$k612/.complete-v1" ]; then
        meta=$(trixie apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-6\.12\./ {print $2; exit}')
        [ -n "$meta" ] || die "trixie's linux-image-cloud-amd64 names no 6.12 kernel"
        pkg=$meta-unsigned
        log "downloading $pkg"
        rm -f "$debs"/linux-image-6.12.*.deb
        (cd "$debs" && trixie apt-get -q download "$pkg" >&2)
        unpack "$k612" "$debs"/"$pkg"_*.deb
        kernel_meta "$k612"
fi

kmod34=$cache/userland/kmod-trixie
if [ ! -f "$kmod34/.complete-v1" ]; then
        # libkmod 34 dlopen()s its decompressors: fetch them explicitly
        pkgs="kmod libkmod2 libc6 libzstd1 liblzma5 libssl3t64 zlib1g"
        log "downloading trixie's $pkgs"
        rm -rf "$debs/trixie-kmod"
        mkdir -p "$debs/trixie-kmod"
        # shellcheck disable=SC2086
        (cd "$debs/trixie-kmod" && trixie apt-get -q download $pkgs >&2)
        unpack "$kmod34" "$debs"/trixie-kmod/*.deb
        touch "$kmod34/.complete-v1"
fi

# --- module trees -----------------------------------------------------------
# make_tree NAME KERNEL-DIR COMPRESSION(xz|zstd|gzip|none)
make_tree() {
        name=$1 kdir=$2 comp=$3
        tree=$cache/trees/$name
        [ -f "$tree/.complete-v1" ] && return 0
        kv=$(cat "$kdir/kver")
        if [ "$comp" = none ]; then log "building tree $name (modules as shipped)"; else log "building tree $name (recompressing: $comp)"; fi
        rm -rf "$tree.tmp"
        mkdir -p "$tree.tmp/lib/modules"
        # hard links: compressing (-f: despite the links) writes a new file and
        # unlinks the old name; depmod writes new index files
        cp -al "$kdir/lib/modules/$kv" "$tree.tmp/lib/modules/$kv"
        rm -f "$tree.tmp/lib/modules/$kv/build" "$tree.tmp/lib/modules/$kv/source"
        m=$tree.tmp/lib/modules/$kv
        if [ "$comp" = gzip ] && ! depmod --version | grep -q '+ZLIB'; then
                # this depmod cannot see .ko.gz: index the uncompressed modules,
                # then point modules.dep (text and binary) at the .ko.gz files
                depmod -b "$tree.tmp" "$kv"
                gz_fixup=1
        else
                gz_fixup=0
        fi
        case $comp in
        xz)   find "$m" -name '*.ko' -print0 | xargs -0 -r -P "$jobs" -n 16 xz -q -f --check=crc32 --lzma2=dict=1MiB ;;
        zstd) find "$m" -name '*.ko' -print0 | xargs -0 -r -P "$jobs" -n 16 zstd -q -f --rm ;;
        gzip) find "$m" -name '*.ko' -print0 | xargs -0 -r -P "$jobs" -n 16 gzip -f -n ;;
        none) ;;
        *) die "unknown compression $comp" ;;
        esac
        if [ "$gz_fixup" = 1 ]; then
                sed -i 's/\.ko\([: ]\)/.ko.gz\1/g; s/\.ko$/.ko.gz/' "$m/modules.dep"
                python3 "$here/kmod-index.py" "$m/modules.dep" "$m/modules.dep.bin"
        else
                depmod -b "$tree.tmp" "$kv"
        fi
        # a depmod that could not read the modules writes a dependency-less index
        grep -q '^kernel/fs/btrfs/btrfs\.ko[^:]*: .' "$m/modules.dep" ||
                die "$name: modules.dep has no dependencies for btrfs; depmod could not read the modules"
        rm -rf "$tree"
        mv "$tree.tmp" "$tree"
        touch "$tree/.complete-v1"
}

make_tree 6.1-xz "$k61" xz
make_tree 6.1-zstd "$k61" zstd
make_tree 6.1-gzip "$k61" gzip
make_tree 6.1-none "$k61" none
make_tree 6.12-xz "$k612" none
echo "$cache"
