#!/bin/sh
# The whole test suite, as CI runs it: installs what is missing, fetches the
# peers the tests talk to (systemd 257's varlinkctl, python3-varlink) and
# Debian's kernels with their module trees, then builds and tests: under
# AddressSanitizer+UndefinedBehaviorSanitizer, under valgrind — both with
# warnings as errors and zero reports allowed — and in qemu guests running
# real kernels (the suite "vm").
#
# Usage: test/run-tests.sh [asan|valgrind|vm]...   (default: all three)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

export MODLOADD_TEST_CACHE="${MODLOADD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modloadd-test}"
test/install-deps.sh
test/fetch-tools.sh "$MODLOADD_TEST_CACHE" >/dev/null
test/vm/fetch-kernels.sh "$MODLOADD_TEST_CACHE" >/dev/null
# Host tests resolve against a real module tree (Debian's 6.1 kernel, depmod run).
MODLOADD_TEST_MODULE_DIR=$(ls -d "$MODLOADD_TEST_CACHE"/trees/6.1-none/lib/modules/* | head -n 1)
export MODLOADD_TEST_MODULE_DIR

valgrind_cmd="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible --show-leak-kinds=definite,possible --track-fds=no"
jobs=$(nproc)
passed=0
failed=0

# Add up one run's results from meson's machine-readable log (LOGBASE*.json:
# meson adds the wrapper's name when there is one).
count() {
        log=$(ls "$1"*.json 2>/dev/null | head -n 1)
        if [ -z "$log" ]; then
                echo "no test log $1*.json: counting the run as failed" >&2
                failed=$((failed + 1))
                return
        fi
        set -- $(python3 -c '
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL", "SKIP"): p += 1
    else: f += 1
print(p, f)' "$log")
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
                meson test -C build-asan --print-errorlogs --num-processes "$jobs" --no-suite vm \
                --logbase asan || true
        count build-asan/meson-logs/asan
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
        count build-valgrind/meson-logs/valgrind-integration
        # Only our C programs go under valgrind directly (not shell or python test scripts).
        meson test -C build-valgrind --print-errorlogs --num-processes "$jobs" --suite unit --suite fuzz \
                --wrapper "$valgrind_cmd" --timeout-multiplier 5 --logbase valgrind-direct || true
        count build-valgrind/meson-logs/valgrind-direct
}

# Real kernels in qemu: the binaries of a plain build run inside the guests.
run_vm() {
        meson setup --reconfigure build-vm -Dwerror=true >/dev/null 2>&1 || meson setup build-vm -Dwerror=true
        ninja -C build-vm
        # One guest at a time: each uses both cores.
        meson test -C build-vm --print-errorlogs --num-processes 1 --suite vm --logbase vm || true
        count build-vm/meson-logs/vm
}

[ $# -gt 0 ] || set -- asan valgrind vm
for config in "$@"; do
        case $config in
        asan) run_asan ;;
        valgrind) run_valgrind ;;
        vm) run_vm ;;
        *) echo "unknown configuration: $config" >&2; exit 2 ;;
        esac
done

echo
echo "modloadd: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
