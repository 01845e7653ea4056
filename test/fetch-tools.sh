#!/bin/sh
# Fetch the newer peers the tests talk to, without touching the system:
# systemd 257's varlinkctl and python3-varlink from Debian 13, unpacked into
# the test cache.  Prints the cache root on stdout.
#
# Usage: test/fetch-tools.sh [CACHE]
#   CACHE defaults to $MODLOADD_TEST_CACHE, else ~/.cache/modloadd-test.
set -eu
cache=${1:-${MODLOADD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modloadd-test}}
root=$cache/trixie-root
stamp=$root/.complete-v2
if [ -f "$stamp" ]; then
        echo "$cache"
        exit 0
fi
mkdir -p "$cache"
apt_dir=$cache/apt-trixie
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$uri" ] || { echo "fetch-tools: no Debian archive URI in the apt configuration" >&2; exit 1; }
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$apt_dir/sources.list"
set -- -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
       -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -o Debug::NoLocking=1 \
       -o APT::Sandbox::User=root
apt-get "$@" -q update >&2
pkgs="systemd libsystemd-shared libsystemd0 libc6 libcap2 libacl1 libcrypt1 libmount1 libblkid1
      libselinux1 libseccomp2 libpcre2-8-0 libaudit1 libcap-ng0 libssl3t64 libzstd1 liblzma5
      libgcrypt20 libgpg-error0 liblz4-1 libkmod2 libapparmor1 libattr1 libip4tc2
      libpam0g zlib1g python3-varlink kmod"
(cd "$apt_dir/debs" && apt-get "$@" -q download $pkgs >&2)
rm -rf "$root"
mkdir -p "$root"
for d in "$apt_dir"/debs/*.deb; do
        dpkg -x "$d" "$root"
done
touch "$stamp"
echo "$cache"
