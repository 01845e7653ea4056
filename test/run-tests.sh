#!/bin/sh
# The whole test suite, as CI runs it: installs what is missing, fetches the
# peers the tests talk to (systemd 257's varlinkctl, python3-varlink), then
# builds and tests twice — under AddressSanitizer+UndefinedBehaviorSanitizer,
# and under valgrind — both with warnings as errors and zero reports allowed.
#
# Usage: test/run-tests.sh [asan|valgrind]...   (default: both)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

export MODLOADD_TEST_CACHE="${MODLOADD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modloadd-test}"
test/install-deps.sh
test/fetch-tools.sh "$MODLOADD_TEST_CACHE" >/dev/null

valgrind_cmd="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible --show-leak-kinds=definite,possible --track-fds=no"
jobs=$(nproc)
passed=0
failed=0

# Add up one run's results from meson's machine-readable log.
count() {
        set -- $(python3 -c '
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL", "SKIP"): p += 1
    else: f += 1
print(p, f)' "$1")
        passed=$((passed + $1))
        failed=$((failed + $2))
}

run_asan() {
        meson setup --reconfigure build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
                -Dbuildtype=debug >/dev/null 2>&1 ||
                meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
        ninja -C build-asan
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 \
                meson test -C build-asan --print-errorlogs --num-processes "$jobs" --logbase asan || true
        count build-asan/meson-logs/asan.json
}

run_valgrind() {
        meson setup --reconfigure build-valgrind -Dwerror=true -Dbuildtype=debug >/dev/null 2>&1 ||
                meson setup build-valgrind -Dwerror=true -Dbuildtype=debug
        ninja -C build-valgrind
        # Test programs in C run under valgrind directly; the integration
        # tests (python) start the daemon under valgrind themselves.
        MODLOADD_DAEMON_WRAPPER="$valgrind_cmd" \
                meson test -C build-valgrind --print-errorlogs --num-processes "$jobs" \
                --suite integration --logbase valgrind-integration || true
        count build-valgrind/meson-logs/valgrind-integration.json
        meson test -C build-valgrind --print-errorlogs --num-processes "$jobs" --no-suite integration \
                --wrapper "$valgrind_cmd" --timeout-multiplier 5 --logbase valgrind-direct || true
        count build-valgrind/meson-logs/valgrind-direct.json
}

[ $# -gt 0 ] || set -- asan valgrind
for config in "$@"; do
        case $config in
        asan) run_asan ;;
        valgrind) run_valgrind ;;
        *) echo "unknown configuration: $config" >&2; exit 2 ;;
        esac
done

echo
echo "modloadd: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
