#!/bin/sh
# The main job, as far as modloadd goes today: build, start the daemon on a
# private socket, and talk to it the way systemd's tools do — GetInfo,
# the interface, the counters — then fire a burst of concurrent clients at
# it and show what it counted.
#
# Usage: test/run-main.sh [CLIENTS]      (default: 64 concurrent clients)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
clients=${1:-64}

export MODLOADD_TEST_CACHE="${MODLOADD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modloadd-test}"
test/install-deps.sh
cache=$(test/fetch-tools.sh "$MODLOADD_TEST_CACHE")
R=$cache/trixie-root
varlinkctl() {
        "$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
                --library-path "$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/systemd" \
                "$R/usr/bin/varlinkctl" "$@"
}

[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
build/src/daemon/modloadd --listen="$dir/io.modloadd.Manager" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/io.modloadd.Manager" ] && break; sleep 0.05; done

echo "== varlinkctl info"
varlinkctl info "$dir/io.modloadd.Manager"
echo "== varlinkctl introspect (methods)"
varlinkctl introspect "$dir/io.modloadd.Manager" io.modloadd.Manager | grep '^method'
echo "== $clients concurrent clients"
i=0
while [ $i -lt "$clients" ]; do
        varlinkctl call "$dir/io.modloadd.Manager" io.modloadd.Manager.GetStatistics '{}' >/dev/null &
        i=$((i + 1))
done
wait_failed=0
for job in $(jobs -p); do
        [ "$job" = "$pid" ] && continue
        wait "$job" || wait_failed=$((wait_failed + 1))
done
echo "failed clients: $wait_failed"
echo "== io.modloadd.Manager.GetStatistics"
varlinkctl call "$dir/io.modloadd.Manager" io.modloadd.Manager.GetStatistics '{}'
[ "$wait_failed" -eq 0 ]
