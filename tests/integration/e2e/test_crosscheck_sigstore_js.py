"""sigstore-js-produced signatures judged by sigil: independent evidence that sigil's keyless and
bundle verification accepts what another implementation makes, and refuses it when one link is
broken.

The producer is the real sigstore-js signer (tests/support/sigstore-js/sign.js) against
@sigstore/mock's Fulcio, Rekor, CT log and TSA on 127.0.0.1; every sign.js run mints new keys and
writes the matching trusted_root.json. Nothing of sigil's own fixture code makes the signed
material: it is only pushed (sigstore_fixture.push_bundle, the cosign v3 layout: an OCI 1.1
referrer plus the referrers tag-schema index, as distribution 2.8 has no referrers API).

* ImageBundlesFromSigstoreJs: v0.3 DSSE bundles of cosign's `sign` statement (sigstore-js
  `attest()`) admitted by the real `sigil serve` (--trusted-root = sigstore-js's root; keyless
  authorities with exact and regexp identities; TrustRoot documents converted from sigstore-js's
  trusted_root.json; a timestamp-authority-only bundle under `ctlog: {}`) and by `sigil verify`
  with cosign's identity flags. Each negative changes one thing (another digest, identity,
  issuer, a flipped byte of the signature / SET / inclusion proof / RFC 3161 timestamp, one
  trust element swapped for ours) and is denied with its reason code.
* BlobBundlesFromSigstoreJs: v0.2 messageSignature bundles (sigstore-js `sign()`) through
  `sigil verify-bundle`, by file and by `sha256:<hex>`, with and without an RFC 3161 timestamp;
  another file, identity, issuer, trust root or a tampered bundle fails with exit 1.

Skips when docker-registry (image class only), node/npm or the npm registry is unavailable
(sigstore_js.install() says which).
"""
import base64
import copy
import hashlib
import json
import os
import unittest

import harness
from harness import fixture

import sigstore_fixture as sf  # noqa: E402  (tests/support is on sys.path through harness)
import sigstore_js  # noqa: E402

OTHER_IDENTITY = "https://github.com/sigil-test/app/.github/workflows/other.yml@refs/heads/main"
OTHER_ISSUER = "https://accounts.google.com"


def setUpModule():
    sigstore_js.install()  # SkipTest without node/npm or the npm registry
    harness.sigil_bin()


# ---------------------------------------------------------------------------------------------
# helpers


def load(path):
    with open(path) as f:
        return json.load(f)


def read_text(path):
    with open(path) as f:
        return f.read()


def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def flip_last_byte(b64text):
    """The base64 of the same bytes with the last one flipped (a DER ECDSA signature or CMS
    SignedData stays well-formed; its value no longer verifies)."""
    raw = bytearray(base64.b64decode(b64text))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def flip_first_byte(b64text):
    raw = bytearray(base64.b64decode(b64text))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def tampered(bundle, what):
    """A copy of a sigstore bundle (dict) with one field changed."""
    b = copy.deepcopy(bundle)
    vm = b["verificationMaterial"]
    if what == "signature":
        if "dsseEnvelope" in b:
            s = b["dsseEnvelope"]["signatures"][0]
            s["sig"] = flip_last_byte(s["sig"])
        else:
            m = b["messageSignature"]
            m["signature"] = flip_last_byte(m["signature"])
    elif what == "message-digest":
        d = b["messageSignature"]["messageDigest"]
        d["digest"] = flip_first_byte(d["digest"])
    elif what == "payload":
        env = b["dsseEnvelope"]
        st = json.loads(base64.b64decode(env["payload"]))
        st["predicate"] = {"tampered": True}
        env["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    elif what == "set":
        p = vm["tlogEntries"][0]["inclusionPromise"]
        p["signedEntryTimestamp"] = flip_last_byte(p["signedEntryTimestamp"])
    elif what == "inclusion-root":
        p = vm["tlogEntries"][0]["inclusionProof"]
        p["rootHash"] = flip_first_byte(p["rootHash"])
    elif what == "timestamp":
        ts = vm["timestampVerificationData"]["rfc3161Timestamps"][0]
        ts["signedTimestamp"] = flip_last_byte(ts["signedTimestamp"])
    elif what == "no-tlog":
        vm["tlogEntries"] = []
    else:
        raise ValueError(what)
    return b


def pem(kind, der):
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind, "\n".join(lines), kind)


