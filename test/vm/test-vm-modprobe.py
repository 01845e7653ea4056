#!/usr/bin/env python3
"""The modprobe shim against kmod 30's modprobe, in qemu.

One boot of the Debian 12 kernel (6.1, xz-compressed module tree: the kernel
cannot decompress, so every load goes through userspace decompression).
Every compatibility case runs one command line twice, on the same module tree
and modprobe.d: with kmod's modprobe (the host's kmod 30, in the guest as
/opt/kmod/modprobe) and with the shim (/opt/shim/modprobe, a symlink to
modloadctl). The kernel is put back to the same set of modules, and the case's
setup repeated, before each run. The host then compares stdout, stderr (with
the program's path written as "modprobe"), the exit status and the modules in
/proc/modules after the run. Cases marked "fwd" also check that the shim's
run reached modloadd (its request counter went up).

modloadd runs in the guest for most cases (the forwarded path); a block of
cases runs with the daemon stopped (the in-process path). Then:
  kernel-request   /proc/sys/kernel/modprobe points at the shim; mounting a
                   squashfs makes the kernel call request_module("fs-squashfs"),
                   which reaches modloadd (its request counter)
  storm            64 concurrent shims for btrfs by four names (btrfs, fs-btrfs,
                   devname:btrfs-control, char-major-10-234), strace -f on the
                   daemon: one finit_module per module, no EEXIST, all exit 0
  install-deadlock an install command that calls the shim for its own module
                   ("install nbd /opt/shim/modprobe --ignore-install nbd") ends
                   at once instead of waiting for the daemon's load timeout

Deliberate differences (documented in modprobe-modloadd(8)) are the cases
whose "compare" is "rc": -h and -V print the shim's own text.

Usage: test/vm/test-vm-modprobe.py --modloadctl build/src/ctl/modloadctl
           --modloadd build/src/daemon/modloadd [--cache DIR] [--log FILE] [-v]
Exit status: 0 all passed, 1 a case failed, 77 (skip) without qemu, strace or
the host's kmod.
"""

import argparse
import os
import re
import shlex
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mkinitrd  # noqa: E402
import run_vm  # noqa: E402

SCENARIOS = os.path.join(HERE, "scenarios")
TREE = "6.1-xz"
QEMU_ARGS = ["-cpu", "max"]

CONFIG = """\
# modprobe.d for the modprobe compatibility cases
alias shim-alias dummy
alias shim-veth veth
blacklist veth
options nbd nbds_max=3
options dummy numdummies=2
softdep tcp_htcp pre: dummy post: tun
softdep ipip pre: tcp_htcp
install brd /bin/sh -c 'echo brd-install "$CMDLINE_OPTS" >>/tmp/cmdlog'
remove brd /bin/sh -c 'echo brd-remove >>/tmp/cmdlog'
install zram /bin/false
remove zram /bin/false
install nbd /opt/shim/modprobe --ignore-install nbd $CMDLINE_OPTS
install macvlan /bin/sh -c 'echo macvlan-install $MODPROBE_MODULE >>/tmp/cmdlog; exec /opt/shim/modprobe -i macvlan'
"""
ALT_CONFIG = """\
alias shim-alt tun
"""


def C(name, args, setup="", post="", env="", cwd="", compare="all", digest=False, fwd=False, note="",
      expect_rc=None, expect_mods=None):
    """compare: "all" (stdout, stderr, exit status, /proc/modules), "rc" (exit status only), or
    "shim" (a deliberate difference: the shim must exit expect_rc and have expect_mods loaded)."""
    return dict(name=name, args=args, setup=setup, post=post, env=env, cwd=cwd, compare=compare,
                digest=digest, fwd=fwd, note=note, expect_rc=expect_rc, expect_mods=expect_mods)


LOG = "cat /tmp/cmdlog 2>/dev/null"
KDIR = "/lib/modules/$KV/kernel"

