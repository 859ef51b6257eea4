"""Self-tests of tests/support (registry.py, fixture.py): the harness must produce what it
claims, or every end-to-end verdict built on it is meaningless. Needs no sigil binary."""
import base64
import json
import os
import unittest
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding

import harness
from harness import fixture, registry


def setUpModule():
    harness.require_registry()


def verify_with(pub_pem, sig, data):
    pub = serialization.load_pem_public_key(pub_pem)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        h = hashes.SHA384() if pub.curve.name == "secp384r1" else hashes.SHA256()
        pub.verify(sig, data, ec.ECDSA(h))
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        pub.verify(sig, data)
    else:
        pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())


class PlainRegistryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = harness.RunningRegistry("support-plain")
        cls.c = cls.reg.client
        cls.dir = harness.work_dir("support-keys")

    @classmethod
    def tearDownClass(cls):
        cls.reg.stop()

    def test_env_json(self):
        env = registry.load_env(self.reg.dir)
        self.assertEqual(env["scheme"], "http")
        self.assertIsNone(env["ca"])
        self.assertTrue(env["address"].startswith("127.0.0.1:"))
        self.assertTrue(os.path.exists("/proc/%d" % env["pid"]))

    def test_images_are_deterministic_and_digest_is_of_served_bytes(self):
        d1 = self.reg.push("test/det", "a", "same")
        d2 = self.reg.push("test/det", "b", "same")
        d3 = self.reg.push("test/det", "c", "different")
        self.assertEqual(d1, d2)
        self.assertNotEqual(d1, d3)
        body, mt = self.c.get_manifest("test/det", "a")
        self.assertEqual(fixture.sha256_digest(body), d1)
        self.assertEqual(mt, fixture.MT_OCI_MANIFEST)
        for desc in [json.loads(body)["config"]] + json.loads(body)["layers"]:
            self.assertEqual(fixture.sha256_digest(self.c.get_blob("test/det", desc["digest"])),
                             desc["digest"])

    def test_index(self):
        d = fixture.push_index(self.c, "test/multi", "v1", "multi")
        body, mt = self.c.get_manifest("test/multi", "v1")
        self.assertEqual(fixture.sha256_digest(body), d)
        self.assertEqual(mt, fixture.MT_OCI_INDEX)
        idx = json.loads(body)
        self.assertEqual([m["platform"]["architecture"] for m in idx["manifests"]],
                         ["amd64", "arm64"])
        for m in idx["manifests"]:
            child, _ = self.c.get_manifest("test/multi", m["digest"])
            self.assertEqual(fixture.sha256_digest(child), m["digest"])

    def sig_layers(self, repo, digest):
        body, mt = self.c.get_manifest(repo, fixture.signature_tag(digest))
        self.assertIsNotNone(body, "no .sig manifest")
        self.assertEqual(mt, fixture.MT_OCI_MANIFEST)
        m = json.loads(body)
        out = []
        for layer in m["layers"]:
            self.assertEqual(layer["mediaType"], fixture.MT_SIMPLESIGNING)
            payload = self.c.get_blob(repo, layer["digest"])
            self.assertEqual(len(payload), layer["size"])
            out.append((payload, base64.b64decode(layer["annotations"][fixture.ANN_SIGNATURE])))
        cfg = json.loads(self.c.get_blob(repo, m["config"]["digest"]))
        self.assertEqual(cfg["rootfs"]["diff_ids"], [l["digest"] for l in m["layers"]])
        return out

    def test_sign_every_algorithm_like_cosign(self):
        for alg in ("p256", "p384", "ed25519", "rsa"):
            with self.subTest(alg=alg):
                k, p = fixture.keygen(alg, os.path.join(self.dir, alg))
                d = self.reg.push("test/alg", alg, "alg " + alg)
                fixture.sign(self.c, "test/alg", d, k)
                [(payload, sig)] = self.sig_layers("test/alg", d)
                expected = ('{"critical":{"identity":{"docker-reference":"%s/test/alg"},'
                            '"image":{"docker-manifest-digest":"%s"},'
                            '"type":"cosign container image signature"},"optional":null}'
                            % (self.reg.address, d))
                self.assertEqual(payload.decode(), expected)
                with open(p, "rb") as f:
                    verify_with(f.read(), sig, payload)

    def test_variants_are_really_bad(self):
        k, p = fixture.keygen("p256", os.path.join(self.dir, "v"))
        with open(p, "rb") as f:
            pub = f.read()
        d = self.reg.push("test/var", "bad-sig", "bad-sig")
        fixture.sign(self.c, "test/var", d, k, "bad-sig")
        [(payload, sig)] = self.sig_layers("test/var", d)
        self.assertIn(d.encode(), payload)
        with self.assertRaises(InvalidSignature):
            verify_with(pub, sig, payload)
        d = self.reg.push("test/var", "payload-digest", "payload-digest")
        fixture.sign(self.c, "test/var", d, k, "payload-digest")
        [(payload, sig)] = self.sig_layers("test/var", d)
        verify_with(pub, sig, payload)
        self.assertNotEqual(json.loads(payload)["critical"]["image"]["docker-manifest-digest"], d)
        d = self.reg.push("test/var", "wrong-type", "wrong-type")
        fixture.sign(self.c, "test/var", d, k, "wrong-type")
        [(payload, sig)] = self.sig_layers("test/var", d)
        verify_with(pub, sig, payload)
        self.assertNotEqual(json.loads(payload)["critical"]["type"], fixture.COSIGN_TYPE)

    def test_append_copy_and_retag(self):
        k1, _ = fixture.keygen("p256", os.path.join(self.dir, "a1"))
        k2, _ = fixture.keygen("ed25519", os.path.join(self.dir, "a2"))
        d1 = self.reg.push("test/atk", "v1", "one")
        d2 = self.reg.push("test/atk", "v2", "two")
        fixture.sign(self.c, "test/atk", d1, k1)
        fixture.sign(self.c, "test/atk", d1, k2, append=True)
        self.assertEqual(len(self.sig_layers("test/atk", d1)), 2)
        fixture.copy_signature(self.c, "test/atk", d1, d2)
        for payload, _ in self.sig_layers("test/atk", d2):
            self.assertIn(d1.encode(), payload)
        fixture.copy_signature(self.c, "test/atk", d1, d2, to_repo="test/elsewhere")
        self.assertEqual(len(self.sig_layers("test/elsewhere", d2)), 2)
        fixture.retag(self.c, "test/atk", "v1", d2)
        self.assertEqual(self.c.resolve("test/atk", "v1"), d2)

    def test_cli(self):
        out = harness.subprocess.run(
            ["/usr/bin/python3", os.path.join(harness.SOURCE_DIR, "tests/support/fixture.py"),
             "push-image", "--env", self.reg.env_path, "--repo", "test/cli", "--tag", "v1",
             "--content", "cli"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), self.c.resolve("test/cli", "v1"))


