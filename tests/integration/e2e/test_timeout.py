"""The webhook's ?timeout= is honoured: a registry that accepts and never answers makes sigil
deny with TIMEOUT before the API server would give up, never hang, never allow."""
import json
import time
import unittest

import harness


def setUpModule():
    harness.require_registry()


class TimeoutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.stall = harness.StallServer()
        cls.addClassCleanup(cls.stall.stop)
        d = harness.work_dir("timeout")
        keys = harness.Keys(d, [("a", "p256")])
        pol = harness.write_policy(d + "/policies", "stalled", "%s/**" % cls.stall.address,
                                   {"key-a": keys.pub("a")})
        cls.sigil = harness.SigilServer("timeout", [pol],
                                        ["--insecure-registry", cls.stall.address])
        cls.addClassCleanup(cls.sigil.stop)

    def test_timeout_2s(self):
        image = "%s/test/hang:v1" % self.stall.address
        t0 = time.monotonic()
        status, resp = self.sigil.validate(harness.pod_review([image]), "?timeout=2s",
                                           timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 200)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("TIMEOUT", json.dumps(resp))
        # The verifier stops a little before the Server's own guard, so the denial names the
        # image, the step and the registry that was slow, not only that sigil was.
        message = resp["status"]["message"]
        self.assertIn("image %s (spec.containers[0] c0)" % image, message)
        self.assertIn("resolving the tag: registry %s did not answer" % self.stall.address,
                      message)
        self.assertGreater(self.stall.accepted, 0, "sigil never contacted the registry")
        # That ?timeout= was honoured shows in the answer (TIMEOUT, not a 10 s default wait);
        # the bound below only tells "the 2 s budget" from "sigil's 10 s default" and is far
        # from either, so a loaded CI machine never fails it. How close to the budget sigil
        # answers is measured, not asserted.
        self.assertLess(elapsed, 6.0, "answered after %.2fs" % elapsed)

    def test_server_still_answers_after_timeouts(self):
        self.assertEqual(self.sigil.get("/healthz")[0], 200)


if __name__ == "__main__":
    unittest.main()
