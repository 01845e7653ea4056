#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The broker end to end: Load, Unload, Describe, List, Reload and the events
around them, against a Debian 12 module tree (xz) and the fake kernel
(LD_PRELOAD), which records every module system call in calls.log and never
loads anything into the kernel running the tests.

Usage: test_broker.py --fake-kernel PATH [--modloadctl PATH] [unittest options]
  --fake-kernel: the built fake kernel (also taken from $MODLOADD_FAKE_KERNEL);
  --modloadctl: the built modloadctl, for tests that run the modprobe shim
  (also $MODLOADD_CTL; else found next to the daemon's build directory).
The module tree comes from test/vm/fetch-kernels.sh (idempotent)."""

import json
import lzma
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import INTERFACE, SERVICE, T  # noqa: E402

E_PERM = SERVICE + ".PermissionDenied"
E_INVALID = SERVICE + ".InvalidParameter"
LOAD = INTERFACE + ".Load"
UNLOAD = INTERFACE + ".Unload"
DESCRIBE = INTERFACE + ".Describe"
LIST = INTERFACE + ".List"
RELOAD = INTERFACE + ".Reload"
MONITOR = INTERFACE + ".Monitor"
GETSTATS = INTERFACE + ".GetStatistics"
NO_SUCH_MODULE = "modloadd-test-no-such-module"
SUCCESS = {"inserted", "live", "builtin"}

FAKE_KERNEL = os.environ.get("MODLOADD_FAKE_KERNEL")
MODLOADCTL = os.environ.get("MODLOADD_CTL")


def modloadctl_path():
    """The built modloadctl: --modloadctl, $MODLOADD_CTL, or BUILD/src/ctl/modloadctl for the
    daemon at BUILD/src/daemon/modloadd."""
    p = MODLOADCTL
    if not p:
        build = os.path.dirname(os.path.dirname(os.path.dirname(harness.daemon_path())))
        p = os.path.join(build, "src", "ctl", "modloadctl")
    if not os.access(p, os.X_OK):
        raise unittest.SkipTest("modloadctl is not built (--modloadctl PATH): " + p)
    return os.path.abspath(p)


# ---------------------------------------------------------------------------
# The module tree

_tree = None


def module_tree(name="6.1-xz"):
    """lib/modules/KV of a tree made by test/vm/fetch-kernels.sh."""
    global _tree
    if _tree:
        return _tree
    fetch = os.path.join(harness.SOURCE_ROOT, "test", "vm", "fetch-kernels.sh")
    r = subprocess.run(["sh", fetch], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise unittest.SkipTest("fetching the module trees failed:\n" + r.stderr.decode(errors="replace")[-2000:])
    cache = r.stdout.decode().strip().splitlines()[-1]
    base = os.path.join(cache, "trees", name, "lib", "modules")
    kvs = os.listdir(base) if os.path.isdir(base) else []
    if len(kvs) != 1:
        raise unittest.SkipTest("no single kernel version in " + base)
    _tree = os.path.join(base, kvs[0])
    return _tree


def read_dep(tree):
    """modules.dep as {module name: (path, [dependency names])}."""
    def name_of(p):
        return os.path.basename(p).split(".", 1)[0].replace("-", "_")
    deps = {}
    with open(os.path.join(tree, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.strip().partition(":")
            deps[name_of(path)] = (os.path.join(tree, path), [name_of(d) for d in rest.split()])
    return deps


def read_aliases(tree, module, index="modules.alias"):
    out = []
    with open(os.path.join(tree, index)) as f:
        for line in f:
            w = line.split()
            if len(w) == 3 and w[0] == "alias" and w[2] == module:
                out.append(w[1])
    return out


# ---------------------------------------------------------------------------
# Fake kernel state


class FakeKernel:
    def __init__(self, path):
        self.dir = path
        os.makedirs(path, exist_ok=True)
        self.log = os.path.join(path, "calls.log")

    def lines(self):
        try:
            with open(self.log) as f:
                return [ln.split() for ln in f.read().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []

    def calls(self, kind=None, name=None):
        """finit/init/delete lines (not "hold" lines), as word lists."""
        return [w for w in self.lines()
                if w[0] in ("finit", "init", "delete") and (kind is None or w[0] == kind)
                and (name is None or w[1] == name)]

    def loads(self):
        return [w for w in self.lines() if w[0] in ("finit", "init")]

    def held(self, name=None):
        return [w for w in self.lines() if w[0] == "hold" and (name is None or w[1] == name)]

    def read_log(self, name):
        """The lines of params.log, init.log, ... ([] when there is none)."""
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def spans(self):
        """spans.log (FAKE_KERNEL_TIMES=1) as [(module, start_us, end_us)], in the order written."""
        out = []
        for ln in self.read_log("spans.log"):
            w = ln.split()
            if len(w) == 4 and w[0] == "span":
                out.append((w[1], int(w[2]), int(w[3])))
        return out

    # --- the emulated /sys/module (FAKE_KERNEL_SYSFS=1) --------------------

    def sysfs(self, module, *rest):
        return os.path.join(self.dir, "sys", "module", module, *rest)

    def state(self, module):
        """initstate of MODULE in the emulated sysfs: "live", "coming", ..., "builtin" (a
        directory without initstate) or None (not there)."""
        try:
            with open(self.sysfs(module, "initstate")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return "builtin" if os.path.isdir(self.sysfs(module)) else None

    def _write(self, path, text):
        # Whole or not at all, as sysfs shows a file: the daemon polls these.
        tmp = os.path.join(self.dir, "sys", ".test-%d-%s" % (os.getpid(), os.path.basename(path)))
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)

    def put_module(self, module, state, refcnt=0):
        """Make sys/module/MODULE appear at once (a rename), as another loader's or the kernel's."""
        os.makedirs(os.path.join(self.dir, "sys", "module"), exist_ok=True)
        new = os.path.join(self.dir, "sys", ".test-new-" + module)
        os.makedirs(os.path.join(new, "holders"))
        with open(os.path.join(new, "initstate"), "w") as f:
            f.write(state + "\n")
        with open(os.path.join(new, "refcnt"), "w") as f:
            f.write("%d\n" % refcnt)
        os.rename(new, self.sysfs(module))

    def set_state(self, module, state):
        self._write(self.sysfs(module, "initstate"), state + "\n")

    def set_refcnt(self, module, n):
        self._write(self.sysfs(module, "refcnt"), "%d\n" % n)

    def remove_module(self, module):
        """sys/module/MODULE goes away at once (a rename), as when a load fails."""
        gone = os.path.join(self.dir, "sys", ".test-gone-" + module)
        os.rename(self.sysfs(module), gone)
        shutil.rmtree(gone)


# ---------------------------------------------------------------------------
# Test case base


# Where the kernel running the tests could decompress xz itself, "auto" would
# hand it the file: ask for userspace decompression there, as on kernels
# without CONFIG_MODULE_DECOMPRESS.
KERNEL_DECOMPRESSES = os.path.exists("/sys/module/compression")
POLICY_ARGS = ("--policy=userspace",) if KERNEL_DECOMPRESSES else ()


class BrokerTestCase(harness.DaemonTestCase):
    """A daemon with the fake kernel preloaded and --module-dir of the xz tree.
    Subclasses set extra_args / extra_env; a test may restart the daemon with
    restart()."""

    extra_args = POLICY_ARGS
    extra_env = {}

    @classmethod
    def setUpClass(cls):
        if not FAKE_KERNEL or not os.path.exists(FAKE_KERNEL):
            raise unittest.SkipTest("the fake kernel is not built (--fake-kernel PATH)")
        cls.tree = module_tree()
        cls.deps = read_dep(cls.tree)

    def daemon_env(self, extra=None):
        env = {
            "FAKE_KERNEL_DIR": self.kernel.dir,
            "LD_PRELOAD": " ".join(p for p in (FAKE_KERNEL, os.environ.get("LD_PRELOAD")) if p),
            # The fake kernel comes first in the link order, before the ASan runtime.
            "ASAN_OPTIONS": ":".join(p for p in (os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if p),
            # loads wait while this file exists (close_gate, open_gate)
            "FAKE_KERNEL_GATE": self.gate,
        }
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def start_daemon(self, args=(), env=None, name="d", wait_ready=True):
        d = harness.Daemon(self.tmp, name=name,
                           args=["--module-dir=" + self.tree] + list(self.extra_args) + list(args),
                           env=self.daemon_env(env))
        try:
            d.start(wait_ready=wait_ready)
        except BaseException:
            d.kill()
            raise
        return d

    def daemon_options(self):
        """Extra (args, env) for the daemon setUp starts, made per test: may write files into
        self.tmp (modprobe.d, scripts) and use self.sock_path()."""
        return (), {}

    def sock_path(self, name="d"):
        """The socket the daemon started with NAME listens on (before it is started)."""
        return self.tmp.join(name + ".sock")

    def setUp(self):
        self.tmp = harness.TempDir()
        self.kernel = FakeKernel(self.tmp.join("kernel"))
        self.gate = self.tmp.join("gate")
        self._conns = []
        try:
            args, env = self.daemon_options()
            self.daemon = self.start_daemon(args, env)
        except BaseException:
            self.tmp.cleanup()
            raise
        self.sock = self.daemon.sock

    # --- helpers ----------------------------------------------------------

    def restart(self, args=(), env=None):
        """Replace the daemon of setUp by one with more options."""
        self.daemon.stop(check=True)
        self.daemon = self.start_daemon(args, env, name="d2")
        self.sock = self.daemon.sock

    def close_gate(self):
        with open(self.gate, "w"):
            pass

    def open_gate(self):
        try:
            os.unlink(self.gate)
        except FileNotFoundError:
            pass

    def tearDown(self):
        self.open_gate()
        super().tearDown()

    def monitor(self):
        m = self.conn(timeout=T(30))
        self.assertEqual(m.roundtrip(MONITOR, {}, more=True), {"parameters": {"ready": True}, "continues": True})
        return m

    def events(self, m, until, timeout=None):
        """Events from monitor connection M until UNTIL(list of events) is true."""
        deadline = time.monotonic() + (timeout or T(30))
        evs = []
        while not until(evs):
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("events so far: %s" % json.dumps(evs)[:3000])
            r = m.recv(timeout=left)
            self.assertEqual(r.get("continues"), True, r)
            evs.append(r["parameters"]["event"])
        return evs

    def wait_requests(self, m, n, timeout=None):
        """Wait for N "request" events on monitor connection M."""
        deadline = time.monotonic() + (timeout or T(60))
        seen = 0
        while seen < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("%d of %d request events" % (seen, n))
            r = m.recv(timeout=left)
            seen += r["parameters"]["event"]["kind"] == "request"

    def outcomes(self, r, names):
        self.assertEqual(set(r), {"parameters"}, r)
        self.assertEqual(set(r["parameters"]), {"outcomes"}, r)
        outs = r["parameters"]["outcomes"]
        self.assertEqual([o["name"] for o in outs], list(names), r)
        for o in outs:
            self.assertLessEqual({"name", "modules", "result", "shared"}, set(o), o)
            self.assertLessEqual(set(o), {"name", "modules", "result", "shared", "errno", "errnoName", "message"}, o)
        return outs

    def load(self, names, c=None, **opts):
        c = c or self.conn(timeout=T(30))
        p = {"names": list(names)}
        p.update(opts)
        return self.outcomes(c.roundtrip(LOAD, p), names)

    def plan_of(self, module):
        """What Describe says loading MODULE inserts, in order."""
        r = self.conn().roundtrip(DESCRIBE, {"name": module})
        self.assertEqual(set(r), {"parameters"}, r)
        return r["parameters"]["modules"]

    def waits_of(self, module):
        """What Describe says each step of loading MODULE waits for: {module: [modules]}."""
        r = self.conn().roundtrip(DESCRIBE, {"name": module})
        return {st["module"]: st.get("after", []) for st in r["parameters"]["steps"]}

    def assert_dependency_order(self, order, waits):
        """Every module of ORDER comes after all it waits for (and those are hard deps and more)."""
        for i, mod in enumerate(order):
            for before in waits[mod]:
                self.assertIn(before, order[:i], (mod, order))
        for mod, (_, deps) in self.deps.items():
            if mod in waits:
                self.assertTrue(set(deps) <= set(waits[mod]), (mod, deps, waits[mod]))

    def assert_one_finit_each(self, modules):
        counts = {}
        for w in self.kernel.loads():
            counts[w[1]] = counts.get(w[1], 0) + 1
        self.assertEqual(counts, {m: 1 for m in modules}, self.kernel.lines())

    def xz_size(self, module):
        with lzma.open(self.deps[module][0]) as f:
            return len(f.read())


# ---------------------------------------------------------------------------


class Concurrent(BrokerTestCase):
    def test_64_clients_one_load(self):
        aliases = read_aliases(self.tree, "btrfs")
        self.assertIn("fs-btrfs", aliases)
        modalias = [a for a in aliases if a.startswith("char-major-") or a.startswith("devname:")]
        self.assertTrue(modalias, aliases)
        names = ["btrfs", "fs-btrfs"] + modalias
        plan = self.plan_of("btrfs")
        self.assertEqual(plan[-1], "btrfs")
        for n in names:
            self.assertEqual(self.plan_of(n), plan, n)

        m = self.monitor()
        self.close_gate()
        clients = [self.conn(timeout=T(60)) for _ in range(64)]
        asked = [names[i % len(names)] for i in range(64)]
        for c, n in zip(clients, asked):
            c.call(LOAD, {"names": [n]})
        # Every request is in the daemon before the first load may finish.
        self.wait_requests(m, 64)
        self.assertTrue(harness.wait_until(lambda: self.kernel.held(), T(20)), self.kernel.lines())
        self.assertEqual(self.kernel.loads(), [])
        self.open_gate()

        shared = 0
        for c, n in zip(clients, asked):
            (o,) = self.outcomes(c.recv(timeout=T(60)), [n])
            self.assertEqual(o["result"], "inserted", o)
            self.assertEqual(o["modules"], plan, o)
            self.assertNotIn("errno", o)
            shared += o["shared"]
        self.assertEqual(shared, 63)

        self.assert_one_finit_each(plan)
        for w in self.kernel.loads():
            self.assertEqual(w[-1], "ok", w)
        s = self.stats()
        self.assertEqual(s["requests"], 64 + 0, s)
        self.assertGreaterEqual(s["sharedRequests"], 63, s)
        self.assertEqual(s["kernelEEXIST"], 0, s)
        self.assertEqual(s["kernelCalls"], len(plan), s)
        self.assertEqual(s["modulesInserted"], len(plan), s)
        self.assertEqual(s["failures"], 0, s)
        self.assertGreater(s["bytesAvoided"], 0, s)

    def test_rejected_module_every_caller_fails(self):
        bad = self.tmp.join("x.ko")
        with open(bad, "wb") as f:
            f.write(b"this is not an ELF object\n" * 64)
        m = self.monitor()
        self.close_gate()
        clients = [self.conn(timeout=T(60)) for _ in range(8)]
        for c in clients:
            c.call(LOAD, {"names": [bad]})
        self.wait_requests(m, 8)
        self.assertTrue(harness.wait_until(lambda: self.kernel.held("x"), T(20)), self.kernel.lines())
        self.open_gate()
        outs = []
        for c in clients:
            (o,) = self.outcomes(c.recv(timeout=T(60)), [bad])
            outs.append(o)
        for o in outs:
            self.assertEqual(o["result"], "failed", o)
            self.assertEqual(o["errnoName"], "ENOEXEC", o)
            self.assertEqual(o["errno"], 8, o)
            self.assertTrue(o.get("message"), o)
            self.assertEqual(o["message"], outs[0]["message"], o)
        self.assertEqual(sum(o["shared"] for o in outs), 7, outs)
        self.assertEqual(len(self.kernel.loads()), 1, self.kernel.lines())
        self.assertEqual(self.kernel.loads()[0][:2], ["finit", "x"])
        self.assertEqual(self.kernel.loads()[0][-1], "ENOEXEC")
        s = self.stats()
        self.assertEqual(s["failures"], 8, s)
        self.assertEqual(s["modulesInserted"], 0, s)

    def test_client_killed_mid_request(self):
        m = self.monitor()
        self.close_gate()
        gone = harness.connect(self.sock)
        gone.call(LOAD, {"names": ["xor"]})
        self.events(m, lambda evs: any(e["kind"] == "loadStarted" for e in evs))
        gone.close()
        self.assertTrue(harness.wait_until(lambda: self.kernel.held("xor"), T(20)), self.kernel.lines())
        # Someone else asks meanwhile: it joins the load the gone client started.
        c = self.conn(timeout=T(60))
        c.call(LOAD, {"names": ["xor"]})
        self.events(m, lambda evs: any(e["kind"] == "request" for e in evs))
        self.assertTrue(harness.get_info_ok(self.conn().roundtrip(SERVICE + ".GetInfo")))
        self.open_gate()
        (o,) = self.outcomes(c.recv(timeout=T(60)), ["xor"])
        self.assertEqual((o["result"], o["shared"]), ("inserted", True), o)
        self.assertTrue(harness.wait_until(lambda: self.kernel.calls("finit", "xor"), T(20)))
        self.assertEqual([w[-1] for w in self.kernel.loads()], ["ok"], self.kernel.lines())

    def test_client_killed_load_completes_alone(self):
        self.close_gate()
        gone = harness.connect(self.sock)
        gone.call(LOAD, {"names": ["xor"]})
        self.assertTrue(harness.wait_until(lambda: self.kernel.held("xor"), T(20)), self.kernel.lines())
        gone.close()
        self.assertTrue(harness.get_info_ok(self.conn().roundtrip(SERVICE + ".GetInfo")))
        self.open_gate()
        self.assertTrue(harness.wait_until(lambda: self.kernel.calls("finit", "xor"), T(20)),
                        self.kernel.lines())
        self.assertEqual(self.kernel.calls("finit", "xor")[0][-1], "ok")
        self.assertTrue(harness.wait_until(lambda: self.stats()["modulesInserted"] == 1, T(10)))
        s = self.stats()
        self.assertEqual((s["requests"], s["kernelCalls"]), (1, 1), s)

    def test_too_many_requests(self):
        m = self.monitor()
        self.close_gate()
        busy = []
        for _ in range(4):
            c = self.conn(timeout=T(120))
            c.call(LOAD, {"names": ["xor"] * 1024})
            busy.append(c)
        # 4096 names of uid 0 are pending: one more is refused, and that changes nothing.
        self.wait_requests(m, 4096, T(120))
        self.assertTrue(harness.wait_until(lambda: self.kernel.held("xor"), T(60)), self.kernel.lines())
        c = self.conn()
        self.assertError(c.roundtrip(LOAD, {"names": ["libcrc32c"]}), INTERFACE + ".TooManyRequests",
                         {"max": 4096})
        self.assertError(c.roundtrip(UNLOAD, {"names": ["libcrc32c"]}), INTERFACE + ".TooManyRequests",
                         {"max": 4096})
        self.open_gate()
        for b in busy:
            outs = self.outcomes(b.recv(timeout=T(120)), ["xor"] * 1024)
            self.assertEqual({o["result"] for o in outs}, {"inserted"})
        self.assertEqual(len(self.kernel.loads()), 1, self.kernel.lines())
        # Nothing pending now: accepted again.
        (o,) = self.load(["libcrc32c"], c)
        self.assertIn(o["result"], SUCCESS, o)


class Loads(BrokerTestCase):
    def test_userspace_decompression_memfd(self):
        # The tree is xz and this kernel reports no /sys/module/compression
        # (else --policy=userspace): the daemon decompresses and hands a
        # sealed memfd to finit_module.
        self.assertEqual(self.deps["xor"][1], [])
        (o,) = self.load(["xor"])
        self.assertEqual(o, {"name": "xor", "modules": ["xor"], "result": "inserted", "shared": False})
        size = self.xz_size("xor")
        self.assertEqual(self.kernel.loads(), [["finit", "xor", "0", str(size), "elf", "ok"]])
        s = self.stats()
        self.assertEqual((s["kernelCalls"], s["modulesInserted"], s["kernelEEXIST"]), (1, 1, 0), s)
        self.assertEqual(s["bytesDecompressed"], size, s)
        self.assertEqual(s["bytesToKernel"], size, s)

    def test_policy_kernel(self):
        # The compressed file itself, flagged MODULE_INIT_COMPRESSED_FILE (4).
        self.restart(["--policy=kernel"])
        (o,) = self.load(["xor"])
        self.assertEqual((o["result"], o["modules"]), ("inserted", ["xor"]), o)
        size = os.path.getsize(self.deps["xor"][0])
        self.assertEqual(self.kernel.loads(), [["finit", "xor", "4", str(size), "compressed", "ok"]])
        s = self.stats()
        self.assertEqual((s["bytesDecompressed"], s["bytesToKernel"]), (0, size), s)

    def test_parameters(self):
        # The caller's parameters go to the module asked for, not to its dependencies.
        (o,) = self.load(["fs-btrfs"], parameters="check_int=1 fs_info=2")
        self.assertEqual(o["result"], "inserted", o)
        with open(os.path.join(self.kernel.dir, "params.log")) as f:
            self.assertEqual(f.read().splitlines(), ["btrfs check_int=1 fs_info=2"])

    def test_symbol(self):
        syms = read_aliases(self.tree, "xor", "modules.symbols")
        self.assertIn("symbol:xor_blocks", syms)
        (o,) = self.load(["symbol:xor_blocks"])
        self.assertEqual((o["result"], o["modules"]), ("inserted", ["xor"]), o)
        self.assertEqual([w[:2] for w in self.kernel.loads()], [["finit", "xor"]])

    def test_dependencies_first(self):
        plan = self.plan_of("btrfs")
        waits = self.waits_of("btrfs")
        (o,) = self.load(["btrfs"])
        self.assertEqual((o["result"], o["modules"]), ("inserted", plan), o)
        # Each module once, after what it waits for; independent ones in any order.
        order = [w[1] for w in self.kernel.loads()]
        self.assertEqual(sorted(order), sorted(plan))
        self.assert_dependency_order(order, waits)
        self.assertEqual(waits["xor"], [])
        # btrfs waits for its modules.dep dependencies and its pre-softdep blake2b-256 (found in
        # the tree; crc32c, xxhash64 and sha256 are built in), libcrc32c for its pre-softdep crc32c
        self.assertEqual(set(waits["btrfs"]), set(self.deps["btrfs"][1]) | {"blake2b_generic"}, waits)
        self.assertEqual(waits["libcrc32c"], ["crc32c_intel"], waits)
        for w in self.kernel.loads():
            self.assertEqual((w[0], w[2], w[4], w[5]), ("finit", "0", "elf", "ok"), w)
            self.assertEqual(int(w[3]), self.xz_size(w[1]), w)
        for d in self.deps["btrfs"][1]:
            self.assertLess(plan.index(d), plan.index("btrfs"))

    def test_again_after_load(self):
        # Nothing under /sys/module on this host: the second request asks the
        # (fake) kernel again, which says EEXIST, and the answer is "live".
        self.load(["xor"])
        (o,) = self.load(["xor"])
        self.assertEqual((o["result"], o["modules"]), ("live", ["xor"]), o)
        self.assertNotIn("errno", o)
        self.assertEqual([w[-1] for w in self.kernel.loads()], ["ok", "EEXIST"])
        s = self.stats()
        self.assertEqual((s["kernelCalls"], s["kernelEEXIST"], s["modulesInserted"], s["failures"]), (2, 1, 1, 0), s)

    def test_several_names_one_call(self):
        names = ["xor", "fs-btrfs", NO_SUCH_MODULE, "xor"]
        outs = self.load(names)
        self.assertEqual(outs[0]["result"], "inserted", outs)
        self.assertEqual(outs[1]["result"], "inserted", outs)
        self.assertEqual(outs[2]["result"], "notFound", outs)
        self.assertIn(outs[3]["result"], SUCCESS, outs)
        self.assertEqual(outs[1]["modules"], self.plan_of("btrfs"), outs)
        # One insert per module.  xor is also a dependency of btrfs: when
        # btrfs's chain gets to it, the first load may have ended already and,
        # with no /sys/module here, the fake kernel is asked again (EEXIST).
        oks = [w[1] for w in self.kernel.loads() if w[-1] == "ok"]
        self.assertEqual(sorted(oks), sorted(set(outs[1]["modules"])), self.kernel.lines())
        for w in self.kernel.loads():
            self.assertIn(w[-1], ("ok", "EEXIST") if w[1] == "xor" else ("ok",), self.kernel.lines())

    def test_dry_run(self):
        plan = self.plan_of("btrfs")
        for n in ("btrfs", "fs-btrfs", "xor"):
            (o,) = self.load([n], dryRun=True)
            self.assertEqual(o["result"], "dryRun", o)
            self.assertEqual(o["modules"], plan if n != "xor" else ["xor"], o)
            self.assertIs(o["shared"], False, o)
        self.assertEqual(self.kernel.lines(), [])
        s = self.stats()
        self.assertEqual((s["kernelCalls"], s["modulesInserted"], s["bytesDecompressed"]), (0, 0, 0), s)

    def test_not_found(self):
        (o,) = self.load([NO_SUCH_MODULE])
        self.assertEqual(o["result"], "notFound", o)
        self.assertEqual(o["modules"], [], o)
        self.assertEqual((o["errno"], o["errnoName"]), (2, "ENOENT"), o)
        self.assertIn(NO_SUCH_MODULE, o["message"])
        self.assertIn(self.tree, o["message"])
        self.assertError(self.conn().roundtrip(DESCRIBE, {"name": NO_SUCH_MODULE}),
                         INTERFACE + ".ModuleNotFound", {"name": NO_SUCH_MODULE})
        self.assertEqual(self.kernel.lines(), [])
        # A name without a module is counted apart from failures.
        s = self.stats()
        self.assertEqual((s["notFound"], s["failures"]), (1, 0), s)

    def test_absolute_path(self):
        (o,) = self.load([self.deps["xor"][0]])
        self.assertEqual((o["result"], o["modules"]), ("inserted", ["xor"]), o)
        self.assertEqual([w[:2] for w in self.kernel.loads()], [["finit", "xor"]])

    def test_unload(self):
        self.load(["xor"])
        # Whether a module is in the kernel comes from /sys/module, which the
        # fake kernel does not fake: for the daemon, xor is not loaded.
        for opts in ({"dryRun": True}, {}, {"force": True, "wait": 100}):
            p = {"names": ["xor"]}
            p.update(opts)
            (o,) = self.outcomes(self.conn().roundtrip(UNLOAD, p), ["xor"])
            self.assertEqual((o["result"], o["modules"]), ("notLoaded", ["xor"]), o)
        (o,) = self.outcomes(self.conn().roundtrip(UNLOAD, {"names": ["xor"], "firstTime": True}), ["xor"])
        self.assertEqual((o["result"], o["errnoName"]), ("failed", "ENOENT"), o)
        self.assertIn("xor", o["message"])
        (o,) = self.outcomes(self.conn().roundtrip(UNLOAD, {"names": [NO_SUCH_MODULE]}), [NO_SUCH_MODULE])
        self.assertEqual(o["result"], "notFound", o)
        self.assertEqual(self.kernel.calls("delete"), [], self.kernel.lines())
        self.assertError(self.conn().roundtrip(UNLOAD, {"names": ["xor"], "wait": 3600001}),
                         E_INVALID, {"parameter": "wait"})
        self.assertError(self.conn().roundtrip(UNLOAD, {"names": ["xor"], "wait": -1}),
                         E_INVALID, {"parameter": "wait"})


class Describe(BrokerTestCase):
    def test_matches_tree(self):
        for name in ("btrfs", "fs-btrfs", "xor", "libcrc32c"):
            r = self.conn().roundtrip(DESCRIBE, {"name": name})
            self.assertEqual(set(r), {"parameters"}, r)
            p = r["parameters"]
            self.assertLessEqual({"modules", "steps"}, set(p), p)
            self.assertNotIn("blacklisted", p)
            target = "btrfs" if name == "fs-btrfs" else name
            self.assertEqual(p["modules"][-1], target, p)
            self.assertEqual([s["module"] for s in p["steps"]], p["modules"], p)
            for s in p["steps"]:
                self.assertEqual(s["kind"], "insmod", s)
                self.assertEqual(s["path"], self.deps[s["module"]][0], s)
                self.assertTrue(os.path.exists(s["path"]), s)
            # every hard dependency (modules.dep) is there, before the module
            for mod in p["modules"]:
                for d in self.deps[mod][1]:
                    self.assertLess(p["modules"].index(d), p["modules"].index(mod), (mod, d, p))
        self.assertEqual(self.conn().roundtrip(DESCRIBE, {"name": "xor"}),
                         {"parameters": {"modules": ["xor"], "steps": [
                             {"kind": "insmod", "module": "xor", "path": self.deps["xor"][0]}]}})
        # parameters from the caller show up in the step of the target
        r = self.conn().roundtrip(DESCRIBE, {"name": "xor", "parameters": "a=1"})
        self.assertEqual(r["parameters"]["steps"][-1].get("parameters"), "a=1", r)
        self.assertEqual(self.kernel.lines(), [])

    def test_invalid(self):
        self.assertError(self.conn().roundtrip(DESCRIBE, {"name": "a/b"}), INTERFACE + ".InvalidName",
                         {"name": "a/b"})
        self.assertError(self.conn().roundtrip(DESCRIBE, {}), E_INVALID, {"parameter": "name"})


class Validation(BrokerTestCase):
    def test_invalid_names(self):
        c = self.conn()
        for name in ("", "a/b", "-x", "bad\nname", "tab\there", "x" * 4096, "relative/x.ko"):
            for method in (LOAD, UNLOAD):
                self.assertError(c.roundtrip(method, {"names": ["xor", name]}),
                                 INTERFACE + ".InvalidName", {"name": name})
        # 4095 bytes is still a name (none that exists)
        (o,) = self.load(["y" * 4095], c)
        self.assertEqual(o["result"], "notFound", o)
        self.assertEqual(self.kernel.lines(), [])

    def test_too_many_names(self):
        c = self.conn()
        for method in (LOAD, UNLOAD):
            self.assertError(c.roundtrip(method, {"names": ["xor"] * 1025}),
                             INTERFACE + ".TooManyNames", {"max": 1024})
        outs = self.load(["xor"] * 1024, c)
        self.assertEqual(len(outs), 1024)
        self.assertEqual({o["result"] for o in outs}, {"inserted"})
        self.assertEqual(len(self.kernel.loads()), 1, self.kernel.lines())

    def test_empty_names(self):
        for method in (LOAD, UNLOAD):
            c = self.conn()
            c.call(method, {"names": []})
            self.assertEqual(c.recv(timeout=T(5)), {"parameters": {"outcomes": []}}, method)

    def test_unprivileged(self):
        (c,) = self.conns_as(1)
        for method, p in ((LOAD, {"names": ["xor"]}),
                          (LOAD, {"names": ["xor"], "dryRun": True}),
                          (UNLOAD, {"names": ["xor"]}),
                          (RELOAD, {})):
            self.assertError(c.roundtrip(method, p), E_PERM)
        r = c.roundtrip(DESCRIBE, {"name": "xor"})
        self.assertEqual(r["parameters"]["modules"], ["xor"], r)
        r = c.roundtrip(LIST, {})
        self.assertEqual(r, {"parameters": {"modules": []}} if not os.path.exists("/proc/modules")
                         else r)
        self.assertEqual(set(r["parameters"]), {"modules"}, r)
        r = c.roundtrip(GETSTATS, {})
        self.assertEqual(r["parameters"]["requests"], 0, r)
        self.assertEqual(self.kernel.lines(), [])


class Service(BrokerTestCase):
    def test_list(self):
        r = self.conn().roundtrip(LIST, {})
        self.assertEqual(set(r), {"parameters"}, r)
        mods = r["parameters"]["modules"]
        if not os.path.exists("/proc/modules"):
            self.assertEqual(mods, [])
        for mod in mods:
            self.assertEqual(set(mod), {"name", "size", "refcount", "holders", "state"}, mod)

    def test_reload(self):
        c = self.conn()
        c.roundtrip(DESCRIBE, {"name": "xor"})
        c.roundtrip(DESCRIBE, {"name": "xor"})
        hits = self.stats(c)["resolveCacheHits"]
        self.assertGreaterEqual(hits, 1)
        self.assertEqual(c.roundtrip(RELOAD, {}), {"parameters": {}})
        self.assertEqual(c.roundtrip(RELOAD), {"parameters": {}})
        # the resolution cache starts over
        self.assertEqual(c.roundtrip(DESCRIBE, {"name": "xor"})["parameters"]["modules"], ["xor"])
        self.assertEqual(self.stats(c)["resolveCacheHits"], hits)
        (o,) = self.load(["xor"], c)
        self.assertEqual(o["result"], "inserted", o)

    def test_monitor_load_events(self):
        waits = self.waits_of("btrfs")
        m = self.monitor()
        (o,) = self.load(["fs-btrfs"])
        plan = o["modules"]
        evs = self.events(m, lambda evs: any(e["kind"] == "answered" for e in evs))
        kinds = [e["kind"] for e in evs]
        self.assertEqual(kinds[0], "call", evs)
        self.assertEqual(evs[0]["method"], LOAD)
        self.assertEqual(evs[1], {"kind": "request", "name": "fs-btrfs", "uid": os.getuid(), "pid": os.getpid()})
        started = [e for e in evs if e["kind"] == "loadStarted"]
        finished = [e for e in evs if e["kind"] == "loadFinished"]
        self.assertEqual(sorted(e["module"] for e in started), sorted(plan), evs)
        self.assertEqual(sorted(e["module"] for e in finished), sorted(plan), evs)
        for e in started:
            self.assertEqual((e["uid"], e["pid"]), (os.getuid(), os.getpid()), e)
        for e in finished:
            self.assertEqual(e["result"], "inserted", e)
            self.assertIsInstance(e["durationUsec"], int, e)
            self.assertGreater(e["durationUsec"], 0, e)
            self.assertNotIn("errno", e)
        # each module starts after what it waits for has finished, and finishes after it started
        at = {(e["kind"], e["module"]): i for i, e in enumerate(evs) if e["kind"].startswith("load")}
        for mod in plan:
            self.assertLess(at[("loadStarted", mod)], at[("loadFinished", mod)])
            for before in waits[mod]:
                self.assertLess(at[("loadFinished", before)], at[("loadStarted", mod)], (mod, before, evs))
        self.assertEqual(evs[-1], {"kind": "answered", "name": "fs-btrfs", "result": "inserted", "shared": False,
                                   "uid": 0, "pid": evs[-1].get("pid")})
        self.assertGreater(evs[-1]["pid"], 0)
        m.expect_silence(0.2)

        # a failure and a module not found, as events
        (o,) = self.load([NO_SUCH_MODULE])
        evs = self.events(m, lambda evs: any(e["kind"] == "answered" for e in evs))
        self.assertEqual(evs[-1]["result"], "notFound", evs)
        self.assertEqual(evs[-1]["errno"], 2, evs)
        self.assertFalse([e for e in evs if e["kind"].startswith("load")], evs)

    def test_sigterm_while_idle_after_loads(self):
        self.load(["btrfs"])
        self.load(["btrfs"])
        self.assertEqual(self.daemon.stop(check=True), 0)
        self.daemon = self.start_daemon(name="again")
        self.sock = self.daemon.sock


class Timeouts(BrokerTestCase):
    """Loads held by the fake kernel for a while (FAKE_KERNEL_DELAY_MS)."""

    def delay_env(self, ms, only="xor"):
        return {"FAKE_KERNEL_DELAY_MS": str(int(ms)), "FAKE_KERNEL_HOLD_ONLY": only}

    def test_load_timeout(self):
        delay = T(3) * 1000
        self.restart(["--load-timeout=1s"], self.delay_env(delay))
        c = self.conn(timeout=T(30))
        t0 = time.monotonic()
        (o,) = self.load(["xor"], c)
        took = time.monotonic() - t0
        self.assertEqual(o["result"], "failed", o)
        self.assertEqual((o["errno"], o["errnoName"]), (110, "ETIMEDOUT"), o)
        self.assertIn("xor", o["message"])
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, delay / 1000, "answered only after the load ended")
        self.assertEqual(self.kernel.loads(), [])
        # The load goes on and ends well.
        self.assertTrue(harness.wait_until(lambda: self.kernel.loads(), T(20)), self.kernel.lines())
        self.assertEqual(self.kernel.loads()[0][:2], ["finit", "xor"])
        self.assertEqual(self.kernel.loads()[0][-1], "ok")
        self.assertTrue(harness.wait_until(lambda: self.stats()["modulesInserted"] == 1, T(10)))
        s = self.stats()
        self.assertEqual(s["failures"], 1, s)

    def test_load_timeout_joined_callers(self):
        delay = T(3) * 1000
        self.restart(["--load-timeout=1s"], self.delay_env(delay))
        clients = [self.conn(timeout=T(30)) for _ in range(4)]
        for c in clients:
            c.call(LOAD, {"names": ["xor"]})
        for c in clients:
            (o,) = self.outcomes(c.recv(), ["xor"])
            self.assertEqual((o["result"], o["errnoName"]), ("failed", "ETIMEDOUT"), o)
        self.assertTrue(harness.wait_until(lambda: self.kernel.loads(), T(20)), self.kernel.lines())
        self.assertEqual(len(self.kernel.loads()), 1, self.kernel.lines())

    def test_idle_exit_waits_for_load(self):
        delay = T(3) * 1000
        self.restart(["--idle-timeout=1"], self.delay_env(delay))
        c = harness.connect(self.sock, timeout=T(30))
        t0 = time.monotonic()
        c.call(LOAD, {"names": ["xor"]})
        (o,) = self.outcomes(c.recv(), ["xor"])
        self.assertEqual(o["result"], "inserted", o)
        self.assertGreaterEqual(time.monotonic() - t0, delay / 1000 * 0.9)
        c.close()
        # Idle now: it exits, cleanly.
        self.assertEqual(self.daemon.wait_exit(T(10)), 0, self.daemon.describe())

    def test_idle_exit_waits_for_orphaned_load(self):
        # The only caller went away: nobody is connected, but a load is in flight.
        delay = T(3) * 1000
        self.restart(["--idle-timeout=1"], self.delay_env(delay))
        c = harness.connect(self.sock, timeout=T(30))
        c.call(LOAD, {"names": ["xor"]})
        self.assertTrue(harness.wait_until(lambda: self.kernel.held("xor"), T(10)), self.kernel.lines())
        t0 = time.monotonic()
        c.close()
        while not self.kernel.loads():
            self.assertTrue(self.daemon.alive(), "exited with a load in flight after %.1fs\n%s"
                            % (time.monotonic() - t0, self.daemon.describe()))
            self.assertLess(time.monotonic() - t0, T(20))
            time.sleep(0.05)
        self.assertEqual(self.kernel.loads()[0][-1], "ok", self.kernel.lines())
        self.assertEqual(self.daemon.wait_exit(T(10)), 0, self.daemon.describe())

    def tearDown(self):
        if self.daemon.proc.poll() is not None and self.daemon.proc.returncode == 0 and self._outcome_ok():
            # exited on its own (idle): nothing more to check
            for c in self._conns:
                c.close()
            self.daemon.notify.close()
            self.tmp.cleanup()
            return
        super().tearDown()


# ---------------------------------------------------------------------------
# The scheduler (src/core/scheduler.h), end to end: joins, waits, the kernel's
# coming/going states, nested requests. Most of these run with the emulated
# /sys/module (FAKE_KERNEL_SYSFS=1), so that the daemon sees what the fake
# kernel has, as it would see the real one.

SYSFS_ENV = {"FAKE_KERNEL_SYSFS": "1"}


class SchedulerTestCase(BrokerTestCase):
    extra_env = SYSFS_ENV

    def ask(self, method, params, timeout=None):
        """Send one call on a new connection and return the connection (the reply comes later)."""
        c = self.conn(timeout=timeout or T(60))
        c.call(method, params)
        return c

    def answer(self, c, names, timeout=None):
        return self.outcomes(c.recv(timeout=timeout or T(60)), names)

    def assert_pending(self, *conns, secs=0.5):
        """No answer yet on any of CONNS for SECS."""
        for c in conns:
            c.expect_silence(secs)

    def wait_held(self, module):
        self.assertTrue(harness.wait_until(lambda: self.kernel.held(module), T(20)), self.kernel.lines())

    def write_config(self, text, name="test.conf"):
        d = self.tmp.join("modprobe.d")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class NestedRequest(SchedulerTestCase):
    """A module's init asks for another module (the kernel's request_module(), which runs the
    modprobe shim) while its own kernel call has not returned: the daemon must serve the nested
    request at once, with a single decompression slot, not after the outer load."""

    OUTER, INNER = "xor", "raid6_pq"

    def daemon_options(self):
        bindir = self.tmp.join("bin")
        os.makedirs(bindir)
        shim = os.path.join(bindir, "modprobe")  # argv[0] "modprobe" selects the shim
        os.symlink(modloadctl_path(), shim)
        self.load_timeout = int(T(10))
        return (["--workers=1", "--load-timeout=%ds" % self.load_timeout],
                {"FAKE_KERNEL_TIMES": "1",
                 "FAKE_KERNEL_NESTED": "%s=%s" % (self.OUTER, self.INNER),
                 "FAKE_KERNEL_MODPROBE": shim,
                 # what the shim, run by the fake kernel from inside the daemon, talks to
                 "MODLOADD_ADDRESS": self.sock_path()})

    def test_nested_load_workers_1(self):
        a, b = self.OUTER, self.INNER
        self.assertEqual(self.deps[a][1], [])
        self.assertEqual(self.deps[b][1], [])
        t0 = time.monotonic()
        (o,) = self.load([a], self.conn(timeout=T(60)))
        took = time.monotonic() - t0
        self.assertEqual((o["result"], o["modules"], o["shared"]), ("inserted", [a], False), o)
        self.assertLess(took, self.load_timeout / 2, "answered only after %.1f s" % took)

        lines = self.kernel.lines()
        nested = [w for w in lines if w[0] == "nested"]
        self.assertEqual(nested, [["nested", a, b, "0"]], lines)
        self.assert_one_finit_each([a, b])
        for w in self.kernel.loads():
            self.assertEqual((w[0], w[-1]), ("finit", "ok"), lines)
        # B went in while A's call was in flight: its finit line (written when its call returned)
        # comes before the nested line, which comes before A's finit line.
        at = {(w[0], w[1]): i for i, w in enumerate(lines)}
        self.assertLess(at[("finit", b)], at[("nested", a)], lines)
        self.assertLess(at[("nested", a)], at[("finit", a)], lines)
        spans = {m: (s, e) for m, s, e in self.kernel.spans()}
        self.assertEqual(set(spans), {a, b}, spans)
        self.assertLess(spans[a][0], spans[b][0], spans)
        self.assertLess(spans[b][1], spans[a][1], spans)
        # The daemon made both kernel calls (the shim asked it, it did not load B itself).
        s = self.stats()
        self.assertEqual((s["requests"], s["kernelCalls"], s["modulesInserted"], s["failures"]),
                         (2, 2, 2, 0), s)
        self.assertEqual((self.kernel.state(a), self.kernel.state(b)), ("live", "live"))


class InstallCommand(SchedulerTestCase):
    """An install command from --config: not run for a module the kernel has; run once for all
    the callers that ask while it runs."""

    MODULE = "dummy"

    def daemon_options(self):
        self.ran = self.tmp.join("ran.log")
        # The command notes that it ran, then waits while the gate is closed.
        self.write_config("install %s /bin/sh -c 'echo ran $MODPROBE_MODULE >> %s; "
                          "while [ -e %s ]; do sleep 0.01; done; exit 0'\n"
                          % (self.MODULE, self.ran, self.gate))
        return ["--config=" + self.tmp.join("modprobe.d", "test.conf")], {}

    def ran_lines(self):
        try:
            with open(self.ran) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def test_config_applies(self):
        r = self.conn().roundtrip(DESCRIBE, {"name": self.MODULE})
        steps = r["parameters"]["steps"]
        self.assertEqual([(st["kind"], st["module"]) for st in steps], [("install", self.MODULE)], r)
        self.assertIn(self.ran, steps[0]["command"], r)

    def test_live_module_command_not_run(self):
        self.kernel.put_module(self.MODULE, "live")
        (o,) = self.load([self.MODULE])
        self.assertEqual((o["result"], o["modules"]), ("live", [self.MODULE]), o)
        self.assertNotIn("errno", o)
        self.assertEqual(self.ran_lines(), [])
        self.assertEqual(self.kernel.lines(), [])
        self.assertEqual(self.stats()["kernelCalls"], 0)

    def test_command_runs_once_for_joined_callers(self):
        m = self.monitor()
        self.close_gate()
        clients = [self.ask(LOAD, {"names": [self.MODULE]}) for _ in range(8)]
        self.wait_requests(m, 8)
        self.assertTrue(harness.wait_until(lambda: self.ran_lines(), T(20)))
        self.assert_pending(*clients, secs=0.3)
        self.open_gate()
        outs = [self.answer(c, [self.MODULE])[0] for c in clients]
        for o in outs:
            self.assertEqual((o["result"], o["modules"]), ("inserted", [self.MODULE]), o)
            self.assertNotIn("errno", o)
        self.assertEqual(sum(o["shared"] for o in outs), 7, outs)
        self.assertEqual(self.ran_lines(), ["ran " + self.MODULE])
        # the command is the load: no kernel call of ours
        self.assertEqual(self.kernel.lines(), [])


class InstallCommandSignals(SchedulerTestCase):
    """An install command starts as from a shell: no signal blocked or ignored, whatever the
    daemon's threads have (they block SIGTERM and friends; SIGPIPE is ignored)."""

    MODULE = "dummy"

    def daemon_options(self):
        self.out = self.tmp.join("signals.txt")
        self.write_config("install %s /bin/sh -c 'grep -E \"^Sig(Blk|Ign):\" /proc/self/status > %s'\n"
                          % (self.MODULE, self.out))
        return ["--config=" + self.tmp.join("modprobe.d", "test.conf")], {}

    def test_default_dispositions(self):
        (o,) = self.load([self.MODULE])
        self.assertEqual(o["result"], "inserted", o)
        with open(self.out) as f:
            lines = dict(line.split(":", 1) for line in f.read().splitlines())
        self.assertEqual(set(lines), {"SigBlk", "SigIgn"}, lines)
        # glibc's posix_spawn() leaves its own two internal signals (32 and 33, thread
        # cancellation and setxid) ignored in every child; no program uses them.
        glibc_internal = (1 << 31) | (1 << 32)
        for k, v in lines.items():
            self.assertEqual(int(v, 16) & ~glibc_internal, 0, (k, v))


