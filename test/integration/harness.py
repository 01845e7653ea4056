# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared helpers for the modloadd integration tests.

Environment:
  MODLOADD_DAEMON          path of the daemon binary (required)
  MODLOADD_DAEMON_WRAPPER  optional command prefix for every daemon start,
                           e.g. "valgrind --error-exitcode=99 --leak-check=full --quiet"
  MODLOADD_SOURCE_ROOT     source tree (default: two levels above this file)
  MODLOADD_TEST_CACHE      cache for the Debian 13 peers (varlinkctl 257,
                           python3-varlink); fetched with test/fetch-tools.sh
                           when missing (default as fetch-tools.sh:
                           $XDG_CACHE_HOME/modloadd-test)
  MODLOADD_TEST_TIMEOUT_SCALE  multiply every timeout (default 1, or 5 when
                           a wrapper is set)
"""

import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("MODLOADD_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
IDL_PATH = os.path.join(SOURCE_ROOT, "src", "varlink", "io.modloadd.Manager.varlink")
INTERFACE = "io.modloadd.Manager"
SERVICE = "org.varlink.service"
NOBODY = 65534
MAX_MESSAGE = 1048576

STAT_FIELDS = (
    "requests", "sharedRequests", "modulesInserted", "kernelCalls", "kernelEEXIST",
    "bytesDecompressed", "bytesToKernel", "bytesAvoided", "resolveCacheHits",
    "failures", "notFound", "uptimeSec", "connections", "connectionsTotal",
    "connectionsRefused", "calls", "protocolErrors",
)


def _scale():
    s = os.environ.get("MODLOADD_TEST_TIMEOUT_SCALE")
    if s:
        return float(s)
    return 5.0 if wrapper_prefix() else 1.0


def wrapper_prefix():
    return shlex.split(os.environ.get("MODLOADD_DAEMON_WRAPPER", ""))


def T(seconds):
    """A timeout, scaled for slow runs (valgrind)."""
    return seconds * _scale()


READY_TIMEOUT = 60.0


def daemon_path():
    p = os.environ.get("MODLOADD_DAEMON")
    if not p:
        raise RuntimeError("MODLOADD_DAEMON is not set (path of the daemon binary to test)")
    p = os.path.abspath(p)
    if not os.access(p, os.X_OK):
        raise RuntimeError("MODLOADD_DAEMON=%s is not executable" % p)
    return p


def daemon_command(*args):
    """The full argv for one daemon start: wrapper, daemon, args."""
    prefix = wrapper_prefix()
    if prefix:
        exe = shutil.which(prefix[0])
        if exe:
            prefix[0] = exe
    return prefix + [daemon_path()] + list(args)


# Variables a socket activator strips but the daemon under test may need
# (sanitizer and valgrind settings, library paths).
PASS_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS",
            "TSAN_OPTIONS", "VALGRIND_OPTS", "LD_LIBRARY_PATH", "LD_PRELOAD",
            "SYSTEMD_LOG_LEVEL", "MODLOADD_LOG_LEVEL")


def passthrough_env():
    return {k: os.environ[k] for k in PASS_ENV if k in os.environ}


# ---------------------------------------------------------------------------
# Debian 13 peers

_tools_root = None


def tools_root():
    """Root of the unpacked Debian 13 tree (varlinkctl, python3-varlink)."""
    global _tools_root
    if _tools_root:
        return _tools_root
    cache = os.environ.get("MODLOADD_TEST_CACHE")
    if not cache:
        # the same default as test/fetch-tools.sh
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache = os.path.join(xdg, "modloadd-test")
    root = os.path.join(cache, "trixie-root")
    if not os.path.exists(os.path.join(root, ".complete-v1")):
        fetch = os.path.join(os.path.dirname(HERE), "fetch-tools.sh")
        r = subprocess.run(["sh", fetch, cache], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise unittest.SkipTest("fetching the Debian 13 tools failed:\n" + r.stderr.decode(errors="replace"))
        cache = r.stdout.decode().strip().splitlines()[-1]
        root = os.path.join(cache, "trixie-root")
    _tools_root = root
    return root


def varlinkctl_cmd():
    r = tools_root()
    lib = os.path.join(r, "usr/lib/x86_64-linux-gnu")
    ld = os.path.join(lib, "ld-linux-x86-64.so.2")
    exe = os.path.join(r, "usr/bin/varlinkctl")
    if not os.path.exists(exe) or not os.path.exists(ld):
        raise unittest.SkipTest("varlinkctl not found in " + r)
    return [ld, "--library-path", lib + ":" + os.path.join(lib, "systemd"), exe]


def python_varlink_path():
    p = os.path.join(tools_root(), "usr/lib/python3/dist-packages")
    if not os.path.isdir(os.path.join(p, "varlink")):
        raise unittest.SkipTest("python3-varlink not found in " + p)
    return p


# ---------------------------------------------------------------------------
# Temporary directory reachable by an unprivileged uid


def require_root():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root (unprivileged peers, root-only methods)")


def _reachable_base():
    """A temp base every uid can traverse, short enough for socket paths."""
    base = tempfile.gettempdir()
    if len(base) > 60:
        return "/tmp"
    p = os.path.abspath(base)
    while True:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return "/tmp"
        except OSError:
            return "/tmp"
        if p == "/":
            return base
        p = os.path.dirname(p)


class TempDir:
    def __init__(self):
        base = _reachable_base()
        self.path = tempfile.mkdtemp(prefix="modloadd-it-", dir=base)
        os.chmod(self.path, 0o755)

    def join(self, *p):
        return os.path.join(self.path, *p)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------
# sd_notify receiver


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.messages = []

    def wait_for(self, line, timeout, proc=None):
        """Wait for a datagram carrying LINE (e.g. b"READY=1")."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages:
                if line in m.split(b"\n"):
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if proc is not None and proc.poll() is not None:
                # Drain what is queued, then give up.
                left = 0.05
            self.sock.settimeout(min(left, 0.2))
            try:
                data = self.sock.recv(65536)
                self.messages.append(data)
            except socket.timeout:
                if proc is not None and proc.poll() is not None:
                    for m in self.messages:
                        if line in m.split(b"\n"):
                            return True
                    return False

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# Daemon process


