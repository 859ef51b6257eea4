"""Registry DNS end to end: `sigil serve` whose resolv.conf names the test's own DNS server.

sigil reads its DNS servers from /etc/resolv.conf, as in a pod. The test runs it in a mount
namespace of its own (`unshare --mount`, root only) where /etc/resolv.conf is bind-mounted from a
file that names tests/support/fake_dns.py on 127.0.0.77:53. That server answers
`*.good.test` with 127.0.0.1 (where the real registry listens) and never answers `*.stall.test`:
what a pod author's own DNS can do to a registry name of their choosing.

What it shows, through the real process and its settings (`registry.dns`):
- a name whose DNS never answers costs `attempts` rounds of A + AAAA queries, whatever
  resolv.conf's own `options` say, and then frees its lookup slot; its admission is denied with
  one line that names the host, in time;
- when every shared lookup slot is taken, further stalled names are refused at once, and a
  registry the operator listed still resolves in its reserved slots and is admitted;
- concurrent admissions naming one new host make one lookup.
"""
import os
import subprocess
import threading
import time
import unittest

import harness
from harness import fixture
from test_metrics import scrape_port, value

import fake_dns  # tests/support, on the path through harness

DNS_HOST = "127.0.0.77"
MAX_LOOKUPS = 4     # registry.dns.maxLookups
RESERVED = 2        # registry.dns.reservedLookups
TRY_TIMEOUT = 3.0   # registry.dns.timeout, seconds: long enough that no slot frees mid-test
ATTEMPTS = 1        # registry.dns.attempts


def setUpModule():
    harness.require_registry()
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True) \
        if os.geteuid() == 0 and harness.have("unshare") else None
    if probe is None or probe.returncode != 0:
        raise unittest.SkipTest("test_dns needs root and unshare(1) (sigil runs in a mount "
                                "namespace with its own /etc/resolv.conf): %s" %
                                (probe.stderr.strip() if probe else "not root, or no unshare"))


class RegistryDnsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        try:
            cls.dns = fake_dns.FakeDns(DNS_HOST, 53, answers={"good.test": "127.0.0.1"},
                                       silent=("stall.test",))
        except OSError as e:
            raise unittest.SkipTest("cannot listen on %s:53: %s" % (DNS_HOST, e))
        cls.addClassCleanup(cls.dns.stop)
        cls.reg = harness.RunningRegistry("dns")
        cls.addClassCleanup(cls.reg.stop)
        cls.port = cls.reg.address.rsplit(":", 1)[1]
        cls.good = "reg.good.test:%s" % cls.port
        d = harness.work_dir("dns")
        keys = harness.Keys(d, [("a", "p256")])
        cls.digest = cls.reg.push("test/signed", "v1", "dns signed")
        fixture.sign(cls.reg.client, "test/signed", cls.digest, keys.key("a"),
                     docker_reference="%s/test/signed" % cls.good)
        pol = harness.write_policy(os.path.join(d, "policies"), "dns-images",
                                   ["%s/**" % cls.good, "*.stall.test:%s/**" % cls.port,
                                    "*.missing.test:%s/**" % cls.port],
                                   {"key-a": keys.pub("a")})
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write("registry:\n  dns: {maxLookups: %d, reservedLookups: %d, timeout: %dms, "
                    "attempts: %d}\n" % (MAX_LOOKUPS, RESERVED, TRY_TIMEOUT * 1000, ATTEMPTS))
        # resolv.conf's own timing is c-ares' defaults and then some: sigil's settings must win.
        resolv = os.path.join(d, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions ndots:1 timeout:5 attempts:4\n" % DNS_HOST)
        wrap = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv]
        cls.metrics_port = harness.free_port()
        cls.sigil = harness.SigilServer(
            "dns", [pol], ["--insecure-registry", cls.good, "--config", config,
                           "--metrics-listen", "127.0.0.1:%d" % cls.metrics_port], wrap=wrap)
        cls.addClassCleanup(cls.sigil.stop)
        cls.uids = iter(range(1, 1 << 20))

    def image(self, host, repo="test/app"):
        return "%s:%s/%s@%s" % (host, self.port, repo, self.digest)

    def admit(self, image):
        """(response, seconds) of one /validate of a Pod running `image`."""
        uid = "0f1e2d3c-0000-4000-8000-%012d" % next(self.uids)
        start = time.monotonic()
        status, resp = self.sigil.validate(harness.pod_review([image], uid=uid))
        self.assertEqual(status, 200, self.sigil.log_tail())
        return resp, time.monotonic() - start

    def admit_all(self, images):
        """Admits every image at once, each from its own client; returns [(response, seconds)]."""
        out = [None] * len(images)

        def one(i):
            try:
                out[i] = self.admit(images[i])
            except BaseException as e:  # noqa: B902: reported by the assertion below
                out[i] = e
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        return threads, out

    def metric(self, name, **labels):
        samples, _types = scrape_port(self.metrics_port)
        return value(samples, name, **labels)

    def wait_metric(self, name, want, timeout, **labels):
        deadline = time.monotonic() + timeout
        while True:
            got = self.metric(name, **labels)
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def test_1_stalled_names_hold_their_slots_only_for_their_settings(self):
        stalled = ["n%d.stall.test" % i for i in range(MAX_LOOKUPS + 2)]
        refused_before = self.metric("sigil_dns_lookups_refused_total")
        threads, out = self.admit_all([self.image(h) for h in stalled])
        # Every shared slot is taken by a name that will never answer...
        self.assertEqual(self.wait_metric("sigil_dns_lookups_in_flight", MAX_LOOKUPS,
                                          TRY_TIMEOUT / 2, slots="shared"), MAX_LOOKUPS)
        # ...and the registry the operator listed still resolves, in a reserved slot.
        resp, _ = self.admit(self.image("reg.good.test", "test/signed"))
        self.assertIs(resp["allowed"], True, harness.message(resp) + self.sigil.log_tail())
        # (Its .sig and referrers reads may each open a connection: one lookup, or two when the
        # first ended before the second began. sigil keeps no DNS cache.)
        self.assertGreaterEqual(self.dns.queries("reg.good.test", fake_dns.TYPE_A), 1)
        for t in threads:
            t.join(30)

        for host, got in zip(stalled, out):
            self.assertIsInstance(got, tuple, "admission of %s failed: %r" % (host, got))
            resp, seconds = got
            msg = harness.message(resp)
            self.assertIs(resp["allowed"], False, msg)
            self.assertIn(host, msg)
            self.assertNotIn("\n", msg)
            # Denied when the lookup gives up (1 round of 3 s), not at the review's deadline
            # (about 9 s), as when each failed lookup was started again by the retries.
            self.assertLess(seconds, 2 * TRY_TIMEOUT, msg)
        # The names that got a slot were asked; the others were refused without a query.
        timed_out = [h for h in stalled if self.dns.queries(h)]
        refused = [h for h in stalled if not self.dns.queries(h)]
        self.assertEqual(len(timed_out), MAX_LOOKUPS, out)
        self.assertEqual(len(refused), 2, out)
        # Each denial says which: the DNS server's silence, or sigil's own slots all taken.
        for host, (resp, _seconds) in zip(stalled, out):
            msg = harness.message(resp)
            if host in timed_out:
                self.assertIn("the name %s could not be resolved: the DNS server did not answer "
                              "in time" % host, msg)
            else:
                self.assertIn("the name %s was not looked up" % host, msg)
                self.assertIn("registry.dns.maxLookups", msg)
        self.assertGreaterEqual(self.metric("sigil_dns_lookups_refused_total") - refused_before,
                                2)

        # Each stalled name that got a slot was asked `attempts` times, A and AAAA, and no more:
        # not resolv.conf's attempts:4, and no new lookup after the first gave up.
        time.sleep(1.0)
        for host in timed_out:
            self.assertEqual(self.dns.queries(host, fake_dns.TYPE_A), ATTEMPTS, host)
            self.assertEqual(self.dns.queries(host, fake_dns.TYPE_AAAA), ATTEMPTS, host)
        for host in refused:
            self.assertEqual(self.dns.queries(host), 0, host)
        # The slots are free again.
        self.assertEqual(self.wait_metric("sigil_dns_lookups_in_flight", 0, 3, slots="shared"), 0)
        self.assertEqual(self.metric("sigil_dns_lookups_in_flight", slots="reserved"), 0)

    def test_2_one_new_host_is_one_lookup(self):
        self.assertEqual(self.wait_metric("sigil_dns_lookups_in_flight", 0, 5, slots="shared"), 0)
        joined_before = self.metric("sigil_dns_lookups_joined_total")
        n = 8
        threads, out = self.admit_all([self.image("same.stall.test", "test/r%d" % i)
                                       for i in range(n)])
        for t in threads:
            t.join(30)
        for got in out:
            self.assertIsInstance(got, tuple, repr(got))
            resp, _ = got
            self.assertIs(resp["allowed"], False, harness.message(resp))
            self.assertIn("same.stall.test", harness.message(resp))
        time.sleep(1.0)
        self.assertEqual(self.dns.queries("same.stall.test", fake_dns.TYPE_A), ATTEMPTS)
        self.assertEqual(self.dns.queries("same.stall.test", fake_dns.TYPE_AAAA), ATTEMPTS)
        self.assertGreaterEqual(self.metric("sigil_dns_lookups_joined_total") - joined_before,
                                n - 1)

    def test_3_a_name_that_does_not_exist_is_denied_in_those_words(self):
        # The commonest DNS failure is a mistyped registry name. NXDOMAIN is an answer: no retry,
        # and a denial that names the host and says it does not exist (not "could not be reached
        # or failed", as before the lookup's failure was typed).
        host = "typo.missing.test"
        resp, seconds = self.admit(self.image(host))
        msg = harness.message(resp)
        self.assertIs(resp["allowed"], False, msg)
        self.assertIn("the name %s does not exist in DNS (no such host); check the image's "
                      "registry name" % host, msg)
        self.assertNotIn("\n", msg)
        self.assertLess(seconds, TRY_TIMEOUT, msg)
        # Never looked up again after "no such host" (3 retries each would make 4 or more). The
        # .sig read and the referrers lookup start at once and may each look the name up: they
        # share one lookup only while it is in flight, and sigil keeps no negative DNS cache.
        self.assertIn(self.dns.queries(host, fake_dns.TYPE_A), (1, 2))


if __name__ == "__main__":
    unittest.main()
