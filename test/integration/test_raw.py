#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The varlink protocol as modloadd speaks it, byte for byte, over a raw
AF_UNIX socket.  After every test a new client must still get a GetInfo
answer, and the daemon must exit 0 on SIGTERM."""

import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import INTERFACE, SERVICE, T, MAX_MESSAGE, STAT_FIELDS  # noqa: E402

E_INVALID = SERVICE + ".InvalidParameter"
E_NOTIMPL = SERVICE + ".MethodNotImplemented"
E_NOMETHOD = SERVICE + ".MethodNotFound"
E_NOIFACE = SERVICE + ".InterfaceNotFound"
E_PERM = SERVICE + ".PermissionDenied"
E_MORE = SERVICE + ".ExpectedMore"
GETINFO = SERVICE + ".GetInfo"
GETDESC = SERVICE + ".GetInterfaceDescription"
GETSTATS = INTERFACE + ".GetStatistics"
# A module name nothing can resolve: requests for it never touch the kernel.
NO_SUCH_MODULE = "modloadd-test-no-such-module"


MAX_CONNECTIONS = 4096  # VARLINK_CONNECTIONS_MAX


class Framing(harness.DaemonTestCase):
    def test_reply_framing(self):
        c = self.conn()
        c.send(b'{"method":"org.varlink.service.GetInfo","parameters":{}}\0')
        raw = c.recv_raw()
        self.assertNotIn(b"\0", raw)
        r = json.loads(raw)
        self.assertEqual(set(r), {"parameters"}, r)
        c.expect_silence(0.2)

    def test_get_info(self):
        r = self.conn().roundtrip(GETINFO, {})
        self.assertEqual(set(r), {"parameters"}, r)
        p = r["parameters"]
        self.assertEqual(set(p), {"vendor", "product", "version", "url", "interfaces"}, p)
        for k in ("vendor", "product", "version", "url"):
            self.assertIsInstance(p[k], str, k)
            self.assertTrue(p[k], k)
        self.assertEqual(p["interfaces"], [SERVICE, INTERFACE])

    def test_interface_description(self):
        with open(harness.IDL_PATH, "rb") as f:
            idl = f.read().decode()
        r = self.conn().roundtrip(GETDESC, {"interface": INTERFACE})
        self.assertEqual(r, {"parameters": {"description": idl}})

    def test_interface_description_unknown(self):
        r = self.conn().roundtrip(GETDESC, {"interface": "com.example.Nope"})
        self.assertError(r, E_NOIFACE, {"interface": "com.example.Nope"})

    def test_parameters_missing_or_null(self):
        c = self.conn()
        for msg in (b'{"method":"org.varlink.service.GetInfo"}\0',
                    b'{"method":"org.varlink.service.GetInfo","parameters":null}\0',
                    b'{"method":"io.modloadd.Manager.GetStatistics"}\0',
                    b'{"method":"io.modloadd.Manager.GetStatistics","parameters":null}\0'):
            c.send(msg)
            r = c.recv()
            self.assertEqual(set(r), {"parameters"}, (msg, r))
        c.send(b'{"method":"io.modloadd.Manager.Monitor"}\0')
        self.assertError(c.recv(), E_MORE)


class Errors(harness.DaemonTestCase):
    def test_unknown_method(self):
        c = self.conn()
        for m in (INTERFACE + ".Nope", SERVICE + ".Nope"):
            self.assertError(c.roundtrip(m, {}), E_NOMETHOD, {"method": m})

    def test_unknown_interface(self):
        c = self.conn()
        self.assertError(c.roundtrip("com.example.Nope.Bar", {}), E_NOIFACE,
                         {"interface": "com.example.Nope"})

    def test_unknown_field(self):
        c = self.conn()
        self.assertError(c.roundtrip(GETSTATS, {"bogus": 1}), E_INVALID, {"parameter": "bogus"})
        self.assertError(c.roundtrip(GETINFO, {"bogus": True}), E_INVALID, {"parameter": "bogus"})
        self.assertError(c.roundtrip(GETDESC, {"interface": INTERFACE, "extra": "x"}),
                         E_INVALID, {"parameter": "extra"})

    def test_missing_required_field(self):
        self.assertError(self.conn().roundtrip(GETDESC, {}), E_INVALID, {"parameter": "interface"})

    def test_wrong_type(self):
        c = self.conn()
        self.assertError(c.roundtrip(GETDESC, {"interface": 5}), E_INVALID, {"parameter": "interface"})
        self.assertError(c.roundtrip(INTERFACE + ".Load", {"names": "x"}), E_INVALID, {"parameter": "names"})

    def assertOutcomes(self, r, names, results):
        self.assertEqual(set(r), {"parameters"}, r)
        self.assertEqual(set(r["parameters"]), {"outcomes"}, r)
        outcomes = r["parameters"]["outcomes"]
        self.assertEqual([o.get("name") for o in outcomes], names, r)
        for o in outcomes:
            self.assertLessEqual({"name", "modules", "result", "shared"}, set(o), o)
            self.assertIsInstance(o["modules"], list, o)
            self.assertIsInstance(o["shared"], bool, o)
            self.assertIn(o["result"], results, o)
            if "errno" in o:
                self.assertIsInstance(o["errno"], int, o)

    def test_root_methods(self):
        # Only dry runs of names no module can have: nothing is ever loaded
        # into or removed from the kernel running the tests.
        harness.require_root()
        c = self.conn()
        r = c.roundtrip(INTERFACE + ".Load", {"names": [NO_SUCH_MODULE], "dryRun": True})
        self.assertOutcomes(r, [NO_SUCH_MODULE], {"notFound"})
        r = c.roundtrip(INTERFACE + ".Unload", {"names": [NO_SUCH_MODULE], "dryRun": True})
        self.assertOutcomes(r, [NO_SUCH_MODULE], {"notFound", "notLoaded"})
        self.assertEqual(c.roundtrip(INTERFACE + ".Reload", {}), {"parameters": {}})

    def test_describe_and_list(self):
        c = self.conn()
        self.assertError(c.roundtrip(INTERFACE + ".Describe", {"name": NO_SUCH_MODULE}),
                         INTERFACE + ".ModuleNotFound", {"name": NO_SUCH_MODULE})
        r = c.roundtrip(INTERFACE + ".List", {})
        self.assertEqual(set(r), {"parameters"}, r)
        self.assertIsInstance(r["parameters"].get("modules"), list, r)
        for m in r["parameters"]["modules"]:
            self.assertLessEqual({"name", "size", "refcount", "holders", "state"}, set(m), m)

    def test_unprivileged(self):
        (c,) = self.conns_as(1)
        for m, p in (("Load", {"names": [NO_SUCH_MODULE]}),
                     ("Load", {"names": [NO_SUCH_MODULE], "dryRun": True}),
                     ("Unload", {"names": [NO_SUCH_MODULE]}),
                     ("Reload", {})):
            self.assertError(c.roundtrip(INTERFACE + "." + m, p), E_PERM)
        r = c.roundtrip(GETSTATS, {})
        self.assertEqual(set(r), {"parameters"}, r)
        self.assertTrue(harness.get_info_ok(c.roundtrip(GETINFO, {})))


class Statistics(harness.DaemonTestCase):
    def test_fields(self):
        s = self.stats()
        for k in STAT_FIELDS:
            self.assertIn(k, s)
            self.assertIs(type(s[k]), int, k)
            self.assertGreaterEqual(s[k], 0, k)

    def test_calls(self):
        c = self.conn()
        s1 = self.stats(c)
        for _ in range(3):
            c.roundtrip(GETINFO)
        other = self.conn()
        other.roundtrip(GETINFO)
        s2 = self.stats(c)
        self.assertEqual(s2["calls"] - s1["calls"], 5)
        s3 = self.stats(c)
        self.assertEqual(s3["calls"] - s2["calls"], 1)

    def test_protocol_errors(self):
        c = self.conn()
        s1 = self.stats(c)
        bad = self.conn()
        bad.send(b"nonsense\0")
        self.assertTrue(bad.wait_eof())
        s2 = self.stats(c)
        self.assertEqual(s2["protocolErrors"] - s1["protocolErrors"], 1)

    def test_connections(self):
        c = self.conn()
        s1 = self.stats(c)
        self.assertEqual(s1["connections"], 1)
        extra = [self.conn() for _ in range(3)]
        for e in extra:
            e.roundtrip(GETINFO)
        s2 = self.stats(c)
        self.assertEqual(s2["connections"], 4)
        self.assertEqual(s2["connectionsTotal"] - s1["connectionsTotal"], 3)
        for e in extra:
            e.close()
        ok = harness.wait_until(lambda: self.stats(c)["connections"] == 1, T(5))
        self.assertTrue(ok, "connections did not drop back to 1: %r" % self.stats(c))
        self.assertGreaterEqual(self.stats(c)["uptimeSec"], 0)


class Monitor(harness.DaemonTestCase):
    def test_requires_more(self):
        self.assertError(self.conn().roundtrip(INTERFACE + ".Monitor", {}), E_MORE)

    def test_events(self):
        m = self.conn()
        self.assertEqual(m.roundtrip(INTERFACE + ".Monitor", {}, more=True),
                         {"parameters": {"ready": True}, "continues": True})
        c = self.conn()
        c.roundtrip(GETSTATS, {})
        self.assertEqual(m.recv(), {"parameters": {"event": {
            "kind": "call", "method": GETSTATS, "uid": os.getuid(), "pid": os.getpid()}}, "continues": True})
        m.expect_silence(0.2)

    def test_unprivileged_event(self):
        m = self.conn()
        m.roundtrip(INTERFACE + ".Monitor", {}, more=True)
        (c,) = self.conns_as(1)
        c.roundtrip(GETSTATS, {})
        r = m.recv()
        self.assertEqual(r["continues"], True)
        ev = r["parameters"]["event"]
        self.assertEqual((ev["kind"], ev["method"], ev["uid"]), ("call", GETSTATS, harness.NOBODY))
        self.assertIsInstance(ev["pid"], int)

    def test_too_many_subscribers(self):
        subs = []
        for _ in range(64):
            s = self.conn()
            s.call(INTERFACE + ".Monitor", {}, more=True)
            subs.append(s)
        for s in subs:
            self.assertEqual(s.recv(), {"parameters": {"ready": True}, "continues": True})
        extra = self.conn()
        self.assertError(extra.roundtrip(INTERFACE + ".Monitor", {}, more=True),
                         INTERFACE + ".TooManySubscribers", {"max": 64})
        # That connection is still usable.
        self.assertTrue(harness.get_info_ok(extra.roundtrip(GETINFO)))
        # A slot frees up when a subscriber goes away.
        subs.pop().close()

        def resubscribe():
            r = self.conn().roundtrip(INTERFACE + ".Monitor", {}, more=True)
            return r == {"parameters": {"ready": True}, "continues": True}
        self.assertTrue(harness.wait_until(resubscribe, T(5), 0.1))


class Flags(harness.DaemonTestCase):
    def test_more_on_plain_method(self):
        c = self.conn()
        r = c.roundtrip(GETSTATS, {}, more=True)
        self.assertEqual(set(r), {"parameters"}, r)
        c.expect_silence(0.3)
        self.assertTrue(harness.get_info_ok(c.roundtrip(GETINFO)))

    def test_oneway(self):
        c = self.conn()
        s1 = self.stats(c)
        c.send(harness.encode(harness.call_msg(GETSTATS, {}, oneway=True)) +
               harness.encode(harness.call_msg(GETINFO, {})))
        self.assertTrue(harness.get_info_ok(c.recv()))
        c.expect_silence(0.3)
        s2 = self.stats(c)
        self.assertEqual(s2["calls"] - s1["calls"], 3)

    def test_upgrade(self):
        c = self.conn()
        self.assertError(c.roundtrip(GETINFO, {}, upgrade=True), E_INVALID, {"parameter": "upgrade"})
        self.assertTrue(harness.get_info_ok(c.roundtrip(GETINFO)))


class Streams(harness.DaemonTestCase):
    def test_pipelining(self):
        c = self.conn()
        kinds = []
        data = b""
        for i in range(50):
            k = i % 3
            kinds.append(k)
            if k == 0:
                data += harness.encode(harness.call_msg(GETINFO, {}))
            elif k == 1:
                data += harness.encode(harness.call_msg(GETSTATS, {}))
            else:
                data += harness.encode(harness.call_msg(INTERFACE + ".Nope%d" % i, {}))
        c.sock.sendall(data)
        for i, k in enumerate(kinds):
            r = c.recv()
            if k == 0:
                self.assertTrue(harness.get_info_ok(r), (i, r))
            elif k == 1:
                self.assertIn("calls", r.get("parameters", {}), (i, r))
                self.assertEqual(set(r), {"parameters"})
            else:
                self.assertError(r, E_NOMETHOD, {"method": INTERFACE + ".Nope%d" % i})
        c.expect_silence(0.2)

    def test_byte_at_a_time(self):
        c = self.conn()
        for b in harness.encode(harness.call_msg(GETINFO, {})):
            c.sock.send(bytes([b]))
            time.sleep(0.001)
        self.assertTrue(harness.get_info_ok(c.recv()))

    def test_disconnect_mid_message(self):
        c = self.conn()
        c.send(b'{"method":"org.varlink.service.Get')
        time.sleep(0.05)
        c.close()
        c2 = self.conn()
        c2.send(b'{"method":"org.varlink.service.GetInfo"')
        c2.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(c2.wait_eof())

    def test_many_clients(self):
        n = 300
        cs = [self.conn(timeout=T(30)) for _ in range(n)]
        req = harness.encode(harness.call_msg(GETINFO, {})) * 5
        for c in cs:
            c.send(req)
        for i, c in enumerate(cs):
            for j in range(5):
                r = c.recv()
                self.assertTrue(harness.get_info_ok(r), (i, j, r))


MALFORMED = (
    b'{"method":\0',
    b'nonsense\0',
    b'[]\0',
    b'{"parameters":{}}\0',
    b'{"method":5}\0',
    b'{"method":"org.varlink.service.GetInfo","parameters":[]}\0',
)


class Malformed(harness.DaemonTestCase):
    def test_malformed(self):
        for msg in MALFORMED:
            with self.subTest(msg=msg):
                c = self.conn()
                c.send(msg)
                self.assertTrue(c.wait_eof(), "not dropped after %r" % msg)
                self.assertTrue(harness.get_info_ok(self.conn().roundtrip(GETINFO)))

    def test_malformed_after_valid(self):
        c = self.conn()
        c.send(harness.encode(harness.call_msg(GETINFO, {})) + b"nonsense\0")
        self.assertTrue(harness.get_info_ok(c.recv()))
        self.assertTrue(c.wait_eof())


def _send_in_background(sock, data):
    def run():
        try:
            sock.settimeout(T(30))
            sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class Limits(harness.DaemonTestCase):
    def test_oversized(self):
        head = b'{"method":"org.varlink.service.GetInfo","parameters":{"x":"'
        data = head + b"A" * (MAX_MESSAGE + 1 - len(head))
        self.assertEqual(len(data), MAX_MESSAGE + 1)
        c = self.conn(timeout=T(30))
        t = _send_in_background(c.sock, data)
        self.assertTrue(c.wait_eof(T(30)), "a message over 1 MiB was not dropped")
        t.join(T(30))

    def test_just_under_limit_valid(self):
        head = b'{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.modloadd.Manager"'
        tail = b'}}\0'
        data = head + b" " * (MAX_MESSAGE - 64 - len(head) - len(tail)) + tail
        c = self.conn(timeout=T(30))
        t = _send_in_background(c.sock, data)
        r = c.recv(T(30))
        t.join(T(30))
        self.assertEqual(set(r), {"parameters"}, str(r)[:300])
        self.assertIn("interface io.modloadd.Manager", r["parameters"]["description"])

    def test_just_under_limit_unknown_field(self):
        head = b'{"method":"io.modloadd.Manager.GetStatistics","parameters":{"junk":"'
        tail = b'"}}\0'
        data = head + b"x" * (MAX_MESSAGE - 64 - len(head) - len(tail)) + tail
        c = self.conn(timeout=T(30))
        t = _send_in_background(c.sock, data)
        r = c.recv(T(30))
        t.join(T(30))
        self.assertError(r, E_INVALID, {"parameter": "junk"})

    def test_deep_nesting_dropped(self):
        c = self.conn()
        c.send(b'{"method":"org.varlink.service.GetInfo","parameters":{"x":' +
               b"[" * 40 + b"]" * 40 + b"}}\0")
        self.assertTrue(c.wait_eof())

    def test_moderate_nesting(self):
        c = self.conn()
        c.send(b'{"method":"org.varlink.service.GetInfo","parameters":{"x":' +
               b"[" * 10 + b"]" * 10 + b"}}\0")
        self.assertError(c.recv(), E_INVALID, {"parameter": "x"})

    def test_connections_per_uid(self):
        root = self.conn()
        s1 = self.stats(root)
        held = self.conns_as(128)
        for c in held:
            c.call(GETINFO, {})
        for i, c in enumerate(held):
            self.assertTrue(harness.get_info_ok(c.recv()), i)
        (over,) = self.conns_as(1)
        try:
            over.call(GETINFO, {})
        except OSError:
            pass  # already closed by the daemon
        self.assertTrue(over.wait_eof(), "connection 129 of uid 65534 was not closed")
        # root is not limited by it
        self.assertTrue(harness.get_info_ok(self.conn().roundtrip(GETINFO)))
        self.assertTrue(harness.get_info_ok(root.roundtrip(GETINFO)))
        s2 = self.stats(root)
        self.assertEqual(s2["connectionsRefused"] - s1["connectionsRefused"], 1)
        # the held ones still work
        self.assertTrue(harness.get_info_ok(held[0].roundtrip(GETINFO)))
        for c in held[-8:]:
            c.close()

        def again():
            (c,) = self.conns_as(1)
            try:
                c.call(GETINFO, {})
                return harness.get_info_ok(c.recv())
            except (harness.Dropped, OSError):
                return False
        self.assertTrue(harness.wait_until(again, T(5), 0.1),
                        "uid 65534 cannot connect again after closing some connections")

    def test_connections_total(self):
        """The 4097th connection, of any user (root here), is closed at once."""
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = MAX_CONNECTIONS + 64
        if soft < want:
            if hard != resource.RLIM_INFINITY and hard < want:
                self.skipTest("RLIMIT_NOFILE hard limit %d is too low" % hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        root = self.conn()
        s1 = self.stats(root)
        held = [root]
        try:
            while len(held) < MAX_CONNECTIONS:
                held.append(self.conn())
            # Every one of them is served.
            self.assertTrue(harness.get_info_ok(held[-1].roundtrip(GETINFO)))
            over = self.conn()
            try:
                over.call(GETINFO, {})
            except OSError:
                pass  # already closed by the daemon
            self.assertTrue(over.wait_eof(), "connection %d was not closed" % (MAX_CONNECTIONS + 1))
            s2 = self.stats(root)
            self.assertEqual(s2["connections"], MAX_CONNECTIONS)
            self.assertEqual(s2["connectionsRefused"] - s1["connectionsRefused"], 1)
            # Room again after one goes.
            held.pop().close()

            def again():
                try:
                    return harness.get_info_ok(self.conn().roundtrip(GETINFO))
                except (harness.Dropped, OSError):
                    return False
            self.assertTrue(harness.wait_until(again, T(10), 0.1), "no connection possible after one closed")
        finally:
            for c in held[1:]:
                c.close()


if __name__ == "__main__":
    harness.main()