class Daemon:
    """One daemon process, started with --listen=SOCK (or by an activator)."""

    def __init__(self, tmp, name="d", args=(), listen=True, sock=None, argv=None, env=None):
        self.tmp = tmp
        self.name = name
        self.sock = sock or tmp.join(name + ".sock")
        self.notify = NotifySocket(tmp.join(name + ".notify"))
        self.stderr_path = tmp.join(name + ".stderr")
        self.stdout_path = tmp.join(name + ".stdout")
        if argv is None:
            argv = daemon_command(*((["--listen=" + self.sock] if listen else []) + list(args)))
        self.argv = argv
        self.env = dict(os.environ)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            self.env.pop(k, None)
        self.env["NOTIFY_SOCKET"] = self.notify.path
        if env:
            self.env.update(env)
        self.proc = None
        self.returncode = None

    def start(self, wait_ready=True):
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, close_fds=True)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        if not self.notify.wait_for(b"READY=1", timeout, self.proc):
            rc = self.proc.poll()
            raise AssertionError("daemon did not send READY=1 within %ss (exit status %s)\n%s"
                                 % (timeout, rc, self.describe()))

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def describe(self):
        return "command: %s\n--- daemon stderr ---\n%s--- end ---" % (
            " ".join(shlex.quote(a) for a in self.argv), self.stderr())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, check=True):
        """SIGTERM, wait, and (with check) require exit status 0."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.wait_exit(T(20))
            if rc is None:
                self.proc.kill()
                self.proc.wait()
                self.notify.close()
                raise AssertionError("daemon did not exit within %ss of SIGTERM\n%s"
                                     % (T(20), self.describe()))
        self.returncode = self.proc.returncode
        self.notify.close()
        if check and self.returncode != 0:
            raise AssertionError("daemon exited with status %s\n%s" % (self.returncode, self.describe()))
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


# ---------------------------------------------------------------------------
# Raw client


class Dropped(Exception):
    """The daemon closed the connection."""


def encode(msg):
    if isinstance(msg, (bytes, bytearray)):
        return bytes(msg)
    return json.dumps(msg, separators=(",", ":")).encode() + b"\0"


def call_msg(method, parameters=None, **flags):
    m = {"method": method}
    if parameters is not None:
        m["parameters"] = parameters
    m.update(flags)
    return m


class Conn:
    def __init__(self, path=None, sock=None, timeout=None):
        self.timeout = timeout if timeout is not None else T(10)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.buf = b""
        self.eof = False

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        """Send raw bytes or one message (dict, NUL appended)."""
        self.sock.settimeout(self.timeout)
        self.sock.sendall(encode(data))

    def call(self, method, parameters=None, **flags):
        self.send(call_msg(method, parameters, **flags))

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
        self.buf += d
        return d

    def recv_raw(self, timeout=None):
        """One NUL-terminated message as bytes (without the NUL)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            if self.eof:
                raise Dropped("connection closed by the daemon (pending bytes: %r)" % self.buf[:200])
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete reply within %ss (have %r)" % (timeout, self.buf[:200]))
            self._fill(left)
        raw, self.buf = self.buf.split(b"\0", 1)
        return raw

    def recv(self, timeout=None):
        raw = self.recv_raw(timeout)
        try:
            return json.loads(raw)
        except ValueError as e:
            raise AssertionError("reply is not JSON: %r (%s)" % (raw[:300], e))

    def roundtrip(self, method, parameters=None, **flags):
        self.call(method, parameters, **flags)
        return self.recv()

    def wait_eof(self, timeout=None):
        """True if the daemon closes the connection (EOF or reset) within
        TIMEOUT with no bytes sent to us; raises if data arrives."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.eof:
            if self.buf:
                raise AssertionError("expected the connection to be dropped, got data: %r" % self.buf[:300])
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except socket.timeout:
                return False
        if self.buf:
            raise AssertionError("expected the connection to be dropped, got data: %r" % self.buf[:300])
        return True

    def expect_silence(self, timeout):
        """Nothing arrives (and no EOF) within TIMEOUT."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf:
                raise AssertionError("unexpected data: %r" % self.buf[:300])
            if self.eof:
                raise AssertionError("connection unexpectedly closed")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._fill(left)
            except socket.timeout:
                return


