"""Attestations (issue 13 point 9), end to end through `sigil serve` and the real registry.

Policies in policy-controller's shape: `authorities[].attestations[] {name, predicateType}`.
The attestations are cosign's two layouts: legacy `.att` tags (DSSE envelopes, one per layer,
with cosign's annotations: tests/support/attest_fixture.py) signed with a key or keyless (our
self-made sigstore deployment, tests/support/sigstore_fixture.py), and sigstore bundles attached
as OCI 1.1 referrers (sigstore_fixture.bundle with another predicate type). An independent
producer, sigstore-js (`sigstore.attest` against @sigstore/mock), makes one more bundle that must
be admitted (skipped without node/npm). Every negative is one broken link, denied with its reason
code and a one-line message naming the missing predicate type.
"""
import json
import os
import unittest

import harness
from harness import fixture
import attest_fixture as af
import sigstore_fixture as sf

IDENTITY = "builder@corp.test"
ISSUER = "https://accounts.corp.test"
SLSA1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
PROVENANCE = {"buildDefinition": {"buildType": "https://sigil.test/build"}, "runDetails": {}}


def setUpModule():
    harness.require_registry()
    harness.sigil_bin()


def indent(text, n):
    return "".join(" " * n + line + "\n" for line in text.strip().splitlines())


def policy(name, glob, authority):
    return ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
            "metadata:\n  name: %s\nspec:\n  images:\n  - glob: %s\n  authorities:\n%s" %
            (name, json.dumps(glob), authority))


ATTESTATIONS = "    attestations:\n    - name: provenance\n      predicateType: slsaprovenance1\n"


def key_authority(pem):
    return ("  - name: builder-key\n    key:\n      data: |\n" + indent(pem.decode(), 8) +
            ATTESTATIONS)


def keyless_authority(identity, issuer, extra="", trust_root_ref=None):
    ref = "      trustRootRef: %s\n" % trust_root_ref if trust_root_ref else ""
    return ("  - name: builder\n    keyless:\n%s      identities:\n      - issuer: %s\n"
            "        subject: %s\n%s%s" % (ref, json.dumps(issuer), json.dumps(identity), extra,
                                          ATTESTATIONS))


