#!/usr/bin/env python3
"""No caller lost when modloadd dies in the middle of a load storm, against
real kernels, in qemu.

One boot per module tree runs scenarios/crash-all.sh: 32 clients for btrfs
(modloadctl load and the modprobe shim, by name and by the alias fs-btrfs),
the daemon killed with SIGKILL while one of btrfs's chain is `coming` (its
kernel call is in flight), and every kernel call of every process recorded by
the kernel's own tracing (syscalls:sys_{enter,exit}_{f,}init_module,
module:module_load). Every case prints "@@CASE name PASS|FAIL detail".

Cases:
  restart    the daemon restarted as systemd does it (Restart=on-failure):
             scenarios/crash-supervise.sh on the listening socket that
             systemd-socket-activate holds, as modloadd.socket does. Every
             client exits 0, btrfs and its chain are live, every module was
             handed to the kernel exactly once over both daemon instances, no
             EEXIST, a second instance served, and no client loaded in-process.
  gone       the daemon killed and not restarted: every client exits 0
             through in-process loads, coordinated by the module locks, each
             module handed to the kernel once, no EEXIST.
  successor  a second daemon, asked for raid6_pq the moment the first one is
             killed while raid6_pq is coming (its init benchmarks for a
             while), waits for that module instead of handing it over again.

Boots:
  6.1-xz   the kernel cannot decompress: daemon and fallbacks decompress
  6.12-xz  the kernel decompresses xz: finit_module on the .ko.xz itself

Usage: test/vm/test-vm-crash.py --modloadd build/src/daemon/modloadd
           --modloadctl build/src/ctl/modloadctl [--cache DIR] [--only TREE]
           [--clients N] [--no-socket-activate] [--logdir DIR] [--timeout S] [-v]
Prints "CRASH-RESULT tree=... case=... status=..." lines, then a summary.
Exit status: 0 all passed, 1 a case failed or is missing or a VM failed,
77 (skip) when qemu is not installed.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mkinitrd  # noqa: E402
import run_vm  # noqa: E402

SCENARIOS = os.path.join(HERE, "scenarios")
# TCG's default CPU lacks SSE4.2/SSSE3/AES: some soft dependencies of btrfs
# would be refused (ENODEV); "max" has them.
QEMU_ARGS = ["-cpu", "max"]
BOOTS = ["6.1-xz", "6.12-xz"]
CASES = ["restart", "gone", "successor"]

FIG_RE = run_vm.FIG_RE
INFO_RE = re.compile(r"^@@INFO (.*)$", re.M)


def fetch(cache):
    script = os.path.join(HERE, "fetch-kernels.sh")
    r = subprocess.run([script, cache], stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError("%s %s failed (status %d)" % (script, cache, r.returncode))


def socket_activate():
    """The host's systemd-socket-activate, if any (Debian 12 has it in systemd)."""
    return shutil.which("systemd-socket-activate")


