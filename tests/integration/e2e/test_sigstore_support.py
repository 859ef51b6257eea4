"""Self-tests of the keyless and bundle test material: tests/support/sigstore_fixture.py (our
producer) and tests/support/sigstore-js with sigstore_js.py (the independent sigstore-js
producer and verifier). Needs the registry, not the sigil binary; the sigstore-js classes skip
when node/npm or the npm registry are unavailable.

* FixtureMaterialTest: what sigstore_fixture.py writes has the documented shape (STATE, trust
  documents, Fulcio-like leaves, the accumulating log, .sig annotations, the referrer layout
  read back from the registry) and it refuses variants that cannot apply.
* OurFixturesJudgedBySigstoreJs: every positive fixture verifies with @sigstore/verify (offline,
  our trusted_root.json) and every negative variant is rejected, for the reason it exercises.
* SigstoreJsMaterial: bundles and trusted roots made by the real sigstore-js signer are
  well-formed, shaped like ours, verify, and read back from the registry once pushed by us.

What sigstore-js cannot judge, and how it is covered instead:
* OtherName SANs (1.3.6.1.4.1.57264.1.7): @sigstore/verify reads only URI and email SANs, so an
  identity policy on an OtherName leaf always fails (test_othername_identity_is_beyond_sigstore_js);
  such leaves are verified with --any-identity plus the issuer, and their SAN DER is checked here.
* wrong-predicate and root-in-bundle: @sigstore/verify accepts both (no predicate-type policy,
  only a chain's leaf is used); verify.js's own checks reject them. The in-toto subject binding
  (payload-digest for DSSE) is verify.js's check too.
* a messageSignature against a digest only: it needs the artifact bytes (verify.js exits 3).
"""
import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

import harness
from harness import fixture

import sigstore_fixture as sf  # noqa: E402  (tests/support is on sys.path through harness)
import sigstore_js  # noqa: E402

PY = "/usr/bin/python3"
FIXTURE_CLI = os.path.join(harness.SOURCE_DIR, "tests", "support", "sigstore_fixture.py")
URI_ID = "https://github.com/sigil-test/app/.github/workflows/release.yml@refs/heads/main"


def setUpModule():
    harness.require_registry()


def der_of(b64text):
    return x509.load_der_x509_certificate(base64.b64decode(b64text))


