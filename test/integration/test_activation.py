#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""How modloadd starts and stops: socket activation (listening socket and a
connected fd 3), --listen, idle exit, SIGTERM, sd_notify, a second instance
and a stale socket file."""

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import INTERFACE, SERVICE, T  # noqa: E402


# Move the fd in argv[1] to 3, set LISTEN_PID to our pid, exec the rest.
FD3_EXEC = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execvp(sys.argv[2], sys.argv[2:])
"""


class Base(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        harness.daemon_path()
        self.tmp = harness.TempDir()
        self.daemons = []

    def tearDown(self):
        try:
            failed = not getattr(getattr(self, "_outcome", None), "success", True)
            for d in self.daemons:
                if failed:
                    sys.stderr.write("\n" + d.describe() + "\n")
                d.kill()
        finally:
            self.tmp.cleanup()

    def track(self, d):
        self.daemons.append(d)
        return d

    def listen_daemon(self, name="d", args=(), sock=None, start=True, wait_ready=True):
        d = self.track(harness.Daemon(self.tmp, name=name, args=args, sock=sock))
        if start:
            d.start(wait_ready=wait_ready)
        return d

    def activated_daemon(self, name="a", args=()):
        sa = shutil.which("systemd-socket-activate")
        if not sa:
            self.skipTest("systemd-socket-activate not installed")
        sock = self.tmp.join(name + ".sock")
        notify = self.tmp.join(name + ".notify")
        argv = [sa, "-l", sock, "--fdname=varlink", "-E", "NOTIFY_SOCKET=" + notify]
        for k, v in harness.passthrough_env().items():
            argv += ["-E", "%s=%s" % (k, v)]
        argv += ["--"] + harness.daemon_command(*args)
        d = self.track(harness.Daemon(self.tmp, name=name, argv=argv, sock=sock))
        d.start(wait_ready=False)
        self.assertTrue(harness.wait_socket_file(sock, T(10)),
                        "systemd-socket-activate did not create %s\n%s" % (sock, d.describe()))
        return d

    def assert_get_info(self, c):
        r = c.roundtrip(SERVICE + ".GetInfo", {})
        self.assertTrue(harness.get_info_ok(r), r)

    def assert_exits(self, d, timeout, status=0):
        rc = d.wait_exit(timeout)
        self.assertIsNotNone(rc, "daemon still running after %ss\n%s" % (timeout, d.describe()))
        if status is not None:
            self.assertEqual(rc, status, d.describe())
        return rc


class SocketActivation(Base):
    def test_idle_exit(self):
        d = self.activated_daemon(args=["--idle-timeout=2"])
        c = harness.connect(d.sock)  # starts the daemon
        d.wait_ready()
        self.assert_get_info(c)
        # A connected client keeps it alive well past the idle timeout.
        time.sleep(4)
        self.assertTrue(d.alive(), "daemon exited while a client was connected\n" + d.describe())
        self.assert_get_info(c)
        c.close()
        t0 = time.monotonic()
        self.assert_exits(d, T(10) + 2)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 1.5, "exited %.2fs after the last client left" % elapsed)
        # The listening socket belongs to the activator; the daemon leaves it.
        self.assertTrue(os.path.exists(d.sock), "socket-activated daemon removed the socket file")

    def test_default_idle_timeout(self):
        d = self.activated_daemon()
        with harness.connect(d.sock) as c:
            d.wait_ready()
            self.assert_get_info(c)
        time.sleep(3)
        self.assertTrue(d.alive(), "socket-activated daemon exited within 3s by default\n" + d.describe())
        with harness.connect(d.sock) as c:
            self.assert_get_info(c)
        d.stop(check=True)

    def test_serves_many_from_activation_socket(self):
        d = self.activated_daemon(args=["--idle-timeout=30"])
        cs = [harness.connect(d.sock) for _ in range(5)]
        d.wait_ready()
        for c in cs:
            self.assert_get_info(c)
            c.close()
        d.stop(check=True)

    def test_connected_fd3(self):
        """What varlinkctl exec: does: a connected socket as fd 3 and
        LISTEN_FDS=1; the daemon serves it and exits at EOF."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        high = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD, 10)
        theirs.close()
        notify = harness.NotifySocket(self.tmp.join("fd3.notify"))
        env = dict(os.environ)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(k, None)
        env["LISTEN_FDS"] = "1"
        env["NOTIFY_SOCKET"] = notify.path
        errpath = self.tmp.join("fd3.stderr")
        cmd = harness.daemon_command()
        with open(errpath, "wb") as err:
            p = subprocess.Popen([sys.executable, "-c", FD3_EXEC, str(high)] + cmd,
                                 env=env, pass_fds=(high,), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err)
        os.close(high)

        def stderr():
            with open(errpath) as f:
                return f.read()
        try:
            c = harness.Conn(sock=ours)
            self.assert_get_info(c)
            s = c.roundtrip(INTERFACE + ".GetStatistics", {})["parameters"]
            self.assertEqual(s["connections"], 1)
            ours.shutdown(socket.SHUT_WR)
            self.assertTrue(c.wait_eof(T(10)), "daemon did not close its end after our EOF")
            rc = p.wait(timeout=T(10))
            self.assertEqual(rc, 0, stderr())
        except BaseException:
            sys.stderr.write("\n--- daemon stderr ---\n" + stderr())
            raise
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            ours.close()
            notify.close()


class ListenMode(Base):
    def test_ready_notification(self):
        d = self.listen_daemon()
        self.assertTrue(any(b"READY=1" in m.split(b"\n") for m in d.notify.messages))
        # Ready means ready: the socket answers right away.
        with harness.connect(d.sock) as c:
            self.assert_get_info(c)
        d.stop(check=True)

    def test_idle_timeout(self):
        d = self.listen_daemon(args=["--idle-timeout=1"])
        t0 = time.monotonic()
        self.assert_exits(d, T(10) + 1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertFalse(os.path.lexists(d.sock), "socket file left behind after idle exit")

    def test_idle_timeout_waits_for_clients(self):
        d = self.listen_daemon(args=["--idle-timeout=1"])
        c = harness.connect(d.sock)
        self.assert_get_info(c)
        time.sleep(2.5)
        self.assertTrue(d.alive(), "daemon exited while a client was connected\n" + d.describe())
        self.assert_get_info(c)
        c.close()
        self.assert_exits(d, T(10) + 1)
        self.assertFalse(os.path.lexists(d.sock))

    def test_sigterm(self):
        d = self.listen_daemon()
        with harness.connect(d.sock) as c:
            self.assert_get_info(c)
            d.stop(check=True)
        self.assertFalse(os.path.lexists(d.sock), "socket file left behind after SIGTERM")

    def test_sigterm_with_clients(self):
        d = self.listen_daemon()
        cs = [harness.connect(d.sock) for _ in range(3)]
        for c in cs:
            self.assert_get_info(c)
        cs[0].call(INTERFACE + ".Monitor", {}, more=True)
        cs[0].recv()
        d.stop(check=True)
        for c in cs:
            self.assertTrue(c.wait_eof(T(5)))
            c.close()

    def test_second_instance(self):
        d1 = self.listen_daemon("first")
        d2 = self.listen_daemon("second", sock=d1.sock, start=False)
        d2.start(wait_ready=False)
        rc = d2.wait_exit(T(10))
        self.assertIsNotNone(rc, "second daemon on the same socket did not exit\n" + d2.describe())
        self.assertNotEqual(rc, 0, d2.describe())
        self.assertTrue(d2.stderr().strip(), "second daemon exited without an error message")
        self.assertTrue(os.path.exists(d1.sock), "second daemon removed the first one's socket")
        with harness.connect(d1.sock) as c:
            self.assert_get_info(c)
        d1.stop(check=True)

    def test_stale_socket_replaced(self):
        path = self.tmp.join("stale.sock")
        pid = os.fork()
        if pid == 0:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(path)
                s.listen(1)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        self.assertTrue(os.path.exists(path))
        with self.assertRaises(ConnectionRefusedError):
            harness.connect(path)
        d = self.listen_daemon("d", sock=path)
        with harness.connect(path) as c:
            self.assert_get_info(c)
        d.stop(check=True)
        self.assertFalse(os.path.lexists(path))

    def test_socket_mode(self):
        """Unprivileged clients must be able to connect."""
        d = self.listen_daemon()
        (c,) = harness.connect_as(d.sock, count=1)
        with c:
            self.assert_get_info(c)
        d.stop(check=True)


if __name__ == "__main__":
    harness.main()
