#!/usr/bin/env python3
"""modloadctl --local against real kernels, in qemu.

One boot per module tree; each boot runs a scenario (scenarios/core-*.sh)
that exercises `modloadctl load/unload --local` under strace and prints one
"@@CASE name PASS|FAIL detail" line per case.  This script builds the images,
boots them, checks that every expected case is there and passed, and checks
the bytes each memfd load wrote against the decompressed size of the module
file, computed here on the host.

Boots:
  6.1-xz    core-full.sh: every case (userspace decompression: 6.1 cannot)
  6.1-zstd  core-btrfs.sh: btrfs chain, default policy and --policy=userspace
  6.1-gzip  core-btrfs.sh
  6.12-xz   core-full.sh: every case, default policy = kernel decompression
            (finit_module(MODULE_INIT_COMPRESSED_FILE) on the .ko.xz)

Usage: test/vm/test-vm-core.py --modloadctl build/src/ctl/modloadctl
           [--cache DIR] [--only TREE ...] [--logdir DIR] [--timeout S] [-v]
Exit status: 0 all passed, 1 a case failed or is missing or a VM failed,
77 (skip) when qemu or strace is not installed.
"""

import argparse
import gzip
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
FIXTURES = os.path.join(HERE, "fixtures")
CMDLINE = "loop.max_loop=5 modprobe.blacklist=nlmon module_blacklist=ifb"
# TCG's default CPU lacks SSE4.2, so btrfs' soft dependency crc32c_intel
# would be refused (ENODEV); "max" has it, and every module tried loads.
QEMU_ARGS = ["-cpu", "max"]

FULL_COMMON = [
    "notfound", "badname-slash", "badname-control", "truncated", "corrupt",
    "btrfs-default", "live", "first-time-live", "dry-run", "unload-holder-inuse", "unload-remove-holders",
    "btrfs-userspace", "btrfs-unload", "alias-fs-btrfs", "modalias", "symbol",
    "builtin", "unload-notloaded", "config-alias", "config-options",
    "cmdline-options", "unload-inuse-refcnt", "blacklist-alias",
    "blacklist-config-alias", "blacklist-name", "softdep", "install-command",
    "install-ignored", "cmdline-modprobe-blacklist", "cmdline-module-blacklist",
]
BTRFS_ONLY = ["btrfs-default", "btrfs-unload", "btrfs-userspace", "btrfs-unload-userspace"]

# tree, scenario, kernel decompresses the tree's format, expected cases
BOOTS = [
    ("6.1-xz", "core-full.sh", False, FULL_COMMON + ["policy-kernel-unsupported"]),
    ("6.1-zstd", "core-btrfs.sh", False, BTRFS_ONLY),
    ("6.1-gzip", "core-btrfs.sh", False, BTRFS_ONLY),
    ("6.12-xz", "core-full.sh", True, FULL_COMMON + ["truncated-kernel"]),
]

FIG_RE = run_vm.FIG_RE
BYTES_RE = re.compile(r"^@@BYTES (\S+) (\S+) (\d+)$", re.M)