# Cases with the daemon running: the shim forwards loads and unloads to it.
CASES = [
    # loading by name, alias, modalias, symbol, path
    C("load-name", "dummy", fwd=True),
    C("load-live", "dummy", setup="$KMOD dummy", fwd=True),
    C("load-config-alias", "shim-alias", fwd=True),
    C("load-index-alias-deps", "fs-iso9660", fwd=True),
    C("load-modalias", "virtio:d00000004v00001AF4", fwd=True),
    C("load-symbol", "symbol:udp_tunnel_sock_release", fwd=True),
    C("load-params", "dummy numdummies=3", post="cat /sys/module/dummy/parameters/numdummies", fwd=True),
    C("load-config-options", "nbd -i", post="cat /sys/module/nbd/parameters/nbds_max", fwd=True),
    C("load-unknown-param", "dummy nosuchparam=1 x='a b'", fwd=True),
    C("load-bad-value", "dummy numdummies=abc", fwd=True),
    C("load-notfound", "nosuchmodule", fwd=True),
    C("load-notfound-quiet", "-q nosuchmodule", fwd=True),
    C("load-kernel-style", "-q -- fs-squashfs", fwd=True),
    C("load-builtin", "unix", fwd=True),
    C("load-builtin-alias", "crypto-crc32c", fwd=True),
    # blacklist
    C("blacklist-alias", "shim-veth", fwd=True),
    C("blacklist-name", "veth", fwd=True),
    C("blacklist-name-b", "-b veth", fwd=True),
    # softdeps, install commands
    C("softdep", "tcp_htcp", fwd=True),
    C("softdep-nested", "ipip", fwd=True),
    C("install-command", "brd rd_size=1024", post=LOG, fwd=True),
    C("install-ignored", "-i brd", post=LOG, fwd=True),
    C("install-fails", "zram", fwd=True),
    C("install-self-shim", "nbd", post="grep -c . /sys/module/nbd/parameters/nbds_max", fwd=True),
    C("install-env", "macvlan", post=LOG, fwd=True),
    # -a, --first-time, force
    C("all", "-a dummy tun", fwd=True),
    C("all-notfound", "-a dummy nosuchmodule tun", fwd=True),
    C("first-time-live", "--first-time dummy", setup="$KMOD dummy", fwd=True),
    C("first-time-alias-live", "--first-time shim-alias", setup="$KMOD dummy", fwd=True),
    C("first-time-fresh", "--first-time dummy", fwd=True),
    C("force-vermagic", "--force-vermagic dummy", fwd=True, compare="shim", expect_rc=0, expect_mods="dummy",
      note="kmod 30 strips the decompressed image, which breaks its signature (EKEYREJECTED); "
           "modloadd passes MODULE_INIT_IGNORE_VERMAGIC to finit_module and the kernel loads it"),
    C("force", "-f tun", fwd=True, compare="shim", expect_rc=0, expect_mods="tun",
      note="as force-vermagic"),
    # paths: kmod 30 looks a path up as a name (not found); the shim loads the file, as kmod >= 31
    C("path-absolute", KDIR + "/drivers/net/dummy.ko.xz", fwd=True, compare="shim", expect_rc=0,
      expect_mods="dummy", note="kmod 30 has no module paths; the shim loads the file as kmod 31 does"),
    C("path-relative", "./dummy.ko.xz", cwd=KDIR + "/drivers/net", fwd=True, compare="shim", expect_rc=0,
      expect_mods="dummy", note="as path-absolute"),
    C("path-missing", "/nonexistent/dummy.ko", fwd=True, compare="shim", expect_rc=1, expect_mods="",
      note="kmod 31's message for a missing file instead of kmod 30's not-found"),
    # queries and dry runs
    C("dry-run", "-n isofs"),
    C("dry-run-verbose", "-n -v isofs"),
    C("dry-run-verbose-live", "-n -v isofs", setup="$KMOD cdrom"),
    C("verbose-load", "-v isofs", fwd=True),
    C("verbose-load-params", "-v nbd -i nbds_max=2", fwd=True),
    C("show-depends", "-D btrfs"),
    C("show-depends-live", "--show-depends isofs", setup="$KMOD isofs"),
    C("show-depends-install", "-D brd"),
    C("show-depends-softdep", "-D ipip"),
    C("show-depends-builtin", "-D unix"),
    C("show-depends-params", "-D dummy x=\"a b\" y=2"),
    C("show-depends-blacklisted", "-D shim-veth"),
    C("show-depends-notfound", "-D nosuchmodule"),
    C("resolve-alias", "-R fs-iso9660"),
    C("resolve-alias-modalias", "--resolve-alias virtio:d00000004v00001AF4"),
    C("resolve-alias-notfound", "-R nosuchmodule"),
    C("show-config", "-c", digest=True),
    C("show-modversions", "--show-modversions " + KDIR + "/drivers/net/dummy.ko.xz"),
    C("config-file", "-C /etc/shim-alt.conf -D shim-alt"),
    C("config-file-load", "-C /etc/shim-alt.conf shim-alt"),
    C("dirname", "-d / -D isofs"),
    C("set-version", "-S $KV -D isofs"),
    C("set-version-missing", "-S 0.0.0-none isofs"),
    # removal
    C("remove", "-r dummy", setup="$KMOD dummy", fwd=True),
    C("remove-not-loaded", "-r dummy", fwd=True),
    C("remove-first-time", "-r --first-time dummy", fwd=True),
    C("remove-notfound", "-r nosuchmodule", fwd=True),
    C("remove-builtin", "-r unix", fwd=True),
    C("remove-in-use", "-r cdrom", setup="$KMOD isofs", fwd=True),
    C("remove-holders", "-r --remove-holders cdrom", setup="$KMOD isofs", fwd=True, compare="shim",
      expect_rc=0, expect_mods="",
      note="kmod 30 removes cdrom as an unused dependency of its holder isofs, then fails to remove "
           "it again (could not remove 'cdrom': No such file or directory, exit 1)"),
    C("remove-with-deps", "-r isofs", setup="$KMOD isofs", fwd=True),
    C("remove-verbose", "-r -v isofs", setup="$KMOD isofs", fwd=True),
    C("remove-dry-run", "-r -n -v isofs", setup="$KMOD isofs"),
    C("remove-command", "-r brd", setup="$KMOD -i brd", post=LOG, fwd=True),
    C("remove-ignore-command", "-r -i brd", setup="$KMOD -i brd", post=LOG, fwd=True),
    C("remove-command-fails", "-r zram", setup="$KMOD -i zram", fwd=True),
    C("remove-several", "-r dummy tun", setup="$KMOD -a dummy tun", fwd=True),
    C("remove-stops-at-fatal", "-r nosuchmodule tun", setup="$KMOD tun"),
    C("remove-all-notfound", "-r -a nosuchmodule tun", setup="$KMOD tun", fwd=True),
    C("remove-alias", "-r shim-alias", setup="$KMOD dummy", fwd=True),
    # command line and environment
    C("env-options-quiet", "nosuchmodule", env="MODPROBE_OPTIONS=-q"),
    C("env-options-verbose", "dummy", env="MODPROBE_OPTIONS='-v -b'", fwd=True),
    C("no-arguments", ""),
    C("bad-option", "--no-such-option dummy"),
    C("bad-wait", "-r -w abc dummy"),
    C("syslog", "-s nosuchmodule"),
    C("help", "-h", compare="rc", note="the shim prints its own help text"),
    C("version", "-V", compare="rc", note="the shim names itself, not kmod"),
]

