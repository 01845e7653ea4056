#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""modloadd as the system's module loader: a whole Debian 12 system booted
in qemu with systemd 252 as PID 1, modloadd installed by `meson install` and
switched on as documented:

    systemctl enable modloadd.socket
    systemctl mask systemd-modules-load.service
    systemctl enable modloadd-modules-load.service
    ln -s /usr/share/modloadd/80-drivers.rules /etc/udev/rules.d/80-drivers.rules

plus a drop-in that runs the daemon with --idle-timeout=5s, a modules-load.d
list (fixtures/modules-load-test.conf) and qemu devices whose drivers are
modules (virtio-net x3, virtio-rng/-balloon/-serial/-scsi/-keyboard/-mouse,
the PIIX IDE controller and CD-ROM). A unit that runs after
multi-user.target (scenario-system.sh) collects the facts; this script
checks them:

  socket-listening       modloadd.socket is active and its socket file exists
  idle-exit-after-boot   once boot settled the service went inactive by
                         itself (exit 0) and the socket kept listening
  socket-activation      a request (modloadctl status) started a new instance
  modules-load           every module listed was loaded at boot through the
                         daemon ("Inserted M ... for pid <modules-load pid>"),
                         modloadd-modules-load.service succeeded, the masked
                         systemd-modules-load.service never ran
  udev-coldplug          drivers of the VM's devices were inserted by the
                         daemon for callers other than modules-load (udev)
  udev-shared-at-boot    at least one of those loads had several callers
                         waiting on it (one load answered them all)
  udev-statistics        replaying the coldplug (udevadm trigger): the
                         daemon's GetStatistics counts the requests, shared
                         answers > 0, no EEXIST, nothing loaded twice; the
                         monitor saw requests from many udev-spawned pids
  idle-exit-after-request the instance started by requests exits when idle
  varlinkctl             systemd 257's varlinkctl info/introspect/call work
                         against /run/modloadd/io.modloadd.Manager
  no-failed-units        systemctl --failed is empty

Needs root (debootstrap, once, cached), qemu, meson. Exit status 0 when
everything passed, 1 otherwise, 77 (skip) when a tool is missing.

Usage: test/system/test-system.py [--source-root DIR] [--workdir DIR]
           [--cache DIR] [--log FILE] [--timeout S] [-v]
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sysimage  # noqa: E402

IDLE = 5
IDLE_MARGIN = 15         # the wait may include systemctl round trips under TCG
UDEV_DRIVERS = ["virtio_net", "virtio_balloon", "virtio_console", "virtio_scsi",
                "virtio_input", "evdev", "ata_piix"]
INSERTED_RE = re.compile(r"modloadd\[\d+\]: Inserted (\S+) in \d+ ms for pid (\d+) \(uid \d+\), "
                         r"(\d+) caller\(s\) waiting")


def norm(name):
    return name.replace("-", "_")


def fixture_modules(path):
    mods = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                mods.append(norm(line))
    return mods


class Checker:
    def __init__(self):
        self.results = []

    def check(self, name, ok, detail):
        self.results.append((name, bool(ok), detail))

    def report(self):
        w = max(len(n) for n, _, _ in self.results)
        for name, ok, detail in self.results:
            print("%-4s %-*s  %s" % ("PASS" if ok else "FAIL", w, name, detail))
        passed = sum(1 for _, ok, _ in self.results if ok)
        failed = len(self.results) - passed
        print("\n%d passed, %d failed" % (passed, failed))
        return failed == 0