def trust_root_document(name, cas_from, tlogs_from, ctlogs_from, tsas_from):
    """A policy-controller TrustRoot (spec.sigstoreKeys, JSON-shaped as the Kubernetes API
    returns it) whose sections come from the given trusted_root.json files."""
    def chain(ca):
        certs = "".join(pem("CERTIFICATE", base64.b64decode(c["rawBytes"]))
                        for c in ca["certChain"]["certificates"])
        out = {"certChain": base64.b64encode(certs.encode()).decode()}
        if "uri" in ca:
            out["uri"] = ca["uri"]
        if "subject" in ca:
            out["subject"] = ca["subject"]
        return out

    def log(entry):
        key = pem("PUBLIC KEY", base64.b64decode(entry["publicKey"]["rawBytes"]))
        return {"baseURL": entry["baseUrl"], "hashAlgorithm": "sha-256",
                "publicKey": base64.b64encode(key.encode()).decode()}

    keys = {"certificateAuthorities": [chain(c) for c in load(cas_from)["certificateAuthorities"]],
            "tLogs": [log(t) for t in load(tlogs_from)["tlogs"]],
            "ctLogs": [log(t) for t in load(ctlogs_from)["ctlogs"]],
            "timestampAuthorities": [chain(t)
                                     for t in load(tsas_from).get("timestampAuthorities", [])]}
    return json.dumps({"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot",
                       "metadata": {"name": name}, "spec": {"sigstoreKeys": keys}}, indent=1)


def keyless_policy(name, glob, identity, trust_root_ref=None, extra=""):
    """A ClusterImagePolicy with one keyless authority; identity = {issuer|issuerRegExp: ...,
    subject|subjectRegExp: ...}."""
    ids = "".join("        %s: %s\n" % (k, json.dumps(v)) for k, v in identity.items())
    ids = "      - " + ids.lstrip()
    ref = "      trustRootRef: %s\n" % trust_root_ref if trust_root_ref else ""
    return ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
            "metadata:\n  name: %s\nspec:\n  images:\n  - glob: %s\n  authorities:\n"
            "  - name: sigstore-js\n    keyless:\n%s      identities:\n%s%s" %
            (name, json.dumps(glob), ref, ids, extra))


def exact(identity, issuer):
    return {"issuer": issuer, "subject": identity}


# ---------------------------------------------------------------------------------------------


