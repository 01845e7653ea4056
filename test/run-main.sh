#!/bin/sh
# The main job: install what is needed, build, boot a real Debian kernel in
# qemu, start modloadd in it, fire concurrent requests for one module
# through modloadd and through the distribution's own modprobe, and print
# what each did side by side (kernel calls, EEXIST, bytes copied into the
# kernel, wall and CPU time).
#
# Usage: test/run-main.sh [KERNELS [N...]]
#   KERNELS: 6.1-xz (Debian 12's 6.1 with xz modules, kmod 30: the default),
#            6.12-xz (Debian 13's 6.12, kmod 34), or both: 6.1-xz,6.12-xz
#   N:       concurrent callers per row (default: 1 8 32)
# The full benchmark (both kernels, N up to 128, plot) is bench/bench-storm.py.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
kernels=${1:-6.1-xz}
[ $# -gt 0 ] && shift
ns=$(echo "${*:-1 8 32}" | tr ' ' ',')

export MODLOADD_TEST_CACHE="${MODLOADD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modloadd-test}"
test/install-deps.sh
test/vm/fetch-kernels.sh "$MODLOADD_TEST_CACHE" >/dev/null

[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bench/bench-storm.py --kernels "$kernels" --n "$ns" --out "$out"
cat "$out/results.md"
