"""Keyless signatures and cosign v3 bundles, end to end through `sigil serve`.

The trust (a Fulcio-like CA, CT log, Rekor-like log and TSA) is self-made by
tests/support/sigstore_fixture.py and described to sigil as a policy-controller TrustRoot (or as
a trusted_root.json passed with --trusted-root). Images live in the real distribution registry,
signed in both of cosign's layouts: legacy `.sig` tags with certificate/chain/bundle annotations,
and sigstore bundles attached as OCI 1.1 referrers (distribution 2.8 has no referrers API, so
sigil must find them through the referrers tag schema). Every negative case is one broken link
of the chain and is denied with its own reason code; sigstore-js confirms the same material in
test_sigstore_support.
"""
import json
import os
import subprocess
import unittest

import harness
from harness import fixture
import sigstore_fixture as sf

IDENTITY = "release@corp.test"
ISSUER = "https://accounts.corp.test"


def setUpModule():
    harness.require_registry()


def keyless_policy(name, glob, extra_authority="", identities=None, trust_root_ref="sigil-test"):
    ids = identities or [("issuer", ISSUER, "subject", IDENTITY)]
    lines = ""
    for ik, iv, sk, sv in ids:
        lines += "      - %s: %s\n        %s: %s\n" % (ik, json.dumps(iv), sk, json.dumps(sv))
    ref = "      trustRootRef: %s\n" % trust_root_ref if trust_root_ref else ""
    return ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
            "metadata:\n  name: %s\nspec:\n  images:\n  - glob: %s\n  authorities:\n"
            "  - name: release\n    keyless:\n%s      identities:\n%s%s" %
            (name, json.dumps(glob), ref, lines, extra_authority))


