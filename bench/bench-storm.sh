# Guest side of bench-storm.py (busybox sh, run by the initramfs /init).
# For each N in $NS: N concurrent `modprobe $MODULE`, then N concurrent
# `modloadctl load $MODULE` through a running modloadd, each from a clean
# kernel (the module chain unloaded with rmmod and checked gone).
#
# Kernel calls are counted with strace -f --seccomp-bpf (the filter stops only
# at init_module/finit_module, so tracing costs next to nothing): around the
# modprobe storm, and around the daemon for its whole life.
# Wall time: CLOCK_MONOTONIC from /proc/timer_list (ns), else /proc/uptime.
# CPU time: user+sys of everything the storm ran, from the shell's `times`
# (children reaped: the modprobes or modloadctls, their shells, and strace),
# plus for modloadd the daemon's and its strace's utime+stime deltas from
# /proc/PID/stat.
# Output lines (parsed by the host):
#   @@ROW tool=kmod|modloadd n=N wall_ms=.. cpu_ms=.. failed=.. missing=".."
#   @@CALL tool n syscall module fd-target bytes-arg result
#   @@WANT modules=".." base=".."  the chain modules.dep names; loaded before
MP=${MODPROBE:-/sbin/modprobe}
MC=/usr/bin/modloadctl
MD=/usr/sbin/modloadd
ST=/usr/bin/strace
SOCK=/run/modloadd/io.modloadd.Manager
M=${MODULE:-btrfs}
KV=$(uname -r)
D=/lib/modules/$KV
HZ=100

echo 1 >/proc/sys/kernel/printk 2>/dev/null
echo >/proc/sys/kernel/modprobe 2>/dev/null

