"""Attacks by whoever can create a pod and run (or choose) a registry: the real `sigil serve`
against the real distribution registry behind tests/integration/e2e/hostile.py's front.

- Admissions cut at random webhook deadlines while many signature fetches are in flight must
  never crash sigil (a use-after-free in Boost 1.81's cross-executor cancellation did, 4 runs
  in 5). Run under ASan in CI's sanitizer stage, where any such bug aborts the process.
- Registry content built to make sigil hold memory (one blob listed many times, many large
  blobs) is read once, within budget, and denied with BUDGET_EXCEEDED past it.
- A referrers 404 for a repository that does not exist (NAME_UNKNOWN) must not hide the
  bundles of every other repository on that registry.
Peak memory and the latency of a legitimate admission during these attacks: bench/attacks.py.
"""
import base64
import concurrent.futures
import http.client
import json
import os
import random
import ssl
import unittest

import harness
from harness import fixture
import hostile
import sigstore_fixture as sf
from test_keyless import IDENTITY, ISSUER, keyless_policy


def setUpModule():
    harness.require_registry()


def push_signature_manifest(reg, repo, digest, layers):
    """Writes the .sig manifest of digest with the given (payload bytes, signature b64) layers,
    each blob pushed once."""
    descs, pushed = [], {}
    for payload, sig_b64 in layers:
        d = pushed.get(payload)
        if d is None:
            d = pushed[payload] = reg.put_blob(repo, payload)
        descs.append({"mediaType": fixture.MT_SIMPLESIGNING, "size": len(payload), "digest": d,
                      "annotations": {fixture.ANN_SIGNATURE: sig_b64}})
    cfg = fixture.compact({"architecture": "", "os": "", "config": {},
                           "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = fixture.compact({"schemaVersion": 2, "mediaType": fixture.MT_OCI_MANIFEST,
                                "config": {"mediaType": fixture.MT_OCI_CONFIG,
                                           "size": len(cfg), "digest": reg.put_blob(repo, cfg)},
                                "layers": descs})
    return reg.put_manifest(repo, fixture.signature_tag(digest), manifest,
                            fixture.MT_OCI_MANIFEST)


def junk_sig():
    return base64.b64encode(os.urandom(70)).decode()


class CutAdmissionsUnderLoad(unittest.TestCase):
    """Point 4: deadlines that fall while fetches are in flight, at random, concurrently."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("attacks-cut")
        cls.addClassCleanup(cls.reg.stop)
        cls.front = hostile.HostileFront(cls.reg.address, delay_ms=(0, 12))
        cls.addClassCleanup(cls.front.stop)
        d = harness.work_dir("attacks-cut")
        keys = harness.Keys(d, [("a", "p256")])
        c = cls.reg.client
        cls.images = []
        for i in range(8):
            repo = "many/img%d" % i
            digest = cls.reg.push(repo, "v1", "image %d" % i)
            # 40 distinct payload blobs, each signed by nobody the policy trusts: every one is
            # fetched, one after the other, before the verdict.
            layers = [(fixture.simple_signing_payload("x/%d" % n, digest), junk_sig())
                      for n in range(40)]
            push_signature_manifest(c, repo, digest, layers)
            cls.images.append("%s/%s:v1" % (cls.front.address, repo))
        good = cls.reg.push("many/good", "v1", "the good one")
        fixture.sign(c, "many/good", good, keys.key("a"),
                     docker_reference="%s/many/good" % cls.front.address)
        cls.good = "%s/many/good:v1" % cls.front.address
        pol = harness.write_policy(d + "/policies", "front", "%s/**" % cls.front.address,
                                   {"key-a": keys.pub("a")})
        cls.sigil = harness.SigilServer("attacks-cut", [pol],
                                        ["--insecure-registry", cls.front.address])
        cls.addClassCleanup(cls.sigil.stop)

    def test_random_deadlines_never_crash(self):
        rng = random.Random(9)
        timeouts = ["30ms", "50ms", "80ms", "120ms", "200ms", "350ms", "600ms", "1s"]

        def one(i):
            imgs = list(self.images)
            rng.shuffle(imgs)
            review = harness.pod_review(imgs, uid="00000000-0000-4000-8000-%012d" % i)
            try:
                return self.sigil.validate(review, "?timeout=" + rng.choice(timeouts),
                                           timeout=30)
            except (http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError) as e:
                # A body still arriving when a sub-second deadline passes is dropped without
                # an answer (the API server has given up by then; its own timeouts are >= 1 s).
                # Whether sigil is still alive is checked below.
                return None, repr(e)

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(60)))
        self.assertIsNone(self.sigil.proc.poll(), "sigil died:\n" + self.sigil.log_tail())
        answered = [(s, r) for s, r in results if s is not None]
        self.assertGreater(len(answered), len(results) // 2, results)
        for status, resp in answered:
            self.assertEqual(status, 200, self.sigil.log_tail())
            self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertEqual(self.sigil.get("/healthz")[0], 200)
        # Still judging correctly afterwards.
        status, resp = self.sigil.validate(harness.pod_review([self.good]), "?timeout=20s")
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        status, resp = self.sigil.validate(harness.pod_review(self.images[:2]), "?timeout=20s")
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("BAD_SIGNATURE", resp["auditAnnotations"]["images"], json.dumps(resp))


class MemoryAmplification(unittest.TestCase):
    """Point 5: registry content built to make sigil hold memory."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("attacks-mem")
        cls.addClassCleanup(cls.reg.stop)
        cls.front = hostile.HostileFront(cls.reg.address)
        cls.addClassCleanup(cls.front.stop)
        d = harness.work_dir("attacks-mem")
        keys = harness.Keys(d, [("a", "p256")])
        c = cls.reg.client
        # One 200 KiB blob listed 64 times under distinct signatures.
        cls.same_digest = cls.reg.push("amp/same", "v1", "same")
        cls.same_blob = os.urandom(200 * 1024)
        push_signature_manifest(c, "amp/same", cls.same_digest,
                                [(cls.same_blob, junk_sig()) for _ in range(64)])
        # One 1 MiB blob listed 64 times: over the payload cap, never fetched.
        cls.big_digest = cls.reg.push("amp/big", "v1", "big")
        cls.big_blob = os.urandom(1 << 20)
        push_signature_manifest(c, "amp/big", cls.big_digest,
                                [(cls.big_blob, junk_sig()) for _ in range(64)])
        # Two images with 40 distinct 250 KiB payloads each: past one admission's budget.
        cls.wide = []
        for i in range(2):
            repo = "amp/wide%d" % i
            digest = cls.reg.push(repo, "v1", "wide %d" % i)
            push_signature_manifest(c, repo, digest,
                                    [(os.urandom(250 * 1000), junk_sig()) for _ in range(40)])
            cls.wide.append("%s/%s:v1" % (cls.front.address, repo))
        pol = harness.write_policy(d + "/policies", "front", "%s/**" % cls.front.address,
                                   {"key-a": keys.pub("a")})
        cls.sigil = harness.SigilServer("attacks-mem", [pol],
                                        ["--insecure-registry", cls.front.address])
        cls.addClassCleanup(cls.sigil.stop)

    def blob_path(self, repo, blob):
        return "/v2/%s/blobs/%s" % (repo, fixture.sha256_digest(blob))

    def test_a_blob_listed_many_times_is_read_once(self):
        image = "%s/amp/same:v1" % self.front.address
        status, resp = self.sigil.validate(harness.pod_review([image]), "?timeout=20s")
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertEqual(self.front.count(self.blob_path("amp/same", self.same_blob)), 1)

    def test_a_payload_over_the_cap_is_never_fetched(self):
        image = "%s/amp/big:v1" % self.front.address
        status, resp = self.sigil.validate(harness.pod_review([image]), "?timeout=20s")
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("over sigil's cap", harness.message(resp))
        self.assertEqual(self.front.count(self.blob_path("amp/big", self.big_blob)), 0)

    def test_past_the_admission_budget_the_image_is_denied_and_sigil_stays_healthy(self):
        status, resp = self.sigil.validate(harness.pod_review(self.wide), "?timeout=20s")
        self.assertEqual(status, 200)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("BUDGET_EXCEEDED", resp["auditAnnotations"]["images"], json.dumps(resp))
        self.assertIn("budget", harness.message(resp))
        self.assertIsNone(self.sigil.proc.poll())
        self.assertEqual(self.sigil.get("/healthz")[0], 200)


