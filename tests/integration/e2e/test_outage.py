"""cache.staleIfError end to end (issue 14 point 6): a registry outage during steady traffic.

The real `sigil serve` and the real distribution registry on 127.0.0.1; the outage is the
registry process stopped. The verdict cache is off (ttl 0s) so every admission asks the registry,
and the grace period is a few seconds, so the test is quick: inside it the images last verified
as allowed stay admitted, with a warning, an audit entry and a metric; after it they are denied.
An image whose last verdict was a denial (its signature replaced by a bad one) is never admitted
on an older allow, and an image referenced by tag without pinning is denied.
"""
import json
import os
import time
import unittest

import harness
from harness import fixture
from latency_proxy import LatencyProxy
from test_metrics import scrape_port, value

GRACE = 4.0  # seconds: cache.staleIfError


def setUpModule():
    harness.require_registry()


class OutageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("outage")
        cls.addClassCleanup(cls.reg.stop)
        r, c = cls.reg, cls.reg.client
        d = harness.work_dir("outage-keys")
        cls.keys = harness.Keys(d, [("a", "p256")])
        cls.signed = r.push("test/signed", "v1", "outage signed")
        fixture.sign(c, "test/signed", cls.signed, cls.keys.key("a"))
        cls.resigned = r.push("test/resigned", "v1", "outage resigned")
        fixture.sign(c, "test/resigned", cls.resigned, cls.keys.key("a"))
        pol = harness.write_policy(os.path.join(d, "policies"), "outage-images",
                                   "%s/test/**" % r.address, {"key-a": cls.keys.pub("a")})
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write("cache: {ttl: 0s, negativeTtl: 0s, staleIfError: %ds}\n" % GRACE)
        cls.metrics_port = harness.free_port()
        cls.sigil = harness.SigilServer(
            "outage", [pol], ["--insecure-registry", r.address, "--config", config,
                              "--metrics-listen", "127.0.0.1:%d" % cls.metrics_port])
        cls.addClassCleanup(cls.sigil.stop)

    def admit(self, image, n=[0]):
        n[0] += 1
        uid = "0f1e2d3c-0000-4000-8000-%012d" % n[0]
        status, resp = self.sigil.validate(harness.pod_review([image], uid=uid))
        self.assertEqual(status, 200, self.sigil.log_tail())
        return resp

    def stale_metric(self):
        samples, types = scrape_port(self.metrics_port)
        self.assertEqual(types.get("sigil_stale_verdicts_total"), "counter")
        return value(samples, "sigil_stale_verdicts_total", reason="REGISTRY_UNAVAILABLE")

    def test_outage_during_steady_traffic(self):
        by_digest = self.reg.ref("test/signed", digest=self.signed)
        resigned = self.reg.ref("test/resigned", digest=self.resigned)
        by_tag = self.reg.ref("test/signed", "v1")

        # Steady traffic while the registry is up: admitted, no warnings.
        for _ in range(3):
            for image in (by_digest, resigned, by_tag):
                resp = self.admit(image)
                self.assertIs(resp["allowed"], True, json.dumps(resp))
                self.assertFalse(resp.get("warnings"), json.dumps(resp))
        # test/resigned's signature is replaced by a bad one: its last verdict is a denial.
        fixture.sign(self.reg.client, "test/resigned", self.resigned, self.keys.key("a"),
                     "bad-sig")
        resp = self.admit(resigned)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        # The last fresh allow of test/signed, and when it was made.
        resp = self.admit(by_digest)
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        last_allow = time.monotonic()
        self.assertEqual(self.stale_metric(), 0)

        self.reg.stop()  # the outage

        # Inside the grace period: the digest stays admitted, with one warning line.
        stale = 0
        while time.monotonic() - last_allow < GRACE / 4:
            resp = self.admit(by_digest)
            self.assertIs(resp["allowed"], True, json.dumps(resp))
            (warning,) = resp["warnings"]
            self.assertTrue(warning.startswith("registry unreachable; admitted on a verdict from "),
                            warning)
            self.assertIn(" ago (cache.staleIfError=%ds): " % GRACE, warning)
            self.assertIn("test/signed", warning)
            self.assertLessEqual(len(warning), 120)
            audit = json.loads(resp["auditAnnotations"]["images"])
            self.assertEqual(audit[by_digest], "warned REGISTRY_UNAVAILABLE " + self.signed)
            stale += 1
            time.sleep(0.1)
        self.assertGreater(stale, 0)
        self.assertEqual(self.stale_metric(), stale)
        self.assertIn("stale verdict: allowed by outage-images", self.sigil.log_tail())

        # Its last verdict was a denial (BAD_SIGNATURE): an older allow never stands in.
        resp = self.admit(resigned)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("could not be reached", harness.message(resp))
        # A tag without pinning: denied (what the kubelet pulls by tag is not known).
        resp = self.admit(by_tag)
        self.assertIs(resp["allowed"], False, json.dumps(resp))

        # After the grace period: denied, naming the registry failure.
        time.sleep(max(0.0, GRACE + 0.5 - (time.monotonic() - last_allow)))
        resp = self.admit(by_digest)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("could not be reached", harness.message(resp))
        self.assertFalse(resp.get("warnings"), json.dumps(resp))
        self.assertEqual(self.stale_metric(), stale)


