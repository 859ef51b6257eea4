"""`sigil serve` end to end: AdmissionReview in, verdict out, against a real registry.

Every negative case here is an attack or a mistake that a missing check in sigil would let
through; each one is paired with a positive case that differs from it only by that one thing.
"""
import json
import os
import unittest

import harness
from harness import fixture

POLICY = "test-images"
WARN_POLICY = "warn-images"


def setUpModule():
    harness.require_registry()


class AdmissionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("admission")
        cls.addClassCleanup(cls.reg.stop)
        r, c = cls.reg, cls.reg.client
        d = harness.work_dir("admission-keys")
        cls.keys = harness.Keys(d, [("a", "p256"), ("b", "p256")])
        ka, kb = cls.keys.key("a"), cls.keys.key("b")
        cls.img = {}

        def push(repo, content, tag="v1"):
            dg = r.push(repo, tag, content)
            cls.img[repo] = dg
            return dg

        fixture.sign(c, "test/signed", push("test/signed", "signed"), ka)
        fixture.sign(c, "test/second", push("test/second", "second"), ka)
        push("test/unsigned", "unsigned")
        fixture.sign(c, "test/otherkey", push("test/otherkey", "otherkey"), kb)
        fixture.sign(c, "test/badsig", push("test/badsig", "badsig"), ka, "bad-sig")
        fixture.sign(c, "test/payload", push("test/payload", "payload"), ka, "payload-digest")
        fixture.sign(c, "test/wrongtype", push("test/wrongtype", "wrongtype"), ka, "wrong-type")
        # the copy attack: a valid signature of test/signed's digest under test/copied's .sig tag
        fixture.copy_signature(c, "test/signed", cls.img["test/signed"],
                               push("test/copied", "copied"), to_repo="test/copied")
        # several signatures, only the appended one is by a trusted key
        dg = push("test/appended", "appended")
        fixture.sign(c, "test/appended", dg, kb)
        fixture.sign(c, "test/appended", dg, ka, append=True)
        # a signed multi-arch index
        cls.img["test/index"] = fixture.push_index(c, "test/index", "v1", "index")
        fixture.sign(c, "test/index", cls.img["test/index"], ka)
        # tag moved after signing
        fixture.sign(c, "test/moved", push("test/moved", "moved-signed"), ka)
        cls.img["test/moved-unsigned"] = r.push("test/moved", "staging", "moved-unsigned")
        push("warn/unsigned", "warn-unsigned")
        fixture.sign(c, "nomatch/signed", push("nomatch/signed", "nomatch"), ka)

        pol = os.path.join(d, "policies")
        harness.write_policy(pol, POLICY, "%s/test/**" % r.address, {"key-a": cls.keys.pub("a")})
        harness.write_policy(pol, WARN_POLICY, "%s/warn/**" % r.address,
                             {"key-a": cls.keys.pub("a")}, mode="warn")
        cls.policy_dir = pol
        cls.sigil = harness.SigilServer("admission", [pol],
                                        ["--insecure-registry", r.address])
        cls.addClassCleanup(cls.sigil.stop)

    def admit(self, images, uid="0f1e2d3c-0000-4000-8000-00000000abcd"):
        status, resp = self.sigil.validate(harness.pod_review(images, uid))
        self.assertEqual(status, 200, self.sigil.log_tail())
        self.assertEqual(resp["uid"], uid)
        return resp

    def assertAllowed(self, resp):
        self.assertIs(resp["allowed"], True, json.dumps(resp))

    def assertDenied(self, resp, *needles):
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        msg = harness.message(resp)
        for n in needles:
            self.assertIn(n, msg, json.dumps(resp))
        return msg

    def ref(self, repo, tag="v1"):
        return self.reg.ref(repo, tag)

    # --- allowed ---------------------------------------------------------------------------

    def test_signed_by_tag_and_by_digest(self):
        self.assertAllowed(self.admit([self.ref("test/signed")]))
        self.assertAllowed(self.admit([self.reg.ref("test/signed",
                                                    digest=self.img["test/signed"])]))
        self.assertAllowed(self.admit([self.reg.ref("test/signed", "v1",
                                                    self.img["test/signed"])]))

    def test_any_trusted_signature_among_several(self):
        self.assertAllowed(self.admit([self.ref("test/appended")]))

    def test_signed_index(self):
        self.assertAllowed(self.admit([self.ref("test/index")]))

    # --- denied ----------------------------------------------------------------------------

    def test_unsigned(self):
        msg = self.assertDenied(self.admit([self.ref("test/unsigned")]), "test/unsigned", POLICY)
        self.assertIn("no signatures", msg.lower())

    def test_attacks_denied(self):
        for repo in ("test/otherkey", "test/badsig", "test/copied", "test/payload",
                     "test/wrongtype"):
            with self.subTest(repo=repo):
                self.assertDenied(self.admit([self.ref(repo)]), repo)
                self.assertDenied(self.admit([self.reg.ref(repo, digest=self.img[repo])]), repo)

    def test_digest_in_reference_is_what_is_verified(self):
        # tag of a signed image, digest of an unsigned one: the digest decides
        ref = self.reg.ref("test/signed", "v1", self.img["test/unsigned"])
        self.assertDenied(self.admit([ref]), "test/signed")

    def test_tag_moved_after_signing(self):
        self.assertAllowed(self.admit([self.ref("test/moved")]))
        fixture.retag(self.reg.client, "test/moved", "v1", self.img["test/moved-unsigned"])
        try:
            self.assertDenied(self.admit([self.ref("test/moved")]), "test/moved")
        finally:
            fixture.retag(self.reg.client, "test/moved", "v1", self.img["test/moved"])

    def test_multi_container_pod_names_the_unsigned_image(self):
        resp = self.admit([self.ref("test/signed"), self.ref("test/unsigned"),
                           self.ref("test/second")])
        msg = self.assertDenied(resp, "test/unsigned")
        self.assertNotIn("test/second", msg)

    def test_init_and_digest_pinned_containers(self):
        signed, unsigned = self.img["test/signed"], self.img["test/unsigned"]
        images = {
            "myregistry.azurecr.io/app/web@sha256:0d3f0a5e5c6b1d7f2e8a9b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e":
                self.reg.ref("test/signed", digest=signed),
            "myregistry.azurecr.io/infra/proxy:2.4.1@sha256:5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d":
                self.reg.ref("test/second", "v1", self.img["test/second"]),
            "myregistry.azurecr.io/app/migrate:v3": self.ref("test/signed"),
        }
        _, resp = self.sigil.validate(harness.review("pod-create-init-and-sidecar", images))
        self.assertAllowed(resp)
        images["myregistry.azurecr.io/app/migrate:v3"] = self.reg.ref("test/unsigned",
                                                                      digest=unsigned)
        _, resp = self.sigil.validate(harness.review("pod-create-init-and-sidecar", images))
        self.assertDenied(resp, "test/unsigned")

    def test_deployment_template(self):
        ok = {"myregistry.azurecr.io/myapp:v1": self.ref("test/signed"),
              "myregistry.azurecr.io/init:v1": self.ref("test/second")}
        _, resp = self.sigil.validate(harness.review("deployment-create", ok))
        self.assertAllowed(resp)
        bad = dict(ok, **{"myregistry.azurecr.io/init:v1": self.ref("test/unsigned")})
        _, resp = self.sigil.validate(harness.review("deployment-create", bad))
        self.assertDenied(resp, "test/unsigned")

    def test_cronjob_template(self):
        p = "myregistry.azurecr.io/batch/report:2026.11"
        _, resp = self.sigil.validate(harness.review("cronjob-create",
                                                     {p: self.ref("test/signed")}))
        self.assertAllowed(resp)
        _, resp = self.sigil.validate(harness.review("cronjob-create",
                                                     {p: self.ref("test/badsig")}))
        self.assertDenied(resp, "test/badsig")

    def test_ephemeral_container(self):
        images = {"chetandevsecops.azurecr.io/myapp:v1": self.ref("test/signed"),
                  "docker.io/library/busybox:1.36": self.ref("test/unsigned")}
        _, resp = self.sigil.validate(harness.review("pod-update-ephemeral-containers", images))
        self.assertDenied(resp, "test/unsigned")

    def test_configmap_allowed_untouched(self):
        doc = harness.review("configmap-create")
        status, resp = self.sigil.validate(doc)
        self.assertEqual(status, 200)
        self.assertAllowed(resp)
        self.assertEqual(resp["uid"], doc["request"]["uid"])

    def test_uid_echoed(self):
        for uid in ("705ab4f5-6393-11e8-b7cc-42010a800002", "x"):
            with self.subTest(uid=uid):
                self.assertEqual(self.admit([self.ref("test/signed")], uid)["uid"], uid)

    # --- policy modes ----------------------------------------------------------------------

    def test_warn_mode_allows_with_warnings(self):
        resp = self.admit([self.ref("warn/unsigned")])
        self.assertAllowed(resp)
        warnings = " ".join(resp.get("warnings") or [])
        self.assertIn("warn/unsigned", warnings, json.dumps(resp))

    def test_no_matching_policy_denied_by_default(self):
        self.assertDenied(self.admit([self.ref("nomatch/signed")]), "nomatch/signed")

    def test_no_matching_policy_allow(self):
        s = harness.SigilServer("admission-nomatch", [self.policy_dir],
                                ["--insecure-registry", self.reg.address,
                                 "--no-match-policy", "allow"])
        try:
            _, resp = s.validate(harness.pod_review([self.ref("nomatch/signed")]))
            self.assertAllowed(resp)
            _, resp = s.validate(harness.pod_review([self.ref("test/unsigned")]))
            self.assertDenied(resp, "test/unsigned")
        finally:
            s.stop()

    # --- bad requests ----------------------------------------------------------------------

    def test_malformed_bodies_are_400(self):
        cases = [b"", b"{", b"not json", b"[]", b'{"kind":"AdmissionReview"}',
                 b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}',
                 json.dumps(harness.review("pod-create-kubectl-run"))[:-40].encode()]
        for body in cases:
            with self.subTest(body=body[:40]):
                status, _ = self.sigil.post_raw(body)
                self.assertEqual(status, 400)
        # and the server is still fine
        self.assertAllowed(self.admit([self.ref("test/signed")]))

    def test_oversized_body_rejected(self):
        doc = harness.pod_review([self.ref("test/signed")])
        doc["request"]["object"]["metadata"]["annotations"] = {"pad": "x" * (7 * 1024 * 1024 + 1)}
        status, _ = self.sigil.post_raw(json.dumps(doc).encode(), timeout=60)
        self.assertIn(status, (400, 413))
        self.assertAllowed(self.admit([self.ref("test/signed")]))

    def test_health_endpoints(self):
        self.assertEqual(self.sigil.get("/healthz")[0], 200)
        self.assertEqual(self.sigil.get("/readyz")[0], 200)


if __name__ == "__main__":
    unittest.main()