class KernelStates(SchedulerTestCase):
    """A module another loader has "coming": the daemon waits for it to settle."""

    MODULE = "xor"

    def start_load_against_coming(self):
        self.kernel.put_module(self.MODULE, "coming")
        m = self.monitor()
        c = self.ask(LOAD, {"names": [self.MODULE]})
        self.events(m, lambda evs: any(e["kind"] == "loadStarted" and e["module"] == self.MODULE for e in evs))
        self.assert_pending(c, secs=0.5)
        self.assertEqual(self.kernel.lines(), [])
        return c

    def test_coming_then_live(self):
        c = self.start_load_against_coming()
        self.kernel.set_state(self.MODULE, "live")
        (o,) = self.answer(c, [self.MODULE])
        self.assertEqual((o["result"], o["modules"], o["shared"]), ("live", [self.MODULE], True), o)
        self.assertNotIn("errno", o)
        self.assertEqual(self.kernel.lines(), [])
        self.assertEqual(self.stats()["kernelCalls"], 0)

    def test_coming_then_gone(self):
        c = self.start_load_against_coming()
        self.kernel.remove_module(self.MODULE)
        (o,) = self.answer(c, [self.MODULE])
        self.assertEqual((o["result"], o["modules"], o["shared"]), ("inserted", [self.MODULE], False), o)
        self.assertEqual([(w[0], w[1], w[-1]) for w in self.kernel.loads()], [("finit", self.MODULE, "ok")],
                         self.kernel.lines())
        self.assertEqual(self.kernel.state(self.MODULE), "live")


