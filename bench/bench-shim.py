#!/usr/bin/env python3
"""Latency of one modprobe request for a module that is already loaded, in qemu.

Boots the Debian 12 kernel (6.1, xz module tree) with modloadd running and
dummy loaded, then runs the same command line many times, one after the
other, with:
  shim       the modprobe shim (modloadctl as "modprobe"), forwarded to modloadd
  kmod       kmod 30's modprobe (the host's, copied into the guest)
  shim-local the shim with modloadd stopped (in-process path)
Each run is timed from fork to exit inside the guest by a small C helper
compiled here. Prints median, 10th and 90th percentile and mean per program.
The guest runs under TCG (software emulation): compare the programs with each
other, not with figures from real hardware.

Usage: bench/bench-shim.py --modloadctl build/src/ctl/modloadctl
           --modloadd build/src/daemon/modloadd [--runs 200] [--module dummy]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test", "vm"))
import mkinitrd  # noqa: E402
import run_vm  # noqa: E402

TIMER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>

static int cmp(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* timer LABEL RUNS PROGRAM ARGS... */
int main(int argc, char **argv) {
        int runs = atoi(argv[2]), failed = 0;
        double *t = calloc(runs, sizeof(double)), sum = 0;
        for (int i = 0; i < runs; i++) {
                struct timespec a, b;
                int status;
                clock_gettime(CLOCK_MONOTONIC, &a);
                pid_t pid = fork();
                if (pid == 0) {
                        int fd = open("/dev/null", O_WRONLY);
                        dup2(fd, 1);
                        dup2(fd, 2);
                        execv(argv[3], argv + 3);
                        _exit(127);
                }
                waitpid(pid, &status, 0);
                clock_gettime(CLOCK_MONOTONIC, &b);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        failed++;
                t[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
                sum += t[i];
        }
        qsort(t, runs, sizeof(double), cmp);
        printf("@@BENCH %s runs=%d failed=%d median=%.2f p10=%.2f p90=%.2f mean=%.2f\n", argv[1], runs, failed,
               t[runs / 2], t[runs / 10], t[runs * 9 / 10], sum / runs);
        return 0;
}
"""

SCENARIO = r"""
echo 1 >/proc/sys/kernel/printk
echo >/proc/sys/kernel/modprobe
mkdir -p /run/modloadd
/usr/sbin/modloadd >/tmp/modloadd.log 2>&1 &
DP=$!
for _ in $(seq 1 100); do [ -S /run/modloadd/io.modloadd.Manager ] && break; sleep 0.1; done
/opt/kmod/modprobe {module} || echo "@@NOTE could not load {module}"
/opt/shim/modprobe {module}; /opt/kmod/modprobe {module}
/usr/bin/bench-timer shim {runs} /opt/shim/modprobe {module}
/usr/bin/bench-timer kmod {runs} /opt/kmod/modprobe {module}
/usr/bin/bench-timer shim {runs} /opt/shim/modprobe {module}
/usr/bin/bench-timer kmod {runs} /opt/kmod/modprobe {module}
kill $DP; wait $DP
rm -f /run/modloadd/io.modloadd.Manager
/usr/bin/bench-timer shim-local {runs} /opt/shim/modprobe {module}
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modloadctl", required=True)
    p.add_argument("--modloadd", required=True)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--module", default="dummy")
    p.add_argument("--tree", default="6.1-xz")
    p.add_argument("--cache", default=run_vm.default_cache())
    p.add_argument("--smp", type=int, default=2)
    a = p.parse_args(argv)

    k = run_vm.kernel_for_tree(a.tree, a.cache)
    with tempfile.TemporaryDirectory(prefix="bench-shim-") as tmp:
        src = os.path.join(tmp, "timer.c")
        exe = os.path.join(tmp, "bench-timer")
        with open(src, "w") as f:
            f.write(TIMER_C)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", exe, src], check=True)
        img = mkinitrd.Initrd()
        img.add_bin(os.path.abspath(a.modloadctl), "/usr/bin/modloadctl")
        img.add_bin(os.path.abspath(a.modloadd), "/usr/sbin/modloadd")
        img.add_symlink("/opt/shim/modprobe", "/usr/bin/modloadctl")
        img.add_bin(os.path.realpath("/sbin/modprobe"), "/usr/bin/kmod")
        img.add_symlink("/opt/kmod/modprobe", "/usr/bin/kmod")
        img.add_bin(exe, "/usr/bin/bench-timer")
        img.add_modules(k.tree, k.kver)
        img.set_scenario_text(SCENARIO.format(module=a.module, runs=a.runs))
        res = run_vm.run(img, k.vmlinuz, timeout=600 + a.runs * 3, smp=a.smp)
    rows = re.findall(r"^@@BENCH (\S+) (.*)$", res.output, re.M)
    if not rows:
        print(res.output[-3000:])
        return 1
    print("modprobe %s (already loaded), %d runs each, %s under TCG, times in ms:" % (a.module, a.runs, a.tree))
    for label, figs in rows:
        print("  %-11s %s" % (label, figs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