class AuthRegistryTest(unittest.TestCase):
    def probe(self, env, url, auth=None):
        req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=10,
                                        context=registry.ssl_context(env["ca"])) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def test_tls_basic(self):
        reg = harness.RunningRegistry("support-tls-basic", tls=True, auth="basic")
        try:
            env = reg.env
            self.assertEqual(env["scheme"], "https")
            base = "https://%s/v2/" % reg.address
            self.assertEqual(self.probe(env, base)[0], 401)
            good = "Basic " + base64.b64encode(
                ("%s:%s" % (env["user"], env["password"])).encode()).decode()
            self.assertEqual(self.probe(env, base, good)[0], 200)
            bad = "Basic " + base64.b64encode(("%s:nope" % env["user"]).encode()).decode()
            self.assertEqual(self.probe(env, base, bad)[0], 401)
            d = reg.push("test/app", "v1", "basic")
            self.assertEqual(reg.client.resolve("test/app", "v1"), d)
            # an unauthenticated client cannot push
            anon = fixture.Registry(reg.address, "https", env["ca"])
            with self.assertRaises(fixture.FixtureError):
                fixture.push_image(anon, "test/app", "v2", "anon")
        finally:
            reg.stop()

    def test_token(self):
        reg = harness.RunningRegistry("support-token", tls=True, auth="token")
        try:
            env = reg.env
            d = reg.push("test/app", "v1", "token")
            n = reg.token_count()
            self.assertGreaterEqual(n, 1)
            self.assertEqual(reg.client.resolve("test/app", "v1"), d)
            self.assertEqual(reg.token_count(), n, "fixture client caches its token")
            # anonymous: token server answers with an empty grant, registry refuses
            anon = fixture.Registry(reg.address, "https", env["ca"])
            with self.assertRaises(fixture.FixtureError):
                anon.resolve("test/app", "v1")
            # wrong password: the token server refuses
            wrong = fixture.Registry(reg.address, "https", env["ca"], env["user"], "nope")
            with self.assertRaises(fixture.FixtureError):
                wrong.resolve("test/app", "v1")
            with open(os.path.join(reg.dir, "token_requests.log")) as f:
                log = [json.loads(line) for line in f]
            self.assertEqual({e["outcome"] for e in log}, {"ok", "anonymous", "bad-credentials"})
        finally:
            reg.stop()
        self.assertFalse(registry._alive(env["pid"]))
        self.assertFalse(registry._alive(env["token_pid"]))


if __name__ == "__main__":
    unittest.main()