def fetch(cache):
    """fetch-kernels.sh is idempotent: a second run takes a second."""
    script = os.path.join(HERE, "fetch-kernels.sh")
    r = subprocess.run([script, cache], stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError("%s %s failed (status %d)" % (script, cache, r.returncode))


def module_files(moddir):
    """Module name (underscores) -> path, from modules.dep."""
    files = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            rel = line.split(":", 1)[0]
            name = re.sub(r"\.ko(\..*)?$", "", os.path.basename(rel)).replace("-", "_")
            files[name] = os.path.join(moddir, rel)
    return files


def decompressed_size(path):
    if path.endswith(".xz"):
        with lzma.open(path) as f:
            return len(f.read())
    if path.endswith(".gz"):
        with gzip.open(path) as f:
            return len(f.read())
    if path.endswith(".zst"):
        out = subprocess.run(["zstd", "-dc", path], stdout=subprocess.PIPE, check=True).stdout
        return len(out)
    return os.path.getsize(path)


def bad_modules(moddir, files, outdir):
    """/fixtures/truncated.ko.xz: the first half of a real module;
    /fixtures/corrupt.ko.xz: a valid xz (as the kernel accepts it) of random
    bytes behind an ELF magic."""
    src = files["dummy"]
    with open(src, "rb") as f:
        data = f.read()
    trunc = os.path.join(outdir, "truncated.ko.xz")
    with open(trunc, "wb") as f:
        f.write(data[:len(data) // 2])
    rnd = random.Random(4711)
    payload = b"\x7fELF\x02\x01\x01" + bytes(rnd.getrandbits(8) for _ in range(16384))
    corrupt = os.path.join(outdir, "corrupt.ko.xz")
    with open(corrupt, "wb") as f:
        f.write(lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                              filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]))
    return trunc, corrupt


def image_for(tree, scenario, kernel_decompress, modloadctl, cache, tmp):
    k = run_vm.kernel_for_tree(tree, cache)
    moddir = os.path.join(k.tree, "lib", "modules", k.kver)
    files = module_files(moddir)
    img = mkinitrd.Initrd()
    img.add_bin(modloadctl, "/usr/bin/modloadctl")
    img.add_bin(shutil.which("strace") or "/usr/bin/strace", "/usr/bin/strace")
    # Without a /sbin/modprobe the kernel's own request_module() calls fail,
    # so nothing but the scenario loads modules (busybox would otherwise
    # load crypto modules during boot on 6.12).
    img.entries.pop(mkinitrd.canonical("/sbin/modprobe"), None)
    img.add_modules(k.tree, k.kver)
    img.add_file(os.path.join(SCENARIOS, "core-lib.sh"), "/core-lib.sh", 0o644)
    img.add_file(os.path.join(SCENARIOS, "vm-lib.sh"), "/vm-lib.sh", 0o644)
    img.set_scenario(os.path.join(SCENARIOS, scenario))
    confdir = os.path.join(FIXTURES, "modprobe.d")
    for name in sorted(os.listdir(confdir)):
        if name.endswith(".conf"):
            img.add_file(os.path.join(confdir, name), "/etc/modprobe.d/" + name, 0o644)
    for path in bad_modules(moddir, files, tmp):
        img.add_file(path, "/fixtures/" + os.path.basename(path), 0o644)
    env = {"TREE": tree, "KERNEL_DECOMPRESS": 1 if kernel_decompress else 0}
    # A sanitizer build works in the guest too, but LeakSanitizer cannot run
    # under ptrace and every case runs under strace: no leak checks here.
    env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    if os.environ.get("UBSAN_OPTIONS"):
        env["UBSAN_OPTIONS"] = os.environ["UBSAN_OPTIONS"]
    img.set_env(env)
    return k, img, files


def check_bytes(output, files):
    """@@BYTES lines: what went into each memfd vs the decompressed file."""
    rows, bad = [], []
    sizes = {}
    for case, mod, got in BYTES_RE.findall(output):
        if mod not in files:
            bad.append("%s: %s not in modules.dep" % (case, mod))
            continue
        if mod not in sizes:
            sizes[mod] = decompressed_size(files[mod])
        want = sizes[mod]
        rows.append((case, mod, int(got), want))
        if int(got) != want:
            bad.append("%s: %s memfd got %s bytes, decompressed file is %d" % (case, mod, got, want))
    return rows, bad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modloadctl", required=True, help="the modloadctl binary to test")
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--only", action="append", default=[], metavar="TREE",
                   help="boot only this tree (repeatable): %s" % ", ".join(b[0] for b in BOOTS))
    p.add_argument("--timeout", type=float, default=300, help="per boot, seconds")
    p.add_argument("--logdir", help="keep each VM's console log here")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the consoles")
    a = p.parse_args(argv)

    for tool in ("qemu-system-x86_64", "strace"):
        if not shutil.which(tool):
            print("SKIP: %s not installed (test/install-deps.sh)" % tool)
            return 77
    boots = [b for b in BOOTS if not a.only or b[0] in a.only]
    if not boots:
        p.error("no tree matches %s" % a.only)
    modloadctl = os.path.abspath(a.modloadctl)
    if not os.access(modloadctl, os.X_OK):
        print("FAIL: no executable modloadctl at %s" % modloadctl)
        return 1
    if a.logdir:
        os.makedirs(a.logdir, exist_ok=True)
    try:
        fetch(a.cache)
    except (OSError, RuntimeError) as e:
        print("FAIL: %s" % e)
        return 1

    start = time.monotonic()
    summary = []       # (tree, case, status, detail)
    timings = []       # (tree, boot s, vm s, total s)
    figures = []
    byte_rows = []
    failures = 0
    for tree, scenario, kdecomp, expected in boots:
        t0 = time.monotonic()
        log = os.path.join(a.logdir, "core-%s.log" % tree) if a.logdir else None
        print("== %s: %s" % (tree, scenario))
        sys.stdout.flush()
        try:
            with tempfile.TemporaryDirectory(prefix="modloadd-core-") as tmp:
                k, img, files = image_for(tree, scenario, kdecomp, modloadctl, a.cache, tmp)
                res = run_vm.run(img, k.vmlinuz, timeout=a.timeout, log=log, echo=a.verbose,
                                 append=CMDLINE if scenario == "core-full.sh" else "",
                                 extra_args=QEMU_ARGS)
        except run_vm.VMError as e:
            print("%s: VM FAILED: %s" % (tree, e))
            summary.append((tree, "(vm)", "FAIL", str(e).splitlines()[0]))
            failures += 1
            continue
        except (OSError, RuntimeError, ValueError) as e:
            print("%s: SETUP FAILED: %s: %s" % (tree, type(e).__name__, e))
            summary.append((tree, "(setup)", "FAIL", str(e)))
            failures += 1
            continue
        total = time.monotonic() - t0
        timings.append((tree, res.boot_seconds or 0, res.seconds, total))
        out = res.output
        failures += run_vm.collect_cases(out, expected, tree, summary)
        for case, figs in FIG_RE.findall(out):
            figures.append((tree, case, figs))
        rows, bad = check_bytes(out, files)
        byte_rows += [(tree,) + r for r in rows]
        memfd_cases = {c for c, f in FIG_RE.findall(out) if not re.search(r"\bmemfd=0\b", f)}
        for case in sorted(memfd_cases):
            ok = all(r[0] != case or r[2] == r[3] for r in rows) and any(r[0] == case for r in rows)
            summary.append((tree, case + "/bytes", "PASS" if ok else "FAIL",
                            "; ".join(b for b in bad if b.startswith(case + ":")) or
                            "memfd bytes == decompressed sizes"))
            if not ok:
                failures += 1
        if res.rc != 0 and all(s == "PASS" for t, c, s, d in summary if t == tree):
            summary.append((tree, "(scenario)", "FAIL", "exit status %d" % res.rc))
            failures += 1
        if any(s != "PASS" for t, c, s, d in summary if t == tree) and not a.verbose:
            print("\n".join("  | " + line for line in out.splitlines()
                            if not line.startswith("@@BYTES"))[-20000:])
        print("%s: scenario exit %d, boot %.1fs, vm %.1fs, image+vm %.1fs"
              % (tree, res.rc, res.boot_seconds or 0, res.seconds, total))
        sys.stdout.flush()

    print("\nFigures (kernel calls per fresh load of btrfs and its dependencies):")
    for tree, case, figs in figures:
        print("  %-8s %-22s %s" % (tree, case, figs))
    print("\nBytes handed to the kernel through memfds vs decompressed module sizes (host):")
    sums = {}
    for tree, case, mod, got, want in byte_rows:
        s = sums.setdefault((tree, case), [0, 0, 0])
        s[0] += got
        s[1] += want
        s[2] += 1
    for (tree, case), (got, want, n) in sums.items():
        print("  %-8s %-22s %2d modules  memfd %9d bytes  decompressed %9d bytes  %s"
              % (tree, case, n, got, want, "equal" if got == want else "DIFFERENT"))
    print("\nTimings:")
    for tree, boot, vm, total in timings:
        print("  %-8s boot %5.1fs  vm %6.1fs  image+vm %6.1fs" % (tree, boot, vm, total))
    print("\nSummary:")
    for tree, case, status, detail in summary:
        print("  %-8s %-28s %-8s %s" % (tree, case, status, detail[:110]))
    npass = sum(1 for s in summary if s[2] == "PASS")
    print("%d passed, %d failed, %.1f s total" % (npass, failures, time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