class SoftdepViews(SchedulerTestCase):
    """softdep A pre: B. For a load of A, B is optional; for a load of B, B is the target. Both
    callers take the result of the one load of B, each judging it by its own step."""

    A, B = "xor", "raid6_pq"

    def daemon_options(self):
        self.write_config("softdep %s pre: %s\n" % (self.A, self.B))
        return (["--config=" + self.tmp.join("modprobe.d", "test.conf")],
                {"FAKE_KERNEL_FAIL": self.B + "=ENODEV", "FAKE_KERNEL_HOLD_ONLY": self.B})

    def run_both(self, a_first):
        a, b = self.A, self.B
        self.assertEqual(self.waits_of(a), {b: [], a: [b]})
        m = self.monitor()
        self.close_gate()
        first = (a if a_first else b)
        second = (b if a_first else a)
        c = {first: self.ask(LOAD, {"names": [first]})}
        self.wait_held(b)
        c[second] = self.ask(LOAD, {"names": [second]})
        self.wait_requests(m, 2)
        self.assert_pending(c[a], c[b], secs=0.3)
        self.assertEqual(self.kernel.loads(), [])
        self.open_gate()

        (oa,) = self.answer(c[a], [a])
        (ob,) = self.answer(c[b], [b])
        self.assertEqual((oa["result"], oa["modules"]), ("inserted", [b, a]), oa)
        self.assertNotIn("errno", oa)
        self.assertEqual((ob["result"], ob["modules"]), ("failed", [b]), ob)
        self.assertEqual((ob["errno"], ob["errnoName"]), (19, "ENODEV"), ob)
        self.assertIn(b, ob["message"])
        # B's caller shares when it joined the load A's caller started; A itself was A's own load
        self.assertIs(ob["shared"], a_first, ob)
        self.assertIs(oa["shared"], False, oa)

        loads = [(w[0], w[1], w[-1]) for w in self.kernel.loads()]
        self.assertEqual(loads, [("finit", b, "ENODEV"), ("finit", a, "ok")], self.kernel.lines())
        self.assertEqual(len(self.kernel.held(b)), 1, self.kernel.lines())
        self.assertEqual((self.kernel.state(a), self.kernel.state(b)), ("live", None))

    def test_optional_first_then_required(self):
        self.run_both(a_first=True)

    def test_required_first_then_optional(self):
        self.run_both(a_first=False)


