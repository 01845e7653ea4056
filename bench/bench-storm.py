#!/usr/bin/env python3
"""Load storm benchmark: N concurrent `modprobe MODULE` against N concurrent
`modloadctl load MODULE` through modloadd, in qemu, on real kernels.

    bench/bench-storm.py [--kernels 6.1-xz,6.12-xz] [--n 1,8,32,128]
                         [--module btrfs] [--out DIR] [--build DIR]

One VM boot per kernel (TCG, -smp 2, -cpu max).  In the guest, for each N,
from a clean kernel each time (the chain unloaded with rmmod, /proc/modules
checked): N concurrent modprobes, then N concurrent modloadctl clients of a
modloadd that was started (idle) before the clock started.  The modprobe is
the one a distribution with that kernel ships: kmod 30 (this machine's,
Debian 12) with 6.1, kmod 34 (Debian 13) with 6.12.  See bench-storm.sh for
how the guest measures; per row this prints and writes:

  kernel calls   init_module + finit_module (strace -f --seccomp-bpf)
  EEXIST         calls that returned EEXIST
  bytes          what each call handed to the kernel: init_module's length
                 argument; for finit_module the size of what the fd holds --
                 a memfd: the module's decompressed size, a .ko.xz file with
                 MODULE_INIT_COMPRESSED_FILE: the file's size (computed here
                 from the module tree).  Kernels >= 6.5 let concurrent
                 finit_module callers of one inode wait for the first instead
                 of reading the file again, so for those the figure is what
                 was offered, an upper bound of what was read.
  unique         the modules loaded and the bytes of one call each
  wall ms        storm start to the last caller's exit
  CPU ms         user+sys of everything the storm ran (callers, shells,
                 strace; for modloadd also the daemon and its strace)

Writes DIR/results.md (table + goals), DIR/results.json, DIR/storm.svg
(wall time and kernel calls against N, both tools, per kernel) and the
console logs.  Goals checked (never adjusted): kernel calls and bytes equal
to the unique modules at every N for modloadd; wall time at N=32 at most
0.25x kmod 30's on 6.1 and 0.5x kmod 34's on 6.12.
"""

import argparse
import json
import lzma
import math
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VM = os.path.join(ROOT, "test", "vm")
sys.path.insert(0, VM)
import mkinitrd  # noqa: E402
import run_vm  # noqa: E402

KMOD_FOR = {"6.1": "kmod30", "6.12": "kmod34"}
GOAL_WALL = {"6.1": 0.25, "6.12": 0.5}
ROW_RE = re.compile(r"^@@ROW (.*)$", re.M)
CALL_RE = re.compile(r"^@@CALL (\S+) (\d+) (\S+) (\S+) (\S+) (\d+) (\S+)$", re.M)
KV_RE = re.compile(r'(\w+)=("[^"]*"|\S*)')


def kvs(s):
    return {k: v.strip('"') for k, v in KV_RE.findall(s)}


def module_files(moddir):
    files = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            rel = line.split(":", 1)[0]
            name = re.sub(r"\.ko(\..*)?$", "", os.path.basename(rel)).replace("-", "_")
            files[name] = os.path.join(moddir, rel)
    return files


_sizes = {}


def decompressed_size(path):
    if path not in _sizes:
        if path.endswith(".xz"):
            with lzma.open(path) as f:
                _sizes[path] = len(f.read())
        elif path.endswith(".zst"):
            _sizes[path] = len(subprocess.run(["zstd", "-dc", path], stdout=subprocess.PIPE,
                                              check=True).stdout)
        else:
            _sizes[path] = os.path.getsize(path)
    return _sizes[path]


def modname(target):
    s = re.sub(r"_\(deleted\)$", "", target)
    s = s.rsplit("/", 1)[-1]
    s = re.sub(r"^memfd:", "", s)
    s = re.sub(r"\.ko.*$", "", s)
    return s.replace("-", "_")


def call_bytes(call, files):
    """Bytes one call handed over (see the module docstring) and its module."""
    if call["syscall"] == "init_module":
        return call["arg"], None
    target = call["target"]
    m = modname(target)
    path = files.get(m)
    if path is None:
        return 0, m
    if "memfd:" in target:
        return decompressed_size(path), m
    return os.path.getsize(path), m


