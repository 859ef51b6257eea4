"""Rekor v2 (rekor-tiles) entries end to end (issue 13, points 4, 5 and 8).

cosign v3 on a Rekor v2 log writes bundles whose entry is a hashedrekord 0.0.2 (for DSSE: over
the PAE) with an inclusion proof and a checkpoint (C2SP signed note, here cosigned by a witness
whose line comes first), no SET and no integrated time: the signing time comes from an RFC 3161
timestamp alone. tests/support/sigstore_fixture.py makes such a log (init --rekor-v2) and signs
with it; the images live in the real distribution registry with the bundles as OCI 1.1 referrers.
`sigil serve` gets the trust as --trusted-root (which states the v2 log's id) and, in a second
server, as a policy-controller TrustRoot named by trustRootRef (which cannot: sigil derives the
id from the Ed25519 key and the base URL's host). `sigil verify-bundle` takes the same material,
and sha512 digests.
"""
import hashlib
import json
import os
import unittest

import harness
import sigstore_fixture as sf

IDENTITY = "release@corp.test"
ISSUER = "https://accounts.corp.test"


def setUpModule():
    harness.require_registry()


def keyless_policy(name, glob, trust_root_ref=None):
    ref = "      trustRootRef: %s\n" % trust_root_ref if trust_root_ref else ""
    return ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
            "metadata:\n  name: %s\nspec:\n  images:\n  - glob: %s\n  authorities:\n"
            "  - name: release\n    keyless:\n%s      identities:\n"
            "      - issuer: %s\n        subject: %s\n" %
            (name, json.dumps(glob), ref, json.dumps(ISSUER), json.dumps(IDENTITY)))


class Rekor2Admission(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("rekor2")
        cls.addClassCleanup(cls.reg.stop)
        cls.work = harness.work_dir("rekor2")
        cls.auth = sf.init(os.path.join(cls.work, "state"), rekor_v2=True)
        c = cls.reg.client

        def signer(**kw):
            kw.setdefault("identity", IDENTITY)
            kw.setdefault("issuer", ISSUER)
            return sf.Signer(keyless=cls.auth, rekor_v2=True, **kw)

        def bundled(repo, s, **kw):
            digest = cls.reg.push(repo, "v1", "content of " + repo)
            return sf.bundle(c, repo, digest, s, **kw)

        made = bundled("rekor2/ok", signer())
        entry = json.loads(made["bundle"])["verificationMaterial"]["tlogEntries"][0]
        assert entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}, entry
        assert "inclusionPromise" not in entry and "integratedTime" not in entry, entry
        bundled("rekor2/v02", signer(), version="0.2")
        bundled("rekor2/bad-checkpoint", signer(variant="bad-checkpoint"))
        bundled("rekor2/bad-inclusion", signer(variant="bad-inclusion"))
        bundled("rekor2/set-body-mismatch", signer(variant="set-body-mismatch"))
        bundled("rekor2/bad-tsa", signer(variant="bad-tsa"))
        bundled("rekor2/no-timestamp", signer(tsa=False))
        bundled("rekor2/stranger", signer(identity="mallory@corp.test"))
        # An attestation by a stranger: the denial is about the stranger (point 5).
        bundled("rekor2/stranger-attestation",
                signer(identity="mallory@corp.test", variant="wrong-predicate"))

        policies = os.path.join(cls.work, "policies")
        os.makedirs(policies)
        with open(os.path.join(policies, "keyless.yaml"), "w") as f:
            f.write(keyless_policy("corp-rekor2", "%s/rekor2/**" % cls.reg.address))
        cls.sigil = harness.SigilServer(
            "rekor2", [policies],
            ["--insecure-registry", cls.reg.address, "--trusted-root", cls.auth.trusted_root])
        cls.addClassCleanup(cls.sigil.stop)

        # The same trust as a policy-controller TrustRoot (sigstoreKeys: base URL and key per
        # log, no log id), used through trustRootRef; the server has no --trusted-root.
        crd = os.path.join(cls.work, "policies-trustroot")
        os.makedirs(crd)
        with open(cls.auth.trustroot_yaml) as f:
            trust_root = f.read()
        assert "https://log2025-1.rekor.sigil.test" in trust_root, trust_root
        with open(os.path.join(crd, "trust.yaml"), "w") as f:
            f.write(trust_root)
        with open(os.path.join(crd, "keyless.yaml"), "w") as f:
            f.write(keyless_policy("corp-rekor2-crd", "%s/rekor2/**" % cls.reg.address,
                                   trust_root_ref="sigil-test"))
        cls.sigil_crd = harness.SigilServer("rekor2-trustroot", [crd],
                                            ["--insecure-registry", cls.reg.address])
        cls.addClassCleanup(cls.sigil_crd.stop)

    def admit(self, repo, server=None):
        server = server or self.sigil
        status, resp = server.validate(harness.pod_review([self.reg.ref(repo, tag="v1")]))
        self.assertEqual(status, 200, server.log_tail())
        return resp

    def assertDenied(self, repo, reason, *needles, server=None):
        resp = self.admit(repo, server)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn(reason, resp["auditAnnotations"]["images"], json.dumps(resp))
        msg = harness.message(resp)
        for n in needles:
            self.assertIn(n, msg, json.dumps(resp))
        return msg

    def test_cosign_v3_bundles_on_rekor_v2_are_admitted(self):
        for repo in ("rekor2/ok", "rekor2/v02"):
            with self.subTest(repo=repo):
                resp = self.admit(repo)
                self.assertIs(resp["allowed"], True, json.dumps(resp))

    def test_rekor_v2_bundles_through_a_trustroot(self):
        """A TrustRoot names the v2 log by key and URL only: its entries must still be found
        (id = SHA-256(origin || "\\n" || 0x01 || key)) and checked, not skipped as untrusted."""
        for repo in ("rekor2/ok", "rekor2/v02"):
            with self.subTest(repo=repo):
                resp = self.admit(repo, self.sigil_crd)
                self.assertIs(resp["allowed"], True, json.dumps(resp))
        # Found and checked: a broken checkpoint is a broken checkpoint, not an unknown log.
        msg = self.assertDenied("rekor2/bad-checkpoint", "TLOG_INVALID", "checkpoint",
                                server=self.sigil_crd)
        self.assertNotIn("does not trust", msg)
        self.assertDenied("rekor2/stranger", "IDENTITY_MISMATCH", server=self.sigil_crd)

    def test_broken_links_are_denied(self):
        cases = {
            "rekor2/bad-checkpoint": "TLOG_INVALID",
            "rekor2/bad-inclusion": "TLOG_INVALID",
            "rekor2/set-body-mismatch": "TLOG_INVALID",
            "rekor2/bad-tsa": "TIMESTAMP_INVALID",
            # The log proves no time; without a timestamp nothing does.
            "rekor2/no-timestamp": "NO_SIGNING_TIME",
            "rekor2/stranger": "IDENTITY_MISMATCH",
        }
        for repo, reason in cases.items():
            with self.subTest(repo=repo):
                self.assertDenied(repo, reason)

    def test_a_strangers_attestation_is_denied_for_the_stranger(self):
        msg = self.assertDenied("rekor2/stranger-attestation", "IDENTITY_MISMATCH",
                                "mallory@corp.test")
        self.assertNotIn("unusable", msg)