class ImageBundlesFromSigstoreJs(unittest.TestCase):
    """sigstore-js image signatures (v0.3 DSSE bundles) in the real registry, through the real
    `sigil serve` and `sigil verify`."""

    # Every repository holds its own image (distinct content, so distinct digests), signed by
    # sigstore-js for that digest in one of three sign.js runs (three unrelated trust roots);
    # TAMPER names the one thing changed in the bundle before it is pushed. The repository's
    # first path component selects the policy (write_policies).
    PLAIN = ("exact/ok", "regexp/ok", "exact/bad-sig", "exact/bad-payload", "exact/bad-set",
             "exact/bad-inclusion", "exact/no-tlog", "other-subject/app", "other-issuer/app",
             "regexp-other/app", "regexp-prefix/app", "our-root/app", "mixed-ca/app",
             "mixed-rekor/app", "mixed-ct/app")
    STAMPED = ("tsa/ok", "tsa/bad-tsa")  # sign.js --tsa (log entry and RFC 3161 timestamp)
    TSA_ONLY = ("tsa-only/ok", "tsa-only/bad-tsa", "tsa-only-needs-log/app",
                "tsa-only-our-tsa/app")  # sign.js --tsa --no-tlog
    TAMPER = {"exact/bad-sig": "signature", "exact/bad-payload": "payload",
              "exact/bad-set": "set", "exact/bad-inclusion": "inclusion-root",
              "exact/no-tlog": "no-tlog", "tsa/bad-tsa": "timestamp",
              "tsa-only/bad-tsa": "timestamp"}

    @classmethod
    def setUpClass(cls):
        harness.require_registry()
        cls.reg = harness.RunningRegistry("xjs-images")
        cls.addClassCleanup(cls.reg.stop)
        cls.c = cls.reg.client
        cls.work = harness.work_dir("xjs-images")
        cls.ours = sf.init(os.path.join(cls.work, "ours"))  # our fixture's trust, for negatives

        cls.digest = {}
        for repo in cls.PLAIN + cls.STAMPED + cls.TSA_ONLY + ("exact/copied",):
            cls.digest[repo] = cls.reg.push(repo, "v1", "sigstore-js cross-check: " + repo)

        def run(name, repos, **kw):
            out = sigstore_js.sign(os.path.join(cls.work, name), [cls.digest[r] for r in repos],
                                   **kw)
            by_digest = {b["digest"]: b["path"] for b in out["bundles"] if b["kind"] == "image"}
            return out, {r: by_digest[cls.digest[r]] for r in repos}

        cls.js, cls.bundle_path = run("js", cls.PLAIN)
        cls.js_tsa, paths = run("js-tsa", cls.STAMPED, tsa=True)
        cls.bundle_path.update(paths)
        cls.js_tsa_only, paths = run("js-tsa-only", cls.TSA_ONLY, tsa=True, tlog=False)
        cls.bundle_path.update(paths)
        cls.root = cls.js["trusted_root"]
        cls.identity, cls.issuer = cls.js["identity"], cls.js["issuer"]

        for repo, path in cls.bundle_path.items():
            bundle = load(path)
            if repo in cls.TAMPER:
                bundle = tampered(bundle, cls.TAMPER[repo])
            cls.push(repo, cls.digest[repo], json.dumps(bundle).encode())
        # The copy attack: exact/ok's valid bundle attached to another image.
        with open(cls.bundle_path["exact/ok"], "rb") as f:
            cls.push("exact/copied", cls.digest["exact/copied"], f.read())

        cls.sigil = harness.SigilServer("xjs", [cls.write_policies()],
                                        ["--insecure-registry", cls.reg.address,
                                         "--trusted-root", cls.root])
        cls.addClassCleanup(cls.sigil.stop)

    @classmethod
    def push(cls, repo, digest, bundle_bytes):
        made = {"bundle": bundle_bytes, "media_type": sf.MT_BUNDLE["0.3"], "content": "dsse",
                "predicate_type": sf.COSIGN_SIGN_PREDICATE}
        pushed = sf.push_bundle(cls.c, repo, digest, made)
        assert pushed["index_tag"], "distribution 2.8 has no referrers API: expected the tag schema"

    @classmethod
    def write_policies(cls):
        js, tsa, tsa_only, ours = (cls.root, cls.js_tsa["trusted_root"],
                                   cls.js_tsa_only["trusted_root"], cls.ours.trusted_root)
        who = exact(cls.identity, cls.issuer)
        g = lambda prefix: "%s/%s/**" % (cls.reg.address, prefix)  # noqa: E731
        docs = [
            # TrustRoots converted from sigstore-js's trusted_root.json files, and ones where
            # exactly one element is ours instead (the signature's is then untrusted).
            trust_root_document("js-tsa", tsa, tsa, tsa, tsa),
            trust_root_document("js-tsa-only", tsa_only, tsa_only, tsa_only, tsa_only),
            trust_root_document("mixed-ca", ours, js, js, js),
            trust_root_document("mixed-rekor", js, ours, js, js),
            trust_root_document("mixed-ct", js, js, ours, js),
            trust_root_document("tsa-only-our-tsa", tsa_only, tsa_only, tsa_only, ours),
            read_text(cls.ours.paths()["trustroot_yaml"]),  # TrustRoot sigil-test
            # the default root (--trusted-root = sigstore-js's), exact and regexp identities
            keyless_policy("exact", g("exact"), who),
            keyless_policy("regexp", g("regexp"), {
                "issuerRegExp": r"https://token\.actions\.githubusercontent\.com",
                "subjectRegExp": r"https://github\.com/sigil-test/app/\.github/workflows/"
                                 r"[a-z]+\.yml@refs/heads/main"}),
            keyless_policy("other-subject", g("other-subject"), exact(OTHER_IDENTITY, cls.issuer)),
            keyless_policy("other-issuer", g("other-issuer"), exact(cls.identity, OTHER_ISSUER)),
            keyless_policy("regexp-other", g("regexp-other"), {
                "issuerRegExp": r"https://token\.actions\.githubusercontent\.com",
                "subjectRegExp": r"https://github\.com/other-org/.*"}),
            # cosign matches a regexp anywhere in the identity; sigil matches the whole string.
            keyless_policy("regexp-prefix", g("regexp-prefix"), {
                "issuer": cls.issuer, "subjectRegExp": r"https://github\.com/sigil-test"}),
            keyless_policy("our-root", g("our-root"), who, "sigil-test"),
            keyless_policy("mixed-ca", g("mixed-ca"), who, "mixed-ca"),
            keyless_policy("mixed-rekor", g("mixed-rekor"), who, "mixed-rekor"),
            keyless_policy("mixed-ct", g("mixed-ct"), who, "mixed-ct"),
            # log entry and timestamp, both checked
            keyless_policy("tsa", g("tsa"), who, "js-tsa"),
            # no log entry: ctlog {} and a trusted timestamp authority
            keyless_policy("tsa-only", g("tsa-only"), who, "js-tsa-only", "    ctlog: {}\n"),
            keyless_policy("tsa-only-needs-log", g("tsa-only-needs-log"), who, "js-tsa-only"),
            keyless_policy("tsa-only-our-tsa", g("tsa-only-our-tsa"), who, "tsa-only-our-tsa",
                           "    ctlog: {}\n"),
        ]
        d = os.path.join(cls.work, "policies")
        os.makedirs(d)
        write(os.path.join(d, "sigstore-js.yaml"), "\n---\n".join(docs) + "\n")
        return d

    # -- helpers

    def admit(self, repo, by_digest=False):
        image = (self.reg.ref(repo, digest=self.digest[repo]) if by_digest
                 else self.reg.ref(repo, tag="v1"))
        status, resp = self.sigil.validate(harness.pod_review([image]))
        self.assertEqual(status, 200, self.sigil.log_tail())
        return image, resp

    def assertAdmitted(self, repo, by_digest=False):
        image, resp = self.admit(repo, by_digest)
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        summary = json.loads(resp["auditAnnotations"]["images"])
        self.assertEqual(summary, {image: "allowed " + self.digest[repo]})

    def assertDenied(self, repo, *reasons):
        image, resp = self.admit(repo)
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertEqual(resp["status"]["code"], 403, json.dumps(resp))
        summary = json.loads(resp["auditAnnotations"]["images"])
        outcome, reason, digest = summary[image].split(" ")
        self.assertEqual((outcome, digest), ("denied", self.digest[repo]), json.dumps(resp))
        self.assertIn(reason, reasons, json.dumps(resp))
        self.assertIn(repo, harness.message(resp))
        return reason

    def verify(self, repo, *args, root=None):
        r = harness.run_sigil(["verify", "--insecure-registry", self.reg.address, "-o", "json",
                               self.reg.ref(repo, tag="v1"), "--trusted-root", root or self.root]
                              + list(args))
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        return r.returncode, json.loads(r.stdout)

    def identity_flags(self, identity=None, issuer=None):
        return ["--certificate-identity", identity or self.identity,
                "--certificate-oidc-issuer", issuer or self.issuer]

    # -- the material is what it claims to be (so the checks below test sigil, not the setup)

    def test_material_is_sigstore_js_made(self):
        b = load(self.bundle_path["exact/ok"])
        self.assertEqual(b["mediaType"], sf.MT_BUNDLE["0.3"])
        st = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
        self.assertEqual(st["predicateType"], sf.COSIGN_SIGN_PREDICATE)
        self.assertEqual(st["subject"][0]["digest"], {"sha256": self.digest["exact/ok"][7:]})
        self.assertEqual(len(b["verificationMaterial"]["tlogEntries"]), 1)
        self.assertFalse(b["verificationMaterial"].get("timestampVerificationData", {}).get(
            "rfc3161Timestamps"))
        t = load(self.bundle_path["tsa/ok"])["verificationMaterial"]
        self.assertEqual(len(t["tlogEntries"]), 1)
        self.assertEqual(len(t["timestampVerificationData"]["rfc3161Timestamps"]), 1)
        t = load(self.bundle_path["tsa-only/ok"])["verificationMaterial"]
        self.assertFalse(t.get("tlogEntries"))
        self.assertEqual(len(t["timestampVerificationData"]["rfc3161Timestamps"]), 1)
        # three sign.js runs, three unrelated trust roots
        roots = {json.dumps(load(p)["certificateAuthorities"]) for p in (
            self.root, self.js_tsa["trusted_root"], self.js_tsa_only["trusted_root"])}
        self.assertEqual(len(roots), 3)
        # and sigstore-js itself accepts the good ones and rejects the copy
        for repo, root in (("exact/ok", self.root), ("tsa/ok", self.js_tsa["trusted_root"])):
            v = sigstore_js.verify_referrers(self.reg.address, repo, self.digest[repo], root,
                                             identity=self.identity, issuer=self.issuer)
            self.assertEqual(v.code, 0, v.output)
        v = sigstore_js.verify_referrers(self.reg.address, "exact/copied",
                                         self.digest["exact/copied"], self.root,
                                         identity=self.identity, issuer=self.issuer)
        self.assertEqual(v.code, 1, v.output)

    # -- sigil serve

    def test_admitted_with_exact_identity(self):
        self.assertAdmitted("exact/ok")
        self.assertAdmitted("exact/ok", by_digest=True)

    def test_admitted_with_regexp_identity(self):
        self.assertAdmitted("regexp/ok")

    def test_admitted_with_timestamp_and_log(self):
        self.assertAdmitted("tsa/ok")

    def test_admitted_with_timestamp_only_under_ctlog_off(self):
        self.assertAdmitted("tsa-only/ok")

    def test_bundle_of_another_image_denied(self):
        self.assertDenied("exact/copied", "DIGEST_MISMATCH")

    def test_other_identity_denied(self):
        for repo in ("other-subject/app", "other-issuer/app", "regexp-other/app",
                     "regexp-prefix/app"):
            with self.subTest(repo=repo):
                self.assertDenied(repo, "IDENTITY_MISMATCH")

    def test_tampered_bundles_denied(self):
        cases = {
            "exact/bad-sig": ("BAD_SIGNATURE",),
            "exact/bad-payload": ("BAD_SIGNATURE",),
            "exact/bad-set": ("TLOG_INVALID",),
            "exact/bad-inclusion": ("TLOG_INVALID",),
            "exact/no-tlog": ("TLOG_INVALID",),
            "tsa/bad-tsa": ("TIMESTAMP_INVALID",),
            "tsa-only/bad-tsa": ("TIMESTAMP_INVALID",),
        }
        for repo, reasons in cases.items():
            with self.subTest(repo=repo):
                self.assertDenied(repo, *reasons)

    def test_untrusted_trust_material_denied(self):
        cases = {
            # Our whole fixture root: neither the mock's log nor its CA is in it (which check
            # speaks first is sigil's order; the mixed roots below isolate each element).
            "our-root/app": ("TLOG_INVALID", "UNTRUSTED_CERTIFICATE"),
            # one element of sigstore-js's root replaced by ours
            "mixed-ca/app": ("UNTRUSTED_CERTIFICATE",),
            "mixed-rekor/app": ("TLOG_INVALID",),
            "mixed-ct/app": ("SCT_INVALID",),
            "tsa-only-our-tsa/app": ("TIMESTAMP_INVALID",),
            # A timestamp alone is not enough where the policy demands the log (no ctlog: {}).
            "tsa-only-needs-log/app": ("TLOG_INVALID",),
        }
        for repo, reasons in cases.items():
            with self.subTest(repo=repo):
                self.assertDenied(repo, *reasons)

    # -- sigil verify

    def test_verify_cli_admits(self):
        code, out = self.verify("exact/ok", *self.identity_flags())
        self.assertEqual((code, out["allowed"], out["digest"]),
                         (0, True, self.digest["exact/ok"]), out)
        code, out = self.verify("regexp/ok", "--certificate-identity-regexp",
                                r"https://github\.com/sigil-test/.+",
                                "--certificate-oidc-issuer-regexp",
                                r"https://token\.actions\.githubusercontent\.com")
        self.assertEqual((code, out["allowed"]), (0, True), out)
        code, out = self.verify("tsa/ok", *self.identity_flags(),
                                root=self.js_tsa["trusted_root"])
        self.assertEqual((code, out["allowed"]), (0, True), out)

    def test_verify_cli_denies(self):
        cases = [
            ("exact/ok", self.identity_flags(identity=OTHER_IDENTITY), None,
             ("IDENTITY_MISMATCH",)),
            ("exact/ok", self.identity_flags(issuer=OTHER_ISSUER), None, ("IDENTITY_MISMATCH",)),
            ("exact/ok", ["--certificate-identity-regexp", r"https://github\.com/sigil-test",
                          "--certificate-oidc-issuer", self.issuer], None,
             ("IDENTITY_MISMATCH",)),
            ("exact/copied", self.identity_flags(), None, ("DIGEST_MISMATCH",)),
            ("exact/bad-sig", self.identity_flags(), None, ("BAD_SIGNATURE",)),
            ("exact/bad-set", self.identity_flags(), None, ("TLOG_INVALID",)),
            ("exact/ok", self.identity_flags(), self.ours.trusted_root,
             ("TLOG_INVALID", "UNTRUSTED_CERTIFICATE")),
            # the bundle of another sign.js run: its CA, log and CT log are not this root's
            ("tsa/ok", self.identity_flags(), None, ("TLOG_INVALID", "UNTRUSTED_CERTIFICATE")),
            ("tsa/bad-tsa", self.identity_flags(), self.js_tsa["trusted_root"],
             ("TIMESTAMP_INVALID",)),
            # the CLI's keyless policy requires Rekor: a timestamp-only bundle is not enough
            ("tsa-only/ok", self.identity_flags(), self.js_tsa_only["trusted_root"],
             ("TLOG_INVALID",)),
        ]
        for repo, flags, root, reasons in cases:
            with self.subTest(repo=repo, flags=flags, root=root):
                code, out = self.verify(repo, *flags, root=root)
                self.assertEqual((code, out["allowed"]), (1, False), out)
                self.assertIn(out["reason"], reasons, out)


