#!/bin/sh
# Run apt-get or apt-cache against Debian 13 (trixie) with a private apt
# configuration kept in the test cache; the machine's own apt configuration is
# only read (for the archive URI), never changed.  The package lists are
# fetched once; delete CACHE/apt-trixie-vm to refresh them.
#
# Usage: test/vm/apt-trixie.sh CACHE apt-get|apt-cache ARGS...
#   e.g. test/vm/apt-trixie.sh ~/.cache/modloadd-test apt-cache depends linux-image-cloud-amd64
set -eu
[ $# -ge 2 ] || { echo "usage: $0 CACHE apt-get|apt-cache ARGS..." >&2; exit 2; }
cache=$1; tool=$2; shift 2
case $tool in apt-get|apt-cache) ;; *) echo "apt-trixie: unsupported tool $tool" >&2; exit 2;; esac
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
dir=$cache/apt-trixie-vm
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
if [ ! -f "$dir/sources.list" ]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        if [ -z "$uri" ]; then
                uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
                        /etc/apt/sources.list 2>/dev/null || true)
        fi
        [ -n "$uri" ] || { echo "apt-trixie: no Debian archive URI in the apt configuration" >&2; exit 1; }
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$dir/sources.list.new"
        mv "$dir/sources.list.new" "$dir/sources.list"
fi
opts="-o Dir::Etc::SourceList=$dir/sources.list -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir/cache -o Debug::NoLocking=1"
[ "$(id -u)" -eq 0 ] && opts="$opts -o APT::Sandbox::User=root"
if [ ! -f "$dir/.updated-v1" ]; then
        # shellcheck disable=SC2086
        apt-get $opts -q update >&2
        touch "$dir/.updated-v1"
fi
# shellcheck disable=SC2086
exec "$tool" $opts "$@"