class AliasOfSeveral(SchedulerTestCase):
    """An alias that matches several modules (as udev's cpu:type:... modaliases do): one that
    fails does not stop the others, as kmod goes on with each module of an alias."""

    ALIAS, FAILS, SLOW, SLOW_DEP = "test-several", "xor", "libcrc32c", "crc32c_intel"

    def daemon_options(self):
        self.write_config("alias %s %s\nalias %s %s\nsoftdep %s pre: %s\n"
                          % (self.ALIAS, self.FAILS, self.ALIAS, self.SLOW, self.SLOW, self.SLOW_DEP))
        return (["--config=" + self.tmp.join("modprobe.d", "test.conf")],
                {"FAKE_KERNEL_FAIL": self.FAILS + "=ENODEV", "FAKE_KERNEL_HOLD_ONLY": self.SLOW_DEP})

    def test_one_fails_the_other_loads(self):
        waits = self.waits_of(self.ALIAS)
        self.assertEqual(waits[self.SLOW], [self.SLOW_DEP], waits)
        self.close_gate()
        c = self.ask(LOAD, {"names": [self.ALIAS]})
        # the failing module is done while the other still waits for its softdep
        self.assertTrue(harness.wait_until(
            lambda: [w[1] for w in self.kernel.loads()] == [self.FAILS], T(20)), self.kernel.lines())
        self.wait_held(self.SLOW_DEP)
        self.assert_pending(c, secs=0.3)
        self.open_gate()
        (o,) = self.answer(c, [self.ALIAS])
        self.assertEqual((o["result"], o["errnoName"]), ("failed", "ENODEV"), o)
        self.assertIn(self.FAILS, o["message"])
        loads = [(w[1], w[-1]) for w in self.kernel.loads()]
        self.assertEqual(loads, [(self.FAILS, "ENODEV"), (self.SLOW_DEP, "ok"), (self.SLOW, "ok")],
                         self.kernel.lines())
        self.assertEqual(self.kernel.state(self.SLOW), "live")


