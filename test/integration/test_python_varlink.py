#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""modloadd against python3-varlink (Debian 13), its CLI and its library.
python3-varlink omits "parameters" when they are empty and parses the
interface description with its own scanner."""

import contextlib
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import INTERFACE, SERVICE, T  # noqa: E402


class Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds):
    def fire(*a):
        raise Deadline("no answer within %ss" % seconds)
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class PythonVarlinkCli(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pypath = harness.python_varlink_path()

    def cli(self, *args, check=True):
        env = dict(os.environ)
        env["PYTHONPATH"] = self.pypath
        r = subprocess.run([sys.executable, "-m", "varlink.cli"] + list(args), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=T(30))
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        if check and r.returncode != 0:
            self.fail("varlink.cli %s exited %d\nstdout:\n%s\nstderr:\n%s"
                      % (" ".join(args), r.returncode, out, err))
        return r.returncode, out, err

    def test_info(self):
        _, out, _ = self.cli("info", "unix:" + self.sock)
        for k in ("Vendor:", "Product:", "Version:", "URL:", "Interfaces:", SERVICE, INTERFACE):
            self.assertIn(k, out)

    def test_help(self):
        _, out, _ = self.cli("help", "unix:%s/%s" % (self.sock, INTERFACE))
        self.assertIn("interface io.modloadd.Manager", out)
        self.assertIn("method GetStatistics", out)

    def test_call(self):
        _, out, _ = self.cli("call", "unix:%s/%s.GetStatistics" % (self.sock, INTERFACE), "{}")
        s = json.loads(out)
        for k in harness.STAT_FIELDS:
            self.assertIs(type(s.get(k)), int, k)

    def test_call_error(self):
        # varlink.cli reports a method error on stderr (its exit status is 0).
        rc, out, err = self.cli("call", "unix:%s/%s.Monitor" % (self.sock, INTERFACE), "{}",
                                check=False)
        self.assertIn(SERVICE + ".ExpectedMore", err)

    def test_call_more(self):
        _, out, _ = self.cli("call", "--more", "unix:%s/%s.GetStatistics" % (self.sock, INTERFACE), "{}")
        self.assertIn('"calls"', out)


class PythonVarlinkLibrary(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        p = harness.python_varlink_path()
        if p not in sys.path:
            sys.path.insert(0, p)
        import varlink
        cls.varlink = varlink

    def test_get_statistics(self):
        with deadline(T(20)):
            with self.varlink.Client(address="unix:" + self.sock) as client:
                with client.open(INTERFACE) as con:
                    s = con.GetStatistics()
                    for k in harness.STAT_FIELDS:
                        self.assertIs(type(s.get(k)), int, k)
                    s2 = con.GetStatistics()
                    self.assertEqual(s2["calls"] - s["calls"], 1)

    def test_get_info(self):
        with deadline(T(20)):
            with self.varlink.Client(address="unix:" + self.sock) as client:
                ifaces = client.get_interfaces()
                self.assertEqual(sorted(ifaces), sorted([SERVICE, INTERFACE]))

    def test_error(self):
        with deadline(T(20)):
            with self.varlink.Client(address="unix:" + self.sock) as client:
                with client.open(INTERFACE) as con:
                    with self.assertRaises(self.varlink.VarlinkError) as cm:
                        con.Monitor()
                    self.assertEqual(cm.exception.error(), SERVICE + ".ExpectedMore")
                    with self.assertRaises(self.varlink.VarlinkError) as cm:
                        con.Describe("modloadd-test-no-such-module")
                    self.assertEqual(cm.exception.error(), INTERFACE + ".ModuleNotFound")
                    self.assertEqual(cm.exception.parameters(), {"name": "modloadd-test-no-such-module"})

    def test_typed_replies(self):
        """The library checks replies against our interface description."""
        with deadline(T(20)):
            with self.varlink.Client(address="unix:" + self.sock) as client:
                with client.open(INTERFACE) as con:
                    r = con.List()
                    self.assertIsInstance(r["modules"], list)
                    if os.geteuid() == 0:
                        r = con.Load(["modloadd-test-no-such-module"], dryRun=True)
                        self.assertEqual([o["name"] for o in r["outcomes"]],
                                         ["modloadd-test-no-such-module"])
                        self.assertEqual(r["outcomes"][0]["result"], "notFound")

    def test_oneway(self):
        with deadline(T(20)):
            with self.varlink.Client(address="unix:" + self.sock) as client:
                with client.open(INTERFACE) as con:
                    s1 = con.GetStatistics()
                    self.assertIsNone(con.GetStatistics(_oneway=True))
                    s2 = con.GetStatistics()
                    self.assertEqual(s2["calls"] - s1["calls"], 2)

    def test_monitor(self):
        with deadline(T(20)):
            with self.varlink.Client(address="unix:" + self.sock) as client:
                with client.open(INTERFACE) as con:
                    it = con.Monitor(_more=True)
                    first = next(it)
                    self.assertEqual(dict(first), {"ready": True})
                    with harness.connect(self.sock) as c:
                        c.roundtrip(INTERFACE + ".GetStatistics")
                    second = next(it)
                    self.assertEqual(json.loads(json.dumps(second)), {"event": {
                        "kind": "call", "method": INTERFACE + ".GetStatistics",
                        "uid": os.getuid(), "pid": os.getpid()}})
                    it.close()


if __name__ == "__main__":
    harness.main()
