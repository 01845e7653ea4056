#!/usr/bin/env python3
"""The daemon's scheduler against real kernels, in qemu: nested loads and a
dependency chain loaded in parallel.

One boot per module tree runs scenarios/sched-all.sh. modloadd runs under
`strace -f --seccomp-bpf -ttt -T -e trace=init_module,finit_module,delete_module`
(the ground truth for kernel calls and their intervals), and every case prints
"@@CASE name PASS|FAIL detail" (broker-lib.sh).

Cases:
  daemon-start    modloadd --workers=1 --load-timeout=20s on the default socket
  nested-nls      `modloadctl load /lib/modules/KV/kernel/fs/nls/nls_euc-jp.ko.xz`
                  with /proc/sys/kernel/modprobe pointing at the shim: the
                  module's init calls load_nls("cp932"), i.e.
                  request_module("nls_cp932"), and the kernel runs the shim
                  while the outer finit_module() has not returned; the shim
                  asks the daemon, which holds its only worker for the outer
                  load. Passes when the load is inserted well before the load
                  timeout, nls_cp932 is live and was handed to the kernel by the
                  daemon (2 kernel calls in its strace and in GetStatistics),
                  no EEXIST.
  nested-crypto   (6.1 only) the same for jitterentropy_rng, whose init asks the
                  crypto API for "sha3-256-generic": request_module(
                  "crypto-sha3-256-generic") loads sha3_generic.
  chain-parallel  64 concurrent callers of btrfs by four names, daemon with its
                  default workers: at least two finit_module() intervals of
                  different modules of the chain overlap; kernel calls ==
                  modules handed over, no EEXIST, all callers succeed.

libcrc32c, the obvious candidate, does not nest on these kernels: crc32c is
built in (CONFIG_CRYPTO_CRC32C=y), so crypto_alloc_shash("crc32c") finds it
and asks for no module.

Boots:
  6.1-xz   the kernel cannot decompress: the daemon decompresses into memfds
  6.12-xz  the kernel decompresses xz: finit_module on the .ko.xz itself

Usage: test/vm/test-vm-sched.py --modloadd build/src/daemon/modloadd
           --modloadctl build/src/ctl/modloadctl [--cache DIR] [--only TREE]
           [--logdir DIR] [--timeout S] [--load-timeout S] [-v]
Prints "SCHED-RESULT tree=... case=... status=..." lines, then a summary.
Exit status: 0 all passed, 1 a case failed or is missing or a VM failed,
77 (skip) when qemu or strace is not installed.
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

# tree -> nested cases: (case, outer module, module its init asks for)
NESTED = {
    "6.1-xz": [("nested-nls", "nls_euc_jp", "nls_cp932"),
               ("nested-crypto", "jitterentropy_rng", "sha3_generic")],
    "6.12-xz": [("nested-nls", "nls_euc_jp", "nls_cp932")],
}
BOOTS = ["6.1-xz", "6.12-xz"]

FIG_RE = run_vm.FIG_RE
INFO_RE = re.compile(r"^@@INFO (.*)$", re.M)


def cases_for(tree):
    return ["daemon-start"] + [c for c, _, _ in NESTED[tree]] + ["chain-parallel"]


def fetch(cache):
    script = os.path.join(HERE, "fetch-kernels.sh")
    r = subprocess.run([script, cache], stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError("%s %s failed (status %d)" % (script, cache, r.returncode))


def image_for(tree, modloadd, modloadctl, cache, load_timeout):
    k = run_vm.kernel_for_tree(tree, cache)
    img = mkinitrd.Initrd()
    img.add_bin(modloadd, "/usr/sbin/modloadd")
    img.add_bin(modloadctl, "/usr/bin/modloadctl")
    # the kernel's modprobe path: argv[0] "modprobe" selects the shim
    img.add_symlink("/opt/shim/modprobe", "/usr/bin/modloadctl")
    img.add_bin(shutil.which("strace") or "/usr/bin/strace", "/usr/bin/strace")
    img.add_modules(k.tree, k.kver)
    img.add_file(os.path.join(SCENARIOS, "broker-lib.sh"), "/broker-lib.sh", 0o644)
    img.add_file(os.path.join(SCENARIOS, "vm-lib.sh"), "/vm-lib.sh", 0o644)
    img.set_scenario(os.path.join(SCENARIOS, "sched-all.sh"))
    img.set_env({"TREE": tree, "LOAD_TIMEOUT": int(load_timeout),
                 "NESTED": " ".join(" ".join(t) for t in NESTED[tree])})
    return k, img


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modloadd", required=True, help="the modloadd binary to test")
    p.add_argument("--modloadctl", required=True, help="the modloadctl binary to test")
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--only", action="append", default=[], metavar="TREE",
                   help="boot only this tree (repeatable): %s" % ", ".join(BOOTS))
    p.add_argument("--timeout", type=float, default=600, help="per boot, seconds")
    p.add_argument("--load-timeout", type=int, default=20,
                   help="the daemon's --load-timeout for the nested cases, seconds (20)")
    p.add_argument("--logdir", help="keep each VM's console log here")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the consoles")
    a = p.parse_args(argv)

    for tool in ("qemu-system-x86_64", "strace"):
        if not shutil.which(tool):
            print("SKIP: %s not installed (test/install-deps.sh)" % tool)
            return 77
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
        log = os.path.join(a.logdir, "sched-%s.log" % tree) if a.logdir else None
        print("== %s" % tree)
        sys.stdout.flush()
        try:
            k, img = image_for(tree, os.path.abspath(a.modloadd), os.path.abspath(a.modloadctl),
                               a.cache, a.load_timeout)
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
        failures += run_vm.collect_cases(out, cases_for(tree), tree, summary)
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
        print("  %-8s %-14s %s" % (tree, case, figs))
    print("\nTimings:")
    for tree, boot, vm, total in timings:
        print("  %-8s boot %5.1fs  vm %6.1fs  image+vm %6.1fs" % (tree, boot, vm, total))
    print("\nSummary:")
    for tree, case, status, detail in summary:
        print("SCHED-RESULT tree=%s case=%s status=%s detail=%s" % (tree, case, status, detail[:300]))
    npass = sum(1 for s in summary if s[2] == "PASS")
    print("%d passed, %d failed, %.1f s total" % (npass, failures, time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