class Joins(SchedulerTestCase):
    """Callers that ask for a module while it is being loaded."""

    extra_env = dict(SYSFS_ENV, FAKE_KERNEL_HOLD_ONLY="xor")

    def test_other_parameters_not_applied(self):
        # As kmod's modprobe finding the module in the kernel: the second caller's parameters
        # are not applied, it gets "live".
        m = self.monitor()
        self.close_gate()
        c1 = self.ask(LOAD, {"names": ["xor"], "parameters": "x=1"})
        self.wait_held("xor")
        c2 = self.ask(LOAD, {"names": ["xor"], "parameters": "x=2"})
        self.wait_requests(m, 2)
        self.assert_pending(c1, c2, secs=0.3)
        self.open_gate()
        (o1,) = self.answer(c1, ["xor"])
        (o2,) = self.answer(c2, ["xor"])
        self.assertEqual((o1["result"], o1["shared"]), ("inserted", False), o1)
        self.assertEqual((o2["result"], o2["shared"]), ("live", True), o2)
        self.assertNotIn("errno", o2)
        self.assertEqual(self.kernel.read_log("params.log"), ["xor x=1"])
        self.assertEqual([(w[0], w[1], w[-1]) for w in self.kernel.loads()], [("finit", "xor", "ok")],
                         self.kernel.lines())

    def test_unload_waits_for_load(self):
        m = self.monitor()
        self.close_gate()
        cl = self.ask(LOAD, {"names": ["xor"]})
        self.wait_held("xor")
        self.assertEqual(self.kernel.state("xor"), "coming")
        cu = self.ask(UNLOAD, {"names": ["xor"]})
        self.wait_requests(m, 2)
        self.assert_pending(cl, cu, secs=0.5)
        self.assertEqual(self.kernel.calls(), [], self.kernel.lines())
        self.open_gate()
        (ol,) = self.answer(cl, ["xor"])
        self.assertEqual((ol["result"], ol["shared"]), ("inserted", False), ol)
        (ou,) = self.answer(cu, ["xor"])
        self.assertEqual((ou["result"], ou["modules"]), ("removed", ["xor"]), ou)
        self.assertNotIn("errno", ou)
        calls = [(w[0], w[1], w[-1]) for w in self.kernel.calls()]
        self.assertEqual(calls, [("finit", "xor", "ok"), ("delete", "xor", "ok")], self.kernel.lines())
        self.assertIsNone(self.kernel.state("xor"))


