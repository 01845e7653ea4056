# Helpers for broker-*.sh (sourced; busybox sh): modloadd running as the
# broker, clients talking to it over its socket.
#
# The daemon runs for the whole boot under
#   strace -f --seccomp-bpf -y -e trace=init_module,finit_module,delete_module
# (the filter stops only at those calls, so tracing costs next to nothing);
# each case looks at the part of that log written while it ran (mark/segment).
# DTRACE_OPTS adds strace options, e.g. "-ttt -T" for the call intervals
# summarise reports (T_PAR, T_OVERLAPS, ...).
# The host parses:
#   @@CASE <name> PASS|FAIL <detail>
#   @@FIG <name> key=value ...
MC=/usr/bin/modloadctl
MD=/usr/sbin/modloadd
ST=/usr/bin/strace
SOCK=/run/modloadd/io.modloadd.Manager
DTRACE=/tmp/daemon.trace
DLOG=/tmp/daemon.log
KV=$(uname -r)
D=/lib/modules/$KV
FAILED_CASES=0

# No console noise in the middle of our lines, and no kernel-initiated
# request_module() going through busybox's modprobe behind our back.
echo 1 >/proc/sys/kernel/printk 2>/dev/null
echo >/proc/sys/kernel/modprobe 2>/dev/null