def root_from_proof(index, size, leaf, proof):
    """RFC 9162 2.1.3.2, written apart from sigstore_fixture's tree code."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise AssertionError("proof too short")
    return r


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = harness.RunningRegistry(cls.__name__.lower())
        cls.addClassCleanup(cls.reg.stop)
        cls.c = cls.reg.client
        cls.dir = harness.work_dir(cls.__name__.lower() + "-files")
        cls.auth = sf.init(os.path.join(cls.dir, "state"))
        cls.tr = cls.auth.trusted_root
        cls.key, cls.pub = fixture.keygen("p256", os.path.join(cls.dir, "p256"))
        cls.n = 0

    def unique(self):
        type(self).n += 1
        return self.n

    def image(self, what):
        """A fresh image in its own repository: (repo, digest)."""
        n = self.unique()
        repo = "test/%s-%d" % (what, n)
        return repo, self.reg.push(repo, "v1", "%s %d" % (what, n))

    def keyless(self, **kw):
        return sf.Signer(keyless=self.auth, **kw)

    def keyed(self, **kw):
        return sf.Signer(key=self.key, **kw)

    def blob(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


# ---------------------------------------------------------------------------------------------


class FixtureMaterialTest(Base):
    def test_state_and_trust_documents(self):
        paths = self.auth.paths()
        for p in paths.values():
            self.assertTrue(os.path.isfile(p), p)
        with open(self.tr) as f:
            tr = json.load(f)
        self.assertEqual(tr["mediaType"], sf.MT_TRUSTED_ROOT)
        with open(paths["rekor_pub"], "rb") as f:
            rekor = serialization.load_pem_public_key(f.read())
        spki = rekor.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        [tlog] = tr["tlogs"]
        self.assertEqual(tlog["baseUrl"], "https://rekor.sigil.test")
        self.assertEqual(base64.b64decode(tlog["publicKey"]["rawBytes"]), spki)
        self.assertEqual(base64.b64decode(tlog["logId"]["keyId"]), hashlib.sha256(spki).digest())
        self.assertIn("start", tlog["publicKey"]["validFor"])
        [ctlog] = tr["ctlogs"]
        self.assertEqual(base64.b64decode(ctlog["logId"]["keyId"]),
                         hashlib.sha256(base64.b64decode(ctlog["publicKey"]["rawBytes"])).digest())
        [ca] = tr["certificateAuthorities"]
        inter, root = [der_of(c["rawBytes"]) for c in ca["certChain"]["certificates"]]
        self.assertEqual(inter.issuer, root.subject)
        self.assertEqual(root.issuer, root.subject)
        self.assertIsInstance(root.public_key().curve, ec.SECP384R1)
        self.assertIn(ExtendedKeyUsageOID.CODE_SIGNING,
                      inter.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        self.assertEqual(ca["subject"], {"organization": "sigil.test",
                                         "commonName": "sigil-fulcio-root"})
        [tsa] = tr["timestampAuthorities"]
        leaf, troot = [der_of(c["rawBytes"]) for c in tsa["certChain"]["certificates"]]
        self.assertEqual(leaf.issuer, troot.subject)
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        self.assertTrue(eku.critical)
        self.assertEqual(list(eku.value), [ExtendedKeyUsageOID.TIME_STAMPING])

        with open(paths["trustroot_yaml"]) as f:
            y = f.read()
        self.assertTrue(y.startswith("apiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\n"))
        fields = {}
        for line in y.splitlines():
            k, _, v = line.strip().lstrip("- ").partition(": ")
            fields.setdefault(k, []).append(v)
        pems = lambda *certs: b"".join(sf.cert_pem(c) for c in certs)  # noqa: E731
        self.assertEqual(base64.b64decode(fields["certChain"][0]), pems(inter, root))
        self.assertEqual(base64.b64decode(fields["certChain"][1]), pems(leaf, troot))
        with open(paths["rekor_pub"], "rb") as f:
            self.assertEqual(base64.b64decode(fields["publicKey"][0]), f.read())
        self.assertEqual(fields["baseURL"], ["https://rekor.sigil.test", "https://ctfe.sigil.test"])
        self.assertEqual(fields["hashAlgorithm"], ["sha-256", "sha-256"])

    def test_leaf_profile(self):
        t = sf.parse_time()
        for san_type, identity in (("email", "dev@example.com"), ("uri", URI_ID),
                                   ("othername", "alice")):
            for ext in ("v1", "v2", "both"):
                with self.subTest(san=san_type, ext=ext):
                    s = self.keyless(identity=identity, san_type=san_type, issuer_ext=ext,
                                     issuer="https://issuer.example", time=t)
                    leaf = s.leaf
                    self.assertEqual(len(leaf.subject), 0)
                    self.assertEqual(leaf.not_valid_after - leaf.not_valid_before,
                                     dt.timedelta(minutes=10))
                    self.assertEqual(leaf.not_valid_before, t.replace(tzinfo=None))
                    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                    self.assertTrue(san.critical)
                    [name] = list(san.value)
                    if san_type == "othername":
                        self.assertEqual(name.type_id.dotted_string, "1.3.6.1.4.1.57264.1.7")
                        self.assertEqual(name.value, b"\x0c\x05alice")  # [0] EXPLICIT UTF8String
                    else:
                        self.assertEqual(name.value, identity)
                    self.assertEqual(list(leaf.extensions.get_extension_for_class(
                        x509.ExtendedKeyUsage).value), [ExtendedKeyUsageOID.CODE_SIGNING])
                    exts = {e.oid.dotted_string: e.value for e in leaf.extensions}
                    v1 = exts.get("1.3.6.1.4.1.57264.1.1")
                    v2 = exts.get("1.3.6.1.4.1.57264.1.8")
                    self.assertEqual(v1 is not None, ext in ("v1", "both"))
                    self.assertEqual(v2 is not None, ext in ("v2", "both"))
                    if v1 is not None:
                        self.assertEqual(v1.value, b"https://issuer.example")
                    if v2 is not None:
                        self.assertEqual(v2.value, b"\x0c\x16https://issuer.example")
                    [sct] = exts["1.3.6.1.4.1.11129.2.4.2"]  # parsed from the TLS list
                    with open(self.auth.paths()["ctlog_pub"], "rb") as f:
                        ct = serialization.load_pem_public_key(f.read())
                    self.assertEqual(sct.log_id, hashlib.sha256(ct.public_bytes(
                        serialization.Encoding.DER,
                        serialization.PublicFormat.SubjectPublicKeyInfo)).digest())
                    self.assertEqual(sct.entry_type, x509.certificate_transparency.LogEntryType
                                     .PRE_CERTIFICATE)
                    self.assertEqual(sct.timestamp, leaf.not_valid_before)
                    self.assertEqual(leaf.issuer, self.auth.fulcio_intermediate.subject)

    def test_log_accumulates_with_checkable_proofs(self):
        before = self.auth.log_size()
        made = [sf.make_bundle(self.keyless(), "sha256:" + ("%d" % i) * 64) for i in range(3)]
        self.assertEqual(self.auth.log_size(), before + 6)  # each entry and one filler after it
        with open(self.auth.paths()["rekor_pub"], "rb") as f:
            rekor = serialization.load_pem_public_key(f.read())
        indices = []
        for m in made:
            [e] = json.loads(m["bundle"])["verificationMaterial"]["tlogEntries"]
            proof = e["inclusionProof"]
            idx, size = int(proof["logIndex"]), int(proof["treeSize"])
            indices.append(idx)
            self.assertEqual(int(e["logIndex"]), sf.SHARD_OFFSET + idx)
            self.assertEqual(size, idx + 2)
            body = base64.b64decode(e["canonicalizedBody"])
            root = root_from_proof(idx, size, hashlib.sha256(b"\x00" + body).digest(),
                                   [base64.b64decode(h) for h in proof["hashes"]])
            self.assertEqual(root, base64.b64decode(proof["rootHash"]))
            note, _, sigline = proof["checkpoint"]["envelope"].partition("\n\n")
            origin, n, root_b64, stamp = note.split("\n")
            self.assertRegex(origin, r"^rekor\.sigil\.test - \d+$")
            self.assertEqual((int(n), root_b64), (size, proof["rootHash"]))
            self.assertEqual(stamp, "Timestamp: %d" % (int(e["integratedTime"]) * 10**9))
            self.assertTrue(sigline.startswith("\u2014 rekor.sigil.test "))
            raw = base64.b64decode(sigline.split(" ")[2])
            self.assertEqual(raw[:4], base64.b64decode(e["logId"]["keyId"])[:4])
            rekor.verify(raw[4:], (note + "\n").encode(), ec.ECDSA(hashes.SHA256()))
        self.assertEqual(indices, [indices[0], indices[0] + 2, indices[0] + 4])
        with open(self.auth.path("rekor", "entries.jsonl")) as f:
            logged = [json.loads(line)["treeIndex"] for line in f]
        self.assertEqual(logged[-3:], indices)

    def test_legacy_annotations(self):
        repo, d = self.image("legacy")
        r = sf.sign(self.c, repo, d, self.keyless(tsa=True))
        sf.sign(self.c, repo, d, self.keyed(rekor=self.auth), append=True)
        body, _ = self.c.get_manifest(repo, fixture.signature_tag(d))
        first, second = json.loads(body)["layers"]
        payload = self.c.get_blob(repo, first["digest"])
        self.assertEqual(payload.decode(), r["payload"])
        self.assertEqual(json.loads(payload)["critical"]["image"]["docker-manifest-digest"], d)
        ann = first["annotations"]
        self.assertEqual(ann[fixture.ANN_SIGNATURE], r["signature"])
        self.assertEqual(ann[sf.ANN_CERT], r["certificate"])
        end = "-----END CERTIFICATE-----\n"
        chain = [x509.load_pem_x509_certificate((p + end).encode())
                 for p in ann[sf.ANN_CHAIN].split(end) if p]
        self.assertEqual(chain, [self.auth.fulcio_intermediate, self.auth.fulcio_root])
        rb = json.loads(ann[sf.ANN_BUNDLE])
        self.assertEqual(list(rb), ["SignedEntryTimestamp", "Payload"])
        self.assertEqual(list(rb["Payload"]), ["body", "integratedTime", "logIndex", "logID"])
        entry = json.loads(base64.b64decode(rb["Payload"]["body"]))
        self.assertEqual((entry["kind"], entry["apiVersion"]), ("hashedrekord", "0.0.1"))
        spec = entry["spec"]
        self.assertEqual(spec["data"]["hash"]["value"], hashlib.sha256(payload).hexdigest())
        self.assertEqual(spec["signature"]["content"], r["signature"])
        self.assertEqual(base64.b64decode(spec["signature"]["publicKey"]["content"]).decode(),
                         r["certificate"])
        self.assertEqual(base64.b64decode(rb["Payload"]["body"]), sf.jcs(entry))
        ts = json.loads(ann[sf.ANN_TIMESTAMP])
        self.assertEqual(list(ts), ["SignedRFC3161Timestamp"])
        self.assertEqual(base64.b64decode(ts["SignedRFC3161Timestamp"])[0], 0x30)
        self.assertNotIn(sf.ANN_CERT, second["annotations"])
        self.assertIn(sf.ANN_BUNDLE, second["annotations"])

    def test_referrer_layout(self):
        repo, d = self.image("referrers")
        image_body, image_mt = self.c.get_manifest(repo, d)
        code, _, _ = self.c.request("GET", "/v2/%s/referrers/%s" % (repo, d), repo=repo)
        self.assertEqual(code, 404, "distribution 2.8 has no referrers API")
        pushed = [sf.bundle(self.c, repo, d, self.keyless()),
                  sf.bundle(self.c, repo, d, self.keyless(), content="message"),
                  sf.bundle(self.c, repo, d, self.keyless(), version="0.1")]
        index_body, index_mt = self.c.get_manifest(repo, sf.referrers_tag(d))
        self.assertEqual(index_mt, fixture.MT_OCI_INDEX)
        self.assertEqual(fixture.sha256_digest(index_body), pushed[-1]["index_digest"])
        index = json.loads(index_body)
        self.assertEqual([m["digest"] for m in index["manifests"]],
                         [p["referrer"] for p in pushed])
        for entry, p in zip(index["manifests"], pushed):
            with self.subTest(version=p["media_type"], content=p["content"]):
                body, mt = self.c.get_manifest(repo, p["referrer"])
                self.assertEqual(mt, fixture.MT_OCI_MANIFEST)
                self.assertEqual(body, p["referrer_manifest"])
                m = json.loads(body)
                self.assertEqual(entry["artifactType"], p["media_type"])
                self.assertEqual(entry["size"], len(body))
                self.assertEqual(entry["annotations"], m["annotations"])
                self.assertEqual(m["artifactType"], p["media_type"])
                self.assertEqual(m["config"]["mediaType"], "application/vnd.oci.empty.v1+json")
                self.assertEqual(self.c.get_blob(repo, m["config"]["digest"]), b"{}")
                self.assertEqual(m["config"]["size"], 2)
                [layer] = m["layers"]
                self.assertEqual(layer["mediaType"], p["media_type"])
                self.assertEqual(self.c.get_blob(repo, layer["digest"]), p["bundle"])
                self.assertEqual(m["subject"], {"mediaType": image_mt, "digest": d,
                                                "size": len(image_body)})
                self.assertEqual(m["annotations"]["dev.sigstore.bundle.content"],
                                 "dsse-envelope" if p["content"] == "dsse" else "message-signature")
                if p["content"] == "dsse":
                    self.assertEqual(m["annotations"]["dev.sigstore.bundle.predicateType"],
                                     sf.COSIGN_SIGN_PREDICATE)
                self.assertIn("org.opencontainers.image.created", m["annotations"])
        self.assertEqual(pushed[0]["media_type"], "application/vnd.dev.sigstore.bundle.v0.3+json")
        message = json.loads(pushed[1]["bundle"])["messageSignature"]
        self.assertEqual(base64.b64decode(message["messageDigest"]["digest"]).hex(), d[7:])

    def test_statement_and_payload_are_deterministic(self):
        t = "2030-01-02T03:04:05Z"
        a, b = (sf.make_bundle(self.keyless(time=t), "sha256:" + "e" * 64, subject_name="x")
                for _ in range(2))
        pa, pb = (json.loads(m["bundle"])["dsseEnvelope"]["payload"] for m in (a, b))
        self.assertEqual(pa, pb)
        self.assertEqual(base64.b64decode(pa), sf.statement("sha256:" + "e" * 64, "x"))
        st = json.loads(base64.b64decode(pa))
        self.assertEqual(st, {"_type": "https://in-toto.io/Statement/v1",
                              "subject": [{"name": "x", "digest": {"sha256": "e" * 64}}],
                              "predicateType": "https://sigstore.dev/cosign/sign/v1",
                              "predicate": {}})
        self.assertEqual(json.loads(a["bundle"])["verificationMaterial"]["tlogEntries"][0]
                         ["integratedTime"], str(int(sf.parse_time(t).timestamp())))

    def test_refuses_variants_that_cannot_apply(self):
        with self.assertRaisesRegex(fixture.FixtureError, "keyless"):
            self.keyed(variant="no-sct")
        with self.assertRaisesRegex(fixture.FixtureError, "log entry"):
            self.keyed(variant="bad-set")
        with self.assertRaisesRegex(fixture.FixtureError, "--tsa"):
            self.keyless(variant="bad-tsa")
        with self.assertRaisesRegex(fixture.FixtureError, "inclusion proof"):
            sf.make_bundle(self.keyless(variant="bad-inclusion"), "sha256:" + "1" * 64,
                           version="0.1")
        with self.assertRaisesRegex(fixture.FixtureError, "x509CertificateChain"):
            sf.make_bundle(self.keyless(variant="root-in-bundle"), "sha256:" + "1" * 64)
        repo, d = self.image("refuse")
        with self.assertRaisesRegex(fixture.FixtureError, "does not apply to sign"):
            sf.sign(self.c, repo, d, self.keyless(variant="wrong-predicate"))
        with self.assertRaisesRegex(fixture.FixtureError, "current time"):
            self.keyless(tsa=True, time="2020-01-01T00:00:00Z")

    def test_cli(self):
        state = os.path.join(self.dir, "cli-state")
        def run(*args):
            return subprocess.run([PY, FIXTURE_CLI] + list(args), capture_output=True, text=True,
                                  timeout=60)

        r = run("init", state, "--time", "2030-01-01T00:00:00Z")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["trusted_root"],
                         os.path.join(os.path.abspath(state), "trusted_root.json"))
        repo, d = self.image("cli")
        r = run("sign", "--env", self.reg.env_path, "--repo", repo, "--tag", "v1",
                "--keyless", state, "--san-type", "uri", "--identity", URI_ID)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["tag"], fixture.signature_tag(d))
        out = os.path.join(self.dir, "cli-bundle.json")
        r = run("bundle", "--no-push", "--out", out, "--digest", d, "--key", self.key,
                "--rekor-state", state, "--version", "0.2")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read().decode(), json.loads(r.stdout)["bundle"])
        r = run("bundle", "--no-push", "--out", out, "--digest", d, "--key", self.key,
                "--variant", "no-sct")
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs a keyless signer", r.stderr)


# ---------------------------------------------------------------------------------------------

# Why sigstore-js rejects each variant (a substring of verify.js's output).
REASON = {
    "bad-sig": "SIGNATURE_ERROR",
    "wrong-key": "SIGNATURE_ERROR",
    "bad-set": "TLOG_INCLUSION_PROMISE_ERROR",
    "set-body-mismatch": "TLOG_BODY_ERROR",
    "no-sct": "expected 1 SCTs, got 0",
    "bad-sct": "SCT verification failed",
    "expired-at-tlog": "CERTIFICATE_ERROR",
    "untrusted-ca": "CERTIFICATE_ERROR",
    "wrong-issuer-ext": "invalid certificate extension",
    "bad-inclusion": "calculated root hash does not match",
    "bad-checkpoint": "invalid checkpoint signature",
    "wrong-predicate": "predicateType is https://slsa.dev/provenance/v1",
    "root-in-bundle": "contains a root certificate",
    "bad-tsa": "TIMESTAMP_ERROR",
    "no-time": "expected 1 timestamps, got 0",
}
PAYLOAD_DIGEST_REASON = {"legacy": "the payload names", "dsse": "no in-toto subject",
                         "message": "SIGNATURE_ERROR"}
ISSUER = sf.DEFAULT_ISSUER
IDENTITY = sf.DEFAULT_IDENTITY
KEY_NO_TIME = {"tlog_threshold": 0, "timestamp_threshold": 0}


class OurFixturesJudgedBySigstoreJs(Base):
    @classmethod
    def setUpClass(cls):
        sigstore_js.install()
        super().setUpClass()

    def identity_policy(self, **policy):
        if "key" not in policy and "any_identity" not in policy and "identity" not in policy:
            policy = dict(policy, identity=IDENTITY, issuer=ISSUER)
        return policy

    def legacy(self, signer, **policy):
        repo, d = self.image("legacy")
        sf.sign(self.c, repo, d, signer)
        return sigstore_js.verify_legacy(self.reg.address, repo, d, self.tr,
                                         **self.identity_policy(**policy))

    def pushed(self, signer, **kw):
        repo, d = self.image("bundle")
        policy = kw.pop("policy", {})
        sf.bundle(self.c, repo, d, signer, **kw)
        return sigstore_js.verify_referrers(self.reg.address, repo, d, self.tr,
                                            **self.identity_policy(**policy))

    def file(self, signer, content="dsse", version="0.3", **policy):
        if content == "dsse":
            made = sf.make_bundle(signer, "sha256:" + hashlib.sha256(os.urandom(8)).hexdigest(),
                                  version=version)
            target = made["digest"]
        else:
            n = self.unique()
            target = self.blob("artifact-%d.txt" % n, "artifact %d\n" % n)
            made = sf.make_bundle(signer, artifact=target, content="message", version=version)
        return sigstore_js.verify_bundle(made["bundle"], self.tr, target,
                                         **self.identity_policy(**policy))

    def assertVerified(self, verdict):
        self.assertEqual(verdict.code, 0, verdict.output)

    def assertRejected(self, verdict, reason):
        self.assertEqual(verdict.code, 1, verdict.output)
        self.assertIn(reason, verdict.output)

    # -- legacy .sig

    def test_legacy_positives(self):
        cases = {
            "keyless email": (self.keyless(), {}),
            "keyless uri, issuer v2": (self.keyless(identity=URI_ID, san_type="uri",
                                                    issuer_ext="v2"),
                                       {"identity": URI_ID, "issuer": ISSUER}),
            "keyless issuer v1": (self.keyless(issuer_ext="v1"), {}),
            "keyless othername": (self.keyless(identity="alice", san_type="othername"),
                                  {"any_identity": True, "issuer": ISSUER}),
            "keyless + tsa": (self.keyless(tsa=True), {}),
            "keyless, tsa only": (self.keyless(tsa=True, tlog=False), {"tlog_threshold": 0}),
            "key": (self.keyed(), dict(KEY_NO_TIME, key=self.pub)),
            "key + rekor": (self.keyed(rekor=self.auth), {"key": self.pub}),
            "key + rekor + tsa": (self.keyed(rekor=self.auth, tsa=True), {"key": self.pub}),
            "key + tsa only": (self.keyed(tsa=self.auth), {"key": self.pub, "tlog_threshold": 0}),
        }
        for name, (signer, policy) in cases.items():
            with self.subTest(name):
                self.assertVerified(self.legacy(signer, **policy))

    def test_legacy_append(self):
        repo, d = self.image("append")
        sf.sign(self.c, repo, d, self.keyless())
        sf.sign(self.c, repo, d, self.keyless(), append=True)
        v = sigstore_js.verify_legacy(self.reg.address, repo, d, self.tr, identity=IDENTITY,
                                      issuer=ISSUER)
        self.assertVerified(v)
        self.assertEqual(v.output.splitlines(), ["layer 0: OK", "layer 1: OK"])

    def test_legacy_negatives(self):
        for variant in (v for v, cmds in sf.VARIANTS.items() if sf.SIGN in cmds and v != "ok"):
            with self.subTest(variant, signer="keyless"):
                reason = (PAYLOAD_DIGEST_REASON["legacy"] if variant == "payload-digest"
                          else REASON[variant])
                self.assertRejected(self.legacy(self.keyless(variant=variant,
                                                             tsa=variant == "bad-tsa")), reason)
        keyed = {"bad-sig": ({}, KEY_NO_TIME), "wrong-key": ({}, KEY_NO_TIME),
                 "payload-digest": ({}, KEY_NO_TIME),
                 "bad-set": ({"rekor": self.auth}, {}),
                 "set-body-mismatch": ({"rekor": self.auth}, {}),
                 "bad-tsa": ({"tsa": self.auth}, {"tlog_threshold": 0})}
        for variant, (kw, policy) in keyed.items():
            with self.subTest(variant, signer="key"):
                reason = (PAYLOAD_DIGEST_REASON["legacy"] if variant == "payload-digest"
                          else REASON[variant])
                self.assertRejected(self.legacy(self.keyed(variant=variant, **kw), key=self.pub,
                                                **policy), reason)

    # -- bundles

    def test_bundle_positives(self):
        for version in ("0.1", "0.2", "0.3"):
            with self.subTest("pushed dsse", version=version):
                self.assertVerified(self.pushed(self.keyless(), version=version))
            with self.subTest("message file", version=version):
                self.assertVerified(self.file(self.keyless(), content="message", version=version))
        cases = {
            "dsse + tsa": (self.keyless(tsa=True), "dsse", {}),
            "dsse, tsa only": (self.keyless(tsa=True, tlog=False), "dsse", {"tlog_threshold": 0}),
            "message + tsa": (self.keyless(tsa=True), "message", {}),
            "uri identity, issuer v1": (self.keyless(identity=URI_ID, san_type="uri",
                                                     issuer_ext="v1"), "dsse",
                                        {"identity": URI_ID, "issuer": ISSUER}),
            "othername": (self.keyless(identity="alice", san_type="othername"), "dsse",
                          {"any_identity": True, "issuer": ISSUER}),
            "key dsse + rekor": (self.keyed(rekor=self.auth), "dsse", {"key": self.pub}),
            "key message + rekor": (self.keyed(rekor=self.auth), "message", {"key": self.pub}),
            "key dsse, no tlog": (self.keyed(), "dsse", dict(KEY_NO_TIME, key=self.pub)),
            "key message + tsa": (self.keyed(tsa=self.auth), "message",
                                  {"key": self.pub, "tlog_threshold": 0}),
        }
        for name, (signer, content, policy) in cases.items():
            with self.subTest(name):
                self.assertVerified(self.file(signer, content, **policy))
        with self.subTest("pushed message bundle, judged by digest"):
            v = self.pushed(self.keyless(), content="message")
            self.assertEqual(v.code, 1, v.output)
            self.assertIn("needs the artifact bytes", v.output)

    def test_bundle_negatives(self):
        for variant in (v for v, cmds in sf.VARIANTS.items() if sf.BUNDLE in cmds and v != "ok"):
            version = "0.2" if variant == "root-in-bundle" else "0.3"
            for content in ("dsse", "message"):
                if variant == "wrong-predicate" and content == "message":
                    continue
                with self.subTest(variant, content=content):
                    reason = (PAYLOAD_DIGEST_REASON[content] if variant == "payload-digest"
                              else REASON[variant])
                    signer = self.keyless(variant=variant, tsa=variant == "bad-tsa")
                    self.assertRejected(self.file(signer, content, version,
                                                  predicate_type=sf.COSIGN_SIGN_PREDICATE),
                                        reason)
        for variant in ("bad-inclusion", "bad-checkpoint"):
            with self.subTest(variant, version="0.2"):
                self.assertRejected(self.file(self.keyless(variant=variant), version="0.2"),
                                    REASON[variant])
        with self.subTest("wrong-predicate pushed"):
            self.assertRejected(self.pushed(self.keyless(variant="wrong-predicate"),
                                            policy={"identity": IDENTITY, "issuer": ISSUER,
                                                    "predicate_type": sf.COSIGN_SIGN_PREDICATE}),
                                REASON["wrong-predicate"])
        for variant in ("bad-sig", "wrong-key", "payload-digest"):
            with self.subTest(variant, signer="key"):
                reason = (PAYLOAD_DIGEST_REASON["dsse"] if variant == "payload-digest"
                          else REASON[variant])
                self.assertRejected(self.file(self.keyed(variant=variant, rekor=self.auth),
                                              key=self.pub), reason)

    def test_foreign_predicate_passes_without_a_predicate_policy(self):
        """@sigstore/verify alone accepts a foreign predicate type: only the policy rejects it."""
        self.assertVerified(self.file(self.keyless(variant="wrong-predicate")))

    def test_othername_identity_is_beyond_sigstore_js(self):
        v = self.file(self.keyless(identity="alice", san_type="othername"), identity="alice",
                      issuer=ISSUER)
        self.assertRejected(v, "got undefined")

    def test_digest_only_message_is_not_judged(self):
        made = sf.make_bundle(self.keyless(), "sha256:" + "c" * 64, content="message")
        v = sigstore_js.verify_bundle(made["bundle"], self.tr, made["digest"], identity=IDENTITY,
                                      issuer=ISSUER)
        self.assertEqual(v.code, 3, v.output)


# ---------------------------------------------------------------------------------------------


class SigstoreJsMaterial(Base):
    @classmethod
    def setUpClass(cls):
        sigstore_js.install()
        super().setUpClass()
        cls.repo = "test/sigstore-js"
        cls.digest = cls.reg.push(cls.repo, "v1", "signed by sigstore-js")
        cls.artifact = os.path.join(cls.dir, "blob.txt")
        with open(cls.artifact, "w") as f:
            f.write("a blob signed by sigstore-js\n")
        cls.js = sigstore_js.sign(os.path.join(cls.dir, "js"), [cls.digest], [cls.artifact],
                                  tsa=True)
        cls.js_tsa_only = sigstore_js.sign(os.path.join(cls.dir, "js-tsa"), [cls.digest],
                                           tsa=True, tlog=False)
        cls.image_bundle, cls.blob_bundle = [b["path"] for b in cls.js["bundles"]]

    def load(self, path):
        with open(path) as f:
            return json.load(f)

    def policy(self, **kw):
        return dict({"identity": self.js["identity"], "issuer": self.js["issuer"]}, **kw)

    def test_trusted_root_well_formed(self):
        tr = self.load(self.js["trusted_root"])
        self.assertEqual(tr["mediaType"], sf.MT_TRUSTED_ROOT)
        for section in ("tlogs", "ctlogs"):
            [log] = tr[section]
            spki = base64.b64decode(log["publicKey"]["rawBytes"])
            self.assertEqual(base64.b64decode(log["logId"]["keyId"]), hashlib.sha256(spki).digest())
            self.assertEqual(log["publicKey"]["keyDetails"], "PKIX_ECDSA_P256_SHA_256")
        [ca] = tr["certificateAuthorities"]
        [root] = [der_of(c["rawBytes"]) for c in ca["certChain"]["certificates"]]
        self.assertEqual(root.subject, root.issuer)
        self.assertTrue(root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        [tsa] = tr["timestampAuthorities"]
        leaf = der_of(tsa["certChain"]["certificates"][0]["rawBytes"])
        self.assertEqual(list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
                         [ExtendedKeyUsageOID.TIME_STAMPING])

    def shape(self, bundle):
        """Field names down to the inclusion proof, with the fields that protobuf JSON leaves
        out at their default (the mock log's one-leaf proof: logIndex 0, no hashes)."""
        vm = bundle["verificationMaterial"]
        [e] = vm["tlogEntries"]
        proof = set(e["inclusionProof"]) | {"logIndex", "hashes"}
        return (bundle["mediaType"], sorted(bundle), sorted(vm), sorted(e), sorted(proof),
                e["kindVersion"])

    def test_bundles_well_formed_and_shaped_like_ours(self):
        image = self.load(self.image_bundle)
        self.assertEqual(image["mediaType"], sf.MT_BUNDLE["0.3"])
        leaf = der_of(image["verificationMaterial"]["certificate"]["rawBytes"])
        [uri] = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(uri.value, self.js["identity"])
        env = image["dsseEnvelope"]
        self.assertEqual(env["payloadType"], sf.MT_INTOTO)
        st = json.loads(base64.b64decode(env["payload"]))
        self.assertEqual(st["predicateType"], sf.COSIGN_SIGN_PREDICATE)
        self.assertEqual(st["subject"][0]["digest"], {"sha256": self.digest[7:]})
        [e] = image["verificationMaterial"]["tlogEntries"]
        body = json.loads(base64.b64decode(e["canonicalizedBody"]))
        self.assertEqual(sorted(body["spec"]), ["envelopeHash", "payloadHash", "signatures"])
        blob = self.load(self.blob_bundle)
        self.assertEqual(blob["mediaType"], sf.MT_BUNDLE["0.2"])
        [_] = blob["verificationMaterial"]["x509CertificateChain"]["certificates"]  # leaf only
        with open(self.artifact, "rb") as f:
            self.assertEqual(base64.b64decode(blob["messageSignature"]["messageDigest"]["digest"]),
                             hashlib.sha256(f.read()).digest())

        ours_dsse = json.loads(sf.make_bundle(self.keyless(tsa=True), self.digest)["bundle"])
        ours_msg = json.loads(sf.make_bundle(self.keyless(tsa=True), artifact=self.artifact,
                                             content="message", version="0.2")["bundle"])
        self.assertEqual(self.shape(ours_dsse), self.shape(image))
        self.assertEqual(self.shape(ours_msg), self.shape(blob))

    def test_bundles_verify(self):
        tr = self.js["trusted_root"]
        self.assertEqual(sigstore_js.verify_bundle(self.image_bundle, tr, self.digest,
                                                   **self.policy()).code, 0)
        self.assertEqual(sigstore_js.verify_bundle(self.blob_bundle, tr, self.artifact,
                                                   **self.policy()).code, 0)
        [tsa_only] = self.js_tsa_only["bundles"]
        self.assertNotIn("tlogEntries", self.load(tsa_only["path"])["verificationMaterial"])
        v = sigstore_js.verify_bundle(tsa_only["path"], self.js_tsa_only["trusted_root"],
                                      self.digest, tlog_threshold=0, **self.policy())
        self.assertEqual(v.code, 0, v.output)
        for name, args, kw in (
                ("another identity", (self.image_bundle, tr, self.digest),
                 self.policy(identity=URI_ID + "x")),
                ("another digest", (self.image_bundle, tr, "sha256:" + "0" * 64), self.policy()),
                ("another blob", (self.blob_bundle, tr, self.blob("other.txt", "other\n")),
                 self.policy()),
                ("our trusted root", (self.image_bundle, self.tr, self.digest), self.policy())):
            with self.subTest(name):
                self.assertEqual(sigstore_js.verify_bundle(*args, **kw).code, 1)

    def test_pushed_by_us_as_referrer(self):
        with open(self.image_bundle, "rb") as f:
            made = {"bundle": f.read(), "media_type": sf.MT_BUNDLE["0.3"], "content": "dsse",
                    "predicate_type": sf.COSIGN_SIGN_PREDICATE}
        pushed = sf.push_bundle(self.c, self.repo, self.digest, made)
        index, _ = self.c.get_manifest(self.repo, pushed["index_tag"])
        self.assertIn(pushed["referrer"], [m["digest"] for m in json.loads(index)["manifests"]])
        v = sigstore_js.verify_referrers(self.reg.address, self.repo, self.digest,
                                         self.js["trusted_root"], **self.policy())
        self.assertEqual(v.code, 0, v.output)
        self.assertIn("(tag schema): OK dsse", v.output)


if __name__ == "__main__":
    unittest.main()
