"""GET /metrics of a real `sigil serve` (issue 12 point 8): a plain-HTTP port of its own, in
Prometheus text format, whose counters move with the admissions sigil answers.

An allowed and a denied admission (against the real registry) must move the admission
histogram by result, the verdict counter by reason code, the verdict cache and the registry
request counters; the exposition is parsed line by line as Prometheus would. Remove any of
the instrumentation (the server's observe_admission call, Webhook::verify_counted, the
registry observer) and a test here fails.
"""
import http.client
import re
import socket
import time
import unittest

import harness
from harness import fixture

POLICY = "metrics-images"

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})?'
    r' ([-+]?(?:[0-9.eE+-]+|Inf|NaN))(?: -?[0-9]+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_exposition(text):
    """Parses the Prometheus text format (0.0.4) strictly: every line a # HELP, a # TYPE or a
    sample of a family whose TYPE came first; returns {(name, frozenset(labels)): value} and
    {family: type}. Raises AssertionError naming the first bad line."""
    samples, types = {}, {}
    assert text.endswith("\n"), "exposition must end with a newline"
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            assert len(parts) == 4 and parts[3] in TYPES, "line %d: bad TYPE: %r" % (n, line)
            assert parts[2] not in types, "line %d: family %s typed twice" % (n, parts[2])
            types[parts[2]] = parts[3]
            continue
        assert not line.startswith("#"), "line %d: stray comment %r" % (n, line)
        m = SAMPLE.match(line)
        assert m, "line %d: not a sample: %r" % (n, line)
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, "line %d: %s has no TYPE before it" % (n, name)
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        key = (name, labels)
        assert key not in samples, "line %d: duplicate sample %r" % (n, line)
        samples[key] = float(m.group(4))
    return samples, types


