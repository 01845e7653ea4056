#!/bin/sh
# Install what modloadd needs to build and test on Debian 12 (bookworm).
# Usage: test/install-deps.sh            (build + test dependencies)
set -eu
pkgs="meson ninja-build pkg-config gcc clang libclang-rt-14-dev
      libsystemd-dev libkmod-dev libzstd-dev liblzma-dev zlib1g-dev libjson-c-dev
      scdoc gettext valgrind python3 systemd kmod
      qemu-system-x86 busybox-static cpio xz-utils zstd strace debootstrap util-linux
      debian-archive-keyring ca-certificates"
missing=""
for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages:$missing (run as root to install them)" >&2
        exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