class UnloadBehindDependentLoad(SchedulerTestCase):
    """An unload of a module waits for the loads in flight of the modules that depend on it."""

    extra_env = dict(SYSFS_ENV, FAKE_KERNEL_HOLD_ONLY="btrfs")

    def test_unload_dependency_waits(self):
        self.assertIn("xor", self.deps["btrfs"][1])
        m = self.monitor()
        self.close_gate()
        cl = self.ask(LOAD, {"names": ["btrfs"]})
        self.wait_held("btrfs")
        self.assertEqual(self.kernel.state("xor"), "live")
        cu = self.ask(UNLOAD, {"names": ["xor"]})
        self.wait_requests(m, 2)
        self.assert_pending(cl, cu, secs=0.5)
        self.assertEqual(self.kernel.calls("delete"), [], self.kernel.lines())
        self.open_gate()
        (ol,) = self.answer(cl, ["btrfs"])
        self.assertEqual(ol["result"], "inserted", ol)
        (ou,) = self.answer(cu, ["xor"])
        # (the fake kernel counts no references from btrfs: the unload itself goes through)
        self.assertEqual((ou["result"], ou["modules"]), ("removed", ["xor"]), ou)
        calls = [(w[0], w[1]) for w in self.kernel.calls()]
        self.assertLess(calls.index(("finit", "btrfs")), calls.index(("delete", "xor")), self.kernel.lines())
        self.assertEqual(calls.count(("delete", "xor")), 1, self.kernel.lines())


