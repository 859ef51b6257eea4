#!/usr/bin/env python3
"""sigil's CRDs (deploy/helm/sigil/files/crds): structural schemas, and what they accept and refuse.

Every example under examples/policies/ must be accepted; crafted bad policies must be refused with
the API server's kind of message. Run: /usr/bin/python3 tests/deploy/test_crds.py (exit 77: skipped).
"""

import copy
import glob
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CRD_DIR = os.path.join(ROOT, "deploy", "helm", "sigil", "files", "crds")
EXAMPLES = os.path.join(ROOT, "examples", "policies")

try:
    import yaml
except ImportError:  # pragma: no cover
    print("SKIP: python3-yaml is not installed (scripts/deps.sh installs it)")
    sys.exit(77)

sys.dont_write_bytecode = True  # keep tests/deploy free of __pycache__
sys.path.insert(0, HERE)
import crdschema  # noqa: E402

KEY = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAECZ2Q+SDCbb79EBQqVjLTpPZJhBVn\nIgTPl64HZz6Vk5h9nvAljeMfSQD/vb1dCXF0qRaw5CrGuOV9cqivWqcw1A==\n-----END PUBLIC KEY-----\n"


def cip(**spec):
    base = {"images": [{"glob": "myacr.azurecr.io/prod/**"}],
            "authorities": [{"name": "release", "key": {"data": KEY}}]}
    base.update(spec)
    return {"apiVersion": "sigil.dev/v1alpha1", "kind": "ClusterImagePolicy",
            "metadata": {"name": "p"}, "spec": base}


def load_examples():
    out = []
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    out.append((os.path.basename(path), doc))
    return out


def walk(schema, path=""):
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, "%s/%s" % (path, name))
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], path + "/items")


