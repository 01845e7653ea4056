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

    def test_call_error_parameters(self):
        rc, out, err = self.varlinkctl("call", "--json=short", self.sock, INTERFACE + ".Describe",
                                       '{"name":"modloadd-test-no-such-module"}', check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn(INTERFACE + ".ModuleNotFound", err)
        self.assertEqual(json.loads(out), {"name": "modloadd-test-no-such-module"})

    def test_call_requires_more(self):
        rc, out, err = self.varlinkctl("call", self.sock, INTERFACE + ".Monitor", "{}", check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn(SERVICE + ".ExpectedMore", err)

    def test_call_load_dry_run(self):
        harness.require_root()
        _, out, _ = self.varlinkctl("call", "--json=short", self.sock, INTERFACE + ".Load",
                                    '{"names":["modloadd-test-no-such-module"],"dryRun":true}')
        outcomes = json.loads(out)["outcomes"]
        self.assertEqual([o["name"] for o in outcomes], ["modloadd-test-no-such-module"])
        self.assertEqual(outcomes[0]["result"], "notFound")

    def test_call_oneway(self):
        rc, out, err = self.varlinkctl("call", "--oneway", self.sock, INTERFACE + ".GetStatistics", "{}")
        self.assertEqual(out.strip(), "")

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
                "uid": os.getuid(), "pid": os.getpid()}})
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


# The exec: target used to check how the daemon ends: it starts the daemon
# (behind the wrapper, if any) as its child on the fd 3 varlinkctl passed,
# with LISTEN_PID naming the child, and records the child's wait status.
# varlinkctl sends SIGTERM when it is done; the supervisor does not pass it
# on, so the daemon has to notice the EOF on fd 3 and exit by itself.
SUPERVISOR = """#!%(python)s
import json, os, signal, sys
seen = []
def note(sig, frame):
    seen.append(sig)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, note)
argv = %(argv)r
pid = os.fork()
if pid == 0:
    fd = os.open(%(stderr)r, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(argv[0], argv)
while True:
    try:
        _, status = os.waitpid(pid, 0)
        break
    except InterruptedError:
        pass
with open(%(result)r + ".tmp", "w") as f:
    json.dump({"pid": pid, "status": status, "signals": seen}, f)
os.rename(%(result)r + ".tmp", %(result)r)
"""


def processes_with_marker(marker):
    needle = ("MODLOADD_TEST_MARKER=" + marker).encode() + b"\0"
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env and harness.pid_alive(int(d)):
            found.append(int(d))
    return found


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

    def direct_target(self):
        """The daemon itself, or a script exec'ing wrapper + daemon."""
        if not harness.wrapper_prefix():
            return harness.daemon_path()
        script = self.tmp.join("exec-wrapper.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexec 2>>%s\nexec %s\n" % (
                shlex.quote(self.tmp.join("exec.stderr")),
                " ".join(shlex.quote(a) for a in harness.daemon_command())))
        os.chmod(script, 0o755)
        return script

    def varlinkctl_exec(self, target, *args, leak_check=False):
        marker = os.urandom(8).hex()
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(k, None)
        if not leak_check:
            # varlinkctl ends its exec: child with SIGTERM+SIGCONT while the
            # daemon may already be exiting at EOF; a SIGCONT that lands in
            # LeakSanitizer's ptrace attach cancels the stop it waits for and
            # the daemon hangs for good.  Leaks on this path are checked by
            # test_exec_exits_at_eof, where the signals go to the supervisor.
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
            env["LSAN_OPTIONS"] = env.get("LSAN_OPTIONS", "") + ":detect_leaks=0"
        env["MODLOADD_TEST_MARKER"] = marker
        argv = self.vc + ["--no-pager"] + [a.replace("@ADDR@", "exec:" + target) for a in args]
        r = run(argv, env=env)
        left = harness.wait_until(lambda: not processes_with_marker(marker), T(10))
        msg = "varlinkctl %s: exit %d\nstdout:\n%s\nstderr:\n%s\ndaemon stderr:\n%s" % (
            " ".join(args), r.returncode, r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"), self.daemon_stderr())
        self.assertEqual(r.returncode, 0, msg)
        self.assertTrue(left, "exec: daemon still running after varlinkctl returned: pids %s\n%s"
                        % (processes_with_marker(marker), msg))
        self.assertIsNone(SANITIZER_MARKERS.search(self.daemon_stderr()), msg)
        return r.stdout.decode()

    def daemon_stderr(self):
        try:
            with open(self.tmp.join("exec.stderr"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def test_exec_call(self):
        out = self.varlinkctl_exec(self.direct_target(), "call", "--json=short", "@ADDR@",
                                   INTERFACE + ".GetStatistics", "{}")
        s = json.loads(out)
        for k in harness.STAT_FIELDS:
            self.assertIs(type(s.get(k)), int, k)
        self.assertEqual(s["connections"], 1)

    def test_exec_introspect(self):
        out = self.varlinkctl_exec(self.direct_target(), "introspect", "@ADDR@", INTERFACE)
        self.assertIn("interface io.modloadd.Manager", out)
        self.assertIn("method GetStatistics", out)

    def test_exec_info(self):
        out = self.varlinkctl_exec(self.direct_target(), "info", "@ADDR@")
        self.assertIn(INTERFACE, out)

    def test_exec_exits_at_eof(self):
        script = self.tmp.join("supervisor.py")
        result = self.tmp.join("supervisor.json")
        with open(script, "w") as f:
            f.write(SUPERVISOR % {"python": sys.executable, "argv": harness.daemon_command(),
                                  "stderr": self.tmp.join("exec.stderr"), "result": result})
        os.chmod(script, 0o755)
        out = self.varlinkctl_exec(script, "call", "--json=short", "@ADDR@",
                                   INTERFACE + ".GetStatistics", "{}", leak_check=True)
        self.assertIn("calls", json.loads(out))
        self.assertTrue(harness.wait_until(lambda: os.path.exists(result), T(10)),
                        "the exec: daemon did not exit\n" + self.daemon_stderr())
        with open(result) as f:
            res = json.load(f)
        self.assertTrue(os.WIFEXITED(res["status"]) and os.WEXITSTATUS(res["status"]) == 0,
                        "exec: daemon ended with wait status %#x\n%s" % (res["status"], self.daemon_stderr()))
        self.assertFalse(harness.pid_alive(res["pid"]))


if __name__ == "__main__":
    harness.main()
