#!/usr/bin/env python3
"""Boot a kernel with a test initramfs in qemu (TCG) and return the
scenario's exit status.  Command line: run-vm.py --help.  Python:

    import sys; sys.path.insert(0, "test/vm")
    import run_vm, mkinitrd
    img = mkinitrd.Initrd()
    img.add_bin("/sbin/modprobe")
    img.set_scenario_text("/sbin/modprobe btrfs && grep btrfs /proc/modules")
    k = run_vm.kernel_for_tree("6.1-xz")          # Kernel(vmlinuz, kver, tree)
    img.add_modules(k.tree, k.kver)
    res = run_vm.run(img, k.vmlinuz, timeout=120, log="vm.log")
    res.rc, res.output, res.seconds, res.boot_seconds

run() raises VMError when the guest times out, panics or ends without the
end marker; boot() does the same for a prebuilt image.
"""

import argparse
import collections
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkinitrd  # noqa: E402

# seconds: whole run; boot_seconds: until /init started the scenario
Result = collections.namedtuple("Result", "rc output seconds log boot_seconds")
Kernel = collections.namedtuple("Kernel", "vmlinuz kver tree")

_END = re.compile(r"^%s (\d+)\r?$" % re.escape(mkinitrd.END_MARKER), re.M)


class VMError(Exception):
    def __init__(self, message, output="", seconds=0.0, log=None):
        super().__init__(message)
        self.output = output
        self.seconds = seconds
        self.log = log


def default_cache():
    c = os.environ.get("MODLOADD_TEST_CACHE")
    if not c:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        c = os.path.join(base, "modloadd-test")
    return c


def kernel_for_tree(name, cache=None):
    """Kernel image, version and module tree for a tree built by
    fetch-kernels.sh ("6.1-xz" boots CACHE/kernels/6.1)."""
    cache = cache or default_cache()
    kdir = os.path.join(cache, "kernels", name.split("-", 1)[0])
    tree = os.path.join(cache, "trees", name)
    for p in (kdir, tree):
        if not os.path.exists(os.path.join(p, ".complete-v1")):
            raise FileNotFoundError("%s missing: run test/vm/fetch-kernels.sh" % p)
    with open(os.path.join(kdir, "kver")) as f:
        kver = f.read().strip()
    return Kernel(os.path.join(kdir, "vmlinuz"), kver, tree)


def qemu_command(vmlinuz, initrd, smp=2, mem=1024, append="", qemu="qemu-system-x86_64",
                 extra_args=()):
    cmdline = "console=ttyS0 panic=-1 quiet"
    if append:
        cmdline += " " + append
    return [qemu, "-accel", "tcg,thread=multi", "-m", str(mem), "-smp", str(smp),
            "-kernel", vmlinuz, "-initrd", initrd, "-append", cmdline,
            "-nographic", "-no-reboot"] + list(extra_args)


def boot(vmlinuz, initrd, timeout=120, log=None, echo=False, **qemu_kw):
    """Boot; return Result(rc, output, seconds, log, boot_seconds).  Output is the serial
    console with carriage returns removed."""
    cmd = qemu_command(vmlinuz, initrd, **qemu_kw)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    chunks = []
    logf = open(log, "wb") if log else None
    timed_out = False
    started = None
    tail = b""
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = start + timeout - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(min(left, 1.0)):
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            chunks.append(data)
            if started is None:
                tail = tail[-64:] + data
                if mkinitrd.START_MARKER.encode() in tail:
                    started = time.monotonic() - start
            if logf:
                logf.write(data)
                logf.flush()
            if echo:
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if logf:
            logf.close()
    seconds = time.monotonic() - start
    output = b"".join(chunks).decode("utf-8", "replace").replace("\r", "")
    m = None
    for m in _END.finditer(output):
        pass
    if m:
        return Result(int(m.group(1)), output, seconds, log, started)
    tail = "\n".join(output.splitlines()[-15:])
    if timed_out:
        why = "timed out after %ds" % timeout
    elif "Kernel panic" in output:
        why = "kernel panic"
    else:
        why = "qemu exited (status %d) without the end marker" % proc.returncode
    raise VMError("VM %s%s\n--- last console lines ---\n%s" %
                  (why, " (log: %s)" % log if log else "", tail), output, seconds, log)


