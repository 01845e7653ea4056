#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""modules-load.d at boot: systemd-modules-load (252) against
`modloadctl modules-load` through the running modloadd, in a whole Debian 12
system booted in qemu (TCG) with Debian 12's cloud kernel 6.1 and its
modules recompressed as .ko.xz (this kernel cannot decompress: both sides
decompress in userspace).

The image is the one of test/system (test/system/sysimage.py): modloadd
installed by `meson install`, its socket enabled, the daemon run with
--idle-timeout=infinity so that it stays up for the whole run. The list
(MODULES below, 40 modules that load without hardware; with their
dependencies 77) is not in modules-load.d, so nothing loads it at
boot; it is given to each tool as a file argument.

In the guest, after boot settled, each round loads the list once with each
tool, alternating which goes first, from the same kernel state: every
module that was not there at boot unloaded and checked gone, udev settled.
Wall time: `date +%s%N` around the command. Then one more run per tool
under strace -f -e trace=init_module,finit_module: systemd-modules-load
traced from its start; the daemon attached (-p MAINPID -f, every thread)
around `modloadctl modules-load`. Both tables are printed side by side.

Usage: bench/bench-modules-load.py [--rounds N] [--cache DIR] [--workdir DIR]
           [--log FILE] [--smp N] [-v]
Needs what test/system needs (root for the cached debootstrap, qemu, meson).
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(SRC, "test", "system"))
import sysimage  # noqa: E402

# Not vrf (permanent: no module_exit in 6.1) nor sctp (in use once loaded):
# every run must start from the same kernel.
MODULES = [
    # network devices and tunnels
    "tun", "bonding", "team", "macvlan", "ipvlan", "geneve", "bridge", "8021q",
    "macsec", "ipip", "ip_gre", "sit", "fou", "l2tp_eth", "wireguard",
    # file systems
    "btrfs", "xfs", "vfat", "msdos", "isofs", "udf", "squashfs", "overlay", "exfat",
    "erofs", "nfs",
    # block devices and md
    "zram", "brd", "null_blk", "raid0", "raid1",
    # protocols, qdiscs, netfilter, vsock
    "xfrm_user", "tls", "tcp_bbr", "sch_netem", "sch_htb", "cls_u32", "nf_tables", "nft_ct",
    "vmw_vsock_virtio_transport",
]
LIST_PATH = "/usr/local/lib/modloadd-bench/bench.conf"

