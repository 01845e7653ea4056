# Scenario: the daemon's scheduler against a real kernel, in one boot
# (test-vm-sched.py). Needs /broker-lib.sh, /vm-lib.sh and the modprobe shim
# at /opt/shim/modprobe (a symlink to modloadctl: argv[0] is "modprobe").
# $NESTED: "CASE OUTER_MODULE NESTED_MODULE ..." triples, one per nested case.
# $LOAD_TIMEOUT: the daemon's --load-timeout in seconds for the nested cases.
# Output: see broker-lib.sh (@@CASE, @@FIG, @@INFO lines).
#
# nested-*  A module whose init calls request_module(): the kernel runs its
#           modprobe path (here the shim) synchronously, while the outer
#           finit_module() has not returned, and the shim asks the daemon.
#           With --workers=1 the nested load must not wait for the slot the
#           outer load holds. The outer module is loaded by absolute path
#           (planned like insmod: no dependencies, no soft dependencies),
#           so the nested module can only come through request_module().
# chain-parallel
#           64 concurrent callers of btrfs by four names, the daemon under
#           strace -ttt -T: independent modules of btrfs's chain are handed
#           to the kernel at the same time (two finit_module() intervals of
#           different modules overlap), each module once, no EEXIST.
# shellcheck disable=SC2034 # read by broker-lib.sh
DTRACE_OPTS="-ttt -T"
# shellcheck disable=SC1091
. /broker-lib.sh
echo "@@INFO kernel=$KV compression=$(cat /sys/module/compression 2>/dev/null || echo none) tree=${TREE:-?}"
BASE=$(snap)
LOAD_TIMEOUT=${LOAD_TIMEOUT:-20}
SHIM=/opt/shim/modprobe

# a daemon counter (GetStatistics), 0 if it does not answer
stat_of() {
        $MC status --json 2>/dev/null | awk -F'[:,]' -v k="\"$1\"" '$1 ~ k {gsub(/[ \t]/, "", $2); print $2; f = 1; exit}
                END {if (!f) print 0}'
}
# the module file of a module name, as modules.dep names it
path_of() { grep "^[^:]*/$(echo "$1" | sed 's/[-_]/[-_]/g')\.ko[^:]*:" "$D/modules.dep" | cut -d: -f1; }

# --- the daemon for the nested loads: one worker, a short load timeout ------------
if ! start_daemon --workers=1 --load-timeout="${LOAD_TIMEOUT}s"; then
        echo "@@CASE daemon-start FAIL the socket did not appear"
        cat "$DLOG"
        exit 1
fi
echo "@@CASE daemon-start PASS pid $DPID, --workers=1 --load-timeout=${LOAD_TIMEOUT}s"