# The same shim, modloadd stopped: the in-process path.
NODAEMON_CASES = [
    C("nodaemon-load", "dummy"),
    C("nodaemon-load-alias-deps", "fs-iso9660"),
    C("nodaemon-notfound", "nosuchmodule"),
    C("nodaemon-first-time-live", "--first-time dummy", setup="$KMOD dummy"),
    C("nodaemon-bad-value", "dummy numdummies=abc"),
    C("nodaemon-install-self-shim", "nbd"),
    C("nodaemon-remove-in-use", "-r cdrom", setup="$KMOD isofs"),
    C("nodaemon-remove-with-deps", "-r isofs", setup="$KMOD isofs"),
    C("nodaemon-blacklist-alias", "shim-veth"),
]

SPECIAL = ["kernel-request", "storm", "install-deadlock"]


def case_line(c):
    return "compat %s %d %s %s %s %s %s" % (
        c["name"], 1 if c["digest"] else 0, shlex.quote(c["setup"]), shlex.quote(c["post"]),
        shlex.quote(c["env"]), shlex.quote(c["cwd"]), shlex.quote(c["args"]))


SPECIAL_SH = r'''
# --- kernel-initiated loads --------------------------------------------------
reset_to "$BASE"
before=$(daemon_requests)
echo /opt/shim/modprobe >/proc/sys/kernel/modprobe
mkdir -p /mnt/sq
mount -t squashfs none /mnt/sq >/dev/null 2>&1
echo >/proc/sys/kernel/modprobe
after=$(daemon_requests)
if grep -q '^squashfs ' /proc/modules && [ "$((after - before))" -ge 1 ]; then
        echo "@@CASE kernel-request PASS squashfs loaded via request_module, daemon requests +$((after - before))"
else
        echo "@@CASE kernel-request FAIL squashfs: $(grep -c '^squashfs ' /proc/modules), daemon requests +$((after - before))"
fi
$MC status | sed 's/^/@@STATUS /'

# --- storm: 64 concurrent shims, one module by four names ----------------------
reset_to "$BASE"
/usr/bin/strace -f -qq -y -p "$DAEMON_PID" -e trace=init_module,finit_module -o /tmp/storm.trace &
SP=$!
sleep 2
t0=$(awk '{print $1}' /proc/uptime)
pids=""
i=0
while [ $i -lt 64 ]; do
        case $((i % 4)) in
        0) n=btrfs ;; 1) n=fs-btrfs ;; 2) n=devname:btrfs-control ;; 3) n=char-major-10-234 ;;
        esac
        (/opt/shim/modprobe $n; echo $? >/tmp/storm.rc.$i) &
        pids="$pids $!"
        i=$((i + 1))
done
wait $pids
t1=$(awk '{print $1}' /proc/uptime)
sleep 1
kill $SP 2>/dev/null
wait $SP 2>/dev/null
bad=0
for f in /tmp/storm.rc.*; do [ "$(cat $f)" = 0 ] || bad=$((bad + 1)); done
calls=$(grep -c 'init_module(' /tmp/storm.trace)
eexist=$(grep -c 'EEXIST' /tmp/storm.trace)
failed=$(grep 'init_module(' /tmp/storm.trace | grep -c ' = -1')
dups=$(grep -o 'finit_module([0-9]*<[^>]*>' /tmp/storm.trace | sed 's/.*<//; s/>.*//; s/.*\///; s/^memfd://; s/\.ko.*//' | sort | uniq -d | tr '\n' ' ')
new=0
for m in $(snap); do case " $BASE " in *" $m "*) ;; *) new=$((new + 1)) ;; esac; done
detail="64 shims in $(awk -v a=$t0 -v b=$t1 'BEGIN {printf "%.1f", b - a}')s, $bad non-zero exits, $calls kernel calls ($failed failed, $eexist EEXIST) for $new modules inserted, duplicates: '${dups}'"
if [ "$bad" = 0 ] && [ "$eexist" = 0 ] && [ "$((calls - failed))" = "$new" ] && [ -z "$dups" ] && grep -q '^btrfs ' /proc/modules; then
        echo "@@CASE storm PASS $detail"
else
        echo "@@CASE storm FAIL $detail"
        sed 's/^/  | /' /tmp/storm.trace | head -40
fi

# --- an install command that calls the shim for its own module -----------------
reset_to "$BASE"
t0=$(awk '{print $1}' /proc/uptime)
/opt/shim/modprobe nbd >/tmp/out 2>/tmp/err
rc=$?
t1=$(awk '{print $1}' /proc/uptime)
took=$(awk -v a=$t0 -v b=$t1 'BEGIN {printf "%.1f", b - a}')
if [ $rc = 0 ] && grep -q '^nbd ' /proc/modules && awk -v t=$took 'BEGIN {exit !(t < 20)}'; then
        echo "@@CASE install-deadlock PASS nbd loaded through its install command in ${took}s"
else
        echo "@@CASE install-deadlock FAIL rc=$rc took ${took}s nbd: $(grep -c '^nbd ' /proc/modules) $(cat /tmp/err)"
fi
'''