class KeylessAdmission(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("keyless")
        cls.addClassCleanup(cls.reg.stop)
        cls.work = harness.work_dir("keyless")
        cls.state = os.path.join(cls.work, "state")
        cls.auth = sf.init(cls.state)
        c = cls.reg.client
        cls.img = {}

        def push(repo):
            cls.img[repo] = cls.reg.push(repo, "v1", "content of " + repo)
            return cls.img[repo]

        def signer(**kw):
            kw.setdefault("identity", IDENTITY)
            kw.setdefault("issuer", ISSUER)
            return sf.Signer(keyless=cls.auth, **kw)

        # legacy .sig, keyless
        sf.sign(c, "legacy/ok", push("legacy/ok"), signer())
        sf.sign(c, "legacy/uri", push("legacy/uri"),
                signer(identity="https://github.com/corp/app/.github/workflows/release.yml"
                                "@refs/heads/main", san_type="uri"))
        sf.sign(c, "legacy/other-identity", push("legacy/other-identity"),
                signer(identity="mallory@corp.test"))
        for variant in ("bad-sig", "payload-digest", "wrong-key", "bad-set", "set-body-mismatch",
                        "no-sct", "bad-sct", "expired-at-tlog", "untrusted-ca",
                        "wrong-issuer-ext", "no-time"):
            repo = "legacy/" + variant
            sf.sign(c, repo, push(repo), signer(variant=variant))
        # the copy attack, keyless: a valid signature of legacy/ok's digest under another image
        fixture.copy_signature(c, "legacy/ok", cls.img["legacy/ok"], push("legacy/copied"),
                               to_repo="legacy/copied")
        # signed by a timestamp authority, not logged
        sf.sign(c, "legacy/tsa", push("legacy/tsa"), signer(tlog=False, tsa=True))

        # cosign v3: DSSE bundles as OCI 1.1 referrers (tag-schema index on distribution 2.8)
        sf.bundle(c, "bundle/ok", push("bundle/ok"), signer())
        sf.bundle(c, "bundle/v01", push("bundle/v01"), signer(), version="0.1")
        sf.bundle(c, "bundle/v02", push("bundle/v02"), signer(), version="0.2")
        for variant, version in (("bad-inclusion", "0.3"), ("bad-checkpoint", "0.3"),
                                 ("wrong-predicate", "0.3"), ("root-in-bundle", "0.2"),
                                 ("payload-digest", "0.3"), ("bad-set", "0.3")):
            repo = "bundle/" + variant
            sf.bundle(c, repo, push(repo), signer(variant=variant), version=version)
        # both layouts on one image: a broken legacy signature and a good bundle
        dg = push("mixed/one-good")
        sf.sign(c, "mixed/one-good", dg, signer(variant="bad-sig"))
        sf.bundle(c, "mixed/one-good", dg, signer())

        policies = os.path.join(cls.work, "policies")
        os.makedirs(policies)
        with open(os.path.join(cls.state, "trustroot.yaml")) as f:
            trust_root = f.read()
        with open(os.path.join(policies, "trust.yaml"), "w") as f:
            f.write(trust_root)
        with open(os.path.join(policies, "keyless.yaml"), "w") as f:
            f.write(keyless_policy("corp-keyless", "%s/legacy/**" % cls.reg.address))
            f.write("---\n")
            f.write(keyless_policy("corp-bundles", "%s/bundle/**" % cls.reg.address))
            f.write("---\n")
            f.write(keyless_policy("corp-mixed", "%s/mixed/**" % cls.reg.address))
        cls.sigil = harness.SigilServer("keyless", [policies],
                                        ["--insecure-registry", cls.reg.address])
        cls.addClassCleanup(cls.sigil.stop)

    def admit(self, repo):
        image = self.reg.ref(repo, tag="v1")
        status, resp = self.sigil.validate(harness.pod_review([image]))
        self.assertEqual(status, 200, self.sigil.log_tail())
        return resp

    def assertAllowed(self, repo):
        resp = self.admit(repo)
        self.assertIs(resp["allowed"], True, json.dumps(resp))

    def assertDenied(self, repo, reason, *needles):
        resp = self.admit(repo)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        summary = json.loads(resp["auditAnnotations"]["images"])
        self.assertIn(reason, json.dumps(summary), json.dumps(resp))
        msg = harness.message(resp)
        self.assertIn(repo, msg)
        for n in needles:
            self.assertIn(n, msg, json.dumps(resp))
        return msg

    # ---------------------------------------------------------------- legacy .sig, keyless

    def test_keyless_signature_admitted(self):
        self.assertAllowed("legacy/ok")

    def test_identity_must_match(self):
        self.assertDenied("legacy/other-identity", "IDENTITY_MISMATCH", "mallory@corp.test",
                          IDENTITY)
        # a URI identity (CI workload) is not the email one either
        self.assertDenied("legacy/uri", "IDENTITY_MISMATCH")

    def test_each_broken_link_is_denied_with_its_reason(self):
        cases = {
            "legacy/bad-sig": "BAD_SIGNATURE",
            "legacy/wrong-key": "BAD_SIGNATURE",
            "legacy/payload-digest": "DIGEST_MISMATCH",
            "legacy/copied": "DIGEST_MISMATCH",
            "legacy/bad-set": "TLOG_INVALID",
            "legacy/set-body-mismatch": "TLOG_INVALID",
            "legacy/no-sct": "SCT_INVALID",
            "legacy/bad-sct": "SCT_INVALID",
            "legacy/expired-at-tlog": "UNTRUSTED_CERTIFICATE",
            "legacy/untrusted-ca": "UNTRUSTED_CERTIFICATE",
            "legacy/wrong-issuer-ext": "IDENTITY_MISMATCH",
            "legacy/no-time": "TLOG_INVALID",
        }
        for repo, reason in cases.items():
            with self.subTest(repo=repo):
                self.assertDenied(repo, reason)

    def test_tsa_time_needs_a_policy_that_accepts_it(self):
        # The authority demands a Rekor entry (ctlog absent); a timestamp alone is not enough.
        self.assertDenied("legacy/tsa", "TLOG_INVALID")

    # ---------------------------------------------------------------- bundles (cosign v3)

    def test_bundles_found_through_the_referrers_tag_schema(self):
        for repo in ("bundle/ok", "bundle/v01", "bundle/v02"):
            with self.subTest(repo=repo):
                self.assertAllowed(repo)

    def test_broken_bundles_denied(self):
        cases = {
            "bundle/bad-inclusion": "TLOG_INVALID",
            "bundle/bad-checkpoint": "TLOG_INVALID",
            "bundle/bad-set": "TLOG_INVALID",
            "bundle/payload-digest": "DIGEST_MISMATCH",
            "bundle/wrong-predicate": "BAD_SIGNATURE",
            "bundle/root-in-bundle": "UNTRUSTED_CERTIFICATE",
        }
        for repo, reason in cases.items():
            with self.subTest(repo=repo):
                self.assertDenied(repo, reason)

    def test_any_valid_signature_in_either_layout_admits(self):
        self.assertAllowed("mixed/one-good")


class KeylessTrustOptions(unittest.TestCase):
    """--trusted-root as the default root, ctlog: {} with RFC 3161 timestamps, and verify CLI."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.reg = harness.RunningRegistry("keyless-opts")
        cls.addClassCleanup(cls.reg.stop)
        cls.work = harness.work_dir("keyless-opts")
        cls.state = os.path.join(cls.work, "state")
        cls.auth = sf.init(cls.state)
        c = cls.reg.client
        cls.signed = cls.reg.push("app/signed", "v1", "signed")
        sf.sign(c, "app/signed", cls.signed, sf.Signer(keyless=cls.auth, identity=IDENTITY,
                                                       issuer=ISSUER))
        cls.tsa_only = cls.reg.push("app/tsa", "v1", "tsa only")
        sf.sign(c, "app/tsa", cls.tsa_only, sf.Signer(keyless=cls.auth, identity=IDENTITY,
                                                      issuer=ISSUER, tlog=False, tsa=True))
        cls.root = os.path.join(cls.state, "trusted_root.json")

    def verify(self, *args):
        return harness.run_sigil(["verify", "--insecure-registry", self.reg.address,
                                  "-o", "json"] + list(args))

    def test_verify_cli_with_cosign_identity_flags(self):
        image = self.reg.ref("app/signed", tag="v1")
        ok = self.verify(image, "--certificate-identity", IDENTITY, "--certificate-oidc-issuer",
                         ISSUER, "--trusted-root", self.root)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertTrue(json.loads(ok.stdout)["allowed"])
        regexp = self.verify(image, "--certificate-identity-regexp", ".*@corp[.]test",
                             "--certificate-oidc-issuer", ISSUER, "--trusted-root", self.root)
        self.assertEqual(regexp.returncode, 0, regexp.stdout + regexp.stderr)
        wrong = self.verify(image, "--certificate-identity", "someone@else.test",
                            "--certificate-oidc-issuer", ISSUER, "--trusted-root", self.root)
        self.assertEqual(wrong.returncode, 1, wrong.stdout + wrong.stderr)
        self.assertEqual(json.loads(wrong.stdout)["reason"], "IDENTITY_MISMATCH")
        # Without --trusted-root the public-good root is used: our CA is not in it.
        public = self.verify(image, "--certificate-identity", IDENTITY,
                             "--certificate-oidc-issuer", ISSUER)
        self.assertEqual(public.returncode, 1, public.stdout + public.stderr)
        usage = self.verify(image, "--certificate-identity", IDENTITY)
        self.assertEqual(usage.returncode, 2, usage.stdout + usage.stderr)

    def test_serve_with_trusted_root_and_timestamp_authority(self):
        d = os.path.join(self.work, "policies")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "p.yaml"), "w") as f:
            # No trustRootRef: the default root is --trusted-root.
            f.write(keyless_policy("logged", "%s/app/signed" % self.reg.address,
                                   trust_root_ref=None))
            f.write("---\n")
            # ctlog: {} turns Rekor off; the signing time then comes from a trusted TSA.
            f.write(keyless_policy("stamped", "%s/app/tsa" % self.reg.address,
                                   extra_authority="    ctlog: {}\n", trust_root_ref=None))
        sigil = harness.SigilServer("keyless-opts", [d], ["--insecure-registry", self.reg.address,
                                                          "--trusted-root", self.root])
        self.addCleanup(sigil.stop)
        for repo in ("app/signed", "app/tsa"):
            status, resp = sigil.validate(harness.pod_review([self.reg.ref(repo, tag="v1")]))
            self.assertEqual(status, 200)
            self.assertIs(resp["allowed"], True, json.dumps(resp))

    def test_broken_trust_configuration_fails_at_startup(self):
        d = os.path.join(self.work, "bad-policies")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "p.yaml"), "w") as f:
            f.write(keyless_policy("dangling", "**", trust_root_ref="does-not-exist"))
        r = harness.run_sigil(["verify", "--policy", d, self.reg.ref("app/signed", tag="v1")])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("\"does-not-exist\" names no TrustRoot", r.stderr)


class VerifyBundleCli(unittest.TestCase):
    """`sigil verify-bundle`, the sigstore-conformance protocol, over blobs."""

    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        cls.work = harness.work_dir("verify-bundle")
        cls.auth = sf.init(os.path.join(cls.work, "state"))
        cls.root = os.path.join(cls.work, "state", "trusted_root.json")
        cls.blob = os.path.join(cls.work, "artifact.txt")
        with open(cls.blob, "wb") as f:
            f.write(b"an artifact sigil verifies\n")
        with open(cls.blob, "rb") as f:
            cls.digest = fixture.sha256_digest(f.read())

    def make(self, name, variant="ok", content="message", version="0.3", key=None):
        signer = (sf.Signer(key=key, rekor=self.auth, variant=variant) if key else
                  sf.Signer(keyless=self.auth, identity=IDENTITY, issuer=ISSUER, variant=variant))
        made = sf.make_bundle(signer, artifact=self.blob, version=version, content=content)
        path = os.path.join(self.work, name + ".json")
        with open(path, "wb") as f:
            f.write(made["bundle"])
        return path

    def run_vb(self, bundle, *args, artifact=None):
        return harness.run_sigil(["verify-bundle", "--bundle", bundle] + list(args) +
                                 ["--trusted-root", self.root, artifact or self.blob])

    def test_message_and_dsse_bundles_by_path_and_by_digest(self):
        for content in ("message", "dsse"):
            for version in ("0.1", "0.2", "0.3"):
                b = self.make("ok-%s-%s" % (content, version), content=content, version=version)
                for artifact in (self.blob, self.digest):
                    with self.subTest(content=content, version=version, artifact=artifact):
                        r = self.run_vb(b, "--certificate-identity", IDENTITY,
                                        "--certificate-oidc-issuer", ISSUER, artifact=artifact)
                        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_failures_are_non_zero(self):
        ok = self.make("ok")
        other = os.path.join(self.work, "other.txt")
        with open(other, "w") as f:
            f.write("another artifact\n")
        checks = [
            (ok, ["--certificate-identity", "x@corp.test", "--certificate-oidc-issuer", ISSUER],
             None),
            (ok, ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer",
                  "https://evil.test"], None),
            (ok, ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER], other),
            (self.make("bad-sig", "bad-sig"), ["--certificate-identity", IDENTITY,
                                               "--certificate-oidc-issuer", ISSUER], None),
            (self.make("bad-inclusion", "bad-inclusion"),
             ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER], None),
            (self.make("bad-sct", "bad-sct"), ["--certificate-identity", IDENTITY,
                                               "--certificate-oidc-issuer", ISSUER], None),
        ]
        for bundle, args, artifact in checks:
            with self.subTest(bundle=os.path.basename(bundle), args=args):
                r = self.run_vb(bundle, *args, artifact=artifact)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        garbage = os.path.join(self.work, "garbage.json")
        with open(garbage, "w") as f:
            f.write('{"mediaType": "application/vnd.dev.sigstore.bundle.v0.9+json"}')
        r = self.run_vb(garbage, "--certificate-identity", IDENTITY, "--certificate-oidc-issuer",
                        ISSUER)
        self.assertNotEqual(r.returncode, 0)

    def test_key_signed_bundle(self):
        d = harness.work_dir("vb-keys")
        key, pub = fixture.keygen("p256", os.path.join(d, "k"))
        b = self.make("key", key=key)
        r = self.run_vb(b, "--key", pub)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        _, other_pub = fixture.keygen("p256", os.path.join(d, "other"))
        r = self.run_vb(b, "--key", other_pub)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