class UnloadWait(SchedulerTestCase):
    def test_in_use_then_freed(self):
        (o,) = self.load(["xor"])
        self.assertEqual(o["result"], "inserted", o)
        self.assertEqual(self.kernel.state("xor"), "live")
        self.kernel.set_refcnt("xor", 1)

        t0 = time.monotonic()
        (o,) = self.outcomes(self.conn().roundtrip(UNLOAD, {"names": ["xor"]}), ["xor"])
        self.assertEqual(o["result"], "inUse", o)
        self.assertEqual(o.get("errnoName"), "EBUSY", o)
        self.assertLess(time.monotonic() - t0, T(2))
        self.assertEqual(self.kernel.calls("delete"), [], self.kernel.lines())
        self.assertEqual(self.kernel.state("xor"), "live")

        freed = threading.Timer(1.0, self.kernel.set_refcnt, ("xor", 0))
        c = self.conn(timeout=T(30))
        t0 = time.monotonic()
        freed.start()
        try:
            (o,) = self.outcomes(c.roundtrip(UNLOAD, {"names": ["xor"], "wait": 5000}), ["xor"])
        finally:
            freed.join()
        took = time.monotonic() - t0
        self.assertEqual((o["result"], o["modules"]), ("removed", ["xor"]), o)
        self.assertNotIn("errno", o)
        self.assertGreaterEqual(took, 0.9)
        deletes = [(w[1], w[-1]) for w in self.kernel.calls("delete")]
        self.assertEqual(deletes, [("xor", "ok")], self.kernel.lines())
        self.assertIsNone(self.kernel.state("xor"))