GUEST = r"""
LIST=%(list)s
SML=/lib/systemd/systemd-modules-load
kv system_state "$(systemctl is-system-running --wait)"
udevadm settle --timeout=120
echo 1 >/proc/sys/kernel/printk
modloadctl status >/dev/null          # socket activation; stays up (no idle exit)
PID=$(systemctl show -P MainPID modloadd.service)
kv daemon_pid "$PID"
awk '{print $1}' /proc/modules | sort >/run/baseline
kv baseline_modules "$(wc -l </run/baseline)"
block baseline cat /run/baseline

# Remove every module that was not there at boot: rmmod what has no users,
# again while that makes progress (holders go first).
new_modules() { awk '{print $1}' /proc/modules | sort | comm -13 /run/baseline -; }
unload_new() {
        local n prev=-1 left
        while :; do
                n=$(new_modules | wc -l)
                [ "$n" = 0 ] || [ "$n" = "$prev" ] && break
                prev=$n
                awk 'NR == FNR {b[$1]; next} !($1 in b) && $3 == 0 {print $1}' /run/baseline /proc/modules |
                        xargs -r rmmod 2>/dev/null
        done
        udevadm settle --timeout=60
        left=$(new_modules | tr '\n' ' ')
        [ -z "$left" ] || kv unload_left "$left"
}
count_new() { awk '{print $1}' /proc/modules | sort | comm -13 /run/baseline - | wc -l; }
run_tool() {            # $1: sml|mld; prints "ms rc modules"
        local t0 t1 rc
        t0=$(date +%%s%%N)
        if [ "$1" = sml ]; then
                $SML $LIST >/run/out.$1 2>&1
        else
                modloadctl modules-load $LIST >/run/out.$1 2>&1
        fi
        rc=$?
        t1=$(date +%%s%%N)
        echo "$(( (t1 - t0) / 1000000 )) $rc $(count_new)"
}

unload_new
for r in $(seq %(rounds)d); do
        if [ $((r %% 2)) = 1 ]; then order="sml mld"; else order="mld sml"; fi
        for tool in $order; do
                unload_new
                kv "run.$tool.$r" "$(run_tool $tool)"
                kv "state.$tool.$r" "daemon_fds=$(ls /proc/$PID/fd | wc -l) daemon_rss_kb=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status) mem_available_kb=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo) loadavg=$(cut -d' ' -f1 /proc/loadavg)"
        done
done
block out_sml cat /run/out.sml
block out_mld cat /run/out.mld

# Kernel calls.
unload_new
t0=$(date +%%s%%N)
strace -f --seccomp-bpf -e trace=init_module,finit_module -o /run/trace.sml $SML $LIST >/dev/null 2>&1
kv traced.sml "$(( ($(date +%%s%%N) - t0) / 1000000 )) $? $(count_new)"
unload_new
block stats_before modloadctl status --json
strace -f -p "$PID" -e trace=init_module,finit_module -o /run/trace.mld 2>/run/strace.err &
st=$!
sleep 2
t0=$(date +%%s%%N)
modloadctl modules-load $LIST >/dev/null 2>&1
kv traced.mld "$(( ($(date +%%s%%N) - t0) / 1000000 )) $? $(count_new)"
sleep 1
kill -INT $st
wait $st
block stats_after modloadctl status --json
block trace_sml cat /run/trace.sml
block trace_mld cat /run/trace.mld
block strace_err cat /run/strace.err
finish 0
"""

CALL_RE = re.compile(r"^\s*(\d+)\s+(init_module|finit_module)\((.*?)(?:\)\s+=\s+(-?\d+)(?:\s+(\w+))?|\s*<unfinished \.\.\.>)\s*")
RESUMED_RE = re.compile(r"^\s*(\d+)\s+<\.\.\. (init_module|finit_module) resumed>\)?\s+=\s+(-?\d+)(?:\s+(\w+))?")