def image_for(tree, kmod, ns, module, build, cache):
    k = run_vm.kernel_for_tree(tree, cache)
    img = mkinitrd.Initrd()
    img.add_bin(os.path.join(build, "src", "daemon", "modloadd"), "/usr/sbin/modloadd")
    img.add_bin(os.path.join(build, "src", "ctl", "modloadctl"), "/usr/bin/modloadctl")
    img.add_bin(shutil.which("strace") or "/usr/bin/strace", "/usr/bin/strace")
    if kmod == "kmod30":
        img.add_bin("/sbin/modprobe")
    else:
        root = os.path.join(cache, "userland", "kmod-trixie")
        img.add_foreign(root, "/usr/bin/kmod", "/opt/kmod34", links=["/sbin/modprobe"],
                        extra_libs=["libzstd.so.1*", "liblzma.so.5*", "libz.so.1*"])
    img.add_modules(k.tree, k.kver)
    img.set_scenario(os.path.join(HERE, "bench-storm.sh"))
    img.set_env({"NS": " ".join(str(n) for n in ns), "MODULE": module})
    return k, img


def analyse(tree, out, files, want):
    rows = {}
    for line in ROW_RE.findall(out):
        r = kvs(line)
        rows[(r["tool"], int(r["n"]))] = r
    calls = {}
    for tool, n, sc, target, flag, arg, ret in CALL_RE.findall(out):
        calls.setdefault((tool, int(n)), []).append(
            {"syscall": sc, "target": target, "flag": flag, "arg": int(arg), "ret": ret})
    result = []
    for (tool, n), r in sorted(rows.items(), key=lambda x: (x[0][1], x[0][0] != "kmod")):
        cs = calls.get((tool, n), [])
        total = 0
        unique = {}
        for c in cs:
            b, m = call_bytes(c, files)
            total += b
            if c["ret"] == "0":
                unique[m or ("init#%d" % len(unique))] = b
        loaded = set(r.get("modules", "").split()) - set(want.get("base", []))
        result.append({
            "kernel": tree, "tool": tool, "n": n,
            "kernel_calls": len(cs),
            "init_module": sum(1 for c in cs if c["syscall"] == "init_module"),
            "finit_module": sum(1 for c in cs if c["syscall"] == "finit_module"),
            "eexist": sum(1 for c in cs if c["ret"] == "EEXIST"),
            "errors": sorted({c["ret"] for c in cs if c["ret"] not in ("0", "EEXIST")}),
            "ok_calls": sum(1 for c in cs if c["ret"] == "0"),
            "bytes": total,
            "unique_modules": len(loaded),
            "unique_bytes": sum(unique.values()),
            "wall_ms": float(r["wall_ms"]), "cpu_ms": float(r["cpu_ms"]),
            "failed": int(r["failed"]), "missing": r.get("missing", ""),
        })
    return result


def fmt_bytes(b):
    return "%.2f MB" % (b / 1e6)