# nested CASE OUTER NESTED
nested() {
        case_=$1 outer=$2 inner=$3
        rel=$(path_of "$outer")
        begin "$case_"
        if [ -z "$rel" ]; then
                err "$outer is not in modules.dep"
                end
                return
        fi
        want_absent "$outer" "$inner"
        req0=$(stat_of requests)
        kc0=$(stat_of kernelCalls)
        # the kernel's modprobe path: the shim, which finds the daemon at the
        # default socket (the kernel runs it without $MODLOADD_ADDRESS)
        echo "$SHIM" >/proc/sys/kernel/modprobe
        t0=$(now_ms)
        $MC --json load "$D/$rel" >/tmp/nested.out 2>/tmp/nested.err
        rc=$?
        took=$(($(now_ms) - t0))
        echo >/proc/sys/kernel/modprobe
        # a load the daemon let go on after answering would end meanwhile
        sleep 1
        segment
        req1=$(stat_of requests)
        kc1=$(stat_of kernelCalls)
        res=$(grep -o '"result": *"[a-zA-Z]*"' /tmp/nested.out | sed 's/.*"\([a-zA-Z]*\)"$/\1/')
        secs=$(awk -v t="$took" 'BEGIN {printf "%.1f", t / 1000}')
        [ "$rc" = 0 ] || err "exit status $rc"
        [ "$res" = inserted ] || err "result '$res': $(tr -s ' \n' ' ' </tmp/nested.out | cut -c1-300) $(head -c 200 /tmp/nested.err)"
        want_loaded "$outer" "$inner"
        # handed over by the daemon, not loaded in-process by the shim
        grep -q "finit_module(.*[/:]$(echo "$inner" | sed 's/[-_]/[-_]/g')\.ko" /tmp/seg ||
                err "$inner was not handed to the kernel by the daemon (the shim loaded it itself, or nobody did)"
        [ "$T_CALLS" = 2 ] || err "$T_CALLS kernel calls by the daemon, want 2 ($outer, $inner)"
        [ "$T_OK" = 2 ] || err "$T_OK kernel calls succeeded, want 2 ($T_ERRORS)"
        want_no_eexist
        [ $((kc1 - kc0)) = 2 ] || err "GetStatistics kernelCalls +$((kc1 - kc0)), want +2"
        [ $((req1 - req0)) -ge 2 ] || err "daemon requests +$((req1 - req0)): the kernel's modprobe call did not reach the daemon"
        [ "$took" -lt $((LOAD_TIMEOUT * 1000 / 2)) ] || err "took ${secs}s (load timeout ${LOAD_TIMEOUT}s)"
        # it nested: the inner kernel call lies within the outer one (the
        # timeline is in ms, rounded, and strace adds its own latency: 5 ms slack)
        echo "$T_TIMELINE" | tr ' ' '\n' | awk -F'[@+]' -v o="$outer" -v n="$inner" '
                $1 == o {os = $2; oe = $2 + $3} $1 == n {ns = $2; ne = $2 + $3}
                END {exit !(os != "" && ns != "" && ns >= os - 0.005 && ne <= oe + 0.005)}' ||
                err "the $inner call did not run within the $outer call: $T_TIMELINE"
        logline=$(grep -m1 "Inserted $inner " "$DLOG" | sed 's/^.*Inserted/Inserted/' | cut -c1-120)
        echo "@@FIG $case_ outer=$outer nested=$inner rc=$rc result=$res seconds=$secs kernel_calls=$T_CALLS ok=$T_OK eexist=$T_EEXIST errors=\"$T_ERRORS\" stat_kernel_calls=+$((kc1 - kc0)) stat_requests=+$((req1 - req0)) timeline=\"$T_TIMELINE\""
        end "$outer by path: exit $rc, $res in ${secs}s (load timeout ${LOAD_TIMEOUT}s), $T_CALLS kernel calls ($T_TIMELINE), daemon: '${logline:-no Inserted line for $inner}'"
        reset_to "$BASE"
}

# shellcheck disable=SC2086 # words: CASE OUTER NESTED triples
set -- $NESTED
while [ $# -ge 3 ]; do
        nested "$1" "$2" "$3"
        shift 3
done
stop_daemon

# --- the chain in parallel: the daemon as it runs by default -----------------------
if ! start_daemon; then
        echo "@@CASE chain-parallel FAIL the daemon did not start again"
        cat "$DLOG"
        exit 1
fi
begin chain-parallel
chain="btrfs $(deps_of btrfs)"
set --
i=0
while [ $i -lt 16 ]; do
        set -- "$@" btrfs fs-btrfs devname:btrfs-control char-major-10-234
        i=$((i + 1))
done
clients /tmp/cpar "$@"
segment
# shellcheck disable=SC2086 # words
want_loaded $chain
want_each_once
[ "$C_BAD" = 0 ] || err "$C_BAD of $C_N clients failed"
[ "$T_OVERLAPS" -ge 1 ] ||
        err "no two modules were in the kernel at the same time (at most $T_PAR call in flight): $T_TIMELINE"
echo "@@FIG chain-parallel clients=$C_N failed=$C_BAD kernel_calls=$T_CALLS modules=$T_MODS eexist=$T_EEXIST max_in_flight=$T_PAR overlaps=$T_OVERLAPS pairs=\"$T_PAIRS\" ms=$C_MS timeline=\"$T_TIMELINE\""
end "$C_N clients in ${C_MS}ms, $T_CALLS kernel calls for $T_MODS modules, at most $T_PAR in flight, $T_OVERLAPS overlapping pairs (${T_PAIRS:-none})"
reset_to "$BASE"
stop_daemon

echo "@@INFO daemon log: $(wc -l <"$DLOG") lines, $(grep -ci 'error\|assert' "$DLOG") mentioning error/assert"
grep -i 'assert\|BUG' "$DLOG" | head -5 | sed 's/^/@@INFO daemon: /'
echo "@@DONE failed=$FAILED_CASES"
[ "$FAILED_CASES" = 0 ]