. /vm-lib.sh
count_words() { set -- $1; echo $#; }
# nanoseconds of CLOCK_MONOTONIC (/proc/timer_list), else /proc/uptime
now_ms() {
        awk '/^now at/ {printf "%d\n", $3 / 1000000; f = 1; exit}
             END {if (!f) {getline u < "/proc/uptime"; split(u, a, " "); printf "%d\n", a[1] * 1000}}' \
                /proc/timer_list 2>/dev/null
}
deps_of() {
        grep "^[^:]*/$1\.ko[^:]*:" "$D/modules.dep" | sed 's/^[^:]*://' | tr ' ' '\n' |
                sed -n 's|.*/||; s|\.ko.*||; s|-|_|g; /./p' | tr '\n' ' '
}

# --- the daemon ----------------------------------------------------------------
start_daemon() {
        rm -f "$SOCK"
        # shellcheck disable=SC2086 # DTRACE_OPTS: words
        $ST -f --seccomp-bpf -qq -y -s 0 -e signal=none $DTRACE_OPTS \
                -e trace=init_module,finit_module,delete_module \
                -o "$DTRACE" $MD --log-level=debug "$@" >"$DLOG" 2>&1 &
        STRACE_PID=$!
        i=0
        while [ ! -S "$SOCK" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        DPID=$(pidof modloadd)
        [ -S "$SOCK" ] && [ -n "$DPID" ]
}
daemon_alive() { [ -n "$DPID" ] && [ -d /proc/$DPID ] && grep -q modloadd /proc/$DPID/comm; }
stop_daemon() {
        [ -n "$DPID" ] && kill "$DPID" 2>/dev/null
        wait "$STRACE_PID" 2>/dev/null
        DPID=""
}

mark() { MARK=$(wc -l <"$DTRACE"); }
# the daemon's kernel calls since mark(), into /tmp/seg, summarised (see summarise)
segment() {
        sleep 0.2
        tail -n +$((MARK + 1)) "$DTRACE" >/tmp/seg
        eval "$(summarise /tmp/seg)"
}

# Kernel calls in an strace -f -y log (calls may be split into "<unfinished
# ...>" and "<... resumed>" lines: joined per pid). Prints assignments:
#   T_CALLS (init_module + finit_module), T_INIT, T_FINIT, T_OK (returned 0),
#   T_EEXIST, T_DELETE, T_MODS (distinct modules handed over),
#   T_DUPS ("module:calls" of modules handed over more than once),
#   T_ERRORS ("module:ERRNO" of failed calls), T_MEMFD, T_FILE, T_COMPRESSED
# With timestamps in the log (strace -ttt, and -T for the durations; see
# DTRACE_OPTS) also each kernel call's interval, from its entry to its return
# (entry + -T duration; else the time of the "resumed" line):
#   T_PAR (most kernel calls in flight at one moment),
#   T_OVERLAPS (pairs of calls for different modules whose intervals overlap),
#   T_PAIRS ("a+b" of those pairs, each pair of modules once),
#   T_TIMELINE ("module@start+duration", seconds from the first call, in
#   order of entry). Without timestamps these are 0 / empty.
summarise() {
        awk '
        function modname(s) {
                sub(/ \(deleted\)$/, "", s); sub(/.*\//, "", s); sub(/^memfd:/, "", s)
                sub(/\.ko.*$/, "", s); gsub(/-/, "_", s); return s
        }
        function fdname(s) {
                if (!match(s, /<[^>]*>/)) return ""
                return substr(s, RSTART + 1, RLENGTH - 2)
        }
        # seconds since the first timestamp: whole seconds apart from the
        # fraction, so that no precision is lost in awk
        function stamp(s,  a) {
                split(s, a, ".")
                if (base == "") base = a[1]
                return (a[1] - base) + ("0." a[2])
        }
        {
                pid = $1; sub(/^[0-9]+ +/, "")
                ts = ""
                if (match($0, /^[0-9]+\.[0-9]+ +/)) { ts = stamp(substr($0, 1, RLENGTH - 1)); $0 = substr($0, RLENGTH + 1) }
                if ($0 ~ /<unfinished \.\.\.>$/) { sub(/ *<unfinished \.\.\.>$/, ""); pend[pid] = $0; pts[pid] = ts; next }
                t0 = ts
                if ($0 ~ /^<\.\.\. [a-z_0-9]+ resumed>/) {
                        sub(/^<\.\.\. [a-z_0-9]+ resumed>/, ""); $0 = pend[pid] $0; t0 = pts[pid]
                        delete pend[pid]; delete pts[pid]
                }
                dur = ""
                if (match($0, / <[0-9]+\.[0-9]+>$/)) { dur = substr($0, RSTART + 2, RLENGTH - 3) + 0; $0 = substr($0, 1, RSTART - 1) }
                t1 = dur != "" && t0 != "" ? t0 + dur : ts
                ret = $0; sub(/.* = /, "", ret)
        }
        /^finit_module\(/ {
                finit++
                f = fdname($0); m = modname(f)
                if (f ~ /memfd:/) memfd++; else file++
                if ($0 ~ /MODULE_INIT_COMPRESSED_FILE/) compressed++
                calls[m]++
        }
        /^init_module\(/ { init++; m = "(init_module)"; calls[m]++ }
        /^(init_module|finit_module)\(/ && t0 != "" {
                nk++; kmod[nk] = m; kt0[nk] = t0; kt1[nk] = t1
        }
        /^(init_module|finit_module)\(/ {
                if (ret ~ /^0/) ok++
                else { e = ret; sub(/^-1 /, "", e); sub(/ .*/, "", e); errs = errs (errs == "" ? "" : " ") m ":" e }
                if (ret ~ /^-1 EEXIST/) eexist++
        }
        /^delete_module\(/ { del++ }
        END {
                n = 0; d = ""
                for (m in calls) { n++; if (calls[m] > 1) d = d (d == "" ? "" : " ") m ":" calls[m] }
                printf "T_CALLS=%d T_INIT=%d T_FINIT=%d T_OK=%d T_EEXIST=%d T_DELETE=%d T_MODS=%d ", \
                        finit + init, init, finit, ok, eexist, del, n
                printf "T_DUPS=\"%s\" T_ERRORS=\"%s\" T_MEMFD=%d T_FILE=%d T_COMPRESSED=%d ", \
                        d, errs, memfd, file, compressed
                # intervals, in order of entry (insertion sort: a few dozen calls)
                for (i = 2; i <= nk; i++)
                        for (j = i; j > 1 && kt0[j] < kt0[j - 1]; j--) {
                                x = kt0[j]; kt0[j] = kt0[j - 1]; kt0[j - 1] = x
                                x = kt1[j]; kt1[j] = kt1[j - 1]; kt1[j - 1] = x
                                x = kmod[j]; kmod[j] = kmod[j - 1]; kmod[j - 1] = x
                        }
                par = 0; ov = 0; pairs = ""; tl = ""
                for (i = 1; i <= nk; i++) {
                        tl = tl (tl == "" ? "" : " ") sprintf("%s@%.3f+%.3f", kmod[i], kt0[i] - kt0[1], kt1[i] - kt0[i])
                        # calls in flight when call i entered (i itself included)
                        n = 1
                        for (j = 1; j < i; j++) if (kt1[j] > kt0[i]) n++
                        if (n > par) par = n
                        for (j = 1; j < i; j++) {
                                if (kt1[j] <= kt0[i] || kmod[j] == kmod[i]) continue
                                ov++
                                p = kmod[j] < kmod[i] ? kmod[j] "+" kmod[i] : kmod[i] "+" kmod[j]
                                if (!(p in seenpair)) { seenpair[p] = 1; pairs = pairs (pairs == "" ? "" : " ") p }
                        }
                }
                printf "T_PAR=%d T_OVERLAPS=%d T_PAIRS=\"%s\" T_TIMELINE=\"%s\"\n", par, ov, pairs, tl
        }' "$1"
}

# --- clients --------------------------------------------------------------------
# clients DIR NAME...: one `modloadctl --json load NAME` per NAME, all at
# once; DIR/N.out, DIR/N.err, DIR/N.rc. Sets C_N, C_BAD (exit status not 0),
# C_SHARED (outcomes with "shared": true), C_MS (wall time)
clients() {
        dir=$1; shift
        rm -rf "$dir"; mkdir -p "$dir"
        t0=$(now_ms)
        i=0
        pids=""
        for name in "$@"; do
                i=$((i + 1))
                ( $MC --json load "$name" >"$dir/$i.out" 2>"$dir/$i.err"; echo $? >"$dir/$i.rc" ) &
                pids="$pids $!"
        done
        # not a bare `wait`: the daemon's strace is a child of this shell too
        wait $pids
        C_MS=$(($(now_ms) - t0))
        C_N=$i
        C_BAD=0
        for f in "$dir"/*.rc; do [ "$(cat "$f")" = 0 ] || C_BAD=$((C_BAD + 1)); done
        C_SHARED=$(cat "$dir"/*.out | grep -c '"shared": *true')
}

# --- one case ---------------------------------------------------------------------
begin() {
        CASE=$1
        ERRS=""
        BEFORE=$(snap)
        T0=$(now_ms)
        mark
}
err() { ERRS="$ERRS${ERRS:+; }$*"; }
end() {
        t=$(($(now_ms) - T0))
        detail=$(printf '%s' "${1:-ok}" | tr '\n' ' ')
        daemon_alive || err "the daemon is gone"
        if [ -z "$ERRS" ]; then
                echo "@@CASE $CASE PASS $detail (${t}ms)"
        else
                FAILED_CASES=$((FAILED_CASES + 1))
                echo "@@CASE $CASE FAIL $ERRS"
                echo "  | detail: $detail"
                echo "  | daemon trace of this case:"
                sed 's/^/  |   /' /tmp/seg 2>/dev/null | tail -n 40
                echo "  | /proc/modules: $(snap)"
                echo "  | daemon log (tail):"
                tail -n 25 "$DLOG" | sed 's/^/  |   /'
                dmesg | tail -n 5 | sed 's/^/  | dmesg: /'
        fi
}

# checks on the last segment()
want_no_dups() { [ -z "$T_DUPS" ] || err "handed to the kernel more than once: $T_DUPS"; }
want_no_eexist() {
        [ "$T_EEXIST" = 0 ] || err "$T_EEXIST EEXIST"
        [ "$T_INIT" = 0 ] || err "$T_INIT init_module calls"
}
want_loaded() {
        for m in "$@"; do
                grep -q "^$m " /proc/modules || { err "$m not in /proc/modules"; continue; }
                [ "$(cat /sys/module/$m/initstate 2>/dev/null)" = live ] ||
                        err "/sys/module/$m/initstate is not live"
        done
}
want_absent() {
        for m in "$@"; do ! grep -q "^$m " /proc/modules || err "$m in /proc/modules"; done
}
# modules that appeared since begin()
new_modules() {
        for m in $(snap); do
                case " $BEFORE " in *" $m "*) ;; *) printf '%s ' "$m" ;; esac
        done
}
# every module inserted since begin() was handed over exactly once, nothing
# else was handed over except refused soft dependencies, no EEXIST
want_each_once() {
        n_new=$(count_words "$(new_modules)")
        want_no_dups
        want_no_eexist
        [ "$T_OK" = "$n_new" ] || err "$T_OK successful kernel calls for $n_new modules inserted"
        [ "$T_CALLS" = "$T_MODS" ] || err "$T_CALLS kernel calls for $T_MODS modules"
}

# wait (up to 10 s) until the daemon made its first kernel call since mark()
wait_first_load() {
        w0=$(now_ms)
        i=0
        while [ "$(tail -n +$((MARK + 1)) "$DTRACE" | grep -c 'init_module(')" = 0 ] && [ $i -lt 500 ]; do
                sleep 0.02
                i=$((i + 1))
        done
        WAITED_MS=$(($(now_ms) - w0))
}