def parse_trace(text):
    """strace -f output -> calls, EEXIST answers, other errors, bytes passed
    to init_module. Calls of several threads are split into "<unfinished
    ...>" and "<... resumed>" lines."""
    calls = eexist = errors = nbytes = 0

    def result(rc, err):
        nonlocal eexist, errors
        if rc != "0":
            if err == "EEXIST":
                eexist += 1
            else:
                errors += 1

    for line in text.splitlines():
        m = CALL_RE.match(line)
        if m:
            calls += 1
            if m.group(2) == "init_module":
                args = m.group(3).split(", ")
                if len(args) >= 2 and args[1].isdigit():
                    nbytes += int(args[1])
            if m.group(4) is not None:
                result(m.group(4), m.group(5))
            continue
        m = RESUMED_RE.match(line)
        if m:
            result(m.group(3), m.group(4))
    return calls, eexist, errors, nbytes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cache", default=None)
    p.add_argument("--workdir", default=None)
    p.add_argument("--log", default=None, help="write the serial console here")
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--verbose", "-v", action="store_true")
    a = p.parse_args(argv)

    cache = sysimage.cache_dir(a.cache)
    sysimage.prepare_cache(cache)
    tmp = None
    workdir = a.workdir
    if not workdir:
        tmp = tempfile.TemporaryDirectory(prefix="modloadd-bench-")
        workdir = tmp.name
    os.makedirs(workdir, exist_ok=True)
    img = sysimage.SystemImage(SRC, workdir, cache)
    img.install_modloadd()
    img.enable_modloadd(idle_timeout="infinity")
    img.add_modules()
    img.add_data(LIST_PATH, "".join(m + "\n" for m in MODULES))
    img.add_scenario(GUEST % {"list": LIST_PATH, "rounds": a.rounds})
    load0 = os.getloadavg()
    res = img.boot(timeout=a.timeout, log=a.log or os.path.join(workdir, "console.log"),
                   echo=a.verbose, smp=a.smp)
    kv, blocks = sysimage.parse(res.output)
    if res.rc != 0 or "traced.mld" not in kv:
        print("bench failed (scenario exit %d); console: %s" % (res.rc, a.log or workdir))
        print(res.output[-5000:])
        return 1

    rows = {"sml": [], "mld": []}
    mods = {}
    for k, v in kv.items():
        m = re.match(r"run\.(sml|mld)\.(\d+)$", k)
        if m:
            ms, rc, n = (int(x) for x in v.split())
            rows[m.group(1)].append((int(m.group(2)), ms, rc, n))
            mods.setdefault(m.group(1), set()).add(n)
    for t in rows:
        rows[t].sort()

    t_sml = parse_trace(blocks.get("trace_sml", (0, ""))[1])
    t_mld = parse_trace(blocks.get("trace_mld", (0, ""))[1])
    try:
        before = json.loads(blocks["stats_before"][1])
        after = json.loads(blocks["stats_after"][1])
        d = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
    except (KeyError, ValueError):
        d = {}
    tr_sml = [int(x) for x in kv["traced.sml"].split()]
    tr_mld = [int(x) for x in kv["traced.mld"].split()]

    names = {"sml": "systemd-modules-load 252", "mld": "modloadctl modules-load"}
    print("modules-load.d list: %d modules (%s new modules in the kernel after a run), "
          "kernel %s, xz modules, TCG -smp %d; boot %.0f s, VM %.0f s"
          % (len(MODULES), "/".join(str(x) for x in sorted(set().union(*mods.values()))),
             img.kernel.kver, a.smp, res.boot_seconds or 0, res.seconds))
    print("host load average before/after: %s / %s"
          % (" ".join("%.2f" % x for x in load0), " ".join("%.2f" % x for x in os.getloadavg())))
    for k in sorted(kv):
        if k.startswith("state."):
            print("  guest after %-10s %s" % (k[6:], kv[k]))
    if kv.get("unload_left"):
        print("WARNING: not unloaded between runs: %s" % kv["unload_left"])
    print()
    w = 26
    print("%-*s %*s %*s" % (30, "", w, names["sml"], w, names["mld"]))
    for i in range(a.rounds):
        s, m = rows["sml"][i], rows["mld"][i]
        print("%-*s %*s %*s" % (30, "round %d wall ms (exit)" % (i + 1), w,
                                "%d (%d)" % (s[1], s[2]), w, "%d (%d)" % (m[1], m[2])))
    med = lambda t: statistics.median(r[1] for r in rows[t])  # noqa: E731
    print("%-*s %*d %*d" % (30, "median wall ms", w, med("sml"), w, med("mld")))
    print("%-*s %*d %*d" % (30, "traced run wall ms", w, tr_sml[0], w, tr_mld[0]))
    print("%-*s %*d %*d" % (30, "init/finit_module calls", w, t_sml[0], w, t_mld[0]))
    print("%-*s %*d %*d" % (30, "  of which EEXIST", w, t_sml[1], w, t_mld[1]))
    print("%-*s %*d %*d" % (30, "  other errors", w, t_sml[2], w, t_mld[2]))
    print("%-*s %*d %*s" % (30, "bytes via init_module()", w, t_sml[3], w,
                            "%d (finit on memfd)" % t_mld[3] if t_mld[3] == 0 else t_mld[3]))
    if d:
        print("%-*s %*s %*d" % (30, "daemon bytesToKernel", w, "-", w, d.get("bytesToKernel", 0)))
        print("%-*s %*s %*d" % (30, "daemon kernelCalls", w, "-", w, d.get("kernelCalls", 0)))
        print("%-*s %*s %*d" % (30, "daemon modulesInserted", w, "-", w, d.get("modulesInserted", 0)))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
