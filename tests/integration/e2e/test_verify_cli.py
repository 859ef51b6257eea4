"""`sigil verify IMAGE (--policy FILE | --key PUB)`: exit 0 admitted, 1 denied, 2 usage error."""
import json
import unittest

import harness
from harness import fixture


def setUpModule():
    harness.require_registry()


class VerifyCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("verify-cli")
        cls.addClassCleanup(cls.reg.stop)
        d = harness.work_dir("verify-cli-keys")
        cls.keys = harness.Keys(d, [(a, a) for a in ("p256", "p384", "ed25519", "rsa")])
        c = cls.reg.client
        cls.digests = {}
        for alg in ("p256", "p384", "ed25519", "rsa"):
            dg = cls.reg.push("test/" + alg, "v1", "verify " + alg)
            fixture.sign(c, "test/" + alg, dg, cls.keys.key(alg))
            cls.digests[alg] = dg
        cls.reg.push("test/unsigned", "v1", "verify unsigned")
        cls.policy = harness.write_policy(d + "/policies", "cli", "%s/test/**" % cls.reg.address,
                                          {"p256": cls.keys.pub("p256")})

    def verify(self, *args):
        return harness.run_sigil(["verify"] + list(args) +
                                 ["--insecure-registry", self.reg.address])

    def test_every_key_type(self):
        for alg in ("p256", "p384", "ed25519", "rsa"):
            with self.subTest(alg=alg):
                r = self.verify(self.reg.ref("test/" + alg, "v1"), "--key",
                                self.keys.pub_path(alg))
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_wrong_key_type_or_key_denied(self):
        # each image verified with every other key: all denied
        for alg in ("p256", "p384", "ed25519", "rsa"):
            for other in ("p256", "p384", "ed25519", "rsa"):
                if other == alg:
                    continue
                with self.subTest(image=alg, key=other):
                    r = self.verify(self.reg.ref("test/" + alg, "v1"), "--key",
                                    self.keys.pub_path(other))
                    self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_policy_file(self):
        r = self.verify(self.reg.ref("test/p256", "v1"), "--policy", self.policy)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.verify(self.reg.ref("test/unsigned", "v1"), "--policy", self.policy)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("test/unsigned", r.stdout + r.stderr)

    def test_output_json(self):
        ok = self.verify(self.reg.ref("test/p256", "v1"), "--key", self.keys.pub_path("p256"),
                         "--output", "json")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        doc = json.loads(ok.stdout)
        self.assertIn(self.digests["p256"], ok.stdout, "the JSON names the verified digest")
        bad = self.verify(self.reg.ref("test/unsigned", "v1"), "--key",
                          self.keys.pub_path("p256"), "--output", "json")
        self.assertEqual(bad.returncode, 1, bad.stderr)
        self.assertNotEqual(json.loads(bad.stdout), doc)

    def test_usage_errors(self):
        img = self.reg.ref("test/p256", "v1")
        cases = [
            [],
            ["verify"],
            ["verify", img],                                        # neither --policy nor --key
            ["verify", img, "--key", "/nonexistent/key.pub"],
            ["verify", img, "--key", self.keys.key("p256")],          # a private key is no key
            ["verify", img, "--policy", "/nonexistent/policy.yaml"],
            ["verify", img, "--key", self.keys.pub_path("p256"), "--output", "xml"],
            ["verify", img, "--key", self.keys.pub_path("p256"), "--no-such-flag"],
            ["no-such-command"],
        ]
        for args in cases:
            with self.subTest(args=args):
                r = harness.run_sigil(args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)

    def test_invalid_image_reference_is_not_admitted(self):
        r = harness.run_sigil(["verify", "UPPER/Case::bad", "--key", self.keys.pub_path("p256")])
        self.assertIn(r.returncode, (1, 2), r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
