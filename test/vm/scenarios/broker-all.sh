# Scenario: modloadd as the broker of concurrent clients, against a real
# kernel, in one boot (test-vm-broker.py). Needs /broker-lib.sh, the
# modules in /fixtures (made by the host) and /usr/bin/setpriv.
# $KERNEL_DECOMPRESS=1 when the kernel decompresses the tree's format itself.
# Output: see broker-lib.sh.
. /broker-lib.sh
echo "@@INFO kernel=$KV compression=$(cat /sys/module/compression 2>/dev/null || echo none) tree=${TREE:-?}"
mkdir -p /etc/modprobe.d
BASE=$(snap)

if ! start_daemon; then
        echo "@@CASE daemon-start FAIL the socket did not appear"
        cat "$DLOG"
        exit 1
fi
echo "@@CASE daemon-start PASS pid $DPID"
if [ "${KERNEL_DECOMPRESS:-0}" = 1 ]; then MODE=file; else MODE=memfd; fi

# --- 64 callers of btrfs, by four names --------------------------------------------
# btrfs, its fs- alias, its devname: alias and its char-major alias from
# modules.alias: one request-table entry, each module handed over once.
begin btrfs-64
chain="btrfs $(deps_of btrfs)"
set --
i=0
while [ $i -lt 16 ]; do
        set -- "$@" btrfs fs-btrfs devname:btrfs-control char-major-10-234
        i=$((i + 1))
done
clients /tmp/c64 "$@"
segment
want_loaded $chain
want_each_once
[ "$C_BAD" = 0 ] || err "$C_BAD of $C_N clients failed"
[ "$C_SHARED" -ge $((C_N - 1)) ] || err "only $C_SHARED of $C_N outcomes shared"
if [ "$MODE" = memfd ]; then
        [ "$T_MEMFD" = "$T_FINIT" ] || err "$T_MEMFD of $T_FINIT loads from a memfd"
else
        [ "$T_COMPRESSED" = "$T_FINIT" ] || err "$T_COMPRESSED of $T_FINIT loads of the compressed file"
