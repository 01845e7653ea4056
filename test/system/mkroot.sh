#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build (once) a minimal Debian 12 root file system with systemd, udev and
# kmod, for booting modloadd as a real system service under qemu, and pack it
# as a newc cpio archive that the kernel unpacks as its root (initramfs).
#
# Usage: test/system/mkroot.sh [CACHE]
#   CACHE defaults to $MODLOADD_TEST_CACHE, else ~/.cache/modloadd-test.
# Prints the path of the packed archive (CACHE/system/bookworm-root.cpio).
#
# Needs root (debootstrap) and the debootstrap package. The archive is the
# first URIs: line of the machine's own apt configuration. Stamped: a second
# run returns at once; delete CACHE/system to rebuild.
set -eu
cache=${1:-${MODLOADD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modloadd-test}}
dir=$cache/system
root=$dir/bookworm-root
cpio_out=$dir/bookworm-root.cpio
stamp=$dir/.complete-v1
if [ -f "$stamp" ] && [ -f "$cpio_out" ]; then
        echo "$cpio_out"
        exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
        echo "mkroot: debootstrap needs root" >&2
        exit 1
fi
command -v debootstrap >/dev/null || { echo "mkroot: debootstrap is not installed" >&2; exit 1; }
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$uri" ] || { echo "mkroot: no Debian archive URI in the apt configuration" >&2; exit 1; }

pkgs="systemd,systemd-sysv,udev,kmod,libjson-c5,libkmod2,libzstd1,liblzma5,zlib1g,libsystemd0"
pkgs="$pkgs,strace,util-linux,procps,iproute2"

mkdir -p "$dir"
rm -rf "$root" "$cpio_out" "$stamp"
debootstrap --variant=minbase --include="$pkgs" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        bookworm "$root" "$uri" >&2

# Trim what a test boot never needs (documentation, locales, apt's lists).
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
       "$root"/var/cache/apt/archives/*.deb
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
        -exec rm -rf {} + 2>/dev/null || true

# A system, not an initrd: systemd must not see /etc/initrd-release.
rm -f "$root"/etc/initrd-release
echo modloadd-test >"$root"/etc/hostname
# No persistent journal on a RAM root; no password for root (console only).
sed -i 's/^root:[^:]*:/root::/' "$root"/etc/shadow
: >"$root"/etc/machine-id
# The kernel unpacks the archive as its root file system; systemd runs
# from there (rdinit=/lib/systemd/systemd). /init is not used.
rm -f "$root"/init

(cd "$root" && find . -path ./proc/\* -prune -o -path ./sys/\* -prune -o -print |
        LC_ALL=C sort | cpio --quiet -o -H newc >"$cpio_out.tmp")
mv "$cpio_out.tmp" "$cpio_out"
touch "$stamp"
echo "$cpio_out"