def connect(path, timeout=None):
    return Conn(path, timeout=timeout)


def connect_as(path, uid=NOBODY, gid=NOBODY, count=1):
    """COUNT sockets connected to PATH by a child running as UID/GID.

    The peer credentials the daemon sees are the child's (taken at connect());
    the connected fds are handed back over SCM_RIGHTS so the test keeps them
    after the child exits.  Returns a list of Conn (a connect() that failed is
    reported as an exception)."""
    require_root()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            parent.close()
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            for i in range(count):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(30)
                try:
                    s.connect(path)
                except OSError as e:
                    child.sendall(b"E" + str(e).encode()[:200].ljust(200))
                    code = 1
                    break
                socket.send_fds(child, [b"F"], [s.fileno()])
                child.recv(1)  # ack: keeps one fd per message
                s.close()
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    child.close()
    conns = []
    err = None
    try:
        parent.settimeout(T(30))
        while len(conns) < count:
            msg, fds, _, _ = socket.recv_fds(parent, 256, 1)
            if not msg:
                break
            if msg.startswith(b"E"):
                err = msg[1:].decode(errors="replace").strip()
                break
            s = socket.socket(fileno=fds[0])
            conns.append(Conn(sock=s))
            parent.sendall(b"A")
    finally:
        parent.close()
        _, status = os.waitpid(pid, 0)
    if err or len(conns) < count:
        for c in conns:
            c.close()
        raise OSError("connect as uid %d failed after %d connections: %s (child status %s)"
                      % (uid, len(conns), err, status))
    return conns


def get_info_ok(reply):
    return (isinstance(reply, dict) and set(reply) == {"parameters"}
            and reply["parameters"].get("interfaces") == [SERVICE, INTERFACE])


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def wait_socket_file(path, timeout):
    return wait_until(lambda: os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode), timeout)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        return st != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Test case base


class DaemonTestCase(unittest.TestCase):
    """Each test gets a fresh temp dir and daemon; after the test, a new
    client must still get a GetInfo answer, and the daemon must exit 0 on
    SIGTERM."""

    daemon_args = ()
    maxDiff = None

    def setUp(self):
        self.tmp = TempDir()
        self.daemon = Daemon(self.tmp, args=self.daemon_args)
        self._conns = []
        try:
            self.daemon.start()
        except BaseException:
            self.daemon.kill()
            self.tmp.cleanup()
            raise
        self.sock = self.daemon.sock

    def tearDown(self):
        try:
            for c in self._conns:
                c.close()
            if self._outcome_ok():
                self.assert_serving()
            else:
                sys.stderr.write("\n" + self.daemon.describe() + "\n")
        except BaseException:
            sys.stderr.write("\n" + self.daemon.describe() + "\n")
            self.daemon.kill()
            self.tmp.cleanup()
            raise
        try:
            self.daemon.stop(check=True)  # its message carries the daemon's stderr
        except BaseException:
            self.daemon.kill()
            raise
        finally:
            self.tmp.cleanup()

    def _outcome_ok(self):
        return getattr(getattr(self, "_outcome", None), "success", True)

    def conn(self, timeout=None):
        c = connect(self.sock, timeout=timeout)
        self._conns.append(c)
        return c

    def conns_as(self, count=1, uid=NOBODY):
        cs = connect_as(self.sock, uid, uid, count)
        self._conns.extend(cs)
        return cs

    def assert_serving(self):
        with connect(self.sock) as c:
            r = c.roundtrip(SERVICE + ".GetInfo")
            self.assertTrue(get_info_ok(r), "GetInfo on a new connection: %r" % (r,))

    def stats(self, c=None):
        own = c is None
        if own:
            c = connect(self.sock)
        try:
            r = c.roundtrip(INTERFACE + ".GetStatistics", {})
        finally:
            if own:
                c.close()
        self.assertEqual(set(r), {"parameters"}, r)
        return r["parameters"]

    def assertReply(self, reply, expected):
        self.assertEqual(reply, expected)

    def assertError(self, reply, name, parameters=None):
        self.assertEqual(reply, {"error": name, "parameters": parameters or {}})


def main():
    unittest.main(verbosity=2)