class Attestations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = harness.RunningRegistry("attestations")
        cls.addClassCleanup(cls.reg.stop)
        cls.work = harness.work_dir("attestations")
        c = cls.reg.client
        keys = cls.keys = harness.Keys(cls.work, [("builder", "p256"), ("stranger", "p256")])
        cls.auth = sf.init(os.path.join(cls.work, "state"))
        cls.img = {}

        def push(repo):
            cls.img[repo] = cls.reg.push(repo, "v1", "attested image " + repo)
            return cls.img[repo]

        builder = sf.Signer(key=keys.key("builder"), tlog=False)
        stranger = sf.Signer(key=keys.key("stranger"), tlog=False)

        def keyless(**kw):
            kw.setdefault("identity", IDENTITY)
            kw.setdefault("issuer", ISSUER)
            return sf.Signer(keyless=cls.auth, **kw)

        # key-signed legacy .att
        af.attest(c, "key/ok", push("key/ok"), builder, SLSA1, PROVENANCE)
        af.attest(c, "key/wrong-type", push("key/wrong-type"), builder, SPDX)
        af.attest(c, "key/other-key", push("key/other-key"), stranger, SLSA1, PROVENANCE)
        af.attest(c, "key/payload-digest", push("key/payload-digest"),
                  sf.Signer(key=keys.key("builder"), tlog=False, variant="payload-digest"), SLSA1)
        af.copy_attestations(c, "key/ok", cls.img["key/ok"], push("key/copied"),
                             to_repo="key/copied")
        # an image signature is not an attestation
        fixture.sign(c, "key/signed-only", push("key/signed-only"), keys.key("builder"))
        # a wrong attestation first, the right one appended
        dg = push("key/two-layers")
        af.attest(c, "key/two-layers", dg, builder, SPDX)
        af.attest(c, "key/two-layers", dg, builder, SLSA1, PROVENANCE)

        # keyless: legacy .att with a Rekor SET, .att with an RFC 3161 timestamp only, bundles
        af.attest(c, "keyless/att", push("keyless/att"), keyless(), SLSA1, PROVENANCE)
        af.attest(c, "keyless/stranger", push("keyless/stranger"),
                  keyless(identity="mallory@corp.test"), SLSA1)
        af.attest(c, "keyless/bad-set", push("keyless/bad-set"), keyless(variant="bad-set"), SLSA1)
        af.attest(c, "tsa/att", push("tsa/att"), keyless(tlog=False, tsa=True), SLSA1)
        af.attest(c, "tsa/bad-tsa", push("tsa/bad-tsa"),
                  keyless(tlog=False, tsa=True, variant="bad-tsa"), SLSA1)
        sf.bundle(c, "keyless/bundle", push("keyless/bundle"), keyless(), predicate_type=SLSA1)
        sf.bundle(c, "keyless/bundle-sign", push("keyless/bundle-sign"), keyless())

        policies = os.path.join(cls.work, "policies")
        os.makedirs(policies)
        a = cls.reg.address
        with open(os.path.join(policies, "att.yaml"), "w") as f:
            f.write(policy("key-attested", "%s/key/**" % a, key_authority(keys.pub("builder"))))
            f.write("---\n")
            f.write(policy("keyless-attested", "%s/keyless/**" % a,
                           keyless_authority(IDENTITY, ISSUER)))
            f.write("---\n")
            # ctlog: {} turns Rekor off: the signing time comes from the TSA, over the envelope
            f.write(policy("stamped-attested", "%s/tsa/**" % a,
                           keyless_authority(IDENTITY, ISSUER, extra="    ctlog: {}\n")))
        cls.policies = policies
        cls.sigil = harness.SigilServer(
            "attestations", [policies],
            ["--insecure-registry", a, "--trusted-root", cls.auth.path("trusted_root.json")])
        cls.addClassCleanup(cls.sigil.stop)

    def admit(self, repo, sigil=None):
        image = self.reg.ref(repo, tag="v1")
        sigil = sigil or self.sigil
        status, resp = sigil.validate(harness.pod_review([image]))
        self.assertEqual(status, 200, sigil.log_tail())
        return resp

    def assertAllowed(self, repo, sigil=None):
        resp = self.admit(repo, sigil)
        self.assertIs(resp["allowed"], True, json.dumps(resp))

    def assertDenied(self, repo, reason, *needles):
        resp = self.admit(repo)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        summary = json.loads(resp["auditAnnotations"]["images"])
        self.assertIn(reason, json.dumps(summary), json.dumps(resp))
        msg = harness.message(resp)
        self.assertNotIn("\n", msg)
        # every denial names the missing predicate type
        self.assertIn("no verified attestation of type %s (slsaprovenance1)" % SLSA1, msg)
        for n in needles:
            self.assertIn(n, msg, json.dumps(resp))
        return msg

    def test_key_signed_att_with_the_right_predicate_admits(self):
        self.assertAllowed("key/ok")
        self.assertAllowed("key/two-layers")

    def test_wrong_predicate_type_denies_naming_it(self):
        self.assertDenied("key/wrong-type", "MISSING_ATTESTATION", "verified attestations are "
                          "of type " + SPDX)
        self.assertDenied("key/signed-only", "MISSING_ATTESTATION", "no attestations found")

    def test_attestation_of_another_digest_denies(self):
        self.assertDenied("key/copied", "DIGEST_MISMATCH", "copied from another image")
        self.assertDenied("key/payload-digest", "DIGEST_MISMATCH")

    def test_attestation_by_another_key_denies(self):
        self.assertDenied("key/other-key", "BAD_SIGNATURE",
                          "does not verify with key authority 'builder-key'")

    def test_keyless_attestations(self):
        self.assertAllowed("keyless/att")
        self.assertAllowed("keyless/bundle")
        self.assertDenied("keyless/stranger", "IDENTITY_MISMATCH", "mallory@corp.test")
        self.assertDenied("keyless/bad-set", "TLOG_INVALID")
        # a cosign v3 signature bundle is a signature, not a provenance attestation
        self.assertDenied("keyless/bundle-sign", "MISSING_ATTESTATION", "sign/v1")

    def test_timestamp_over_the_envelope(self):
        self.assertAllowed("tsa/att")
        self.assertDenied("tsa/bad-tsa", "TIMESTAMP_INVALID")

    def test_attestation_policy_is_refused_with_the_field_named(self):
        d = os.path.join(self.work, "cue")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "p.yaml"), "w") as f:
            f.write(policy("cue", "**", "  - key:\n      data: |\n" +
                           indent(self.keys.pub("builder").decode(), 8) +
                           "    attestations:\n    - name: p\n      predicateType: slsaprovenance1\n"
                           "      policy:\n        type: cue\n        data: 'predicateType: x'\n"))
        r = harness.run_sigil(["verify", "--policy", d, self.reg.ref("key/ok", tag="v1")])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("spec.authorities[0].attestations[0].policy", r.stderr)
        self.assertIn("not supported", r.stderr)