def write_markdown(path, rows, infos, goals, args, seconds):
    L = ["# modloadd vs modprobe: concurrent loads of `%s`" % args.module, ""]
    L.append("Measured by `bench/bench-storm.py --kernels %s --n %s --module %s` in qemu "
             "(TCG, -smp 2, -cpu max, %d MiB); %.0f s in all."
             % (",".join(args.kernels), ",".join(map(str, args.n)), args.module, args.mem, seconds))
    L.append("")
    for tree, info in infos.items():
        L.append("- %s: %s" % (tree, info))
    L += ["", "| kernel | N | tool | kernel calls | EEXIST | bytes to kernel | unique modules / bytes "
              "| wall ms | CPU ms | wall ratio | CPU ratio | failed |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {(r["kernel"], r["n"]): r for r in rows if r["tool"] != "modloadd"}
    for r in rows:
        k = base.get((r["kernel"], r["n"]))
        wr = cr = ""
        if r["tool"] == "modloadd" and k and k["wall_ms"] > 0:
            wr = "%.2f" % (r["wall_ms"] / k["wall_ms"])
            cr = "%.2f" % (r["cpu_ms"] / k["cpu_ms"]) if k["cpu_ms"] > 0 else ""
        errs = (" (+%s)" % ",".join(r["errors"])) if r["errors"] else ""
        L.append("| %s | %d | %s | %d%s | %d | %s | %d / %s | %.0f | %.0f | %s | %s | %d%s |"
                 % (r["kernel"], r["n"], r["tool"], r["kernel_calls"], errs, r["eexist"],
                    fmt_bytes(r["bytes"]), r["unique_modules"], fmt_bytes(r["unique_bytes"]),
                    r["wall_ms"], r["cpu_ms"], wr, cr, r["failed"],
                    (" missing: " + r["missing"]) if r["missing"] else ""))
    L += ["", "Ratios are modloadd / modprobe at the same N. Bytes: init_module's length; "
              "finit_module on a memfd: the module's decompressed size; on a .ko.xz with "
              "MODULE_INIT_COMPRESSED_FILE: the file's size (what was offered; kernels >= 6.5 "
              "let concurrent callers of one inode wait instead of reading it again).", "",
          "## Goals", ""]
    for g in goals:
        L.append("- %s: **%s** (%s)" % (g[0], "met" if g[1] else "NOT met", g[2]))
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def svg_plot(path, rows, kernels):
    """Wall time and kernel calls against N (log2 axis), both tools, per kernel."""
    W, H, pw, ph, ml, mt = 980, 640, 380, 220, 80, 50
    colors = {"kmod": "#c0392b", "modloadd": "#2471a3"}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>']
    metrics = [("wall_ms", "wall time (ms)"), ("kernel_calls", "kernel calls")]
    for ci, tree in enumerate(kernels):
        for ri, (key, label) in enumerate(metrics):
            x0 = ml + ci * (pw + 100)
            y0 = mt + ri * (ph + 80)
            rs = [r for r in rows if r["kernel"] == tree]
            if not rs:
                continue
            ns = sorted({r["n"] for r in rs})
            ymax = max(r[key] for r in rs) or 1
            ymax *= 1.1
            lx = [math.log2(n) for n in ns]
            xmin, xmax = min(lx), max(lx)
            if xmax == xmin:
                xmax = xmin + 1

            def X(n):
                return x0 + (math.log2(n) - xmin) / (xmax - xmin) * pw

            def Y(v):
                return y0 + ph - v / ymax * ph
            out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>'
                       % (x0, y0, pw, ph))
            kl = "kmod %s" % KMOD_FOR.get(tree.split("-")[0], "?")[4:]
            out.append('<text x="%d" y="%d" font-weight="bold">%s: %s</text>'
                       % (x0, y0 - 10, tree, label))
            for i in range(5):
                v = ymax * i / 4
                out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>'
                           % (x0, x0 + pw, Y(v), Y(v)))
                out.append('<text x="%d" y="%.1f" text-anchor="end">%.0f</text>' % (x0 - 5, Y(v) + 4, v))
            for n in ns:
                out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (X(n), y0 + ph + 16, n))
            out.append('<text x="%d" y="%d" text-anchor="middle">N concurrent callers</text>'
                       % (x0 + pw / 2, y0 + ph + 34))
            for li, tool in enumerate(("kmod", "modloadd")):
                pts = sorted((r["n"], r[key]) for r in rs if r["tool"] == tool)
                if not pts:
                    continue
                out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                           % (colors[tool], " ".join("%.1f,%.1f" % (X(n), Y(v)) for n, v in pts)))
                for n, v in pts:
                    out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (X(n), Y(v), colors[tool]))
                name = kl if tool == "kmod" else "modloadd"
                out.append('<text x="%d" y="%d" fill="%s">%s</text>'
                           % (x0 + 10, y0 + 16 + 14 * li, colors[tool], name))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", default="6.1-xz,6.12-xz",
                   type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--n", default="1,8,32,128", type=lambda s: [int(x) for x in s.split(",") if x])
    p.add_argument("--module", default="btrfs")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--build", default=os.path.join(ROOT, "build"),
                   help="meson build folder with src/daemon/modloadd and src/ctl/modloadctl")
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--mem", type=int, default=2048, help="guest MiB (2048: 128 concurrent "
                   "modprobes hold a copy of the chain each)")
    p.add_argument("--timeout", type=float, default=2400, help="per boot, seconds")
    p.add_argument("--from-logs", action="store_true",
                   help="do not boot: analyse the console-TREE.log files already in --out")
    p.add_argument("--verbose", "-v", action="store_true")
    a = p.parse_args(argv)
    for t in a.kernels:
        if t.split("-")[0] not in KMOD_FOR:
            p.error("unknown kernel %s (6.1-*, 6.12-*)" % t)
    os.makedirs(a.out, exist_ok=True)
    if not a.from_logs:
        subprocess.run([os.path.join(VM, "fetch-kernels.sh"), a.cache], stdout=subprocess.DEVNULL,
                       check=True)
    start = time.monotonic()
    rows, infos = [], {}
    failed = False
    for tree in a.kernels:
        kmod = KMOD_FOR[tree.split("-")[0]]
        k, img = image_for(tree, kmod, a.n, a.module, a.build, a.cache)
        log = os.path.join(a.out, "console-%s.log" % tree)
        print("== %s (%s), N = %s" % (tree, kmod, ",".join(map(str, a.n))), flush=True)
        try:
            if a.from_logs:
                with open(log, errors="replace") as f:
                    text = f.read().replace("\r", "")
                em = re.search(r"^@@VM-EXIT (\d+)$", text, re.M)
                res = run_vm.Result(int(em.group(1)) if em else 125, text, 0, log, 0)
            else:
                res = run_vm.run(img, k.vmlinuz, timeout=a.timeout, log=log, echo=a.verbose,
                                 smp=2, mem=a.mem, extra_args=["-cpu", "max"])
        except run_vm.VMError as e:
            print("%s: VM FAILED: %s" % (tree, e))
            failed = True
            continue
        m = re.search(r"^@@INFO (.*)$", res.output, re.M)
        infos[tree] = m.group(1) if m else "?"
        for e in re.findall(r"^@@ERROR (.*)$", res.output, re.M):
            print("%s: %s" % (tree, e))
            failed = True
        moddir = os.path.join(k.tree, "lib", "modules", k.kver)
        m = re.search(r'^@@WANT (.*)$', res.output, re.M)
        want = {"base": kvs(m.group(1)).get("base", "").split() if m else []}
        rs = analyse(tree, res.output, module_files(moddir), want)
        for r in rs:
            r["kmod"] = kmod
            print("  %-8s N=%-4d calls=%-4d EEXIST=%-4d bytes=%-12d unique=%d/%d wall=%.0fms cpu=%.0fms failed=%d%s"
                  % (r["tool"], r["n"], r["kernel_calls"], r["eexist"], r["bytes"], r["unique_modules"],
                     r["unique_bytes"], r["wall_ms"], r["cpu_ms"], r["failed"],
                     " errors=" + ",".join(r["errors"]) if r["errors"] else ""), flush=True)
        rows += rs
        if res.rc != 0:
            print("%s: scenario exit %d" % (tree, res.rc))
            failed = True

    goals = []
    for tree in a.kernels:
        kv = tree.split("-")[0]
        ml = [r for r in rows if r["kernel"] == tree and r["tool"] == "modloadd"]
        if ml:
            ok = all(r["ok_calls"] == r["kernel_calls"] == r["unique_modules"] and r["eexist"] == 0
                     and r["bytes"] == r["unique_bytes"] for r in ml)
            goals.append(("%s: modloadd kernel calls and bytes == unique modules at every N" % tree, ok,
                          "; ".join("N=%d: %d calls/%d modules, %d/%d bytes" % (
                              r["n"], r["kernel_calls"], r["unique_modules"], r["bytes"], r["unique_bytes"])
                              for r in ml)))
        k32 = [r for r in rows if r["kernel"] == tree and r["tool"] == "kmod" and r["n"] == 32]
        m32 = [r for r in ml if r["n"] == 32]
        if k32 and m32:
            ratio = m32[0]["wall_ms"] / k32[0]["wall_ms"]
            goals.append(("%s: wall time at N=32 <= %.2fx %s's" % (tree, GOAL_WALL[kv], KMOD_FOR[kv]),
                          ratio <= GOAL_WALL[kv], "measured %.2fx: %.0f ms vs %.0f ms"
                          % (ratio, m32[0]["wall_ms"], k32[0]["wall_ms"])))
    seconds = time.monotonic() - start
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"rows": rows, "goals": [{"goal": g[0], "met": g[1], "detail": g[2]} for g in goals],
                   "info": infos}, f, indent=1)
    write_markdown(os.path.join(a.out, "results.md"), rows, infos, goals, a, seconds)
    svg_plot(os.path.join(a.out, "storm.svg"), rows, a.kernels)
    print("\nGoals:")
    for g in goals:
        print("  %-70s %s  (%s)" % (g[0], "met" if g[1] else "NOT met", g[2]))
    print("wrote %s/results.md, results.json, storm.svg (%.0f s)" % (a.out, seconds))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
