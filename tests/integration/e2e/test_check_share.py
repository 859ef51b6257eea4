"""checks.namespacePerSecond / namespaceBurst: each namespace's share of signature checks.

Whoever may create pods in a namespace chooses the images, and can push new ones that each carry
many signatures by a key no policy trusts: every one of them is a signature check against the
policy's key. Within one admission the check budget bounds that; across admissions, without a
share, one namespace could keep sigil's threads checking for every tenant. Here a namespace gets
64 check units at once and one more a second: two images with 30 untrusted signatures each spend
60, the third stops after four checks with a denial that names the share, and another namespace
is not touched."""
import json
import os
import time
import unittest

import harness
from harness import fixture

POLICY = "share-images"


def setUpModule():
    harness.require_registry()


class CheckShareTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("check-share")
        cls.addClassCleanup(cls.reg.stop)
        r, c = cls.reg, cls.reg.client
        d = harness.work_dir("check-share-keys")
        cls.keys = harness.Keys(d, [("trusted", "p256"), ("stranger", "p256")])
        trusted, stranger = cls.keys.key("trusted"), cls.keys.key("stranger")
        # test/signed needs 11 checks (10 stranger signatures come first), more than the share
        # can refill while the test runs; test/later needs one.
        dg = r.push("test/signed", "v1", "test/signed")
        for n in range(10):
            fixture.sign(c, "test/signed", dg, stranger, append=n > 0)
        fixture.sign(c, "test/signed", dg, trusted, append=True)
        fixture.sign(c, "test/later", r.push("test/later", "v1", "test/later"), trusted)
        for i in (1, 2, 3):
            dg = r.push("test/flood%d" % i, "v1", "flood %d" % i)
            for n in range(30):  # 30 signatures by a key no policy trusts
                fixture.sign(c, "test/flood%d" % i, dg, stranger, append=n > 0)
        pol = os.path.join(d, "policies")
        harness.write_policy(pol, POLICY, "%s/test/**" % r.address,
                             {"trusted": cls.keys.pub("trusted")})
        cfg = os.path.join(d, "config.yaml")
        with open(cfg, "w") as f:
            f.write("checks: {namespacePerSecond: 1, namespaceBurst: 64}\n")
        cls.sigil = harness.SigilServer("check-share", [pol],
                                        ["--insecure-registry", r.address, "--config", cfg])
        cls.addClassCleanup(cls.sigil.stop)

    def admit(self, namespace, image):
        doc = harness.pod_review([image])
        doc["request"]["namespace"] = namespace
        doc["request"]["object"]["metadata"]["namespace"] = namespace
        status, resp = self.sigil.validate(doc)
        self.assertEqual(status, 200, self.sigil.log_tail())
        return resp

    @staticmethod
    def reasons(resp):
        """The audit annotation's verdicts ("denied BUDGET_EXCEEDED ...") and the message."""
        return json.dumps(resp.get("auditAnnotations") or {}) + harness.message(resp)

    def test_a_namespace_spends_its_share_and_only_its_own(self):
        ref = lambda repo: self.reg.ref(repo, "v1")
        for repo in ("test/flood1", "test/flood2"):  # 30 checks each, none passes
            resp = self.admit("flood", ref(repo))
            self.assertIs(resp["allowed"], False, json.dumps(resp))
            self.assertNotIn("BUDGET_EXCEEDED", self.reasons(resp))
        resp = self.admit("flood", ref("test/flood3"))  # 4 units left
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("BUDGET_EXCEEDED", self.reasons(resp))
        self.assertIn("the namespace's share of signature checks (1 check units a second, 64 at "
                      "once) is spent", harness.message(resp))
        # Too little is left in this namespace, even for a properly signed image...
        resp = self.admit("flood", ref("test/signed"))
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("BUDGET_EXCEEDED", self.reasons(resp))
        # ...while another namespace admits it.
        resp = self.admit("team", ref("test/signed"))
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        # The denial was not remembered, and units come back, one a second: not enough for 30
        # checks, enough for the one a newly signed image needs (not verified before anywhere).
        time.sleep(1.5)
        resp = self.admit("flood", ref("test/flood3"))
        self.assertIn("BUDGET_EXCEEDED", self.reasons(resp))
        time.sleep(1.5)
        resp = self.admit("flood", ref("test/later"))
        self.assertIs(resp["allowed"], True, json.dumps(resp))


if __name__ == "__main__":
    unittest.main()