class SigstoreJsAttestation(unittest.TestCase):
    """A DSSE attestation bundle made by sigstore-js (not by sigil's fixtures) is admitted."""

    def test_sigstore_js_attestation_admitted(self):
        import sigstore_js
        from test_crosscheck_sigstore_js import trust_root_document
        sigstore_js.install()  # SkipTest without node/npm
        reg = harness.RunningRegistry("attestations-js")
        self.addCleanup(reg.stop)
        work = harness.work_dir("attestations-js")
        ok = reg.push("js/ok", "v1", "sigstore-js attested")
        other = reg.push("js/spdx", "v1", "sigstore-js attested, another type")
        made = sigstore_js.sign(os.path.join(work, "slsa"), image_digests=[ok],
                                predicate_type=SLSA1)
        spdx = sigstore_js.sign(os.path.join(work, "spdx"), image_digests=[other],
                                predicate_type=SPDX)
        for repo, out in (("js/ok", made), ("js/spdx", spdx)):
            b = out["bundles"][0]
            with open(b["path"], "rb") as f:
                blob = f.read()
            sf.push_bundle(reg.client, repo, b["digest"],
                           {"bundle": blob, "media_type": sf.MT_BUNDLE["0.3"], "content": "dsse",
                            "predicate_type": None})
        d = os.path.join(work, "policies")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "p.yaml"), "w") as f:
            for name, out in (("js-slsa", made), ("js-spdx", spdx)):
                tr = out["trusted_root"]
                f.write(trust_root_document(name + "-root", tr, tr, tr, tr) + "\n---\n")
            f.write(policy("js-ok", "%s/js/ok" % reg.address,
                           keyless_authority(made["identity"], made["issuer"],
                                             trust_root_ref="js-slsa-root")))
            f.write("---\n")
            f.write(policy("js-spdx", "%s/js/spdx" % reg.address,
                           keyless_authority(spdx["identity"], spdx["issuer"],
                                             trust_root_ref="js-spdx-root")))
        sigil = harness.SigilServer("attestations-js", [d], ["--insecure-registry", reg.address])
        self.addCleanup(sigil.stop)
        status, resp = sigil.validate(harness.pod_review([reg.ref("js/ok", tag="v1")]))
        self.assertEqual(status, 200)
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        status, resp = sigil.validate(harness.pod_review([reg.ref("js/spdx", tag="v1")]))
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("no verified attestation of type %s" % SLSA1, harness.message(resp))


if __name__ == "__main__":
    unittest.main()