def scenario():
    lines = [". /modprobe-lib.sh", "BASE=$(snap)", "daemon_start || exit 1"]
    lines += [case_line(c) for c in CASES]
    lines += [SPECIAL_SH]
    lines += ["daemon_stop"]
    lines += [case_line(c) for c in NODAEMON_CASES]
    lines += ["exit 0"]
    return "\n".join(lines) + "\n"


RUN_RE = re.compile(r"^@@RUN (\S+) (kmod|shim) rc=(-?\d+) fwd=(-?\d+) mods=(\S*)$")
CASE_RE = re.compile(r"^@@CASE (\S+) (PASS|FAIL) ?(.*)$")


def parse(output):
    runs, specials, cur = {}, {}, None
    for line in output.splitlines():
        line = line.rstrip("\r")
        m = RUN_RE.match(line)
        if m:
            cur = dict(rc=int(m.group(3)), fwd=int(m.group(4)), mods=m.group(5).strip(","), out=[], err=[])
            runs.setdefault(m.group(1), {})[m.group(2)] = cur
            continue
        if line == "@@END":
            cur = None
        elif cur is not None and line.startswith("@@O"):
            cur["out"].append(line[4:])
        elif cur is not None and line.startswith("@@E"):
            cur["err"].append(line[4:])
        m = CASE_RE.match(line)
        if m:
            specials[m.group(1)] = (m.group(2), m.group(3))
    return runs, specials