class SignatureRegistryOutageTest(unittest.TestCase):
    """The images' registry stays up (tags resolve) while the registry holding their signatures
    (an authority's `source`) goes down: only pinning lets a tag stand on its last verdict."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.images = harness.RunningRegistry("outage-images")
        cls.addClassCleanup(cls.images.stop)
        cls.sigs = harness.RunningRegistry("outage-sigs")
        cls.addClassCleanup(cls.sigs.stop)
        d = harness.work_dir("outage-sig-keys")
        keys = harness.Keys(d, [("a", "p256")])
        cls.digest = cls.images.push("team/app", "v1", "outage app")
        fixture.sign(cls.sigs.client, "signatures", cls.digest, keys.key("a"),
                     docker_reference=cls.images.ref("team/app"))
        pem = keys.pub("a").decode().strip().splitlines()
        pol = os.path.join(d, "policies")
        os.makedirs(pol)
        path = os.path.join(pol, "sourced.yaml")
        with open(path, "w") as f:
            f.write("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
                    "metadata: {name: sourced}\nspec:\n  images: [{glob: \"%s/team/**\"}]\n"
                    "  authorities:\n  - name: key-a\n    source: [{oci: \"%s/signatures\"}]\n"
                    "    key:\n      data: |\n%s\n"
                    % (cls.images.address, cls.sigs.address,
                       "\n".join("        " + line for line in pem)))
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write("cache: {ttl: 0s, negativeTtl: 0s, staleIfError: 1h}\n")
        args = ["--insecure-registry", cls.images.address, "--insecure-registry",
                cls.sigs.address, "--config", config]
        cls.unpinned = harness.SigilServer("outage-unpinned", [path], args)
        cls.addClassCleanup(cls.unpinned.stop)
        cls.pinned = harness.SigilServer("outage-pinned", [path], args + ["--pinning"])
        cls.addClassCleanup(cls.pinned.stop)

    def admit(self, sigil, image):
        review = harness.pod_review([image])
        if sigil is self.pinned:
            # As the API server does: /mutate first, its patch applied, then /validate (a Pod by
            # tag that reaches /validate unpinned is denied NOT_PINNED when pinning is on).
            status, resp = sigil.mutate(review)
            self.assertEqual(status, 200, sigil.log_tail())
            review["request"]["object"] = harness.apply_json_patch(
                review["request"]["object"], harness.json_patch_of(resp))
        status, resp = sigil.validate(review)
        self.assertEqual(status, 200, sigil.log_tail())
        return resp

    def test_tag_stands_only_with_pinning(self):
        by_tag = self.images.ref("team/app", "v1")
        by_digest = self.images.ref("team/app", digest=self.digest)
        for sigil in (self.unpinned, self.pinned):
            for image in (by_tag, by_digest):
                resp = self.admit(sigil, image)
                self.assertIs(resp["allowed"], True, json.dumps(resp))
                self.assertFalse(resp.get("warnings"), json.dumps(resp))

        self.sigs.stop()  # the signatures' registry goes down; the images' stays up

        for sigil in (self.unpinned, self.pinned):
            resp = self.admit(sigil, by_digest)
            self.assertIs(resp["allowed"], True, json.dumps(resp))
            self.assertTrue(resp["warnings"][0].startswith("registry unreachable; admitted on"),
                            json.dumps(resp))
        # The tag still resolves, but without pinning the kubelet pulls whatever it names then.
        resp = self.admit(self.unpinned, by_tag)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("could not be reached", harness.message(resp))
        # With pinning, /mutate pins the Pod to the digest whose verdict stands.
        resp = self.admit(self.pinned, by_tag)
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        self.assertTrue(resp["warnings"][0].startswith("registry unreachable; admitted on"),
                        json.dumps(resp))


class HangingRegistryOutageTest(unittest.TestCase):
    """The registry does not go away but hangs: it accepts connections and never answers. The
    last verdict must still stand, although the registry's failure is only known at the
    deadline: the verifiers stop a little before the Server's own guard, so the stale allow is
    the answer, not the guard's bare TIMEOUT."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("outage-hang")
        cls.addClassCleanup(cls.reg.stop)
        d = harness.work_dir("outage-hang-keys")
        keys = harness.Keys(d, [("a", "p256")])
        cls.digest = cls.reg.push("test/hung", "v1", "outage hung")
        fixture.sign(cls.reg.client, "test/hung", cls.digest, keys.key("a"))
        pol = harness.write_policy(os.path.join(d, "policies"), "hang-images",
                                   "%s/test/**" % cls.reg.address, {"key-a": keys.pub("a")})
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write("cache: {ttl: 0s, negativeTtl: 0s, staleIfError: 1h}\n")
        cls.sigil = harness.SigilServer("outage-hang", [pol],
                                        ["--insecure-registry", cls.reg.address, "--config",
                                         config])
        cls.addClassCleanup(cls.sigil.stop)

    def test_stale_allow_when_the_registry_hangs(self):
        image = self.reg.ref("test/hung", digest=self.digest)
        status, resp = self.sigil.validate(harness.pod_review([image]), "?timeout=2s")
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        self.assertFalse(resp.get("warnings"), json.dumps(resp))

        port = int(self.reg.address.rsplit(":", 1)[1])
        self.reg.stop()
        stall = harness.StallServer(port)  # the same address now accepts and never answers
        self.addCleanup(stall.stop)

        status, resp = self.sigil.validate(harness.pod_review([image]), "?timeout=2s",
                                           timeout=30)
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertGreater(stall.accepted, 0, "sigil never contacted the hanging registry")
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        (warning,) = resp["warnings"]
        self.assertTrue(warning.startswith("registry timed out; admitted on a verdict from "),
                        warning)
        self.assertIn("decision=allowed-with-warnings reasons=TIMEOUT", self.sigil.log_tail())