snap() { awk '{print $1}' /proc/modules | sort | tr '\n' ' '; }
now_ms() {
        awk '/^now at/ {printf "%.3f\n", $3 / 1000000; f = 1; exit}
             END {if (!f) {getline u < "/proc/uptime"; split(u, a, " "); printf "%.3f\n", a[1] * 1000}}' \
                /proc/timer_list 2>/dev/null
}
# children's user+sys of this shell, in ms: busybox `times`, second line
# (run by the shell itself, not in a $(...) subshell, which has no children)
children_ms() {
        times >/tmp/times
        awk 'NR == 2 {
                t = 0
                for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] }
                printf "%.0f\n", t * 1000 }' /tmp/times
}
# utime+stime of a process in ms
proc_ms() { awk -v hz=$HZ '{ sub(/^.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1000 / hz }' /proc/$1/stat; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", a - b }'; }
deps_of() {
        grep "^[^:]*/$1\.ko[^:]*:" "$D/modules.dep" | sed 's/^[^:]*://' | tr ' ' '\n' |
                sed -n 's|.*/||; s|\.ko.*||; s|-|_|g; /./p' | tr '\n' ' '
}
reset_to() {
        for _ in 1 2 3 4 5 6 7 8; do
                extra=""
                for m in $(snap); do
                        case " $1 " in *" $m "*) ;; *) extra="$extra $m" ;; esac
                done
                [ -n "$extra" ] || return 0
                for m in $extra; do /sbin/rmmod "$m" 2>/dev/null; done
        done
        [ "$(snap)" = "$1" ]
}
missing() {
        r=""
        for m in $M $(deps_of $M); do grep -q "^$m " /proc/modules || r="$r $m"; done
        echo "${r# }"
}
# @@CALL lines from an strace -f -y log (split calls joined per pid)
calls() {
        awk -v tool="$1" -v n="$2" '
        {
                pid = $1; sub(/^[0-9]+ +/, "")
                if ($0 ~ /<unfinished \.\.\.>$/) { sub(/ *<unfinished \.\.\.>$/, ""); pend[pid] = $0; next }
                if ($0 ~ /^<\.\.\. [a-z_0-9]+ resumed>/) { sub(/^<\.\.\. [a-z_0-9]+ resumed>/, ""); $0 = pend[pid] $0; delete pend[pid] }
                if ($0 !~ /^(init_module|finit_module)\(/) next
                ret = $0; sub(/.* = /, "", ret); sub(/ .*/, "", ret)
                if (ret == "-1") { e = $0; sub(/.* = -1 /, "", e); sub(/ .*/, "", e); ret = e }
                sc = $0; sub(/\(.*/, "", sc)
                if (sc == "init_module") {
                        split($0, a, ","); gsub(/ /, "", a[2])
                        print "@@CALL", tool, n, sc, "-", "-", a[2], ret
                } else {
                        t = "?"; if (match($0, /<[^>]*>/)) t = substr($0, RSTART + 1, RLENGTH - 2)
                        gsub(/ /, "_", t)
                        print "@@CALL", tool, n, sc, t, ($0 ~ /MODULE_INIT_COMPRESSED_FILE/ ? "compressed" : "plain"), 0, ret
                }
        }' "$3"
}

BASE=$(snap)
echo "@@INFO kernel=$KV compression=$(cat /sys/module/compression 2>/dev/null || echo none) modprobe=\"$($MP --version | head -n 1)\" cpus=$(grep -c ^processor /proc/cpuinfo) clock=$(grep -q '^now at' /proc/timer_list 2>/dev/null && echo timer_list || echo uptime)"
echo "@@WANT modules=\"$M $(deps_of $M)\" base=\"$BASE\""

for N in $NS; do
        reset_to "$BASE" || { echo "@@ERROR could not unload before kmod n=$N: $(snap)"; exit 1; }
        # --- kmod -------------------------------------------------------------------
        rm -f /tmp/rc.* /tmp/k.trace
        export MP M N
        children_ms >/tmp/c0; t0=$(now_ms); c0=$(cat /tmp/c0)
        # shellcheck disable=SC2016 # expanded by the inner shell
        $ST -f --seccomp-bpf -qq -y -s 0 -e signal=none -e trace=init_module,finit_module \
                -o /tmp/k.trace /bin/sh -c '
                i=1
                while [ $i -le $N ]; do
                        ( $MP $M; echo $? >/tmp/rc.$i ) &
                        i=$((i + 1))
                done
                wait'
        t1=$(now_ms); children_ms >/tmp/c1; c1=$(cat /tmp/c1)
        bad=0
        for f in /tmp/rc.*; do [ "$(cat "$f")" = 0 ] || bad=$((bad + 1)); done
        after=$(snap)
        echo "@@ROW tool=kmod n=$N wall_ms=$(fsub $t1 $t0) cpu_ms=$((c1 - c0)) failed=$bad missing=\"$(missing)\" modules=\"$after\""
        calls kmod $N /tmp/k.trace

        reset_to "$BASE" || { echo "@@ERROR could not unload before modloadd n=$N: $(snap)"; exit 1; }
        # --- modloadd (started and idle before the clock starts) ---------------------------------
        rm -f "$SOCK" /tmp/rc.* /tmp/d.trace
        $ST -f --seccomp-bpf -qq -y -s 0 -e signal=none -e trace=init_module,finit_module \
                -o /tmp/d.trace $MD >/tmp/d.log 2>&1 &
        spid=$!
        i=0
        while [ ! -S "$SOCK" ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i + 1)); done
        dpid=$(pidof modloadd)
        [ -n "$dpid" ] || { echo "@@ERROR modloadd did not start"; cat /tmp/d.log; exit 1; }
        sleep 0.2
        export MC
        d0=$(proc_ms $dpid); s0=$(proc_ms $spid); children_ms >/tmp/c0; t0=$(now_ms); c0=$(cat /tmp/c0)
        # shellcheck disable=SC2016
        /bin/sh -c '
                i=1
                while [ $i -le $N ]; do
                        ( $MC load $M >/dev/null; echo $? >/tmp/rc.$i ) &
                        i=$((i + 1))
                done
                wait'
        t1=$(now_ms); children_ms >/tmp/c1; c1=$(cat /tmp/c1); d1=$(proc_ms $dpid); s1=$(proc_ms $spid)
        bad=0
        for f in /tmp/rc.*; do [ "$(cat "$f")" = 0 ] || bad=$((bad + 1)); done
        after=$(snap)
        kill $dpid
        wait $spid
        echo "@@ROW tool=modloadd n=$N wall_ms=$(fsub $t1 $t0) cpu_ms=$((c1 - c0 + d1 - d0 + s1 - s0)) clients_cpu_ms=$((c1 - c0)) daemon_cpu_ms=$((d1 - d0)) failed=$bad missing=\"$(missing)\" modules=\"$after\""
        calls modloadd $N /tmp/d.trace
done
reset_to "$BASE"
echo "@@DONE"