fi
for f in /tmp/c64/*.out; do
        grep -q '"result": *"\(inserted\|live\)"' "$f" || err "$(basename "$f"): $(tr -d '\n' <"$f")"
done
echo "@@FIG btrfs-64 clients=$C_N failed=$C_BAD shared=$C_SHARED kernel_calls=$T_CALLS finit=$T_FINIT ok=$T_OK init_module=$T_INIT eexist=$T_EEXIST modules=$(count_words "$(new_modules)") memfd=$T_MEMFD file=$T_FILE ms=$C_MS"
end "$C_N clients, $C_SHARED shared, $T_CALLS kernel calls for $(count_words "$(new_modules)") modules, ${C_MS}ms"
reset_to "$BASE"

# --- a storm over 20 modules with shared dependencies ------------------------------------
STORM="wireguard vxlan geneve openvswitch nft_ct nft_nat xt_conntrack xt_nat bonding macvlan
ipvlan ip_gre raid456 xfs udf isofs tcp_vegas l2tp_eth ip6_gre ipip"
begin storm-20
want_mods=""
for m in $STORM; do want_mods="$want_mods $m $(deps_of $m)"; done
set --
for r in 1 2 3; do
        # shellcheck disable=SC2086 # words
        set -- "$@" $STORM
done
clients /tmp/storm "$@"
# and one caller asking for all twenty in one request
$MC --json load $STORM >/tmp/storm-all.out 2>/tmp/storm-all.err
all_rc=$?
segment
want_loaded $want_mods
want_each_once
[ "$C_BAD" = 0 ] || err "$C_BAD of $C_N clients failed"
[ $all_rc = 0 ] || err "the 20-name request exited $all_rc"
n_out=$(grep -c '"result": *"\(inserted\|live\)"' /tmp/storm-all.out)
[ "$n_out" = 20 ] || err "the 20-name request has $n_out inserted/live outcomes"
echo "@@FIG storm-20 clients=$C_N failed=$C_BAD shared=$C_SHARED kernel_calls=$T_CALLS ok=$T_OK eexist=$T_EEXIST init_module=$T_INIT modules=$(count_words "$(new_modules)") ms=$C_MS"
end "$C_N clients + 1x20, $T_CALLS kernel calls for $(count_words "$(new_modules)") modules, ${C_MS}ms"
reset_to "$BASE"

# --- a module the kernel rejects, 8 callers ---------------------------------------------
# /fixtures/bad.ko.xz: a valid xz of an ELF magic, random bytes and 16 MiB of
# zeros (slow to decompress under TCG, so the callers overlap): one kernel
# call, ENOEXEC, the same answer for everyone.
begin rejected-8
set --
for i in 1 2 3 4 5 6 7 8; do set -- "$@" /fixtures/bad.ko.xz; done
clients /tmp/bad "$@"
segment
[ "$T_CALLS" = 1 ] || err "$T_CALLS kernel calls, want 1"
[ "$T_OK" = 0 ] || err "the kernel accepted it"
[ "$(cat /tmp/bad/*.rc | sort -u | tr '\n' ' ')" = "1 " ] || err "exit statuses: $(cat /tmp/bad/*.rc | tr '\n' ' ')"
n_fail=$(cat /tmp/bad/*.out | grep -c '"result": *"failed"')
[ "$n_fail" = 8 ] || err "$n_fail of 8 outcomes failed"
n_errno=$(cat /tmp/bad/*.out | grep -o '"errnoName": *"[A-Z]*"' | sort -u | wc -l)
[ "$n_errno" = 1 ] || err "different errnoNames: $(cat /tmp/bad/*.out | grep -o '"errnoName": *"[A-Z]*"' | sort | uniq -c | tr '\n' ' ')"
n_msg=$(cat /tmp/bad/*.out | grep -o '"message": *"[^"]*"' | sort -u | wc -l)
[ "$n_msg" = 1 ] || err "different messages: $(cat /tmp/bad/*.out | grep -o '"message": *"[^"]*"' | sort | uniq -c | tr '\n' ' ')"
[ "$(snap)" = "$BEFORE" ] || err "/proc/modules changed"
echo "@@FIG rejected-8 kernel_calls=$T_CALLS errors=\"$T_ERRORS\" shared=$C_SHARED ms=$C_MS"
end "$T_CALLS kernel call ($T_ERRORS), $(cat /tmp/bad/1.out | grep -o '"errnoName": *"[A-Z]*"'), $C_SHARED shared, ${C_MS}ms"

# --- unload while the load runs -----------------------------------------------------------
begin unload-during-load
( $MC --json load btrfs >/tmp/ul-load.out 2>/tmp/ul-load.err; echo $? >/tmp/ul-load.rc ) &
lpid=$!
# wait until the daemon is in the middle of the chain, then unload
wait_first_load
$MC --json unload btrfs >/tmp/ul-unload.out 2>/tmp/ul-unload.err
urc=$?
wait $lpid
segment
lrc=$(cat /tmp/ul-load.rc)
lres=$(grep -o '"result": *"[a-zA-Z]*"' /tmp/ul-load.out | sed 's/.*"\([a-zA-Z]*\)"$/\1/')
ures=$(grep -o '"result": *"[a-zA-Z]*"' /tmp/ul-unload.out | sed 's/.*"\([a-zA-Z]*\)"$/\1/')
[ "$lrc" = 0 ] && [ "$lres" = inserted ] || err "load: exit $lrc result '$lres' $(tr -d '\n' </tmp/ul-load.out) $(cat /tmp/ul-load.err)"
want_no_dups
want_no_eexist
case $ures in
removed) want_absent btrfs ;;
notLoaded | inUse | failed) want_loaded btrfs ;;
*) err "unload: exit $urc result '$ures' $(tr -d '\n' </tmp/ul-unload.out) $(cat /tmp/ul-unload.err)" ;;
esac
# and the daemon still serves
$MC load dummy >/dev/null 2>&1 || err "a load after it failed"
want_loaded dummy
end "load: $lres; unload (exit $urc): $ures $(grep -o '"message": *"[^"]*"' /tmp/ul-unload.out); $T_CALLS loads, $T_DELETE delete_module"
reset_to "$BASE"

# --- a client killed in the middle of its request ---------------------------------------------
begin client-killed
chain="btrfs $(deps_of btrfs)"
$MC load btrfs >/dev/null 2>&1 &
victim=$!
( $MC --json load btrfs >/tmp/kill-2.out 2>/tmp/kill-2.err; echo $? >/tmp/kill-2.rc ) &
other=$!
wait_first_load
kill -9 $victim
wait $victim $other
segment
[ "$(cat /tmp/kill-2.rc)" = 0 ] || err "the other caller exited $(cat /tmp/kill-2.rc): $(cat /tmp/kill-2.err)"
grep -q '"result": *"\(inserted\|live\)"' /tmp/kill-2.out || err "the other caller: $(tr -d '\n' </tmp/kill-2.out)"
want_loaded $chain
want_each_once
$MC load dummy >/dev/null 2>&1 || err "a load after it failed"
want_loaded dummy
end "victim killed ${WAITED_MS}ms after its request; $T_CALLS kernel calls, other caller: $(grep -o '"shared": *[a-z]*' /tmp/kill-2.out)"
reset_to "$BASE"

# --- an unprivileged caller ----------------------------------------------------------------------
begin unprivileged
/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups $MC load dummy >/tmp/up.out 2>/tmp/up.err
rc=$?
segment
[ $rc != 0 ] || err "exit status 0"
cat /tmp/up.out /tmp/up.err | grep -q PermissionDenied || err "no PermissionDenied in: $(cat /tmp/up.out /tmp/up.err | tr '\n' ' ')"
[ "$T_CALLS" = 0 ] || err "$T_CALLS kernel calls"
want_absent dummy
if $MC --help 2>&1 | grep -q '^ *status'; then
        /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups $MC status >/tmp/up-status.out 2>&1 ||
                err "status as nobody failed: $(cat /tmp/up-status.out)"
fi
end "exit $rc: $(cat /tmp/up.out /tmp/up.err | grep -m1 PermissionDenied)"

# --- modprobe.d changes: noticed without Reload ---------------------------------------------------
begin config-change
$MC --json load my-new-alias >/tmp/cc1.out 2>&1
rc1=$?
grep -q '"result": *"notFound"' /tmp/cc1.out || err "before: $(tr -d '\n' </tmp/cc1.out)"
echo 'alias my-new-alias dummy' >/etc/modprobe.d/x.conf
$MC --json load my-new-alias >/tmp/cc2.out 2>&1
rc2=$?
segment
[ $rc1 = 1 ] || err "before: exit $rc1"
[ $rc2 = 0 ] || err "after: exit $rc2 $(tr -d '\n' </tmp/cc2.out)"
want_loaded dummy
[ "$T_CALLS" = 1 ] || err "$T_CALLS kernel calls"
end "notFound, then $(grep -o '"result": *"[a-zA-Z]*"' /tmp/cc2.out)"
reset_to "$BASE"
rm -f /etc/modprobe.d/x.conf

# --- depmod: a module moves, the daemon follows the new index ---------------------------------------
begin depmod
p=$(grep '^[^:]*/nlmon\.ko[^:]*:' "$D/modules.dep" | cut -d: -f1)
$MC load nlmon >/dev/null 2>&1 || err "first load of nlmon failed"
/sbin/rmmod nlmon
mkdir -p /tmp/moved
mv "$D/$p" /tmp/moved/
td0=$(now_ms)
/sbin/depmod -a || err "depmod failed"
td1=$(now_ms)
$MC --json load nlmon >/tmp/dm1.out 2>&1
rc1=$?
grep -q '"result": *"notFound"' /tmp/dm1.out || err "after removal: exit $rc1 $(tr -d '\n' </tmp/dm1.out)"
want_absent nlmon
mkdir -p "$D/updates"
mv /tmp/moved/"$(basename "$p")" "$D/updates/"
/sbin/depmod -a || err "second depmod failed"
mark
$MC --json load nlmon >/tmp/dm2.out 2>&1
rc2=$?
segment
[ $rc2 = 0 ] || err "after moving to updates/: exit $rc2 $(tr -d '\n' </tmp/dm2.out)"
want_loaded nlmon
# the daemon names the file only where the kernel reads it (not through a memfd)
if [ "$MODE" = file ]; then
        grep -q "updates/$(basename "$p")" /tmp/seg || err "not loaded from updates/: $(cat /tmp/seg)"
fi
end "notFound after removal, inserted from updates/ after the second depmod (depmod took $((td1 - td0))ms)"
reset_to "$BASE"

# --- still the same daemon -------------------------------------------------------------------------
begin still-serving
$MC load fs-btrfs >/dev/null 2>&1 || err "load fs-btrfs failed"
want_loaded btrfs
[ "$(pidof modloadd)" = "$DPID" ] || err "daemon pid changed: $(pidof modloadd) vs $DPID"
end "pid $DPID"
reset_to "$BASE"

stop_daemon
echo "@@INFO daemon log: $(wc -l <"$DLOG") lines, $(grep -ci 'error\|assert' "$DLOG") mentioning error/assert"
grep -i 'assert\|BUG' "$DLOG" | head -5 | sed 's/^/@@INFO daemon: /'
echo "@@DONE failed=$FAILED_CASES"
[ "$FAILED_CASES" = 0 ]
