# Helpers for the modprobe compatibility scenario (sourced; busybox sh).
#
# Each case runs one command line twice on the same module tree and
# modprobe.d: with kmod's modprobe (/opt/kmod/modprobe) and with the shim
# (/opt/shim/modprobe -> modloadctl). Between the runs the kernel goes back to
# the baseline set of modules and the case's setup runs again. For each run
# the host gets
#   @@RUN <case> <kmod|shim> rc=<status> fwd=<daemon requests during the run> mods=<modules after>
#   @@O <stdout line>     (or one "@@O digest ..." line for huge outputs)
#   @@E <stderr line>
#   @@END
# and compares the two runs itself.
KMOD=/opt/kmod/modprobe
SHIM=/opt/shim/modprobe
MC=/usr/bin/modloadctl
KV=$(uname -r)
D=/lib/modules/$KV
export KMOD SHIM KV

echo 1 >/proc/sys/kernel/printk 2>/dev/null
echo >/proc/sys/kernel/modprobe 2>/dev/null

. /vm-lib.sh

daemon_requests() {
        $MC status --json 2>/dev/null | awk -F'[:,]' '/"requests"/ {gsub(/ /, "", $2); print $2; exit}'
}

daemon_start() {
        mkdir -p /run/modloadd
        /usr/sbin/modloadd >/tmp/modloadd.log 2>&1 &
        DAEMON_PID=$!
        for _ in $(seq 1 100); do
                [ -S /run/modloadd/io.modloadd.Manager ] && return 0
                sleep 0.1
        done
        echo "@@NOTE daemon did not come up"
        cat /tmp/modloadd.log
        return 1
}

daemon_stop() {
        [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
        DAEMON_PID=""
        rm -f /run/modloadd/io.modloadd.Manager
}

# emit CASE SIDE RC DIGEST FWD
emit() {
        echo "@@RUN $1 $2 rc=$3 fwd=$5 mods=$(snap | tr ' ' ',')"
        if [ "$4" = 1 ]; then
                echo "@@O digest $(md5sum </tmp/out | cut -d' ' -f1) lines=$(wc -l </tmp/out)"
        else
                sed 's/^/@@O /' /tmp/out
        fi
        sed 's/^/@@E /' /tmp/err
        echo "@@END"
}

# one_run CASE SIDE PROG DIGEST SETUP POST ENV CWD ARGS
one_run() {
        c=$1 side=$2 prog=$3 dig=$4 setup=$5 post=$6 envs=$7 cwd=$8 args=$9
        reset_to "$BASE"
        rm -f /tmp/cmdlog
        [ -n "$setup" ] && sh -c "$setup" >/dev/null 2>&1
        before=$(daemon_requests)
        (eval "cd \"${cwd:-/}\"" && eval "env $envs $prog $args") >/tmp/out 2>/tmp/err </dev/null
        rc=$?
        [ -n "$post" ] && sh -c "$post" >>/tmp/out 2>&1
        after=$(daemon_requests)
        emit "$c" "$side" "$rc" "$dig" "$((${after:-0} - ${before:-0}))"
}

# compat CASE DIGEST SETUP POST ENV CWD ARGS
compat() {
        one_run "$1" kmod "$KMOD" "$2" "$3" "$4" "$5" "$6" "$7"
        one_run "$1" shim "$SHIM" "$2" "$3" "$4" "$5" "$6" "$7"
}
