"""Registries that need trust or credentials: TLS with a private CA (--registry-ca), basic auth
and bearer-token auth with credentials from a docker config.json (--registry-config).
Each positive case has its negative: without the CA or the credentials sigil denies."""
import json
import os
import unittest

import harness
from harness import fixture


def setUpModule():
    harness.require_registry()


class _Base(unittest.TestCase):
    tls = False
    auth = "none"

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("auth-%s-%s" % (cls.auth, cls.tls), cls.tls, cls.auth)
        cls.addClassCleanup(cls.reg.stop)
        cls.dir = harness.work_dir("auth-%s-keys" % cls.auth)
        cls.keys = harness.Keys(cls.dir, [("a", "p256")])
        cls.digest = cls.reg.push("test/app", "v1", "auth " + cls.auth)
        fixture.sign(cls.reg.client, "test/app", cls.digest, cls.keys.key("a"))
        cls.reg.push("test/unsigned", "v1", "auth unsigned " + cls.auth)
        env = cls.reg.env
        cls.good_cfg = cls.docker_config("good.json", {cls.reg.address: (env["user"] or "",
                                                                      env["password"] or "")})
        cls.bad_cfg = cls.docker_config("bad.json", {cls.reg.address: (env["user"] or "",
                                                                     "wrong-password")})
        cls.other_host_cfg = cls.docker_config("other.json", {
            "127.0.0.1:1": (env["user"] or "", env["password"] or "")})

    @classmethod
    def docker_config(cls, name, creds):
        return fixture.docker_config(os.path.join(cls.dir, name), creds)

    def trust_args(self):
        if self.tls:
            return ["--registry-ca", self.reg.env["ca"]]
        return ["--insecure-registry", self.reg.address]

    def verify(self, repo="test/app", extra=()):
        r = harness.run_sigil(["verify", self.reg.ref(repo, "v1"), "--key",
                               self.keys.pub_path("a")] + self.trust_args() + list(extra))
        self.assertNotIn(r.returncode, (2,), r.stdout + r.stderr)
        return r


class TlsRegistryTest(_Base):
    tls = True

    def test_with_registry_ca(self):
        r = self.verify()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.verify("test/unsigned")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_without_registry_ca_denied(self):
        r = harness.run_sigil(["verify", self.reg.ref("test/app", "v1"), "--key",
                               self.keys.pub_path("a")])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_serve_with_registry_ca(self):
        pol = harness.write_policy(self.dir + "/policies", "tls", "%s/**" % self.reg.address,
                                   {"a": self.keys.pub("a")})
        s = harness.SigilServer("tls", [pol], ["--registry-ca", self.reg.env["ca"]])
        try:
            _, resp = s.validate(harness.pod_review([self.reg.ref("test/app", "v1")]))
            self.assertIs(resp["allowed"], True, json.dumps(resp))
            _, resp = s.validate(harness.pod_review([self.reg.ref("test/unsigned", "v1")]))
            self.assertIs(resp["allowed"], False, json.dumps(resp))
        finally:
            s.stop()


class BasicAuthTest(_Base):
    auth = "basic"

    def test_credentials_from_docker_config(self):
        r = self.verify(extra=["--registry-config", self.good_cfg])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_no_wrong_or_misplaced_credentials_denied(self):
        for extra in ([], ["--registry-config", self.bad_cfg],
                      ["--registry-config", self.other_host_cfg]):
            with self.subTest(extra=extra):
                r = self.verify(extra=extra)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_password_never_printed(self):
        for cfg in (self.good_cfg, self.bad_cfg):
            r = self.verify(extra=["--registry-config", cfg, "--output", "json"])
            self.assertNotIn(self.reg.env["password"], r.stdout + r.stderr)
            self.assertNotIn("wrong-password", r.stdout + r.stderr)


class TokenAuthTest(_Base):
    tls = True
    auth = "token"

    def test_token_flow(self):
        before = self.reg.token_count()
        r = self.verify(extra=["--registry-config", self.good_cfg])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        fetched = self.reg.token_count() - before
        self.assertGreaterEqual(fetched, 1, "sigil never asked the token server")
        # all requests of one verification are in one repository scope: one token suffices
        self.assertLessEqual(fetched, 2, "tokens are not reused within a verification")

    def test_anonymous_or_wrong_credentials_denied(self):
        for extra in ([], ["--registry-config", self.bad_cfg]):
            with self.subTest(extra=extra):
                r = self.verify(extra=extra)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_serve_reuses_tokens(self):
        pol = harness.write_policy(self.dir + "/policies", "token", "%s/**" % self.reg.address,
                                   {"a": self.keys.pub("a")})
        s = harness.SigilServer("token", [pol], ["--registry-ca", self.reg.env["ca"],
                                                 "--registry-config", self.good_cfg])
        try:
            before = self.reg.token_count()
            for i in range(3):
                _, resp = s.validate(harness.pod_review([self.reg.ref("test/app", "v1")],
                                                        uid="tok-%d" % i))
                self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            _, resp = s.validate(harness.pod_review([self.reg.ref("test/unsigned", "v1")]))
            self.assertIs(resp["allowed"], False, json.dumps(resp))
            # one token per repository scope, reused across requests (expires_in is 300 s)
            self.assertLessEqual(self.reg.token_count() - before, 3)
        finally:
            s.stop()


if __name__ == "__main__":
    unittest.main()