def normalise(lines):
    return [l.replace("/opt/kmod/modprobe", "modprobe").replace("/opt/shim/modprobe", "modprobe") for l in lines]


def compare(c, runs):
    r = runs.get(c["name"], {})
    k, s = r.get("kmod"), r.get("shim")
    if not k or not s:
        return "FAIL", "missing run output"
    diffs = []
    if c["compare"] == "shim":
        if s["rc"] != c["expect_rc"]:
            diffs.append("shim exit %d, want %d" % (s["rc"], c["expect_rc"]))
        if s["mods"] != c["expect_mods"]:
            diffs.append("shim left modules '%s', want '%s'" % (s["mods"], c["expect_mods"]))
    elif k["rc"] != s["rc"]:
        diffs.append("exit %d vs %d" % (k["rc"], s["rc"]))
    if c["compare"] == "all":
        if normalise(k["out"]) != normalise(s["out"]):
            diffs.append("stdout %r vs %r" % (k["out"][:6], s["out"][:6]))
        if normalise(k["err"]) != normalise(s["err"]):
            diffs.append("stderr %r vs %r" % (normalise(k["err"])[:4], normalise(s["err"])[:4]))
        if k["mods"] != s["mods"]:
            diffs.append("modules %s vs %s" % (k["mods"], s["mods"]))
    if c["fwd"] and s["fwd"] < 1:
        diffs.append("the shim did not reach modloadd")
    if diffs:
        return "FAIL", "; ".join(diffs)
    detail = "exit %d" % s["rc"]
    if k["err"]:
        detail += (", kmod said: " if c["compare"] == "shim" else ", ") + normalise(k["err"])[0][:70]
    if c["fwd"]:
        detail += ", forwarded"
    if c["note"]:
        detail += " [deliberate difference: %s]" % c["note"]
    return "PASS", detail


