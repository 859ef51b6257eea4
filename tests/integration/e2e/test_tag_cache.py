"""The pinning tag cache end to end (issue 14 points 2 and 4), against the real registry.

With `pinning: true`, /mutate pins a Pod's tag to the digest sigil verified and may take that
digest from a short tag -> digest cache (`cache.tagTtl`): the Pod then runs exactly the digest
that was verified, so a tag moved within the TTL is pinned to the old, verified digest. A Pod
that reaches /validate still tag-only was not mutated, and is denied NOT_PINNED. Without
pinning there is no cache. The registry requests are counted from the registry's own access log:
a burst of 200 Pods of one new image costs one HEAD, one .sig manifest, one payload blob and one
referrers lookup, by tag (mutate, then validate) and by digest.
"""
import concurrent.futures
import json
import os
import threading
import time
import unittest
import urllib.request

import harness
import latency_proxy
from harness import fixture

POLICY = "test-images"
BURST = 200


def setUpModule():
    harness.require_registry()


class TagCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("tagcache")
        cls.addClassCleanup(cls.reg.stop)
        r, c = cls.reg, cls.reg.client
        d = harness.work_dir("tagcache-keys")
        cls.keys = harness.Keys(d, [("a", "p256")])
        ka = cls.keys.key("a")
        cls.img = {}
        for repo in ("test/moved", "test/expiry", "test/nopin"):
            cls.img[repo] = r.push(repo, "v1", repo + " signed")
            fixture.sign(c, repo, cls.img[repo], ka)
            cls.img[repo + "-evil"] = r.push(repo, "evil", repo + " unsigned")
        for tag in ("warm", "v1", "v2"):
            cls.img["burst/app:" + tag] = r.push("burst/app", tag, "burst " + tag)
            fixture.sign(c, "burst/app", cls.img["burst/app:" + tag], ka)
        # The bursts go through a proxy that delays each request 200 ms (a registry far away),
        # so that all 200 Pods arrive while the first one's reads are still in flight.
        cls.far = latency_proxy.LatencyProxy(r.address, 0.2).start()
        cls.addClassCleanup(cls.far.stop)
        pol = os.path.join(d, "policies")
        harness.write_policy(pol, POLICY, ["%s/**" % r.address, "%s/**" % cls.far.address],
                             {"key-a": cls.keys.pub("a")})

        def sigil(name, config, extra=()):
            path = os.path.join(d, name + ".yaml")
            with open(path, "w") as f:
                f.write(config)
            s = harness.SigilServer(name, [pol], ["--insecure-registry", r.address,
                                                  "--insecure-registry", cls.far.address,
                                                  "--config", path] + list(extra))
            cls.addClassCleanup(s.stop)
            return s

        cls.metrics_port = harness.free_port()
        cls.pinning = sigil("tagcache-pinning", "pinning: true\ncache: {tagTtl: 60s}\n",
                            ["--metrics-listen", "127.0.0.1:%d" % cls.metrics_port])
        cls.short = sigil("tagcache-short", "pinning: true\ncache: {tagTtl: 1s}\n")
        cls.unpinned = sigil("tagcache-off", "pinning: false\ncache: {tagTtl: 60s}\n")

    def ref(self, repo, tag="v1", digest=None):
        return self.reg.ref(repo, tag, digest)

    def far_ref(self, repo, tag="v1", digest=None):
        """The image through the 200 ms proxy."""
        return self.reg.ref(repo, tag, digest).replace(self.reg.address, self.far.address, 1)

    def mutate(self, sigil, image, uid="7a9c0000-0000-4000-8000-000000000001"):
        """/mutate of a Pod with `image`: (review as the API server sends it next, patch)."""
        review = harness.pod_review([image], uid=uid)
        status, resp = sigil.mutate(review)
        self.assertEqual(status, 200, sigil.log_tail())
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        patch = harness.json_patch_of(resp)
        out = json.loads(json.dumps(review))
        out["request"]["object"] = harness.apply_json_patch(review["request"]["object"], patch)
        return out, patch

    def validate(self, sigil, review):
        status, resp = sigil.validate(review)
        self.assertEqual(status, 200, sigil.log_tail())
        return resp

    def tag_cache_hits(self):
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        with urllib.request.urlopen(url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("sigil_tag_cache_hits_total "):
                    return float(line.split()[1])
        self.fail("no sigil_tag_cache_hits_total in /metrics")

    @staticmethod
    def image_of(review):
        return review["request"]["object"]["spec"]["containers"][0]["image"]

    # -------------------------------------------------------------------------------------

    def test_moved_tag_within_the_ttl_pins_the_old_verified_digest(self):
        s, repo = self.pinning, "test/moved"
        old, evil = self.img[repo], self.img[repo + "-evil"]
        first, _ = self.mutate(s, self.ref(repo))
        self.assertEqual(self.image_of(first), self.ref(repo, "v1", old))
        fixture.retag(self.reg.client, repo, "v1", evil)  # the attack: v1 -> unsigned
        try:
            # /mutate within the TTL: the Pod is pinned to the digest verified before, and runs it.
            pinned, patch = self.mutate(s, self.ref(repo))
            self.assertEqual(self.image_of(pinned), self.ref(repo, "v1", old))
            self.assertIn(old, json.dumps(patch))
            self.assertNotIn(evil, json.dumps(patch))
            self.assertIs(self.validate(s, pinned)["allowed"], True)
            self.assertGreaterEqual(self.tag_cache_hits(), 1)
            # A Pod that was not mutated reaches /validate tag-only: with pinning on it is denied
            # NOT_PINNED, never answered from the tag cache (nor resolved: what the kubelet
            # pulls by that tag later is not known).
            resp = self.validate(s, harness.pod_review([self.ref(repo)]))
            self.assertIs(resp["allowed"], False, json.dumps(resp))
            self.assertIn("NOT_PINNED", resp["auditAnnotations"]["images"])
        finally:
            fixture.retag(self.reg.client, repo, "v1", old)

    def test_a_push_is_visible_to_mutate_after_the_ttl(self):
        s, repo = self.short, "test/expiry"
        old, evil = self.img[repo], self.img[repo + "-evil"]
        first, _ = self.mutate(s, self.ref(repo))
        self.assertEqual(self.image_of(first), self.ref(repo, "v1", old))
        fixture.retag(self.reg.client, repo, "v1", evil)
        try:
            time.sleep(1.5)  # past cache.tagTtl: 1s
            again, _ = self.mutate(s, self.ref(repo))
            self.assertEqual(self.image_of(again), self.ref(repo, "v1", evil))
            self.assertIs(self.validate(s, again)["allowed"], False)
        finally:
            fixture.retag(self.reg.client, repo, "v1", old)

    def test_without_pinning_mutate_resolves_fresh(self):
        s, repo = self.unpinned, "test/nopin"
        old, evil = self.img[repo], self.img[repo + "-evil"]
        first, _ = self.mutate(s, self.ref(repo))
        self.assertEqual(self.image_of(first), self.ref(repo, "v1", old))
        fixture.retag(self.reg.client, repo, "v1", evil)
        try:
            again, _ = self.mutate(s, self.ref(repo))
            self.assertEqual(self.image_of(again), self.ref(repo, "v1", evil))
        finally:
            fixture.retag(self.reg.client, repo, "v1", old)

    # -------------------------------------------------------------------------------------
    # Point 4: a burst of one new image, counted from the registry's access log.

    def burst(self, one_pod):
        """Runs one_pod(i) for i in 0..BURST-1, all released at once; returns sigil's registry
        requests during the burst."""
        before = len(self.reg.settled_sigil_requests())
        gate = threading.Barrier(BURST)

        def run(i):
            gate.wait(30)
            return one_pod(i)

        with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
            results = list(pool.map(run, range(BURST)))
        for allowed in results:
            self.assertIs(allowed, True, self.pinning.log_tail())
        return self.reg.settled_sigil_requests()[before:]

    @staticmethod
    def count(requests, method, path):
        return sum(1 for m, p, _ in requests if m == method and p == path)

    def assert_one_of_each(self, requests, digest, head_tag=None):
        name = "/v2/burst/app"
        sig = fixture.signature_tag(digest)
        schema = digest.replace(":", "-")
        summary = "\n".join("%s %s %d" % r for r in requests)
        if head_tag:
            self.assertEqual(self.count(requests, "HEAD", "%s/manifests/%s" % (name, head_tag)) +
                             self.count(requests, "GET", "%s/manifests/%s" % (name, head_tag)),
                             1, summary)
        self.assertEqual(self.count(requests, "GET", "%s/manifests/%s" % (name, sig)), 1, summary)
        blobs = [r for r in requests if r[0] == "GET" and r[1].startswith(name + "/blobs/")]
        self.assertEqual(len(blobs), 1, summary)  # the one signature's payload
        lookups = (self.count(requests, "GET", "%s/referrers/%s" % (name, digest)) +
                   self.count(requests, "GET", "%s/manifests/%s" % (name, schema)))
        self.assertEqual(lookups, 1, summary)
        self.assertEqual(len(requests), 4 if head_tag else 3, summary)

    def test_a_burst_of_one_new_image_costs_one_of_each_request(self):
        s = self.pinning
        # An earlier image of the repository: sigil learns that this registry has no referrers
        # API (its 404 is remembered per repository), as it has in steady state.
        warm, _ = self.mutate(s, self.far_ref("burst/app", "warm"))
        self.assertIs(self.validate(s, warm)["allowed"], True)

        # By tag, pinning on: each Pod is mutated, then validated as patched.
        want = self.far_ref("burst/app", "v1", self.img["burst/app:v1"])

        def pod_by_tag(i):
            uid = "7a9c1000-0000-4000-8000-%012d" % i
            pinned, _ = self.mutate(s, self.far_ref("burst/app", "v1"), uid)
            if self.image_of(pinned) != want:
                return "pinned to %s" % self.image_of(pinned)
            return self.validate(s, pinned)["allowed"]

        self.assert_one_of_each(self.burst(pod_by_tag), self.img["burst/app:v1"], head_tag="v1")

        # By digest.
        by_digest = self.far_ref("burst/app", None, self.img["burst/app:v2"])

        def pod_by_digest(i):
            uid = "7a9c2000-0000-4000-8000-%012d" % i
            return self.validate(s, harness.pod_review([by_digest], uid=uid))["allowed"]

        self.assert_one_of_each(self.burst(pod_by_digest), self.img["burst/app:v2"])


if __name__ == "__main__":
    unittest.main()