class Rekor2VerifyBundle(unittest.TestCase):
    """`sigil verify-bundle` over Rekor v2 bundles, by path and by sha256 / sha512 digest."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.work = harness.work_dir("rekor2-verify-bundle")
        cls.auth = sf.init(os.path.join(cls.work, "state"), rekor_v2=True)
        cls.blob = os.path.join(cls.work, "artifact.txt")
        with open(cls.blob, "wb") as f:
            f.write(b"an artifact logged in Rekor v2\n")
        with open(cls.blob, "rb") as f:
            data = f.read()
        cls.sha256 = "sha256:" + hashlib.sha256(data).hexdigest()
        cls.sha512 = "sha512:" + hashlib.sha512(data).hexdigest()

    def make(self, name, content, **kw):
        signer = sf.Signer(keyless=self.auth, identity=IDENTITY, issuer=ISSUER, rekor_v2=True)
        made = sf.make_bundle(signer, artifact=self.blob, content=content, **kw)
        path = os.path.join(self.work, name + ".json")
        with open(path, "wb") as f:
            f.write(made["bundle"])
        return path

    def verify(self, bundle, artifact):
        return harness.run_sigil(["verify-bundle", "--bundle", bundle, "--certificate-identity",
                                  IDENTITY, "--certificate-oidc-issuer", ISSUER,
                                  "--trusted-root", self.auth.trusted_root, artifact])

    def test_message_signature(self):
        b = self.make("message", "message")
        for artifact in (self.blob, self.sha256):
            with self.subTest(artifact=artifact):
                r = self.verify(b, artifact)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # The bundle signs a SHA-256 digest: a SHA-512 one cannot be compared with it.
        r = self.verify(b, self.sha512)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("sha256 digest", r.stderr)

    def test_dsse_subject_named_by_sha512_only(self):
        b = self.make("dsse-sha512", "dsse", subject_digests=["sha512"])
        for artifact in (self.blob, self.sha512):
            with self.subTest(artifact=artifact):
                r = self.verify(b, artifact)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.verify(b, self.sha256)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_digest_input_must_be_well_formed(self):
        b = self.make("message2", "message")
        for bad in ("sha512:" + "a" * 64, "sha384:" + "A" * 96, "md5:" + "a" * 32):
            with self.subTest(artifact=bad):
                r = self.verify(b, bad)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
