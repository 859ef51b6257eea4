"""`sigil serve` /mutate end to end: tags pinned to the digests sigil verified, against a real registry.

The kubelet pulls a tag long after admission; a tag moved in between would run unverified. /mutate
rewrites every tag-only image of a Pod to name:tag@sha256:<digest it verified>, and a policy with
spec.requireDigest refuses tag-only references outright (for clusters without mutation). Each
patch is applied here the way the API server applies it (RFC 6902, `test` then `replace`) and the
result is sent to /validate, as the API server would next.
"""
import json
import os
import unittest

import harness
from harness import fixture
from latency_proxy import LatencyProxy

POLICY = "test-images"
DIGEST_POLICY = "digests-only"


def setUpModule():
    harness.require_registry()


class MutateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("mutate")
        cls.addClassCleanup(cls.reg.stop)
        r, c = cls.reg, cls.reg.client
        d = harness.work_dir("mutate-keys")
        cls.keys = harness.Keys(d, [("a", "p256")])
        ka = cls.keys.key("a")
        cls.img = {}

        def push(repo, content, tag="v1"):
            dg = r.push(repo, tag, content)
            cls.img[repo] = dg
            return dg

        fixture.sign(c, "test/signed", push("test/signed", "signed"), ka)
        fixture.sign(c, "test/other", push("test/other", "other"), ka)
        push("test/unsigned", "unsigned")
        # The tag-moved attack: v1 is signed; `evil` is an unsigned image pushed beside it.
        fixture.sign(c, "test/moved", push("test/moved", "moved-signed"), ka)
        cls.img["test/moved-evil"] = r.push("test/moved", "evil", "moved-unsigned")
        # For the verdict-cache check: its signature is taken away after /mutate verified it.
        fixture.sign(c, "test/cached", push("test/cached", "cached"), ka)
        cls.img["test/cached-unsigned"] = r.push("test/cached", "unsigned", "cached-unsigned")
        fixture.sign(c, "pinned/app", push("pinned/app", "pinned-app"), ka)
        push("nomatch/app", "nomatch")

        pol = os.path.join(d, "policies")
        harness.write_policy(pol, POLICY, "%s/test/**" % r.address, {"key-a": cls.keys.pub("a")})
        harness.write_policy(pol, DIGEST_POLICY, "%s/pinned/**" % r.address,
                             {"key-a": cls.keys.pub("a")}, require_digest=True)
        cls.policy_dir = pol
        cfg = os.path.join(d, "config.yaml")
        with open(cfg, "w") as f:
            f.write("pinning: true\n")
        cls.sigil = harness.SigilServer("mutate", [pol],
                                        ["--insecure-registry", r.address, "--config", cfg])
        cls.addClassCleanup(cls.sigil.stop)

    def ref(self, repo, tag="v1", digest=None):
        return self.reg.ref(repo, tag, digest)

    def mutate(self, review):
        status, resp = self.sigil.mutate(review)
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertEqual(resp["uid"], review["request"]["uid"])
        self.assertIs(resp["allowed"], True, "/mutate never denies: " + json.dumps(resp))
        self.assertNotIn("status", resp)
        return resp

    def pinned_review(self, review):
        """The review after the API server applied /mutate's patch: (patched review, patch)."""
        resp = self.mutate(review)
        patch = harness.json_patch_of(resp)
        out = json.loads(json.dumps(review))
        out["request"]["object"] = harness.apply_json_patch(review["request"]["object"], patch)
        return out, patch

    def validate(self, review):
        status, resp = self.sigil.validate(review)
        self.assertEqual(status, 200, self.sigil.log_tail())
        return resp

    @staticmethod
    def images(review):
        return [c["image"] for c in review["request"]["object"]["spec"]["containers"]]

    # ---------------------------------------------------------------------------------------

    def test_tag_pinned_to_the_verified_digest(self):
        by_digest = self.ref("test/other", None, self.img["test/other"])
        review = harness.pod_review([self.ref("test/signed"), by_digest, self.ref("test/signed")],
                                    uid="6c1f0000-0000-4000-8000-000000000001")
        pinned, patch = self.pinned_review(review)
        want = self.ref("test/signed", "v1", self.img["test/signed"])
        self.assertEqual(self.images(pinned), [want, by_digest, want])
        # test + replace for both uses of the tag; the digest reference is not touched.
        self.assertEqual([(op["op"], op["path"]) for op in patch],
                         [("test", "/spec/containers/0/image"), ("replace", "/spec/containers/0/image"),
                          ("test", "/spec/containers/2/image"), ("replace", "/spec/containers/2/image")])
        self.assertIs(self.validate(pinned)["allowed"], True)

    def test_pinned_reference_survives_a_moved_tag(self):
        review = harness.pod_review([self.ref("test/moved")], uid="6c1f0000-0000-4000-8000-000000000002")
        pinned, _ = self.pinned_review(review)
        self.assertEqual(self.images(pinned), [self.ref("test/moved", "v1", self.img["test/moved"])])
        # The attack: v1 now points to the unsigned image.
        fixture.retag(self.reg.client, "test/moved", "v1", self.img["test/moved-evil"])
        try:
            # What the kubelet runs is the pinned digest, and it still verifies...
            self.assertIs(self.validate(pinned)["allowed"], True)
            # ...while the Pod by tag, unpinned, is denied.
            resp = self.validate(review)
            self.assertIs(resp["allowed"], False, json.dumps(resp))
            self.assertIn("test/moved", harness.message(resp))
            # A new pod by tag is pinned within the tag cache's TTL (cache.tagTtl, 10s by
            # default) to the digest verified before, which it then runs, never the moved one.
            again, _ = self.pinned_review(harness.pod_review([self.ref("test/moved")]))
            self.assertEqual(self.images(again), [self.ref("test/moved", "v1", self.img["test/moved"])])
            self.assertIs(self.validate(again)["allowed"], True)
        finally:
            fixture.retag(self.reg.client, "test/moved", "v1", self.img["test/moved"])

    def test_validate_after_mutate_is_a_verdict_cache_hit(self):
        review = harness.pod_review([self.ref("test/cached")], uid="6c1f0000-0000-4000-8000-000000000003")
        pinned, _ = self.pinned_review(review)
        # Take the signature away: only a verdict remembered from /mutate can admit the pod now.
        sig_tag = fixture.signature_tag(self.img["test/cached"])
        body, media_type = self.reg.client.get_manifest("test/cached", sig_tag)
        fixture.retag(self.reg.client, "test/cached", sig_tag, self.img["test/cached-unsigned"])
        try:
            self.assertIs(self.validate(pinned)["allowed"], True, self.sigil.log_tail())
            # Control: a sigil that did not verify it before denies the same review.
            fresh = harness.SigilServer("mutate-fresh", [self.policy_dir],
                                        ["--insecure-registry", self.reg.address])
            try:
                _, resp = fresh.validate(pinned)
                self.assertIs(resp["allowed"], False, json.dumps(resp))
            finally:
                fresh.stop()
        finally:
            self.reg.client.put_manifest("test/cached", sig_tag, body, media_type)

    def test_unsigned_image_is_pinned_and_denied_by_validation(self):
        review = harness.pod_review([self.ref("test/unsigned")])
        pinned, _ = self.pinned_review(review)
        self.assertEqual(self.images(pinned), [self.ref("test/unsigned", "v1", self.img["test/unsigned"])])
        resp = self.validate(pinned)
        self.assertIs(resp["allowed"], False)
        self.assertIn("no signatures", harness.message(resp).lower())

    def test_require_digest_denies_a_tag_only_image(self):
        resp = self.validate(harness.pod_review([self.ref("pinned/app")]))
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        msg = harness.message(resp)
        self.assertIn("is referenced by tag; policy %s requires a digest" % DIGEST_POLICY, msg)
        self.assertIn("DIGEST_REQUIRED", resp["auditAnnotations"]["images"])
        # By digest (with or without the tag) it is verified as usual.
        self.assertIs(self.validate(harness.pod_review(
            [self.ref("pinned/app", None, self.img["pinned/app"])]))["allowed"], True)
        self.assertIs(self.validate(harness.pod_review(
            [self.ref("pinned/app", "v1", self.img["pinned/app"])]))["allowed"], True)
        # The policy judges the reference as its author wrote it: /mutate does not pin it (the
        # verification refuses it before resolving the tag), so the Pod is refused as it would be
        # in a cluster without mutation, and as a Deployment template by tag is.
        review = harness.pod_review([self.ref("pinned/app")])
        pinned, patch = self.pinned_review(review)
        self.assertEqual(patch, [])
        self.assertIs(self.validate(pinned)["allowed"], False)

    def test_what_is_left_alone(self):
        # An image no policy matches, and a tag that does not exist: unchanged, never denied here.
        review = harness.pod_review([self.ref("nomatch/app"), self.ref("test/signed", "no-such-tag")])
        self.assertEqual(harness.json_patch_of(self.mutate(review)), [])
        # A Deployment's template: never touched (GitOps sees no drift), still validated.
        dep = harness.review("deployment-create", {"myregistry.azurecr.io/myapp:v1": self.ref("test/signed"),
                                                   "myregistry.azurecr.io/init:v1": self.ref("test/unsigned")})
        self.assertEqual(harness.json_patch_of(self.mutate(dep)), [])
        self.assertIs(self.validate(dep)["allowed"], False)

    def test_debug_container_pinned_running_container_left(self):
        images = {"chetandevsecops.azurecr.io/myapp:v1": self.ref("test/signed"),
                  "docker.io/library/busybox:1.36": self.ref("test/other")}
        review = harness.review("pod-update-ephemeral-containers", images)
        pinned, patch = self.pinned_review(review)
        self.assertEqual([op["path"] for op in patch], ["/spec/ephemeralContainers/0/image"] * 2)
        obj = pinned["request"]["object"]["spec"]
        self.assertEqual(obj["ephemeralContainers"][0]["image"],
                         self.ref("test/other", "v1", self.img["test/other"]))
        self.assertEqual(obj["containers"][0]["image"], self.ref("test/signed"))

    def test_updates_that_run_nothing_new_are_not_judged(self):
        # A pod running an unsigned image (admitted before its policy existed, say): removing its
        # finalizer, labelling it, or finishing its deletion must not be refused.
        review = harness.pod_review([self.ref("test/unsigned")], uid="6c1f0000-0000-4000-8000-000000000009")
        req = review["request"]
        req["operation"] = "UPDATE"
        req["oldObject"] = json.loads(json.dumps(req["object"]))
        req["oldObject"]["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]
        req["object"]["metadata"]["labels"] = {"touched": "yes"}
        self.assertIs(self.validate(review)["allowed"], True)
        self.assertEqual(harness.json_patch_of(self.mutate(review)), [])
        # Changing its image is judged.
        changed = json.loads(json.dumps(review))
        changed["request"]["object"]["spec"]["containers"][0]["image"] = self.ref("test/unsigned", "v2")
        self.assertIs(self.validate(changed)["allowed"], False)
        # Unless the pod is being deleted.
        changed["request"]["object"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
        self.assertIs(self.validate(changed)["allowed"], True)
        with open(self.sigil.log) as f:
            log = f.read()
        self.assertIn("decision=allowed-unjudged reasons=IMAGES_UNCHANGED", log)
        self.assertIn("decision=allowed-unjudged reasons=BEING_DELETED", log)

    def test_image_volumes_are_pinned_and_judged(self):
        # Kubernetes' ImageVolume mounts an image's files into the Pod: an unsigned one is denied
        # as a container's image would be, and a tag is pinned the same way.
        review = harness.pod_review([self.ref("test/signed")], uid="6c1f0000-0000-4000-8000-00000000000b")
        spec = review["request"]["object"]["spec"]
        spec["volumes"] = [{"name": "models", "image": {"reference": self.ref("test/unsigned")}}]
        pinned, patch = self.pinned_review(review)
        self.assertIn("/spec/volumes/0/image/reference", [op["path"] for op in patch])
        volume = pinned["request"]["object"]["spec"]["volumes"][0]["image"]["reference"]
        self.assertEqual(volume, self.ref("test/unsigned", "v1", self.img["test/unsigned"]))
        resp = self.validate(pinned)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("(spec.volumes[0] models)", harness.message(resp))
        # A signed image volume is admitted.
        spec["volumes"][0]["image"]["reference"] = self.ref("test/other")
        pinned, _ = self.pinned_review(review)
        self.assertIs(self.validate(pinned)["allowed"], True, self.sigil.log_tail())

    def test_pinning_setting_reaches_sigil(self):
        with open(self.sigil.log) as f:
            self.assertIn("pinning: on", f.read())



class UnpinnedTest(unittest.TestCase):
    """With pinning on, a Pod that reaches /validate still by tag was not pinned, and is denied
    NOT_PINNED. The attack it stops: a registry fails /mutate's read of the tag (so nothing is
    pinned), answers /validate's with a signed digest, and serves the kubelet another image.
    Here the registry's proxy refuses connections during /mutate and is back for /validate."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("unpinned")
        cls.addClassCleanup(cls.reg.stop)
        cls.proxy = LatencyProxy(cls.reg.address, 0).start()
        cls.addClassCleanup(cls.proxy.stop)
        d = harness.work_dir("unpinned-keys")
        cls.keys = harness.Keys(d, [("a", "p256")])
        cls.digest = cls.reg.push("team/app", "v1", "unpinned-app")
        fixture.sign(cls.reg.client, "team/app", cls.digest, cls.keys.key("a"))
        pol = os.path.join(d, "policies")
        harness.write_policy(pol, POLICY, "%s/team/**" % cls.proxy.address,
                             {"key-a": cls.keys.pub("a")})
        cfg = os.path.join(d, "config.yaml")
        with open(cfg, "w") as f:
            f.write("pinning: true\n")
        cls.sigil = harness.SigilServer("unpinned", [pol],
                                        ["--insecure-registry", cls.proxy.address, "--config", cfg])
        cls.addClassCleanup(cls.sigil.stop)

    def test_a_pod_mutate_could_not_pin_is_denied_not_pinned(self):
        tag = "%s/team/app:v1" % self.proxy.address
        review = harness.pod_review([tag], uid="6c1f0000-0000-4000-8000-0000000000a1")
        self.proxy.refuse()
        try:
            status, resp = self.sigil.mutate(review)
        finally:
            self.proxy.admit()
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertIs(resp["allowed"], True)
        self.assertEqual(harness.json_patch_of(resp), [], "nothing could be pinned")
        # The registry answers again, with the signed digest: resolving the tag now would admit
        # a Pod whose image the kubelet pulls by tag later.
        status, resp = self.sigil.validate(review)
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        msg = harness.message(resp)
        self.assertIn("was not pinned to a digest by sigil's /mutate", msg)
        self.assertIn("retry, or write %s@sha256:..." % tag, msg)
        self.assertIn("NOT_PINNED", resp["auditAnnotations"]["images"])
        # The retry: /mutate pins it now, and the pinned Pod is admitted.
        status, resp = self.sigil.mutate(review)
        patch = harness.json_patch_of(resp)
        pinned = harness.apply_json_patch(review["request"]["object"], patch)
        self.assertEqual(pinned["spec"]["containers"][0]["image"], tag + "@" + self.digest)
        again = json.loads(json.dumps(review))
        again["request"]["object"] = pinned
        status, resp = self.sigil.validate(again)
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        # A Deployment's template by tag is not pinned by /mutate, and is verified as before.
        dep = harness.review("deployment-create", {"myregistry.azurecr.io/myapp:v1": tag,
                                                   "myregistry.azurecr.io/init:v1": tag})
        status, resp = self.sigil.validate(dep)
        self.assertIs(resp["allowed"], True, json.dumps(resp))

if __name__ == "__main__":
    unittest.main()
