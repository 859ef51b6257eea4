"""registry.connections: registries that hold every connection sigil opens to them (the TLS
handshake done, no answer ever) cannot take sigil's file descriptors. Pod authors choose
registries, and without a cap each admission naming such a host would keep a descriptor until its
deadline: enough of them at once take every descriptor sigil has, and with them its listener.
Here six such registries, three on ports of 127.0.0.1 and three on ports of localhost, get 4
connections at most per host name (perHost, whatever the port) and 8 in all (max), while the
operator's registry still answers at once from its reserved slots."""
import json
import os
import socket
import ssl
import threading
import time
import unittest

import harness
from harness import fixture
from test_metrics import scrape_port, value


def eventually(pred, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


class HoldingTLS:
    """Accepts, completes the TLS handshake, reads whatever comes, and never answers. Counts the
    connections open at once in `tally`, by host name and in all, with their peaks."""

    def __init__(self, cert, key, tally, name):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.name = name  # the host name pods use for it: 127.0.0.1 or localhost
        self.address = "%s:%d" % (name, self.sock.getsockname()[1])
        self.tally = tally
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _count(self, delta):
        with self.tally["lock"]:
            for key in ("open", self.name):
                self.tally[key] += delta
                self.tally["peak " + key] = max(self.tally["peak " + key], self.tally[key])

    def _hold(self, conn):
        self._count(1)
        try:
            conn.settimeout(30)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                while not self._stop and tls.recv(4096):
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            self._count(-1)
            conn.close()

    def stop(self):
        self._stop = True
        self.sock.close()


class ConnectionCapTest(unittest.TestCase):
    NAMES = ("127.0.0.1", "localhost")
    PORTS_PER_NAME = 3
    PER_HOST = 4
    MAX = 8
    ADMISSIONS_PER_PORT = 8

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("conn-caps", tls=True)
        cls.addClassCleanup(cls.reg.stop)
        d = harness.work_dir("conn-caps-keys")
        keys = harness.Keys(d, [("a", "p256")])
        cls.known = cls.reg.push("test/known", "v1", "connection caps known")
        fixture.sign(cls.reg.client, "test/known", cls.known, keys.key("a"))
        cls.fresh = cls.reg.push("test/fresh", "v1", "connection caps, first seen while held")
        fixture.sign(cls.reg.client, "test/fresh", cls.fresh, keys.key("a"))
        cls.tally = {"lock": threading.Lock()}
        for key in ("open",) + cls.NAMES:
            cls.tally[key] = 0
            cls.tally["peak " + key] = 0
        cert = os.path.join(cls.reg.dir, "server.crt")  # SANs 127.0.0.1 and localhost
        key = os.path.join(cls.reg.dir, "server.key")
        cls.hosts = [HoldingTLS(cert, key, cls.tally, name)
                     for name in cls.NAMES for _ in range(cls.PORTS_PER_NAME)]
        for h in cls.hosts:
            cls.addClassCleanup(h.stop)
        pols = os.path.join(d, "policies")
        # The operator's registry, named literally (its requests keep the reserved slots), and
        # any port of 127.0.0.1 or localhost (patterns: those hosts are the pods' to choose).
        ops = harness.write_policy(pols, "operator-registry", "%s/test/**" % cls.reg.address,
                                   {"key-a": keys.pub("a")})
        anyport = [harness.write_policy(pols, "any-port-%d" % i, "%s:*/**" % name,
                                        {"key-a": keys.pub("a")})
                   for i, name in enumerate(cls.NAMES)]
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write("registry: {connections: {max: %d, reserved: 8, perHost: %d}}\n"
                    % (cls.MAX, cls.PER_HOST))
        cls.metrics_port = harness.free_port()
        cls.sigil = harness.SigilServer(
            "conn-caps", [ops] + anyport,
            ["--registry-ca", cls.reg.env["ca"], "--config", config,
             "--metrics-listen", "127.0.0.1:%d" % cls.metrics_port])
        cls.addClassCleanup(cls.sigil.stop)

    def metric(self, name, **labels):
        samples, _ = scrape_port(self.metrics_port)
        return value(samples, name, **labels)

    def test_hosts_that_hold_connections_get_their_cap_and_the_operator_keeps_its_slots(self):
        known = "%s/test/known@%s" % (self.reg.address, self.known)
        status, resp = self.sigil.validate(harness.pod_review([known]), "?timeout=10s")
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertIs(resp["allowed"], True, json.dumps(resp))

        # 48 admissions at once, each naming a new tag on one of the six holding registries.
        results = {}

        def admit(i, host):
            image = "%s/evil/app:t%d" % (host.address, i)
            results[i] = self.sigil.validate(harness.pod_review([image]), "?timeout=10s",
                                             timeout=30)

        threads = []
        for n, host in enumerate(self.hosts):
            for k in range(self.ADMISSIONS_PER_PORT):
                t = threading.Thread(target=admit, args=(n * 100 + k, host), daemon=True)
                t.start()
                threads.append(t)
        # The caps fill: 8 connections held, 4 per host name, the other admissions' reads
        # waiting for one.
        self.assertTrue(eventually(lambda: self.tally["open"] == self.MAX, 10),
                        "held %d; %s" % (self.tally["open"], self.sigil.log_tail()))
        self.assertGreater(self.metric("sigil_registry_connection_waiters"), 0)
        # Never more than the caps while they hold: per host name, whatever the port, and in
        # all. (Not counted after the deadlines: a connection sigil closed is seen closed here a
        # moment later, while a late waiter may already connect in its place.)
        time.sleep(0.5)
        with self.tally["lock"]:
            peaks = {name: self.tally["peak " + name] for name in self.NAMES}
            total_peak = self.tally["peak open"]
        for name, peak in peaks.items():
            self.assertEqual(peak, self.PER_HOST, name)
        self.assertEqual(total_peak, self.MAX)

        # The operator's registry answers at once, from the reserved slots, while they are held:
        # an image not seen before, by tag (no verdict cached; every read goes to the registry).
        fresh = "%s/test/fresh:v1" % self.reg.address
        status, resp = self.sigil.validate(harness.pod_review([fresh]), "?timeout=10s")
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        # ... and did not wait for them: every connection to the holding hosts is still held.
        self.assertEqual(self.tally["open"], self.MAX, "the held admissions ended first")
        self.assertGreater(self.metric("sigil_registry_connections_open", slots="reserved"), 0)

        for t in threads:
            t.join(30)
        self.assertEqual(len(results), len(self.hosts) * self.ADMISSIONS_PER_PORT)
        for i, (status, resp) in results.items():
            self.assertEqual(status, 200, i)
            self.assertIs(resp["allowed"], False, json.dumps(resp))
        # Most of the 48 tag reads waited for a connection (how many of those then ran out of
        # time waiting, rather than connecting once a holder's deadline freed its slot, is a
        # race of equal deadlines: not asserted).
        self.assertGreaterEqual(self.metric("sigil_registry_connection_waits_total"),
                                len(self.hosts) * self.ADMISSIONS_PER_PORT - self.MAX)
        # And the descriptors come back: nothing stays open to the holding hosts.
        self.assertTrue(eventually(lambda: self.tally["open"] == 0, 10))
        self.assertTrue(eventually(
            lambda: self.metric("sigil_registry_connection_waiters") == 0, 10))
        self.assertEqual(self.metric("sigil_registry_connections_open", slots="shared"), 0)


if __name__ == "__main__":
    unittest.main()