class CRDs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crds = crdschema.load_crds(CRD_DIR)
        cls.by_kind = {k[2]: v for k, v in cls.crds.items()}

    def test_three_crds_one_version_each(self):
        self.assertEqual(sorted(self.by_kind), ["ClusterImagePolicy", "ImagePolicy", "TrustRoot"])
        files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CRD_DIR, "*.yaml")))
        self.assertEqual(files, ["clusterimagepolicies.sigil.dev.yaml", "imagepolicies.sigil.dev.yaml",
                                 "trustroots.sigil.dev.yaml"])
        for kind, (crd, _) in self.by_kind.items():
            spec = crd["spec"]
            self.assertEqual(crd["apiVersion"], "apiextensions.k8s.io/v1")
            self.assertEqual(spec["group"], "sigil.dev")
            self.assertEqual(crd["metadata"]["name"], "%s.sigil.dev" % spec["names"]["plural"])
            self.assertEqual(len(spec["versions"]), 1, kind)
            v = spec["versions"][0]
            self.assertEqual((v["name"], v["served"], v["storage"]), ("v1alpha1", True, True))
            self.assertEqual(v.get("subresources"), {"status": {}}, kind + ": status subresource")
            self.assertIn("sigil", spec["names"].get("categories", []))

    def test_scope_and_short_names(self):
        expect = {"ClusterImagePolicy": ("Cluster", ["cip"]), "ImagePolicy": ("Namespaced", ["ip"]),
                  "TrustRoot": ("Cluster", None)}
        for kind, (scope, short) in expect.items():
            spec = self.by_kind[kind][0]["spec"]
            self.assertEqual(spec["scope"], scope, kind)
            self.assertEqual(spec["names"].get("shortNames"), short, kind)

    def test_printer_columns(self):
        for kind, (crd, _) in self.by_kind.items():
            cols = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
            self.assertEqual(cols["Ready"]["jsonPath"], '.status.conditions[?(@.type=="Ready")].status', kind)
            self.assertEqual((cols["Age"]["type"], cols["Age"]["jsonPath"]), ("date", ".metadata.creationTimestamp"))
            if kind == "TrustRoot":
                self.assertNotIn("Mode", cols, "a TrustRoot has no mode")
            else:
                self.assertEqual(cols["Mode"]["jsonPath"], ".spec.mode", kind)

    def test_schemas_are_structural(self):
        for kind, (_, schema) in self.by_kind.items():
            self.assertEqual(crdschema.structural_problems(schema), [], kind)

    def test_structural_checker_catches_problems(self):
        bad = {"type": "object", "properties": {
            "a": {"description": "no type"},
            "b": {"type": "string", "oneOf": [{"type": "string"}]},
            "c": {"type": "array"},
            "d": {"type": "string", "enum": ["x", 3]},
            "e": {"type": "string", "x-kubernetes-validations": [{"rule": "self.matches('x')"}]},
            "f": {"type": "string", "enum": ["a"], "default": "b"}}}
        problems = "\n".join(crdschema.structural_problems(bad))
        for needle in ("/a: every node needs a type", "/b: unknown or disallowed keyword 'oneOf'",
                       "/c: an array needs items", "/d: enum value 3", "/e: ", "/f: default does not validate"):
            self.assertIn(needle, problems)

    def test_status_is_metav1_conditions(self):
        for kind, (_, schema) in self.by_kind.items():
            status = schema["properties"]["status"]
            self.assertEqual(status["properties"]["observedGeneration"]["type"], "integer")
            conds = status["properties"]["conditions"]
            self.assertEqual(conds["x-kubernetes-list-type"], "map")
            self.assertEqual(conds["x-kubernetes-list-map-keys"], ["type"])
            item = conds["items"]
            self.assertEqual(sorted(item["required"]), ["lastTransitionTime", "message", "reason", "status", "type"])
            self.assertEqual(item["properties"]["status"]["enum"], ["True", "False", "Unknown"])
            self.assertEqual(item["properties"]["lastTransitionTime"]["format"], "date-time")

    def test_image_policy_is_the_cluster_spec_without_foreign_namespaces(self):
        cipspec = copy.deepcopy(self.by_kind["ClusterImagePolicy"][1]["properties"]["spec"])
        ipspec = copy.deepcopy(self.by_kind["ImagePolicy"][1]["properties"]["spec"])

        def strip(node):
            if isinstance(node, dict):
                node.pop("description", None)
                for v in node.values():
                    strip(v)
            elif isinstance(node, list):
                for v in node:
                    strip(v)
        auth = cipspec["properties"]["authorities"]["items"]["properties"]
        for ref in (auth["key"]["properties"]["secretRef"],
                    auth["keyless"]["properties"]["ca-cert"]["properties"]["secretRef"]):
            self.assertIn("namespace", ref["properties"])
            del ref["properties"]["namespace"]
        ipauth = ipspec["properties"]["authorities"]["items"]["properties"]
        self.assertNotIn("namespace", ipauth["key"]["properties"]["secretRef"]["properties"])
        strip(cipspec)
        strip(ipspec)
        self.assertEqual(cipspec, ipspec, "ImagePolicy.spec must stay ClusterImagePolicy.spec minus secretRef.namespace")
        desc = self.by_kind["ImagePolicy"][1]["description"]
        for phrase in ("only to pods", "own namespace", "can only add requirements", "never relax"):
            self.assertIn(phrase, desc)

    def test_trust_root_has_no_tuf_fields(self):
        spec = self.by_kind["TrustRoot"][1]["properties"]["spec"]
        self.assertEqual(sorted(spec["properties"]), ["sigstoreKeys"])
        self.assertEqual(spec["required"], ["sigstoreKeys"])
        keys = spec["properties"]["sigstoreKeys"]["properties"]
        self.assertEqual(sorted(keys), ["certificateAuthorities", "ctLogs", "tLogs", "timestampAuthorities"])
        ca = keys["certificateAuthorities"]["items"]["properties"]
        self.assertEqual(sorted(ca), ["certChain", "subject", "uri"])
        self.assertEqual(sorted(ca["subject"]["properties"]), ["commonName", "organization"])
        self.assertEqual(sorted(keys["tLogs"]["items"]["properties"]), ["baseURL", "hashAlgorithm", "publicKey"])
        self.assertEqual(keys["ctLogs"]["items"], keys["tLogs"]["items"] | {"description": keys["ctLogs"]["items"]["description"]})
        self.assertEqual(sorted(keys["timestampAuthorities"]["items"]["properties"]), ["certChain", "subject", "uri"])

    def test_cel_rules_under_lists_are_bounded(self):
        # The API server estimates a rule's cost times the largest list it can run over; unbounded
        # lists of objects with rules make the CRD too expensive to be accepted.
        for kind, (_, schema) in self.by_kind.items():
            def has_rules(node):
                return any("x-kubernetes-validations" in n for _, n in walk(node))
            for path, node in walk(schema):
                if node.get("type") == "array" and isinstance(node.get("items"), dict) and has_rules(node["items"]):
                    self.assertIn("maxItems", node, "%s %s: a list whose items carry CEL rules needs maxItems" % (kind, path))

    def test_cel_subset(self):
        rule = "(has(self.key) ? 1 : 0) + (has(self.keyless) ? 1 : 0) + (has(self.static) ? 1 : 0) == 1"
        self.assertTrue(crdschema.eval_rule(rule, {"key": {}}))
        self.assertFalse(crdschema.eval_rule(rule, {"key": {}, "static": {}}))
        self.assertFalse(crdschema.eval_rule(rule, {}))
        self.assertTrue(crdschema.eval_rule("has(self.data) != has(self.secretRef)", {"data": "x"}))
        self.assertFalse(crdschema.eval_rule("!has(self.a.b)", {"a": {"b": 1}}))
        self.assertTrue(crdschema.eval_rule("self.n == 2 && (true || false)", {"n": 2}))
        with self.assertRaises(crdschema.UnsupportedRule):
            crdschema.compile_rule("self.all(k, k in ['a'])")