class ReferrersMemoPoisoning(unittest.TestCase):
    """Point 6: a registry with the referrers API, bundles reachable as referrers only."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("attacks-referrers")
        cls.addClassCleanup(cls.reg.stop)
        cls.front = hostile.HostileFront(cls.reg.address, referrers_api=True,
                                         hide_tag_schema=True)
        cls.addClassCleanup(cls.front.stop)
        work = harness.work_dir("attacks-referrers")
        state = os.path.join(work, "state")
        auth = sf.init(state)
        digest = cls.reg.push("bundle/ok", "v1", "bundled")
        sf.bundle(cls.reg.client, "bundle/ok", digest,
                  sf.Signer(keyless=auth, identity=IDENTITY, issuer=ISSUER),
                  subject_name="%s/bundle/ok" % cls.front.address)
        policies = os.path.join(work, "policies")
        os.makedirs(policies)
        with open(os.path.join(state, "trustroot.yaml")) as f:
            trust_root = f.read()
        with open(os.path.join(policies, "trust.yaml"), "w") as f:
            f.write(trust_root)
        with open(os.path.join(policies, "keyless.yaml"), "w") as f:
            f.write(keyless_policy("corp", "%s/**" % cls.front.address))
        cls.sigil = harness.SigilServer("attacks-referrers", [policies],
                                        ["--insecure-registry", cls.front.address])
        cls.addClassCleanup(cls.sigil.stop)

    def test_a_missing_repository_does_not_hide_other_repositories_bundles(self):
        ghost = "%s/ghost/none@%s" % (self.front.address, fixture.sha256_digest(b"ghost"))
        status, resp = self.sigil.validate(harness.pod_review([ghost]))
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        real = "%s/bundle/ok:v1" % self.front.address
        status, resp = self.sigil.validate(harness.pod_review([real]))
        self.assertIs(resp["allowed"], True, json.dumps(resp) + self.sigil.log_tail())
        # The ghost's referrers were asked for (and answered NAME_UNKNOWN), and the real
        # image's referrers API was still used afterwards.
        self.assertGreater(self.front.count_prefix("/v2/ghost/none/referrers/"), 0)
        self.assertGreater(self.front.count_prefix("/v2/bundle/ok/referrers/"), 0)


if __name__ == "__main__":
    unittest.main()