class Storm(SchedulerTestCase):
    extra_env = dict(SYSFS_ENV, FAKE_KERNEL_TIMES="1", FAKE_KERNEL_DELAY_MS="200")

    def test_16_callers_btrfs(self):
        plan = self.plan_of("btrfs")
        waits = self.waits_of("btrfs")
        m = self.monitor()
        self.close_gate()
        clients = [self.ask(LOAD, {"names": ["btrfs"]}) for _ in range(16)]
        self.wait_requests(m, 16)
        self.assertTrue(harness.wait_until(lambda: self.kernel.held(), T(20)), self.kernel.lines())
        self.open_gate()
        outs = [self.answer(c, ["btrfs"])[0] for c in clients]
        for o in outs:
            self.assertEqual((o["result"], o["modules"]), ("inserted", plan), o)
            self.assertNotIn("errno", o)
        self.assertEqual(sum(o["shared"] for o in outs), 15, outs)

        self.assert_one_finit_each(plan)
        for w in self.kernel.loads():
            self.assertEqual((w[0], w[-1]), ("finit", "ok"), w)
        spans = self.kernel.spans()
        self.assertEqual(sorted(sp[0] for sp in spans), sorted(plan), spans)
        at = {mod: (start, end) for mod, start, end in spans}
        # independent modules were in the kernel at the same time
        overlapping = [(x, y) for x in at for y in at
                       if x < y and at[x][0] < at[y][1] and at[y][0] < at[x][1]]
        self.assertTrue(overlapping, spans)
        # and nothing started before what it waits for had ended
        for mod in plan:
            for before in waits[mod]:
                self.assertGreaterEqual(at[mod][0], at[before][1], (mod, before, spans))
        s = self.stats()
        self.assertEqual((s["kernelCalls"], s["modulesInserted"], s["kernelEEXIST"], s["failures"]),
                         (len(plan), len(plan), 0, 0), s)


class ForceWithoutFinit(SchedulerTestCase):
    """A kernel without finit_module (ENOSYS): init_module with the image as --force leaves it."""

    extra_env = {"FAKE_KERNEL_NO_FINIT": "1"}

    def test_force_strips_init_module(self):
        (o,) = self.load(["xor"], forceVermagic=True, forceModversion=True)
        self.assertEqual((o["result"], o["modules"]), ("inserted", ["xor"]), o)
        (o,) = self.load(["raid6_pq"])
        self.assertEqual((o["result"], o["modules"]), ("inserted", ["raid6_pq"]), o)
        self.assertEqual(self.kernel.read_log("init.log"),
                         ["xor versions=STRIPPED vermagic=STRIPPED", "raid6_pq versions=KEEP vermagic=KEEP"])
        self.assertEqual([(w[0], w[1], w[-1]) for w in self.kernel.loads()],
                         [("init", "xor", "ok"), ("init", "raid6_pq", "ok")], self.kernel.lines())


def main():
    global FAKE_KERNEL, MODLOADCTL
    argv = list(sys.argv)
    if "--fake-kernel" in argv:
        i = argv.index("--fake-kernel")
        FAKE_KERNEL = os.path.abspath(argv[i + 1])
        del argv[i:i + 2]
    if "--modloadctl" in argv:
        i = argv.index("--modloadctl")
        MODLOADCTL = os.path.abspath(argv[i + 1])
        del argv[i:i + 2]
    unittest.main(argv=argv, verbosity=2)


if __name__ == "__main__":
    main()
