#!/usr/bin/env python3
"""Self-test of the VM harness with kmod's own modprobe.

For each case (module tree x modprobe) boot the tree's kernel, `modprobe
btrfs`, check /proc/modules, unload, then run CONCURRENCY concurrent
`modprobe btrfs` under `strace -f -e trace=init_module,finit_module` and
report the kernel calls.  Cases:

  kmod30: this machine's /sbin/modprobe (Debian 12: kmod 30)
  kmod34: Debian 13's kmod 34 from CACHE/userland/kmod-trixie, run through
          its own C library (fetch-kernels.sh unpacks it)

Usage: test/vm/test-vm-kmod.py [--cache DIR] [--only TREE/KMOD ...]
                               [--concurrency N] [--logdir DIR] [--timeout S]
Needs test/vm/fetch-kernels.sh to have run.  Exits non-zero if a load that
should work fails or a VM fails.
"""

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mkinitrd  # noqa: E402
import run_vm  # noqa: E402

CASES = [
    ("6.1-xz", "kmod30"),
    ("6.1-zstd", "kmod30"),
    ("6.1-gzip", "kmod30"),
    ("6.1-none", "kmod30"),
    ("6.12-xz", "kmod30"),
    ("6.12-xz", "kmod34"),
    ("6.1-xz", "kmod34"),
]


def image_for(tree, kmod, cache, env):
    k = run_vm.kernel_for_tree(tree, cache)
    img = mkinitrd.Initrd()
    img.add_bin("/usr/bin/strace")
    if kmod == "kmod30":
        img.add_bin("/sbin/modprobe")
    else:
        root = os.path.join(cache, "userland", "kmod-trixie")
        if not os.path.exists(os.path.join(root, ".complete-v1")):
            raise FileNotFoundError("%s missing: run test/vm/fetch-kernels.sh" % root)
        # libkmod 34 dlopen()s its decompressors
        img.add_foreign(root, "/usr/bin/kmod", "/opt/kmod34", links=["/sbin/modprobe"],
                        extra_libs=["libzstd.so.1*", "liblzma.so.5*", "libz.so.1*"])
    img.add_modules(k.tree, k.kver)
    img.set_scenario(os.path.join(HERE, "scenarios", "kmod-btrfs.sh"))
    img.set_env(env)
    return k, img


def parse_results(output):
    res = {}
    for line in output.splitlines():
        if line.startswith("RESULT "):
            for key, val in re.findall(r'(\w+)=("[^"]*"|\S*)', line[7:]):
                res[key] = val.strip('"')
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--only", action="append", default=[], metavar="TREE/KMOD",
                   help="e.g. 6.1-xz/kmod30 (repeatable; default: all)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=180)
    p.add_argument("--logdir", default=None, help="keep each VM's console log here")
    p.add_argument("--show-trace", action="store_true", help="print the strace lines")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the consoles")
    a = p.parse_args(argv)
    cases = CASES
    if a.only:
        cases = [c for c in CASES if "%s/%s" % c in a.only]
        if not cases:
            p.error("no case matches %s" % a.only)
    if a.logdir:
        os.makedirs(a.logdir, exist_ok=True)
    env = {"CONCURRENCY": a.concurrency}
    if a.show_trace:
        env["SHOW_TRACE"] = 1

    start = time.monotonic()
    failures = 0
    rows = []
    for tree, kmod in cases:
        name = "%s/%s" % (tree, kmod)
        log = os.path.join(a.logdir, "%s-%s.log" % (tree, kmod)) if a.logdir else None
        t0 = time.monotonic()
        try:
            k, img = image_for(tree, kmod, a.cache, env)
            res = run_vm.run(img, k.vmlinuz, timeout=a.timeout, log=log, echo=a.verbose)
        except run_vm.VMError as e:
            print("%-16s VM FAILED: %s" % (name, e))
            failures += 1
            continue
        except (OSError, RuntimeError) as e:
            print("%-16s SETUP FAILED: %s" % (name, e))
            failures += 1
            continue
        total = time.monotonic() - t0
        r = parse_results(res.output)
        status = r.get("status", "NO-STATUS")
        if res.rc != 0 or status not in ("PASS", "XFAIL"):
            failures += 1
            if not a.verbose:
                print("\n".join("  | " + l for l in res.output.splitlines()[-40:]))
        rows.append((name, status, res.seconds, total, r))
        if status == "XFAIL":
            print("%-16s XFAIL (%s)  boot %.1fs vm %.1fs (image+vm %.1fs)"
                  % (name, r.get("reason", "?"), res.boot_seconds or 0, res.seconds, total))
        else:
            print("%-16s %-5s boot %4.1fs vm %5.1fs (image+vm %5.1fs)  single %sms  %dx: %sms  "
                  "init_module=%s finit_module=%s (compressed %s) EEXIST=%s bytes=%s errors=%s"
                  % (name, status, res.boot_seconds or 0, res.seconds, total, r.get("single_ms", "?"),
                     a.concurrency, r.get("concurrent_ms", "?"), r.get("init_module", "?"),
                     r.get("finit_module", "?"), r.get("compressed_finit", "?"),
                     r.get("eexist", "?"), r.get("bytes_to_kernel", "?"), r.get("errors", "?")))
        sys.stdout.flush()
    print("%d case(s), %d failure(s), %.1f s total" % (len(cases), failures, time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