def scrape_port(port):
    """GET /metrics of the plain-HTTP listener on 127.0.0.1:port, parsed (parse_exposition)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        return parse_exposition(c.getresponse().read().decode())
    finally:
        c.close()


def value(samples, name, **labels):
    """The sample name{labels...} (labels a subset), summed over the rest; 0 when absent."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_registry()
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("metrics")
        cls.addClassCleanup(cls.reg.stop)
        r, c = cls.reg, cls.reg.client
        d = harness.work_dir("metrics-keys")
        cls.keys = harness.Keys(d, [("a", "p256")])
        cls.signed = r.push("test/signed", "v1", "metrics signed")
        fixture.sign(c, "test/signed", cls.signed, cls.keys.key("a"))
        cls.unsigned = r.push("test/unsigned", "v1", "metrics unsigned")
        pol = harness.write_policy(harness.work_dir("metrics-policies"), POLICY,
                                   r.address + "/test/**", {"key-a": cls.keys.pub("a")})
        cls.metrics_port = harness.free_port()
        cls.sigil = harness.SigilServer(
            "metrics", [pol], ["--insecure-registry", r.address,
                               "--metrics-listen", "127.0.0.1:%d" % cls.metrics_port])
        cls.addClassCleanup(cls.sigil.stop)

    def get(self, path, method="GET"):
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read().decode()
        finally:
            c.close()

    def scrape(self):
        status, ctype, body = self.get("/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        return parse_exposition(body)

    def admit(self, image, uid):
        status, resp = self.sigil.validate(harness.pod_review([image], uid=uid))
        self.assertEqual(status, 200)
        return resp

    def test_counters_move_with_an_allow_and_a_deny(self):
        before, _ = self.scrape()
        signed = self.reg.ref("test/signed", digest=self.signed)
        self.assertTrue(self.admit(signed, "00000000-0000-4000-8000-00000000a001")["allowed"])
        self.assertTrue(self.admit(signed, "00000000-0000-4000-8000-00000000a002")["allowed"])
        denied = self.admit(self.reg.ref("test/unsigned", tag="v1"),
                            "00000000-0000-4000-8000-00000000d001")
        self.assertFalse(denied["allowed"])
        self.assertIn("NOT_SIGNED", denied["status"]["message"] + str(denied))
        after, types = self.scrape()

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        # Admission latency by result: a histogram, one observation per admission.
        self.assertEqual(types["sigil_admission_duration_seconds"], "histogram")
        self.assertEqual(moved("sigil_admission_duration_seconds_count",
                               route="validate", result="allowed"), 2)
        self.assertEqual(moved("sigil_admission_duration_seconds_count",
                               route="validate", result="denied"), 1)
        self.assertEqual(moved("sigil_admission_duration_seconds_count", result="warned"), 0)
        self.assertGreater(moved("sigil_admission_duration_seconds_sum", result="allowed"), 0)
        self.assertEqual(moved("sigil_admission_duration_seconds_bucket", route="validate",
                               result="denied", le="+Inf"), 1)
        # Verdicts by reason code.
        self.assertEqual(moved("sigil_verdicts_total", outcome="allowed", reason="NONE"), 2)
        self.assertEqual(moved("sigil_verdicts_total", outcome="denied", reason="NOT_SIGNED"), 1)
        self.assertEqual(moved("sigil_verdicts_total", outcome="denied"), 1)
        # The second admission of the signed digest came from the verdict cache.
        self.assertGreaterEqual(moved("sigil_verdict_cache_hits_total"), 1)
        self.assertGreaterEqual(moved("sigil_verdict_cache_misses_total"), 2)
        self.assertIn("sigil_verdict_coalesced_total", types)
        # Registry requests by host and status, with latencies.
        host = self.reg.address
        self.assertGreater(moved("sigil_registry_requests_total", host=host, status="200"), 0)
        self.assertGreater(moved("sigil_registry_requests_total", host=host, status="404"), 0,
                           "the unsigned image's .sig lookup answers 404")
        self.assertEqual(types["sigil_registry_request_duration_seconds"], "histogram")
        # The registry client's DNS slots (the registry here is an address: no lookup).
        self.assertEqual(types["sigil_dns_lookups_in_flight"], "gauge")
        self.assertEqual(value(after, "sigil_dns_lookup_slots", slots="shared"), 256)
        self.assertEqual(value(after, "sigil_dns_lookup_slots", slots="reserved"), 64)
        self.assertEqual(types["sigil_dns_lookups_refused_total"], "counter")
        self.assertEqual(value(after, "sigil_dns_lookups_refused_total"), 0)
        self.assertEqual(value(after, "sigil_registry_request_duration_seconds_count", host=host),
                         value(after, "sigil_registry_requests_total", host=host))

    def test_policy_and_process_figures(self):
        samples, types = self.scrape()
        self.assertEqual(value(samples, "sigil_policy_synced", source="files"), 1)
        self.assertEqual(value(samples, "sigil_policy_generation"), 1)
        self.assertEqual(value(samples, "sigil_policies"), 1)
        self.assertEqual(types["process_cpu_seconds_total"], "counter")
        rss = value(samples, "process_resident_memory_bytes")
        with open("/proc/%d/status" % self.sigil.proc.pid) as f:
            vmrss = [int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")][0]
        self.assertGreater(rss, 1 << 20)
        self.assertLess(abs(rss - vmrss), vmrss / 2 + (8 << 20))
        self.assertGreater(value(samples, "process_open_fds"), 3)
        self.assertGreater(value(samples, "process_max_fds"), 0)
        start = value(samples, "process_start_time_seconds")
        self.assertLess(abs(start - time.time()), 600, "start time is seconds since the epoch")

    def test_listener_is_plain_http_and_serves_only_metrics(self):
        status, _, _ = self.get("/validate")
        self.assertEqual(status, 404)
        status, _, _ = self.get("/metrics", method="POST")
        self.assertEqual(status, 405)
        status, _, body = self.get("/healthz")
        self.assertEqual((status, body.strip()), (200, "ok"))
        # ... and the webhook's HTTPS port does not serve the metrics.
        status, _ = self.sigil.get("/metrics")
        self.assertEqual(status, 404)

    def test_silent_connections_cannot_hold_the_scrape_out(self):
        # 40 connections that never send a request, from four addresses (8 each, the per-peer
        # cap): more than the listener's 32. Prometheus's scrape from a fifth still gets in, by
        # evicting the connection that has waited longest.
        held = []

        def closed():
            n = 0
            for c in held:
                try:
                    n += c.recv(1) == b""
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    n += 1
            return n

        def wait_closed(at_least):
            deadline = time.monotonic() + 10
            while closed() < at_least and time.monotonic() < deadline:
                time.sleep(0.05)
            return closed()

        try:
            for i in range(40):
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.bind(("127.0.0.%d" % (2 + i % 4), 0))
                c.connect(("127.0.0.1", self.metrics_port))
                c.setblocking(False)
                held.append(c)
            # 8 past the caps are closed as the others come, none of the 32 yet.
            self.assertEqual(wait_closed(8), 8)
            for _ in range(3):
                status, _, body = self.get("/metrics")
                self.assertEqual(status, 200, body)
            # 1 more for the first scrape, and one for each later one unless the room a finished
            # scrape left was already free when it came.
            got = wait_closed(9)
            self.assertGreaterEqual(got, 9)
            self.assertLessEqual(got, 11)
        finally:
            for c in held:
                c.close()


class ExpositionParserTest(unittest.TestCase):
    """The parser above rejects what Prometheus would (so the tests above mean something)."""

    def test_rejects_malformed(self):
        for bad in ["x 1\n", "# TYPE x counter\nx{a=\"1} 1\n", "# TYPE x counter\nx one\n",
                    "# TYPE x counter\nx 1", "# TYPE x counter\n# TYPE x counter\n"]:
            with self.assertRaises(AssertionError, msg=bad):
                parse_exposition(bad)
        s, _ = parse_exposition('# TYPE x counter\nx{a="1",b="q\\"z"} 2\n')
        self.assertEqual(value(s, "x", a="1"), 2)


if __name__ == "__main__":
    unittest.main()