def run(image, vmlinuz, timeout=120, log=None, keep_initrd=None, compress="gzip", **boot_kw):
    """Write an mkinitrd.Initrd to a temporary file (or keep_initrd) and boot it."""
    if keep_initrd:
        path = image.write(keep_initrd, compress=compress)
        return boot(vmlinuz, path, timeout=timeout, log=log, **boot_kw)
    with tempfile.TemporaryDirectory(prefix="modloadd-vm-") as d:
        path = image.write(os.path.join(d, "initrd.img"), compress=compress)
        return boot(vmlinuz, path, timeout=timeout, log=log, **boot_kw)


# Scenarios report one line per check, "@@CASE NAME PASS|FAIL DETAIL", and
# figures as "@@FIG NAME KEY=VALUE ...".
CASE_RE = re.compile(r"^@@CASE (\S+) (PASS|FAIL) ?(.*)$", re.M)
FIG_RE = re.compile(r"^@@FIG (\S+) (.*)$", re.M)


def collect_cases(output, expected, tree, summary):
    """Add (tree, case, status, detail) rows for every expected case, missing
    and unexpected ones included, to summary; return how many did not pass."""
    failures = 0
    seen = {}
    for case, status, detail in CASE_RE.findall(output):
        seen[case] = (status, detail.strip())
    for case in expected:
        status, detail = seen.get(case, ("MISSING", "no @@CASE line"))
        summary.append((tree, case, status, detail))
        if status != "PASS":
            failures += 1
    for case in sorted(set(seen) - set(expected)):
        summary.append((tree, case, "UNEXPECTED", seen[case][1]))
        failures += 1
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Boot a kernel in qemu with a scenario initramfs; exit with the "
                    "scenario's status (125 when the VM failed: timeout, panic, no marker).")
    p.add_argument("--tree", help="module tree built by fetch-kernels.sh (e.g. 6.1-xz): "
                                  "sets --kernel, --modules and --kver")
    p.add_argument("--cache", default=None, help="test cache (default: as fetch-kernels.sh)")
    p.add_argument("--kernel", help="vmlinuz to boot")
    p.add_argument("--initrd", help="prebuilt image (otherwise one is built from the options)")
    p.add_argument("--keep-initrd", metavar="FILE", help="write the built image here")
    p.add_argument("--timeout", type=float, default=120, help="wall clock seconds (120)")
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--mem", type=int, default=1024, help="MiB (1024)")
    p.add_argument("--append", default="", help="extra kernel command line")
    p.add_argument("--qemu-arg", action="append", default=[], metavar="ARG",
                   help="extra qemu argument, e.g. --qemu-arg=-cpu --qemu-arg=max (repeatable)")
    p.add_argument("--log", help="write the serial console here")
    p.add_argument("--quiet", action="store_true", help="do not echo the console")
    mkinitrd.add_arguments(p)
    a = p.parse_args(argv)
    if a.tree:
        k = kernel_for_tree(a.tree, a.cache)
        a.kernel = a.kernel or k.vmlinuz
        a.modules = a.modules or k.tree
        a.kver = a.kver or k.kver
    if not a.kernel:
        p.error("--kernel or --tree is required")
    kw = dict(timeout=a.timeout, log=a.log, echo=not a.quiet, smp=a.smp, mem=a.mem,
              append=a.append, extra_args=a.qemu_arg)
    try:
        if a.initrd:
            res = boot(a.kernel, a.initrd, **kw)
        else:
            res = run(mkinitrd.from_arguments(a), a.kernel, keep_initrd=a.keep_initrd,
                      compress=a.compress, **kw)
    except VMError as e:
        print("run-vm: %s" % e, file=sys.stderr)
        return 125
    print("run-vm: scenario exit status %d, %.1f s (scenario started at %.1f s)"
          % (res.rc, res.seconds, res.boot_seconds or 0), file=sys.stderr)
    return res.rc


if __name__ == "__main__":
    sys.exit(main())