# ---------------------------------------------------------------------------------------------


class BlobBundlesFromSigstoreJs(unittest.TestCase):
    """sigstore-js blob signatures (v0.2 messageSignature bundles) through `sigil verify-bundle`."""

    @classmethod
    def setUpClass(cls):
        cls.work = harness.work_dir("xjs-blobs")
        cls.blob = write(os.path.join(cls.work, "artifact.txt"), "a blob signed by sigstore-js\n")
        cls.other = write(os.path.join(cls.work, "other.txt"), "another blob\n")
        with open(cls.blob, "rb") as f:
            cls.digest = fixture.sha256_digest(f.read())
        cls.image_digest = "sha256:" + hashlib.sha256(b"an image digest").hexdigest()
        cls.js = sigstore_js.sign(os.path.join(cls.work, "js"), [cls.image_digest], [cls.blob])
        cls.js_tsa = sigstore_js.sign(os.path.join(cls.work, "js-tsa"), blobs=[cls.blob], tsa=True)
        cls.js_tsa_only = sigstore_js.sign(os.path.join(cls.work, "js-tsa-only"),
                                           blobs=[cls.blob], tsa=True, tlog=False)
        cls.ours = sf.init(os.path.join(cls.work, "ours"))
        cls.root = cls.js["trusted_root"]
        cls.identity, cls.issuer = cls.js["identity"], cls.js["issuer"]

        def path(run, kind):
            [p] = [b["path"] for b in run["bundles"] if b["kind"] == kind]
            return p

        cls.blob_bundle = path(cls.js, "blob")
        cls.image_bundle = path(cls.js, "image")
        cls.tsa_bundle = path(cls.js_tsa, "blob")
        cls.tsa_only_bundle = path(cls.js_tsa_only, "blob")

    def vb(self, bundle, target=None, identity=None, issuer=None, root=None, regexp=False):
        args = ["verify-bundle", "--bundle", bundle]
        if regexp:
            args += ["--certificate-identity-regexp", identity,
                     "--certificate-oidc-issuer-regexp", issuer]
        else:
            args += ["--certificate-identity", identity or self.identity,
                     "--certificate-oidc-issuer", issuer or self.issuer]
        return harness.run_sigil(args + ["--trusted-root", root or self.root,
                                         target or self.blob])

    def tampered(self, bundle, what):
        n = len(os.listdir(self.work))
        return write(os.path.join(self.work, "tampered-%d-%s.json" % (n, what)),
                     json.dumps(tampered(load(bundle), what)))

    def assertVerified(self, r):
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(r.stdout.startswith("OK: "), r.stdout)

    def assertFailed(self, r, *needles):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("sigil: verify-bundle: ", r.stderr)
        for n in needles:
            self.assertIn(n, r.stderr)

    def test_material_is_sigstore_js_made(self):
        b = load(self.blob_bundle)
        self.assertEqual(b["mediaType"], sf.MT_BUNDLE["0.2"])
        self.assertEqual(base64.b64decode(b["messageSignature"]["messageDigest"]["digest"]).hex(),
                         self.digest[7:])
        self.assertEqual(len(b["verificationMaterial"]["tlogEntries"]), 1)
        self.assertEqual(b["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"],
                         "hashedrekord")
        vm = load(self.tsa_bundle)["verificationMaterial"]
        self.assertEqual(len(vm["timestampVerificationData"]["rfc3161Timestamps"]), 1)
        self.assertEqual(len(vm["tlogEntries"]), 1)
        v = sigstore_js.verify_bundle(self.blob_bundle, self.root, self.blob,
                                      identity=self.identity, issuer=self.issuer)
        self.assertEqual(v.code, 0, v.output)

    def test_blob_bundle_verifies_by_file_and_by_digest(self):
        self.assertVerified(self.vb(self.blob_bundle))
        r = self.vb(self.blob_bundle, target=self.digest)
        self.assertVerified(r)
        self.assertIn(self.digest, r.stdout)
        self.assertVerified(self.vb(self.blob_bundle, identity=r"https://github\.com/sigil-test/.+",
                                    issuer=r"https://token\.actions\.githubusercontent\.com",
                                    regexp=True))

    def test_image_bundle_verifies_by_digest(self):
        self.assertVerified(self.vb(self.image_bundle, target=self.image_digest))
        self.assertFailed(self.vb(self.image_bundle, target=self.digest),
                          "in-toto statement's subject is not " + self.digest[:19])

    def test_bundle_with_rfc3161_timestamp_verifies(self):
        root = self.js_tsa["trusted_root"]
        self.assertVerified(self.vb(self.tsa_bundle, root=root))
        self.assertVerified(self.vb(self.tsa_bundle, target=self.digest, root=root))
        self.assertFailed(self.vb(self.tampered(self.tsa_bundle, "timestamp"), root=root),
                          "RFC 3161")

    def test_failures(self):
        with open(self.other, "rb") as f:
            sha_other = fixture.sha256_digest(f.read())
        not_by = "not by issuer "
        untrusted_log = "transparency log the policy does not trust"
        cases = {
            "another file": (dict(target=self.other), "the bundle signs " + self.digest[:19]),
            "another digest": (dict(target=sha_other), "the bundle signs " + self.digest[:19]),
            "another identity": (dict(identity=OTHER_IDENTITY), not_by),
            "another issuer": (dict(issuer=OTHER_ISSUER), not_by),
            "a regexp matching only a prefix": (
                dict(identity=r"https://github\.com/sigil-test", issuer=r"https://token\..*",
                     regexp=True), not_by),
            "our trust root": (dict(root=self.ours.trusted_root), untrusted_log),
            "another sign.js run's root": (dict(root=self.js_tsa["trusted_root"]), untrusted_log),
        }
        for name, (kw, needle) in cases.items():
            with self.subTest(name):
                self.assertFailed(self.vb(self.blob_bundle, **kw), needle)
        tampers = {"signature": "signature does not verify",
                   "message-digest": "the bundle signs sha256:",
                   "set": "signed entry timestamp of log entry",
                   "inclusion-root": "inclusion proof of log entry",
                   "no-tlog": "no transparency log entry"}
        for what, needle in tampers.items():
            bundle = self.tampered(self.blob_bundle, what)
            for target in (self.blob, self.digest):
                with self.subTest("tampered " + what, target=target):
                    self.assertFailed(self.vb(bundle, target=target), needle)
        with self.subTest("timestamp only: the CLI requires the log"):
            self.assertFailed(self.vb(self.tsa_only_bundle, root=self.js_tsa_only["trusted_root"]),
                              "no transparency log entry")

if __name__ == "__main__":
    unittest.main()
