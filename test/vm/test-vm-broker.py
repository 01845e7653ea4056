#!/usr/bin/env python3
"""modloadd as the broker of concurrent clients, against real kernels, in qemu.

One boot per module tree runs scenarios/broker-all.sh: modloadd starts under
`strace -f --seccomp-bpf -e trace=init_module,finit_module,delete_module`
(the ground truth for kernel calls), `modloadctl --json load` clients talk to
it over its socket, and every case prints "@@CASE name PASS|FAIL detail".

Cases (each checks /proc/modules, exit statuses and the daemon's kernel calls):
  btrfs-64            64 concurrent callers of btrfs by four names (btrfs,
                      fs-btrfs, devname:btrfs-control, char-major-10-234):
                      each module handed to the kernel once, no EEXIST, no
                      init_module, all 64 succeed, >= 63 outcomes shared
  storm-20            3 callers each of 20 modules with shared dependencies,
                      plus one request naming all 20: each module once
  rejected-8          8 callers of a module the kernel rejects (by absolute
                      path): one kernel call, the same failure for everyone
  unload-during-load  Unload while the Load runs: both answered, consistent
  client-killed       a client SIGKILLed mid-request: the other caller of the
                      same module is answered, the daemon keeps serving
  unprivileged        Load as nobody: PermissionDenied, nothing loaded
  config-change       a new modprobe.d alias is noticed without Reload
  depmod              a module moved + depmod: the daemon follows the index
  still-serving       the same daemon process still loads at the end

Boots:
  6.1-xz   the kernel cannot decompress: the daemon decompresses into memfds
  6.12-xz  the kernel decompresses xz: finit_module on the .ko.xz itself

Usage: test/vm/test-vm-broker.py --modloadd build/src/daemon/modloadd
           --modloadctl build/src/ctl/modloadctl [--cache DIR] [--only TREE]
           [--logdir DIR] [--timeout S] [-v]
Prints "BROKER-RESULT tree=... case=... status=..." lines, then a summary.
Exit status: 0 all passed, 1 a case failed or is missing or a VM failed,
77 (skip) when qemu or strace is not installed.
"""

import argparse
import lzma
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mkinitrd  # noqa: E402
import run_vm  # noqa: E402

SCENARIOS = os.path.join(HERE, "scenarios")
# TCG's default CPU lacks SSE4.2/SSSE3/AES: some soft dependencies and
# crypto modules would be refused (ENODEV); "max" has them.
QEMU_ARGS = ["-cpu", "max"]

CASES = ["daemon-start", "btrfs-64", "storm-20", "rejected-8", "unload-during-load",
         "client-killed", "unprivileged", "config-change", "depmod", "still-serving"]
# tree, the kernel decompresses the tree's format itself
BOOTS = [("6.1-xz", False), ("6.12-xz", True)]

FIG_RE = run_vm.FIG_RE
INFO_RE = re.compile(r"^@@INFO (.*)$", re.M)


def fetch(cache):
    script = os.path.join(HERE, "fetch-kernels.sh")
    r = subprocess.run([script, cache], stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError("%s %s failed (status %d)" % (script, cache, r.returncode))


def bad_module(path):
    """A valid xz (as the kernel accepts it) of an ELF magic, random bytes and
    16 MiB of zeros: decompresses fine, slowly under TCG, and the kernel says
    ENOEXEC."""
    rnd = random.Random(4711)
    payload = (b"\x7fELF\x02\x01\x01" + bytes(rnd.getrandbits(8) for _ in range(16384))
               + bytes(16 << 20))
    with open(path, "wb") as f:
        f.write(lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                              filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]))


def image_for(tree, kdecomp, modloadd, modloadctl, cache, tmp):
    k = run_vm.kernel_for_tree(tree, cache)
    img = mkinitrd.Initrd()
    img.add_bin(modloadd, "/usr/sbin/modloadd")
    img.add_bin(modloadctl, "/usr/bin/modloadctl")
    img.add_bin(shutil.which("strace") or "/usr/bin/strace", "/usr/bin/strace")
    img.add_bin(shutil.which("setpriv") or "/usr/bin/setpriv", "/usr/bin/setpriv")
    img.add_bin("/sbin/depmod")
    img.add_modules(k.tree, k.kver)
    img.add_file(os.path.join(SCENARIOS, "broker-lib.sh"), "/broker-lib.sh", 0o644)
    img.add_file(os.path.join(SCENARIOS, "vm-lib.sh"), "/vm-lib.sh", 0o644)
    img.set_scenario(os.path.join(SCENARIOS, "broker-all.sh"))
    bad = os.path.join(tmp, "bad.ko.xz")
    bad_module(bad)
    img.add_file(bad, "/fixtures/bad.ko.xz", 0o644)
    img.set_env({"TREE": tree, "KERNEL_DECOMPRESS": 1 if kdecomp else 0})
    return k, img


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modloadd", required=True, help="the modloadd binary to test")
    p.add_argument("--modloadctl", required=True, help="the modloadctl binary to test")
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--only", action="append", default=[], metavar="TREE",
                   help="boot only this tree (repeatable): %s" % ", ".join(b[0] for b in BOOTS))
    p.add_argument("--timeout", type=float, default=600, help="per boot, seconds")
    p.add_argument("--logdir", help="keep each VM's console log here")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the consoles")
    a = p.parse_args(argv)

    for tool in ("qemu-system-x86_64", "strace", "setpriv"):
        if not shutil.which(tool):
            print("SKIP: %s not installed (test/install-deps.sh)" % tool)
            return 77
    boots = [b for b in BOOTS if not a.only or b[0] in a.only]
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
    for tree, kdecomp in boots:
        t0 = time.monotonic()
        log = os.path.join(a.logdir, "broker-%s.log" % tree) if a.logdir else None
        print("== %s" % tree)
        sys.stdout.flush()
        try:
            with tempfile.TemporaryDirectory(prefix="modloadd-broker-") as tmp:
                k, img = image_for(tree, kdecomp, os.path.abspath(a.modloadd),
                                   os.path.abspath(a.modloadctl), a.cache, tmp)
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
            print("\n".join("  | " + line for line in out.splitlines())[-30000:])
        print("%s: scenario exit %d, boot %.1fs, vm %.1fs, image+vm %.1fs"
              % (tree, res.rc, res.boot_seconds or 0, res.seconds, total))
        sys.stdout.flush()

    print("\nFigures:")
    for tree, case, figs in figures:
        print("  %-8s %-12s %s" % (tree, case, figs))
    print("\nTimings:")
    for tree, boot, vm, total in timings:
        print("  %-8s boot %5.1fs  vm %6.1fs  image+vm %6.1fs" % (tree, boot, vm, total))
    print("\nSummary:")
    for tree, case, status, detail in summary:
        print("BROKER-RESULT tree=%s case=%s status=%s detail=%s" % (tree, case, status, detail[:200]))
    npass = sum(1 for s in summary if s[2] == "PASS")
    print("%d passed, %d failed, %.1f s total" % (npass, failures, time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