def image(a, tmp):
    k = run_vm.kernel_for_tree(TREE, a.cache)
    img = mkinitrd.Initrd()
    img.add_bin(os.path.abspath(a.modloadctl), "/usr/bin/modloadctl")
    img.add_bin(os.path.abspath(a.modloadd), "/usr/sbin/modloadd")
    img.add_symlink("/opt/shim/modprobe", "/usr/bin/modloadctl")
    img.add_bin(os.path.realpath("/sbin/modprobe"), "/usr/bin/kmod")
    img.add_symlink("/opt/kmod/modprobe", "/usr/bin/kmod")
    img.add_bin(shutil.which("strace") or "/usr/bin/strace", "/usr/bin/strace")
    img.add_modules(k.tree, k.kver)
    img.add_file(os.path.join(SCENARIOS, "modprobe-lib.sh"), "/modprobe-lib.sh", 0o644)
    img.add_file(os.path.join(SCENARIOS, "vm-lib.sh"), "/vm-lib.sh", 0o644)
    img.add_data("/etc/modprobe.d/shim-test.conf", CONFIG.encode())
    img.add_data("/etc/shim-alt.conf", ALT_CONFIG.encode())
    img.set_scenario_text(scenario())
    return k, img


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modloadctl", required=True)
    p.add_argument("--modloadd", required=True)
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--timeout", type=float, default=1500)
    p.add_argument("--log", help="keep the VM's console log here")
    p.add_argument("--verbose", "-v", action="store_true")
    a = p.parse_args(argv)

    for tool in ("qemu-system-x86_64", "strace"):
        if not shutil.which(tool):
            print("SKIP: %s not installed (test/install-deps.sh)" % tool)
            return 77
    if not os.path.exists("/sbin/modprobe") or not os.path.islink("/sbin/modprobe"):
        print("SKIP: the host has no kmod modprobe to compare with")
        return 77
    r = os.system("%s %s >/dev/null" % (shlex.quote(os.path.join(HERE, "fetch-kernels.sh")), shlex.quote(a.cache)))
    if r != 0:
        print("FAIL: fetch-kernels.sh failed")
        return 1

    start = time.monotonic()
    k, img = image(a, None)
    try:
        res = run_vm.run(img, k.vmlinuz, timeout=a.timeout, log=a.log, echo=a.verbose, extra_args=QEMU_ARGS)
    except run_vm.VMError as e:
        print("VM FAILED: %s\n%s" % (e, e.output[-5000:]))
        return 1
    runs, specials = parse(res.output)

    summary = []
    for c in CASES + NODAEMON_CASES:
        st, detail = compare(c, runs)
        summary.append((c["name"], st, detail))
    for name in SPECIAL:
        st, detail = specials.get(name, ("FAIL", "no @@CASE line"))
        summary.append((name, st, detail))
    failures = [s for s in summary if s[1] != "PASS"]
    if failures and not a.verbose:
        print("\n".join(l for l in res.output.splitlines() if l.startswith(("  |", "@@NOTE")))[-4000:])
    print("\n".join(l[len("@@STATUS "):] for l in res.output.splitlines() if l.startswith("@@STATUS ")))
    print("Compatibility with kmod %s's modprobe, %s (%d compared cases, %d special):"
          % ("30", TREE, len(CASES) + len(NODAEMON_CASES), len(SPECIAL)))
    for name, st, detail in summary:
        print("  %-30s %-5s %s" % (name, st, detail[:160]))
    print("%d passed, %d failed; vm %.0fs (boot %.1fs), total %.0fs"
          % (len(summary) - len(failures), len(failures), res.seconds, res.boot_seconds or 0,
             time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