class Objects(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crds = crdschema.load_crds(CRD_DIR)

    def errors(self, obj):
        return crdschema.validate_object(self.crds, obj)

    def assertValid(self, obj):
        self.assertEqual(self.errors(obj), [], yaml.safe_dump(obj))

    def assertRefused(self, obj, needle):
        errs = self.errors(obj)
        self.assertTrue(errs, "accepted, but should be refused (%s):\n%s" % (needle, yaml.safe_dump(obj)))
        self.assertIn(needle, "\n".join(errs))

    def test_every_example_is_accepted(self):
        examples = load_examples()
        self.assertGreaterEqual(len(examples), 6)
        for name, doc in examples:
            with self.subTest(example=name, object=doc["metadata"]["name"]):
                self.assertValid(doc)

    def test_examples_cover_the_kinds_and_features(self):
        docs = [d for _, d in load_examples()]
        kinds = {d["kind"] for d in docs}
        self.assertEqual(kinds, {"ClusterImagePolicy", "ImagePolicy", "TrustRoot"})
        auths = [a for d in docs if d["kind"] != "TrustRoot" for a in d["spec"]["authorities"]]
        self.assertTrue(any("key" in a and "data" in a["key"] for a in auths), "inline key")
        self.assertTrue(any("key" in a and "secretRef" in a["key"] for a in auths), "key from a Secret")
        idents = [i for a in auths if "keyless" in a for i in a["keyless"]["identities"]]
        self.assertTrue(any("issuerRegExp" in i and "subjectRegExp" in i and "githubusercontent" in i["issuerRegExp"]
                            for i in idents), "keyless GitHub Actions identity with regexps")
        self.assertTrue(any(a.get("static", {}).get("action") == "fail" for a in auths), "static fail")
        self.assertTrue(any(d["spec"].get("mode") == "warn" for d in docs if d["kind"] != "TrustRoot"), "warn mode")
        self.assertTrue(any("source" in a for a in auths), "source with signaturePullSecrets")

    def test_mode_defaults_to_enforce(self):
        _, schema = self.crds[("sigil.dev", "v1alpha1", "ClusterImagePolicy")]
        obj = crdschema.apply_defaults(schema, cip())
        self.assertEqual(obj["spec"]["mode"], "enforce")
        self.assertEqual(crdschema.apply_defaults(schema, cip(mode="warn"))["spec"]["mode"], "warn")

    def test_a_policy_controller_policy_carries_over(self):
        # sigil's README example, as written for policy-controller, with only apiVersion changed.
        doc = yaml.safe_load("""
apiVersion: sigil.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: prod-images}
spec:
  mode: enforce
  images:
    - glob: "myacr.azurecr.io/prod/**"
  authorities:
    - name: release-key
      key:
        hashAlgorithm: sha256
        data: |
          -----BEGIN PUBLIC KEY-----
          MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...
          -----END PUBLIC KEY-----
    - name: break-glass
      static: {action: fail, message: "use a signed release"}
""")
        self.assertValid(doc)

    def test_require_digest_is_a_boolean_on_both_policy_kinds(self):
        self.assertValid(cip(requireDigest=True))
        self.assertValid(cip(requireDigest=False))
        self.assertRefused(cip(requireDigest="yes"), "spec.requireDigest")
        ip = cip(requireDigest=True)
        ip["kind"] = "ImagePolicy"
        ip["metadata"]["namespace"] = "team"
        self.assertValid(ip)
        ip["spec"]["requireDigest"] = 1
        self.assertRefused(ip, "spec.requireDigest")

    def test_refuses_unknown_fields(self):
        obj = cip()
        obj["spec"]["imagez"] = []
        self.assertRefused(obj, 'unknown field "spec.imagez"')
        obj = cip()
        obj["spec"]["authorities"][0]["key"]["pem"] = "x"
        self.assertRefused(obj, 'unknown field "spec.authorities[0].key.pem"')
        obj = cip()
        obj["status"] = {"phase": "Ready"}
        self.assertRefused(obj, 'unknown field "status.phase"')

    def test_refuses_a_bad_mode(self):
        self.assertRefused(cip(mode="audit"), "spec.mode: Unsupported value: 'audit'")
        self.assertRefused(cip(mode="Enforce"), "spec.mode: Unsupported value")

    def test_refuses_two_or_none_of_key_keyless_static(self):
        two = cip(authorities=[{"name": "x", "key": {"data": KEY},
                                "keyless": {"identities": [{"issuer": "https://i", "subject": "s"}]}}])
        self.assertRefused(two, "an authority needs exactly one of key, keyless or static")
        three = cip(authorities=[{"key": {"data": KEY}, "static": {"action": "pass"},
                                  "keyless": {"identities": [{"issuer": "https://i", "subject": "s"}]}}])
        self.assertRefused(three, "exactly one of key, keyless or static")
        none = cip(authorities=[{"name": "nothing"}])
        self.assertRefused(none, "exactly one of key, keyless or static")

    def test_refuses_incomplete_policies(self):
        obj = cip()
        del obj["spec"]["images"]
        self.assertRefused(obj, "spec.images: Required value")
        self.assertRefused(cip(images=[]), "should have at least 1 items")
        self.assertRefused(cip(authorities=[]), "should have at least 1 items")
        self.assertRefused(cip(images=[{"glob": ""}]), "spec.images[0].glob: Invalid value: should be at least 1 chars")
        self.assertRefused(cip(images=["myacr.azurecr.io/**"]), "must be of type object")
        self.assertRefused(cip(authorities=[{"key": {}}]), "key needs exactly one of data or secretRef")
        self.assertRefused(cip(authorities=[{"key": {"data": KEY, "secretRef": {"name": "k"}}}]),
                           "key needs exactly one of data or secretRef")
        self.assertRefused(cip(authorities=[{"key": {"data": KEY, "hashAlgorithm": "md5"}}]),
                           "hashAlgorithm: Unsupported value: 'md5'")
        self.assertRefused(cip(authorities=[{"static": {"action": "allow"}}]), "action: Unsupported value: 'allow'")
        self.assertRefused(cip(authorities=[{"static": {}}]), "spec.authorities[0].static.action: Required value")
        self.assertRefused(cip(authorities=[{"key": {"data": KEY}, "source": [{"signaturePullSecrets": [{"name": "x"}]}]}]),
                           "spec.authorities[0].source[0].oci: Required value")

    def test_refuses_keyless_without_a_precise_identity(self):
        self.assertRefused(cip(authorities=[{"keyless": {"url": "https://fulcio.sigstore.dev"}}]),
                           "spec.authorities[0].keyless.identities: Required value")
        self.assertRefused(cip(authorities=[{"keyless": {"identities": []}}]), "should have at least 1 items")
        both = {"issuer": "https://token.actions.githubusercontent.com", "issuerRegExp": ".*", "subject": "s"}
        self.assertRefused(cip(authorities=[{"keyless": {"identities": [both]}}]),
                           "an identity needs exactly one of issuer or issuerRegExp")
        self.assertRefused(cip(authorities=[{"keyless": {"identities": [{"issuer": "https://i"}]}}]),
                           "an identity needs exactly one of subject or subjectRegExp")

    def test_refuses_policy_controller_fields_sigil_does_not_enforce(self):
        cases = [
            ("attestations[].policy", cip(authorities=[{"key": {"data": KEY}, "attestations": [
                {"name": "sbom", "predicateType": "spdx", "policy": {"type": "cue", "data": "x: 1"}}]}])),
            ("spec.policy", cip(policy={"type": "cue", "data": "predicateType: \"cosign.sigstore.dev/attestation/v1\""})),
            ("spec.match", cip(match=[{"resource": "pods", "version": "v1"}])),
            ("key.kms", cip(authorities=[{"key": {"kms": "azurekms://vault.vault.azure.net/key"}}])),
            ("source[].tagPrefix", cip(authorities=[{"key": {"data": KEY}, "source": [{"oci": "r/s", "tagPrefix": "x-"}]}])),
        ]
        for field, obj in cases:
            with self.subTest(field=field):
                self.assertRefused(obj, "sigil does not enforce")

    def test_attestations(self):
        # issue 13 point 9: policy-controller's attestations (name, predicateType) are accepted
        att = [{"name": "provenance", "predicateType": "slsaprovenance1"},
               {"name": "sbom", "predicateType": "https://spdx.dev/Document"}]
        self.assertValid(cip(authorities=[{"key": {"data": KEY}, "attestations": att}]))
        self.assertRefused(cip(authorities=[{"key": {"data": KEY}, "attestations": [{"name": "x"}]}]),
                           "predicateType: Required value")
        self.assertRefused(cip(authorities=[{"key": {"data": KEY},
                                             "attestations": [{"name": "x", "predicateType": "spdx", "extra": 1}]}]),
                           "unknown field")

    def test_image_policy_scoping(self):
        ip = {"apiVersion": "sigil.dev/v1alpha1", "kind": "ImagePolicy",
              "metadata": {"name": "team", "namespace": "payments"},
              "spec": {"images": [{"glob": "myacr.azurecr.io/**"}],
                       "authorities": [{"key": {"secretRef": {"name": "team-key"}}}]}}
        self.assertValid(ip)
        other = copy.deepcopy(ip)
        other["spec"]["authorities"][0]["key"]["secretRef"]["namespace"] = "kube-system"
        self.assertRefused(other, 'unknown field "spec.authorities[0].key.secretRef.namespace"')
        no_ns = copy.deepcopy(ip)
        del no_ns["metadata"]["namespace"]
        self.assertRefused(no_ns, "metadata.namespace: Required value")
        cluster = cip()
        cluster["metadata"]["namespace"] = "default"
        self.assertRefused(cluster, "cluster-scoped")

    def test_trust_root_refusals(self):
        _, tr = next(d for d in load_examples() if d[1]["kind"] == "TrustRoot")
        remote = copy.deepcopy(tr)
        remote["spec"]["remote"] = {"mirror": "https://tuf-repo-cdn.sigstore.dev", "root": "e30="}
        self.assertRefused(remote, 'unknown field "spec.remote"')
        repo = {"apiVersion": "sigil.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "air-gap"},
                "spec": {"repository": {"mirrorFS": "H4sI", "root": "e30="}}}
        errs = "\n".join(self.errors(repo))
        self.assertIn('unknown field "spec.repository"', errs)
        self.assertIn("spec.sigstoreKeys: Required value", errs, "a client that prunes repository still fails")
        pem = copy.deepcopy(tr)
        pem["spec"]["sigstoreKeys"]["tLogs"][0]["publicKey"] = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n"
        self.assertRefused(pem, "must be of format byte")
        nochain = copy.deepcopy(tr)
        del nochain["spec"]["sigstoreKeys"]["certificateAuthorities"][0]["certChain"]
        self.assertRefused(nochain, "certificateAuthorities[0].certChain: Required value")

    def test_status_written_by_sigil_validates(self):
        obj = cip()
        obj["status"] = {"observedGeneration": 3, "conditions": [
            {"type": "Ready", "status": "False", "reason": "KeyNotFound", "lastTransitionTime": "2026-08-01T10:00:00Z",
             "message": "secret sigil/platform-cosign-key not found", "observedGeneration": 3}]}
        self.assertValid(obj)
        obj["status"]["conditions"][0]["status"] = "Maybe"
        self.assertRefused(obj, "Unsupported value: 'Maybe'")
        obj["status"]["conditions"][0]["status"] = "True"
        obj["status"]["conditions"].append(dict(obj["status"]["conditions"][0]))
        self.assertRefused(obj, "Duplicate value")


if __name__ == "__main__":
    unittest.main(verbosity=2)