class FailFastOutageTest(unittest.TestCase):
    """registry.failFast: once two attempts to a registry that cannot be reached (its address
    accepts connections and never completes a TLS handshake) have each waited, the admissions
    that follow do not wait for it. A last-known-good verdict stands at once, and an image with
    none is denied at once, saying so; nothing is sent to the registry until the backoff is
    over, and then one probe finds it back while the admission's other reads wait for it."""

    BACKOFF = 6  # seconds: registry.failFast.backoff (and maxBackoff)

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("outage-fast", tls=True)
        cls.addClassCleanup(cls.reg.stop)
        # sigil reaches the registry through a proxy that can be made to hang.
        cls.proxy = LatencyProxy(cls.reg.address, 0).start()
        cls.addClassCleanup(cls.proxy.stop)
        d = harness.work_dir("outage-fast-keys")
        keys = harness.Keys(d, [("a", "p256")])
        cls.known = cls.reg.push("test/known", "v1", "fail fast known")
        fixture.sign(cls.reg.client, "test/known", cls.known, keys.key("a"))
        cls.unknown = cls.reg.push("test/unknown", "v1", "fail fast never admitted")
        fixture.sign(cls.reg.client, "test/unknown", cls.unknown, keys.key("a"))
        pol = harness.write_policy(os.path.join(d, "policies"), "fast-images",
                                   "%s/test/**" % cls.proxy.address, {"key-a": keys.pub("a")})
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write("cache: {ttl: 0s, negativeTtl: 0s, staleIfError: 1h}\n"
                    "registry: {failFast: {after: 2, backoff: %ds, maxBackoff: %ds}}\n"
                    % (cls.BACKOFF, cls.BACKOFF))
        cls.metrics_port = harness.free_port()
        cls.sigil = harness.SigilServer(
            "outage-fast", [pol], ["--registry-ca", cls.reg.env["ca"], "--config", config,
                                   "--metrics-listen", "127.0.0.1:%d" % cls.metrics_port])
        cls.addClassCleanup(cls.sigil.stop)

    def admit(self, image, query=""):
        status, resp = self.sigil.validate(harness.pod_review([image]), query, timeout=30)
        self.assertEqual(status, 200, self.sigil.log_tail())
        return resp

    def metric(self, name, **labels):
        samples, _ = scrape_port(self.metrics_port)
        return value(samples, name, **labels)

    def test_admissions_stop_waiting_for_a_registry_that_cannot_be_reached(self):
        known = "%s/test/known@%s" % (self.proxy.address, self.known)
        unknown = "%s/test/unknown@%s" % (self.proxy.address, self.unknown)
        resp = self.admit(known)
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        self.assertEqual(self.metric("sigil_registry_hosts_down"), 0)

        self.proxy.hang()
        # The first admission in the outage waits for the registry until its deadline (the
        # failure is only known then): its two reads cannot connect. (A read with less than 3 s
        # left would not count: its deadline, not the registry, may be what cut it.)
        resp = self.admit(known, "?timeout=6s")
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        self.assertTrue(resp["warnings"][0].startswith("registry timed out; admitted on"),
                        json.dumps(resp))
        went_down = time.monotonic()
        # The registry is named literally by a cluster policy's glob: the operator's.
        self.assertEqual(self.metric("sigil_registry_hosts_down", owner="operator"), 1,
                         self.sigil.log_tail())
        self.assertIn("cannot be reached (2 attempts in a row could not connect",
                      self.sigil.log_tail())
        held = self.proxy.held

        # Inside the backoff: answered without a byte to the registry, whatever the budget.
        for _ in range(5):
            resp = self.admit(known, "?timeout=10s")
            self.assertIs(resp["allowed"], True, json.dumps(resp))
            self.assertTrue(resp["warnings"][0].startswith("registry unreachable; admitted on"),
                            json.dumps(resp))
        resp = self.admit(unknown, "?timeout=10s")
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        message = harness.message(resp)
        self.assertIn("could not be reached (it has not answered recently; sigil tries it again "
                      "within ", message)
        self.assertNotIn("https://", message)  # which origin failed stays in sigil's log
        self.assertLess(time.monotonic() - went_down, self.BACKOFF, "the test ran too slowly")
        self.assertEqual(self.proxy.held, held)
        self.assertGreaterEqual(self.metric("sigil_registry_fail_fast_total"), 6)
        self.assertEqual(self.metric("sigil_registry_went_down_total"), 1)

        # The registry is back: after the backoff, one admission's first read probes it, its
        # other reads wait for the probe, and all go; no warning, no denial.
        self.proxy.admit()
        time.sleep(max(0.0, self.BACKOFF + 0.5 - (time.monotonic() - went_down)))
        for image in (known, unknown):
            resp = self.admit(image)
            self.assertIs(resp["allowed"], True, json.dumps(resp))
            self.assertFalse(resp.get("warnings"), json.dumps(resp))
        self.assertEqual(self.metric("sigil_registry_hosts_down"), 0)
        self.assertIn("can be reached again", self.sigil.log_tail())


if __name__ == "__main__":
    unittest.main()