def judge(kv, blocks, listed):
    c = Checker()
    g = kv.get

    def block(name):
        return blocks.get(name, (-1, ""))

    c.check("socket-listening",
            g("socket.ActiveState") == "active" and g("socket.SubState") in ("listening", "running")
            and g("socket_file") == "yes",
            "modloadd.socket %s/%s, socket file %s" % (g("socket.ActiveState"), g("socket.SubState"),
                                                       g("socket_file")))

    try:
        idle_wait = float(g("idle_wait", "inf"))
    except ValueError:
        idle_wait = float("inf")
    c.check("idle-exit-after-boot",
            g("idle.ActiveState") == "inactive" and g("idle.Result") == "success"
            and g("idle.ExecMainStatus") == "0" and idle_wait <= IDLE + IDLE_MARGIN
            and g("idle_socket.SubState") == "listening" and g("idle_socket_file") == "yes",
            "service %s at settle, %s (result %s, status %s) %.1f s later; socket %s, file %s"
            % (g("service_at_settle"), g("idle.ActiveState"), g("idle.Result"),
               g("idle.ExecMainStatus"), idle_wait, g("idle_socket.SubState"), g("idle_socket_file")))

    rc, text = block("status_json")
    try:
        json.loads(text)
        parsed = True
    except ValueError:
        parsed = False
    c.check("socket-activation",
            g("activation_before") == "inactive" and g("activation_after") == "active"
            and g("activation_inv_before") != g("activation_inv_after") and rc == 0 and parsed,
            "service %s -> modloadctl status (exit %d) -> %s, new invocation %s"
            % (g("activation_before"), rc, g("activation_after"),
               g("activation_inv_before") != g("activation_inv_after")))

    proc = {line.split()[0] for line in block("proc_modules")[1].splitlines() if line.strip()}
    inserted = []           # (module, pid, waiting)
    for m in INSERTED_RE.finditer(block("journal_daemon")[1]):
        inserted.append((norm(m.group(1)), m.group(2), int(m.group(3))))
    ml_pid = g("ml.ExecMainPID")
    by_ml = {mod for mod, pid, _ in inserted if pid == ml_pid}
    missing_proc = [m for m in listed if m not in proc]
    missing_journal = [m for m in listed if m not in by_ml]
    c.check("modules-load",
            g("ml.Result") == "success" and g("ml.ExecMainStatus") == "0"
            and g("ml.ActiveState") == "active" and g("sml.LoadState") == "masked"
            and g("sml.ExecMainStartTimestampMonotonic") == "0" and not missing_proc
            and not missing_journal,
            "modloadd-modules-load %s/%s status %s; systemd-modules-load %s, started at %s; "
            "not in /proc/modules: %s; no 'Inserted ... for pid %s' line: %s"
            % (g("ml.ActiveState"), g("ml.Result"), g("ml.ExecMainStatus"), g("sml.LoadState"),
               g("sml.ExecMainStartTimestampMonotonic"), missing_proc or "-", ml_pid,
               missing_journal or "-"))

    udev = [(mod, pid, w) for mod, pid, w in inserted if pid != ml_pid]
    udev_mods = {mod for mod, _, _ in udev}
    udev_pids = {pid for _, pid, _ in udev}
    missing = [m for m in UDEV_DRIVERS if m not in udev_mods or m not in proc]
    c.check("udev-coldplug",
            not missing and len(udev_pids) >= 2,
            "%d modules inserted for %d other callers at boot; missing: %s"
            % (len(udev_mods), len(udev_pids), missing or "-"))

    shared = sorted("%s(%d)" % (mod, w) for mod, _, w in udev if w > 1)
    c.check("udev-shared-at-boot", shared,
            "loads with several callers waiting: %s" % (", ".join(shared) or "none"))

    rc, text = block("status_json_trigger")
    try:
        st = json.loads(text)
    except ValueError:
        st = {}
    req_pids = set()
    n_req = 0
    for line in block("monitor_requests")[1].splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        n_req += 1
        if "pid" in ev:
            req_pids.add(ev["pid"])
    n_shared_ans = 0
    for line in block("monitor_answered")[1].splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        n_shared_ans += 1 if ev.get("shared") else 0
    c.check("udev-statistics",
            rc == 0 and st.get("requests", 0) > 0 and st.get("sharedRequests", 0) > 0
            and st.get("kernelEEXIST", 1) == 0 and st.get("modulesInserted", 1) == 0
            and g("trigger_inv_before") == g("trigger_inv_after")
            and n_req == st.get("requests") and len(req_pids) >= 2,
            "requests %s, sharedRequests %s, modulesInserted %s, kernelCalls %s, kernelEEXIST %s, "
            "failures %s; monitor: %d requests from %d pids, %d shared answers; one instance: %s"
            % (st.get("requests"), st.get("sharedRequests"), st.get("modulesInserted"),
               st.get("kernelCalls"), st.get("kernelEEXIST"), st.get("failures"), n_req,
               len(req_pids), n_shared_ans, g("trigger_inv_before") == g("trigger_inv_after")))

    try:
        idle2 = float(g("idle2_wait", "inf"))
    except ValueError:
        idle2 = float("inf")
    c.check("idle-exit-after-request",
            g("idle2.ActiveState") == "inactive" and g("idle2.Result") == "success"
            and g("idle2.ExecMainStatus") == "0" and idle2 <= IDLE + IDLE_MARGIN
            and g("idle2_socket.SubState") == "listening",
            "%s (result %s) %.1f s after the last client left; socket %s"
            % (g("idle2.ActiveState"), g("idle2.Result"), idle2, g("idle2_socket.SubState")))

    irc, itext = block("varlinkctl_introspect")
    frc, ftext = block("varlinkctl_info")
    crc, ctext = block("varlinkctl_stats")
    c.check("varlinkctl",
            irc == 0 and "interface io.modloadd.Manager" in itext and "method Load(" in itext
            and frc == 0 and "io.modloadd.Manager" in ftext and crc == 0 and '"requests"' in ctext,
            "introspect exit %d (%d lines), info exit %d, call GetStatistics exit %d"
            % (irc, len(itext.splitlines()), frc, crc))

    frc, ftext = block("failed_units")
    c.check("no-failed-units", frc == 0 and not ftext.strip(),
            "failed: %s" % (" ".join(l.split()[0] for l in ftext.splitlines() if l.strip()) or "none"))
    return c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source-root", default=os.path.join(HERE, "..", ".."))
    p.add_argument("--workdir", help="build and image folder (default: a temporary one)")
    p.add_argument("--cache", default=None)
    p.add_argument("--log", help="write the serial console here")
    p.add_argument("--timeout", type=float, default=900, help="VM wall clock limit, seconds")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the console")
    a = p.parse_args(argv)

    for tool in ("qemu-system-x86_64", "meson", "debootstrap", "cpio"):
        if not shutil.which(tool):
            print("SKIP: %s not installed (test/install-deps.sh)" % tool)
            return 77
    if os.geteuid() != 0:
        print("SKIP: building the Debian root needs root (debootstrap)")
        return 77
    cache = sysimage.cache_dir(a.cache)
    t0 = time.monotonic()
    try:
        sysimage.prepare_cache(cache)
    except (OSError, sysimage.SetupError) as e:
        print("FAIL: %s" % e)
        return 1
    t_cache = time.monotonic() - t0

    tmp = None
    workdir = a.workdir
    if not workdir:
        tmp = tempfile.TemporaryDirectory(prefix="modloadd-system-")
        workdir = tmp.name
    os.makedirs(workdir, exist_ok=True)
    log = a.log or os.path.join(workdir, "console.log")
    fixture = os.path.join(HERE, "fixtures", "modules-load-test.conf")
    try:
        t1 = time.monotonic()
        img = sysimage.SystemImage(a.source_root, workdir, cache)
        img.install_modloadd()
        img.enable_modloadd(idle_timeout="%ds" % IDLE)
        img.add_modules()
        img.add_varlinkctl()
        img.add_file(fixture, "/etc/modules-load.d/test.conf", 0o644)
        with open(os.path.join(HERE, "scenario-system.sh")) as f:
            img.add_scenario(f.read(), env={"IDLE": IDLE})
        t_image = time.monotonic() - t1
        print("== booting (cache %.1f s, build+image %.1f s)" % (t_cache, t_image))
        sys.stdout.flush()
        res = img.boot(timeout=a.timeout, log=log, echo=a.verbose)
    except sysimage.SetupError as e:
        print("FAIL: setup: %s" % e)
        return 1
    except sysimage.run_vm.VMError as e:
        print("FAIL: VM: %s" % e)
        return 1

    kv, blocks = sysimage.parse(res.output)
    c = judge(kv, blocks, fixture_modules(fixture))
    print("== boot to scenario %.1f s (guest uptime %s s, %s), VM %.1f s, scenario exit %d"
          % (res.boot_seconds or 0, kv.get("scenario_start"),
             (blocks.get("analyze", (0, ""))[1].splitlines() or ["?"])[0].strip(),
             res.seconds, res.rc))
    ok = c.report() and res.rc == 0
    if not ok and not a.verbose:
        print("\n--- console (without the long blocks) ---")
        skip = False
        for line in res.output.splitlines():
            if line.startswith("@@BEGIN ") and line.split()[1] in ("varlinkctl_introspect",
                                                                  "monitor_requests",
                                                                  "monitor_answered"):
                skip = True
            if not skip:
                print("  | " + line)
            if line.startswith("@@END "):
                skip = False
    if tmp:
        tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
