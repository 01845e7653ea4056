# Scenario (run by the initramfs /init under busybox sh): load btrfs with the
# modprobe at $MODPROBE, check /proc/modules, unload everything, then trace
# $CONCURRENCY concurrent loads with strace and summarise the kernel calls.
# Prints "RESULT key=value ..." lines; exits non-zero when a load fails
# (unless the modprobe cannot read the tree's compression: then XFAIL, 0).
MP=${MODPROBE:-/sbin/modprobe}
N=${CONCURRENCY:-8}
STRACE=${STRACE:-/usr/bin/strace}
KV=$(uname -r)
D=/lib/modules/$KV

ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
loaded() { grep -q "^$1 " /proc/modules; }
unload_all() {
        for _ in 1 2 3 4 5 6; do
                grep -q . /proc/modules || return 0
                # shellcheck disable=SC2013 # module names are words
                for m in $(awk '{print $1}' /proc/modules); do
                        /sbin/rmmod "$m" 2>/dev/null || $MP -r "$m" 2>/dev/null
                done
        done
        grep -q . /proc/modules || return 0
        echo "could not unload:"; cat /proc/modules
        return 1
}

features=$($MP --version | tail -n 1)
echo "RESULT kernel=$KV modprobe=\"$($MP --version | head -n 1)\" features=\"$features\" compression=$(cat /sys/module/compression 2>/dev/null || echo none)"
# btrfs and its dependencies as modules.dep lists them (already transitive)
line=$(grep '^[^:]*/btrfs\.ko[^:]*:' "$D/modules.dep")
[ -n "$line" ] || { echo "btrfs not in $D/modules.dep"; exit 1; }
want="btrfs $(echo "${line#*:}" | tr ' ' '\n' | sed -n 's|.*/||; s|\.ko.*||; s|-|_|g; /./p' | tr '\n' ' ')"
echo "RESULT want=\"$want\""

xfail=""
case $line in
*.ko.gz:*) echo "$features" | grep -q '+ZLIB' || xfail="modprobe built without zlib, tree is gzip" ;;
*.ko.zst:*) echo "$features" | grep -q '+ZSTD' || xfail="modprobe built without zstd, tree is zstd" ;;
*.ko.xz:*) echo "$features" | grep -q '+XZ' || xfail="modprobe built without xz, tree is xz" ;;
esac

# 1. one load
t0=$(ms)
$MP btrfs; rc=$?
t1=$(ms)
missing=""
for m in $want; do loaded "$m" || missing="$missing $m"; done
echo "RESULT single_rc=$rc single_ms=$((t1 - t0)) missing=\"${missing# }\""
awk '{print "  /proc/modules: " $1, $2}' /proc/modules
if [ $rc -ne 0 ] || [ -n "$missing" ]; then
        if [ -n "$xfail" ]; then
                echo "RESULT status=XFAIL reason=\"$xfail\""
                exit 0
        fi
        echo "RESULT status=FAIL"
        exit 1
fi
[ -z "$xfail" ] || echo "note: expected a failure ($xfail) but the load worked"

# 2. back to a clean kernel
unload_all || exit 1

echo "RESULT unloaded=yes"

# 3. N concurrent loads under strace
rm -f /tmp/trace /tmp/rc.*
export MP N
t0=$(ms)
# shellcheck disable=SC2016 # expanded by the inner shell
$STRACE -f -qq -o /tmp/trace -e trace=init_module,finit_module -e signal=none /bin/sh -c '
        i=1
        while [ $i -le $N ]; do
                ( $MP btrfs; echo $? >/tmp/rc.$i ) &
                i=$((i + 1))
        done
        wait'
t1=$(ms)
bad=0
for f in /tmp/rc.*; do [ "$(cat "$f")" = 0 ] || bad=$((bad + 1)); done
missing=""
for m in $want; do loaded "$m" || missing="$missing $m"; done
# strace -f -o FILE: "PID name(args) = ret" or split into "<unfinished ...>" and
# "<... name resumed>" lines; count calls at their start, results anywhere
awk '
        { sub(/^[0-9]+ +/, "") }
        /^init_module\(/ {
                init++
                split($0, a, ","); gsub(/ /, "", a[2]); bytes += a[2]
        }
        /^finit_module\(/ {
                finit++
                if ($0 ~ /MODULE_INIT_COMPRESSED_FILE/) compressed++
        }
        / = -1 E[A-Z]+/ {
                e = $0; sub(/.* = -1 /, "", e); sub(/ .*/, "", e); err[e]++
        }
        END {
                errs = ""
                for (e in err) errs = errs e ":" err[e] ","
                sub(/,$/, "", errs)
                printf "RESULT init_module=%d finit_module=%d compressed_finit=%d eexist=%d bytes_to_kernel=%d errors=%s\n",
                        init, finit, compressed, err["EEXIST"], bytes, (errs == "" ? "none" : errs)
        }' /tmp/trace
echo "RESULT concurrent=$N concurrent_ms=$((t1 - t0)) failed_modprobes=$bad missing=\"${missing# }\""
if [ -n "${SHOW_TRACE:-}" ]; then sed 's/^/  trace: /' /tmp/trace; fi
if [ $bad -ne 0 ] || [ -n "$missing" ]; then
        echo "RESULT status=FAIL"
        exit 1
fi
echo "RESULT status=PASS"
exit 0