def image_for(tree, modloadd, modloadctl, cache, clients, activate):
    k = run_vm.kernel_for_tree(tree, cache)
    img = mkinitrd.Initrd()
    img.add_bin(modloadd, "/usr/sbin/modloadd")
    img.add_bin(modloadctl, "/usr/bin/modloadctl")
    # argv[0] "modprobe" selects the shim
    img.add_symlink("/opt/shim/modprobe", "/usr/bin/modloadctl")
    if activate:
        img.add_bin(activate, "/usr/bin/systemd-socket-activate")
    img.add_modules(k.tree, k.kver)
    for f in ("broker-lib.sh", "vm-lib.sh", "crash-supervise.sh"):
        img.add_file(os.path.join(SCENARIOS, f), "/" + f, 0o644)
    img.set_scenario(os.path.join(SCENARIOS, "crash-all.sh"))
    img.set_env({"TREE": tree, "N_CLIENTS": int(clients), "SA": 1 if activate else 0})
    return k, img


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modloadd", required=True, help="the modloadd binary to test")
    p.add_argument("--modloadctl", required=True, help="the modloadctl binary to test")
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--only", action="append", default=[], metavar="TREE",
                   help="boot only this tree (repeatable): %s" % ", ".join(BOOTS))
    p.add_argument("--clients", type=int, default=32, help="clients per storm (32)")
    p.add_argument("--no-socket-activate", action="store_true",
                   help="restart the daemon on the socket path instead of on a socket "
                        "systemd-socket-activate holds")
    p.add_argument("--timeout", type=float, default=600, help="per boot, seconds")
    p.add_argument("--logdir", help="keep each VM's console log here")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the consoles")
    a = p.parse_args(argv)

    if not shutil.which("qemu-system-x86_64"):
        print("SKIP: qemu-system-x86_64 not installed (test/install-deps.sh)")
        return 77
    activate = None if a.no_socket_activate else socket_activate()
    if not activate and not a.no_socket_activate:
        print("NOTE: systemd-socket-activate not installed: the daemon is restarted on its socket path")
    boots = [b for b in BOOTS if not a.only or b in a.only]
    if not boots:
        p.error("no tree matches %s" % a.only)
    if a.logdir:
        os.makedirs(a.logdir, exist_ok=True)
    try:
        fetch(a.cache)
    except (OSError, RuntimeError) as e:
        print("FAIL: %s" % e)
        return 1

    start = time.monotonic()
    summary, figures, timings = [], [], []
    failures = 0
    for tree in boots:
        t0 = time.monotonic()
        log = os.path.join(a.logdir, "crash-%s.log" % tree) if a.logdir else None
        print("== %s" % tree)
        sys.stdout.flush()
        try:
            k, img = image_for(tree, os.path.abspath(a.modloadd), os.path.abspath(a.modloadctl),
                               a.cache, a.clients, activate)
            res = run_vm.run(img, k.vmlinuz, timeout=a.timeout, log=log, echo=a.verbose,
                             smp=2, mem=1024, extra_args=QEMU_ARGS)
        except run_vm.VMError as e:
            print("%s: VM FAILED: %s" % (tree, e))
            summary.append((tree, "(vm)", "FAIL", str(e).splitlines()[0]))
            failures += 1
            continue
        except (OSError, RuntimeError, ValueError) as e:
            print("%s: SETUP FAILED: %s" % (tree, e))
            summary.append((tree, "(setup)", "FAIL", str(e)))
            failures += 1
            continue
        total = time.monotonic() - t0
        timings.append((tree, res.boot_seconds or 0, res.seconds, total))
        out = res.output
        failures += run_vm.collect_cases(out, CASES, tree, summary)
        for case, figs in FIG_RE.findall(out):
            figures.append((tree, case, figs))
        if res.rc != 0 and all(s == "PASS" for t, c, s, d in summary if t == tree):
            summary.append((tree, "(scenario)", "FAIL", "exit status %d" % res.rc))
            failures += 1
        for info in INFO_RE.findall(out):
            print("  %s" % info)
        if any(s != "PASS" for t, c, s, d in summary if t == tree) and not a.verbose:
            print("\n".join("  | " + line for line in out.splitlines()
                            if line.startswith(("@@", "  |")))[-30000:])
        print("%s: scenario exit %d, boot %.1fs, vm %.1fs, image+vm %.1fs"
              % (tree, res.rc, res.boot_seconds or 0, res.seconds, total))
        sys.stdout.flush()

    print("\nFigures:")
    for tree, case, figs in figures:
        print("  %-8s %-10s %s" % (tree, case, figs))
    print("\nTimings:")
    for tree, boot, vm, total in timings:
        print("  %-8s boot %5.1fs  vm %6.1fs  image+vm %6.1fs" % (tree, boot, vm, total))
    print("\nSummary:")
    for tree, case, status, detail in summary:
        print("CRASH-RESULT tree=%s case=%s status=%s detail=%s" % (tree, case, status, detail[:400]))
    npass = sum(1 for s in summary if s[2] == "PASS")
    print("%d passed, %d failed, %.1f s total" % (npass, failures, time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
