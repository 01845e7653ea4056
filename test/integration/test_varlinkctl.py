#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""modloadd against systemd 257's varlinkctl, unmodified."""

import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import INTERFACE, SERVICE, T  # noqa: E402

SANITIZER_MARKERS = re.compile(r"ERROR SUMMARY: [1-9]|definitely lost: [1-9]|"
                               r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                               r"runtime error:")


def run(argv, timeout=None, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, timeout=timeout or T(30), **kw)


class Varlinkctl(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.vc = harness.varlinkctl_cmd()

    def varlinkctl(self, *args, check=True, timeout=None):
        argv = self.vc + ["--no-pager"] + list(args)
        r = run(argv, timeout)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        if check and r.returncode != 0:
            self.fail("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                      % (" ".join(shlex.quote(a) for a in args), r.returncode, out, err))
        return r.returncode, out, err

    def addresses(self):
        return (self.sock, "unix:" + self.sock)

    def test_info(self):
        for addr in self.addresses():
            with self.subTest(addr=addr):
                _, out, _ = self.varlinkctl("info", addr)
                for k in ("Vendor:", "Product:", "Version:", "URL:", "Interfaces:",
                          SERVICE, INTERFACE):
                    self.assertIn(k, out)

    def test_list_interfaces(self):
        _, out, _ = self.varlinkctl("list-interfaces", self.sock)
        self.assertEqual(sorted(out.split()), sorted([SERVICE, INTERFACE]))

    def test_introspect(self):
        for addr in self.addresses():
            with self.subTest(addr=addr):
                _, out, _ = self.varlinkctl("introspect", addr, INTERFACE)
                self.assertIn("interface io.modloadd.Manager", out)
                self.assertIn("method GetStatistics", out)
                self.assertIn("method Monitor", out)
                self.assertIn("error TooManySubscribers", out)

    def test_call_get_statistics(self):
        for addr in self.addresses():
            with self.subTest(addr=addr):
                _, out, _ = self.varlinkctl("call", "--json=short", addr,
                                            INTERFACE + ".GetStatistics", "{}")
                s = json.loads(out)
                for k in harness.STAT_FIELDS:
                    self.assertIs(type(s.get(k)), int, k)

    def test_call_get_info(self):
        _, out, _ = self.varlinkctl("call", "--json=short", self.sock, SERVICE + ".GetInfo", "{}")
        p = json.loads(out)
        self.assertEqual(p["interfaces"], [SERVICE, INTERFACE])

    def test_call_unknown_method(self):
        rc, out, err = self.varlinkctl("call", self.sock, INTERFACE + ".Nope", "{}", check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("org.varlink.service.MethodNotFound", err)

    def test_call_permission_semantics(self):
        rc, out, err = self.varlinkctl("call", self.sock, INTERFACE + ".Load",
                                       '{"names":["btrfs"]}', check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("org.varlink.service.MethodNotImplemented", err)

    def test_call_more_monitor(self):
        argv = self.vc + ["--no-pager", "call", "--more", "--json=short", "--timeout=infinity",
                          "unix:" + self.sock, INTERFACE + ".Monitor", "{}"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        lines = queue.Queue()

        def reader():
            for line in p.stdout:
                lines.put(line)
            lines.put(None)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            first = lines.get(timeout=T(10))
            if first is None:
                self.fail("varlinkctl exited: %r" % p.stderr.read())
            self.assertEqual(json.loads(first.lstrip(b"\x1e")), {"ready": True})
            with harness.connect(self.sock) as c:
                c.roundtrip(INTERFACE + ".GetStatistics", {})
            second = lines.get(timeout=T(10))
            if second is None:
                self.fail("varlinkctl exited: %r" % p.stderr.read())
            self.assertEqual(json.loads(second.lstrip(b"\x1e")), {"event": {
                "kind": "call", "method": INTERFACE + ".GetStatistics",
                "uid": 0, "pid": os.getpid()}})
            self.assertIsNone(p.poll(), "varlinkctl --more exited early")
        finally:
            p.kill()
            p.wait()
            t.join(5)
            p.stdout.close()
            p.stderr.close()

    def test_validate_idl(self):
        self.varlinkctl("validate-idl", harness.IDL_PATH)

    def test_validate_served_idl(self):
        with harness.connect(self.sock) as c:
            desc = c.roundtrip(SERVICE + ".GetInterfaceDescription",
                               {"interface": INTERFACE})["parameters"]["description"]
        path = self.tmp.join("served.varlink")
        with open(path, "w") as f:
            f.write(desc)
        self.varlinkctl("validate-idl", path)


class VarlinkctlExec(unittest.TestCase):
    """varlinkctl starting the daemon itself on a connected fd 3 (exec:)."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.vc = harness.varlinkctl_cmd()

    def setUp(self):
        harness.daemon_path()
        self.tmp = harness.TempDir()

    def tearDown(self):
        self.tmp.cleanup()

    def make_script(self, name):
        pidfile = self.tmp.join(name + ".pid")
        errfile = self.tmp.join(name + ".stderr")
        script = self.tmp.join(name + ".sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n"
                    "echo $$ >%s\n"
                    "exec 2>>%s\n"
                    "exec %s\n" % (shlex.quote(pidfile), shlex.quote(errfile),
                                   " ".join(shlex.quote(a) for a in harness.daemon_command())))
        os.chmod(script, 0o755)
        return script, pidfile, errfile

    def exec_run(self, name, *args):
        script, pidfile, errfile = self.make_script(name)
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(k, None)
        r = run(self.vc + ["--no-pager"] + [a.replace("@ADDR@", "exec:" + script) for a in args],
                env=env)
        with open(pidfile) as f:
            pid = int(f.read())
        gone = harness.wait_until(lambda: not harness.pid_alive(pid), T(10))
        try:
            with open(errfile) as f:
                daemon_err = f.read()
        except OSError:
            daemon_err = ""
        msg = "varlinkctl %s: exit %d\nstdout:\n%s\nstderr:\n%s\ndaemon stderr:\n%s" % (
            " ".join(args), r.returncode, r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"), daemon_err)
        self.assertEqual(r.returncode, 0, msg)
        self.assertTrue(gone, "daemon pid %d still running after varlinkctl returned\n%s" % (pid, msg))
        self.assertIsNone(SANITIZER_MARKERS.search(daemon_err), msg)
        return r.stdout.decode()

    def test_exec_call(self):
        out = self.exec_run("call", "call", "--json=short", "@ADDR@", INTERFACE + ".GetStatistics", "{}")
        s = json.loads(out)
        for k in harness.STAT_FIELDS:
            self.assertIs(type(s.get(k)), int, k)
        self.assertEqual(s["connections"], 1)

    def test_exec_introspect(self):
        out = self.exec_run("introspect", "introspect", "@ADDR@", INTERFACE)
        self.assertIn("interface io.modloadd.Manager", out)
        self.assertIn("method GetStatistics", out)

    def test_exec_info(self):
        out = self.exec_run("info", "info", "@ADDR@")
        self.assertIn(INTERFACE, out)


if __name__ == "__main__":
    harness.main()
