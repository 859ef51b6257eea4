#!/usr/bin/env python3
"""The Helm chart deploy/helm/sigil, rendered for real by tests/support/helmrender.

Builds the renderer (Go, GOPATH mode, Debian's sprig and yaml packages; no network), renders the
chart with its defaults and with several value sets, and checks what the cluster depends on: the
webhook configuration, RBAC, availability settings, probes, sigil's config file, the serving
certificate, values.schema.json, and that deploy/manifests/ is what deploy/render.sh produces.
Run: /usr/bin/python3 tests/deploy/test_chart.py (exit 77: skipped, with the reason).
"""

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # keep tests/ free of __pycache__
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import helmchart  # noqa: E402

CHART = helmchart.CHART


def skip(reason):
    print("SKIP: " + reason + " (" + helmchart.INSTALL_HINT + ")")
    sys.exit(77)


try:
    import yaml
except ImportError:  # pragma: no cover
    skip("python3-yaml is not installed")
if helmchart.missing():
    skip(helmchart.missing())

try:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509.oid import ExtendedKeyUsageOID
except ImportError:  # pragma: no cover
    x509 = None

TMP = tempfile.mkdtemp(prefix="sigil-chart-test-")
RENDERER = os.path.join(TMP, "helmrender")

# What sigil needs in the cluster: exactly these rules (see templates/rbac.yaml).
EXPECTED_RULES = {
    ("sigil.dev", "clusterimagepolicies", "get"), ("sigil.dev", "clusterimagepolicies", "list"),
    ("sigil.dev", "clusterimagepolicies", "watch"),
    ("sigil.dev", "imagepolicies", "get"), ("sigil.dev", "imagepolicies", "list"), ("sigil.dev", "imagepolicies", "watch"),
    ("sigil.dev", "trustroots", "get"), ("sigil.dev", "trustroots", "list"), ("sigil.dev", "trustroots", "watch"),
    ("sigil.dev", "clusterimagepolicies/status", "get"), ("sigil.dev", "clusterimagepolicies/status", "patch"),
    ("sigil.dev", "clusterimagepolicies/status", "update"),
    ("sigil.dev", "imagepolicies/status", "get"), ("sigil.dev", "imagepolicies/status", "patch"),
    ("sigil.dev", "imagepolicies/status", "update"),
    ("sigil.dev", "trustroots/status", "get"), ("sigil.dev", "trustroots/status", "patch"),
    ("sigil.dev", "trustroots/status", "update"),
    ("", "secrets", "get"),
    ("", "serviceaccounts", "get"),
    ("", "events", "create"),  # Kubernetes Events on denied objects (events.enabled, default on)
}
CRD_FILES = os.path.join(CHART, "files", "crds")
EXAMPLES = os.path.join(ROOT, "examples", "policies")
sys.path.insert(0, HERE)
import crdschema  # noqa: E402

CONFIG_KEYS = {"listen", "tlsCert", "tlsKey", "noMatchPolicy", "timeout", "logLevel", "cache", "registry",
               "kube", "trustedRoot", "threads", "server", "pinning", "azure", "metrics",
               "events", "selfCert", "checks"}
# The AKS API server's path to webhooks: the konnectivity-agent pods in kube-system.
KONNECTIVITY = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"app": "konnectivity-agent"}}}
WORKLOADS = {("", "pods"), ("", "pods/ephemeralcontainers"), ("", "replicationcontrollers"), ("apps", "deployments"),
             ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("batch", "jobs"),
             ("batch", "cronjobs")}


def setUpModule():
    helmchart.build_renderer(TMP)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class RenderError(Exception):
    pass


def render_raw(*args, chart=CHART, name="sigil", namespace="sigil", check=True):
    cmd = [RENDERER, "--name", name, "--namespace", namespace, *args, chart]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RenderError(r.stderr)
    return r


def render(*args, **kw):
    """Renders and parses: a list of objects (every document must parse and be an object)."""
    r = render_raw(*args, **kw)
    docs = []
    for d in yaml.safe_load_all(r.stdout):
        if d is None:
            continue
        assert isinstance(d, dict), "a document is not a mapping: %r" % (d,)
        docs.append(d)
    return docs


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, "expected one %s %s, found %d" % (kind, name or "", len(found))
    return found[0]


def webhooks(docs):
    vwc = one(docs, "ValidatingWebhookConfiguration")
    return vwc, {w["name"]: w for w in vwc["webhooks"]}


def mutating(docs):
    """The MutatingWebhookConfiguration and its only webhook."""
    mwc = one(docs, "MutatingWebhookConfiguration")
    (hook,) = mwc["webhooks"]
    return mwc, hook


def assert_mutating_shares_validating(tc, docs):
    """mutate.sigil.dev has validate.sigil.dev's failure policy, timeout, exclusions, conditions,
    service, CA and annotations: the two can never drift apart."""
    vwc, hooks = webhooks(docs)
    mwc, m = mutating(docs)
    v = hooks["validate.sigil.dev"]
    for field in ("failurePolicy", "timeoutSeconds", "namespaceSelector", "matchConditions",
                  "admissionReviewVersions", "matchPolicy"):
        tc.assertEqual(m.get(field), v.get(field), field)
    # /mutate never creates an Event; /validate does with events.enabled (test_side_effects_declared).
    tc.assertEqual(m["sideEffects"], "None")
    tc.assertEqual(m["clientConfig"].get("caBundle"), v["clientConfig"].get("caBundle"))
    tc.assertEqual({k: x for k, x in m["clientConfig"]["service"].items() if k != "path"},
                   {k: x for k, x in v["clientConfig"]["service"].items() if k != "path"})
    tc.assertEqual(mwc["metadata"].get("annotations"), vwc["metadata"].get("annotations"))
    tc.assertEqual(mwc["metadata"]["name"], vwc["metadata"]["name"])


def container(docs):
    dep = one(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return dep, c


class Defaults(unittest.TestCase):
    """helm install sigil deploy/helm/sigil -n sigil, no values."""

    @classmethod
    def setUpClass(cls):
        cls.raw = render_raw("--include-crds").stdout
        cls.docs = render("--include-crds")

    def test_every_document_is_a_named_object(self):
        self.assertGreaterEqual(len(self.docs), 16)
        for d in self.docs:
            self.assertTrue(d.get("apiVersion") and d.get("kind"), d)
            self.assertTrue(d.get("metadata", {}).get("name"), d)
        namespaced = {"Deployment", "Service", "ServiceAccount", "ConfigMap", "Secret", "PodDisruptionBudget", "Pod",
                      "NetworkPolicy", "ResourceQuota"}
        for d in self.docs:
            if d["kind"] in namespaced:
                self.assertEqual(d["metadata"].get("namespace"), "sigil", d["kind"])

    def test_kinds_and_helm_order(self):
        kinds = [d["kind"] for d in self.docs]
        self.assertEqual(kinds.count("CustomResourceDefinition"), 3, "the CRDs are templates (crds.install)")
        self.assertLess(kinds.index("CustomResourceDefinition"), kinds.index("Deployment"))
        self.assertLess(kinds.index("ResourceQuota"), kinds.index("Deployment"), "the quota admits the pods")
        for k in ("ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
                  "Deployment", "PodDisruptionBudget", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration", "Pod"):
            self.assertIn(k, kinds)
        self.assertLess(kinds.index("ServiceAccount"), kinds.index("ClusterRoleBinding"))
        self.assertLess(kinds.index("Service"), kinds.index("Deployment"))
        self.assertEqual(kinds[-1], "Pod", "the helm test hook comes after the manifests")
        self.assertEqual(kinds[-2], "ValidatingWebhookConfiguration", "unknown kinds sort last")
        self.assertEqual(kinds[-3], "MutatingWebhookConfiguration", "unknown kinds sort by kind")
        self.assertNotIn("NOTES.txt", self.raw)
        self.assertIn("# Source: sigil/templates/crds.yaml", self.raw)
        self.assertNotIn("# Source: sigil/crds/", self.raw, "no crds/ directory: Helm would never upgrade it")

    def test_webhook_configuration(self):
        vwc, hooks = webhooks(self.docs)
        self.assertEqual(sorted(hooks), ["validate-policy.sigil.dev", "validate.sigil.dev"])
        self.assertEqual(vwc["metadata"]["annotations"]["admissions.enforcer/disabled"], "true")
        for name, w in hooks.items():
            self.assertEqual(w["sideEffects"], "NoneOnDryRun" if name == "validate.sigil.dev" else "None")
            self.assertEqual(w["admissionReviewVersions"], ["v1"])
            self.assertEqual(w["timeoutSeconds"], 10)
            self.assertEqual(w["failurePolicy"], "Fail")
            self.assertEqual(w["matchPolicy"], "Equivalent")
            svc = w["clientConfig"]["service"]
            self.assertEqual((svc["name"], svc["namespace"], svc["port"]), ("sigil", "sigil", 443))
            self.assertNotIn("url", w["clientConfig"], "AKS: the API server must reach sigil through the Service")
        pods = hooks["validate.sigil.dev"]
        self.assertEqual(pods["clientConfig"]["service"]["path"], "/validate")
        covered = set()
        for rule in pods["rules"]:
            self.assertEqual(sorted(rule["operations"]), ["CREATE", "UPDATE"])
            self.assertEqual(rule["apiVersions"], ["v1"])
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    covered.add((g, r))
        self.assertEqual(covered, WORKLOADS)
        pol = hooks["validate-policy.sigil.dev"]
        self.assertEqual(pol["clientConfig"]["service"]["path"], "/validate-policy")
        (rule,) = pol["rules"]
        self.assertEqual(rule["apiGroups"], ["sigil.dev"])
        self.assertEqual(sorted(rule["resources"]), ["clusterimagepolicies", "imagepolicies", "trustroots"])
        self.assertEqual(sorted(rule["operations"]), ["CREATE", "UPDATE"])
        self.assertFalse(any("/status" in r for r in rule["resources"]), "sigil's own status writes must not loop")

    def test_mutating_webhook_pins_pods_only(self):
        _, m = mutating(self.docs)
        self.assertEqual(m["name"], "mutate.sigil.dev")
        self.assertEqual(m["clientConfig"]["service"]["path"], "/mutate")
        self.assertEqual(m["reinvocationPolicy"], "IfNeeded")
        self.assertEqual(m["sideEffects"], "None")
        covered = set()
        for rule in m["rules"]:
            self.assertEqual(sorted(rule["operations"]), ["CREATE", "UPDATE"])
            self.assertEqual(rule["apiVersions"], ["v1"])
            self.assertEqual(rule["scope"], "Namespaced")
            covered |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
        # Pods and `kubectl debug`, never a workload's template (GitOps would see drift).
        self.assertEqual(covered, {("", "pods"), ("", "pods/ephemeralcontainers")})
        self.assertNotIn("objectSelector", m, "labels on pods must not bypass pinning")
        assert_mutating_shares_validating(self, self.docs)
        cfg = yaml.safe_load(one(self.docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertIs(cfg["pinning"], True, "sigil is told that Pods are pinned")

    def test_webhook_never_blocks_its_own_namespace_or_kube_system(self):
        _, hooks = webhooks(self.docs)
        exprs = hooks["validate.sigil.dev"]["namespaceSelector"]["matchExpressions"]
        (excl,) = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name"]
        self.assertEqual(excl["operator"], "NotIn")
        self.assertIn("kube-system", excl["values"])
        self.assertIn("sigil", excl["values"])
        self.assertNotIn("cert-manager", excl["values"], "only in tls.mode=cert-manager")
        self.assertNotIn("objectSelector", hooks["validate.sigil.dev"], "labels on pods must not bypass sigil")
        # The Admissions Enforcer is told to keep away, so its exclusions are added back (AKS add-ons).
        self.assertIn({"key": "control-plane", "operator": "DoesNotExist"}, exprs)
        self.assertIn({"key": "kubernetes.azure.com/managedby", "operator": "NotIn", "values": ["aks"]}, exprs)
        self.assertFalse([e for e in exprs if e["key"] == "sigil.dev/enforce"], "scope: all by default")

    def test_ca_bundle_is_the_serving_certificates_ca(self):
        docs = render("--set", "tls.mode=helm")
        _, hooks = webhooks(docs)
        tls = one(docs, "Secret", "sigil-tls")
        ca = one(docs, "Secret", "sigil-ca")
        self.assertEqual(tls["type"], "kubernetes.io/tls")
        for w in hooks.values():
            self.assertEqual(w["clientConfig"]["caBundle"], tls["data"]["ca.crt"])
        self.assertEqual(ca["data"]["tls.crt"], tls["data"]["ca.crt"])
        self.assertIn(b"BEGIN CERTIFICATE", base64.b64decode(tls["data"]["ca.crt"]))
        if x509 is None:
            self.skipTest("python3-cryptography missing: certificate chain not checked")
        cacert = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["ca.crt"]))
        leaf = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["tls.crt"]))
        cacert.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(),
                                   leaf.signature_hash_algorithm)
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        self.assertIn("sigil.sigil.svc", sans, "the API server dials <service>.<namespace>.svc")
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH, list(eku))
        days = (leaf.not_valid_after - leaf.not_valid_before).days
        self.assertGreater(days, 365)
        self.assertTrue(cacert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)

    def test_rbac_is_exactly_what_sigil_needs(self):
        role = one(self.docs, "ClusterRole")
        granted = set()
        named = set()
        for rule in role["rules"]:
            if "resourceNames" in rule:  # tls.mode=self: sigil's own webhook configurations only
                self.assertEqual(set(rule), {"apiGroups", "resources", "verbs", "resourceNames"})
                named |= {(g, r, v, n) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
                          for n in rule["resourceNames"]}
                continue
            self.assertEqual(set(rule), {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs tricks")
            for field in ("apiGroups", "resources", "verbs"):
                self.assertNotIn("*", rule[field], "a wildcard widens the role: %r" % rule)
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        granted.add((g, r, v))
        self.assertEqual(granted, EXPECTED_RULES)
        secret_verbs = {v for g, r, v in granted if r == "secrets"}
        self.assertEqual(secret_verbs, {"get"}, "list/watch on secrets would let sigil read every secret")
        self.assertFalse({v for g, r, v in granted} & {"delete", "deletecollection", "escalate", "bind", "impersonate"})
        self.assertEqual({(g, r) for g, r, v in granted if v == "create"}, {("", "events")},
                         "sigil creates Events and nothing else")
        self.assertNotIn(("", "events", "patch"), granted, "no aggregation: create only")
        binding = one(self.docs, "ClusterRoleBinding")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sigil"})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "sigil", "namespace": "sigil"}])
        dep, _ = container(self.docs)
        self.assertEqual(dep["spec"]["template"]["spec"]["serviceAccountName"], "sigil")
        adm = "admissionregistration.k8s.io"
        self.assertEqual(named, {(adm, r, v, "sigil") for r in ("validatingwebhookconfigurations",
                                                                 "mutatingwebhookconfigurations")
                                 for v in ("get", "update", "patch")})
        # The self-managed certificate's Secret: update/patch by name; create cannot be limited by
        # name (Kubernetes does not apply resourceNames to create), so it is alone in its rule.
        (r,) = [d for d in self.docs if d["kind"] == "Role"]
        self.assertEqual(r["metadata"]["namespace"], "sigil")
        self.assertEqual(r["rules"], [
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sigil-self-tls"],
             "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}])
        (rb,) = [d for d in self.docs if d["kind"] == "RoleBinding"]
        self.assertEqual(rb["roleRef"]["name"], r["metadata"]["name"])
        self.assertEqual(rb["subjects"], [{"kind": "ServiceAccount", "name": "sigil", "namespace": "sigil"}])
        helm = render("--set", "tls.mode=helm")
        self.assertFalse([d for d in helm if d["kind"] in ("Role", "RoleBinding")])
        self.assertFalse([x for x in one(helm, "ClusterRole")["rules"] if "resourceNames" in x])

    def test_events_value_drives_config_and_rbac(self):
        cfg = yaml.safe_load(one(self.docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertEqual(cfg["events"], {"enabled": True, "interval": "5m"}, "on by default")
        off = render("--set", "events.enabled=false", "--set", "events.interval=10m")
        cfg = yaml.safe_load(one(off, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertEqual(cfg["events"], {"enabled": False, "interval": "10m"})
        rules = one(off, "ClusterRole")["rules"]
        self.assertFalse([r for r in rules if "events" in r["resources"]],
                         "no Events, no RBAC on events")
        with self.assertRaises(RenderError):
            render("--set", "events.interval=soon")

    def test_rbac_check_catches_widening(self):
        # The checks above, on a role someone widened: they must fail.
        widened = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["sigil.dev"], "resources": ["*"], "verbs": ["*"]}]
        granted = {(g, r, v) for rule in widened for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
        self.assertNotEqual(granted, EXPECTED_RULES)
        self.assertTrue(any("*" in rule["verbs"] for rule in widened))

    def test_availability(self):
        dep, c = container(self.docs)
        spec = dep["spec"]
        self.assertEqual(spec["replicas"], 2)
        self.assertEqual(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
        pod = spec["template"]["spec"]
        keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
        self.assertIn("kubernetes.io/hostname", keys)
        for t in pod["topologySpreadConstraints"]:
            self.assertEqual(t["labelSelector"]["matchLabels"], spec["selector"]["matchLabels"])
        assert_pdb_never_blocks_drains(self, self.docs)
        self.assertGreater(pod["terminationGracePeriodSeconds"], 15 + 10 + 1,
                           "grace must outlast the lame duck + the webhook timeout")
        self.assertEqual(pod["priorityClassName"], "system-cluster-critical")
        quota = one(self.docs, "ResourceQuota")
        self.assertEqual(quota["spec"]["scopeSelector"]["matchExpressions"],
                         [{"operator": "In", "scopeName": "PriorityClass", "values": ["system-cluster-critical"]}])
        self.assertGreaterEqual(int(quota["spec"]["hard"]["pods"]), 2 * (spec["replicas"] + 1),
                                "room for a rolling update with pods still terminating")
        self.assertFalse([d for d in self.docs if d["kind"] in ("PriorityClass", "HorizontalPodAutoscaler")])
        pdb = one(self.docs, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow",
                         "a crash-looping replica must never block a drain")

    def test_probes_use_https(self):
        _, c = container(self.docs)
        (port,) = c["ports"]
        self.assertEqual((port["name"], port["containerPort"]), ("https", 8443))
        expect = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
        for probe, path in expect.items():
            get = c[probe]["httpGet"]
            self.assertEqual((get["path"], get["scheme"]), (path, "HTTPS"), probe)
            self.assertIn(get["port"], ("https", 8443))
        self.assertNotIn("lifecycle", c, "no preStop: sigil's lame duck keeps it serving after SIGTERM")

    def test_runs_non_root_read_only(self):
        dep, c = container(self.docs)
        psc = dep["spec"]["template"]["spec"]["securityContext"]
        self.assertTrue(psc["runAsNonRoot"])
        self.assertNotEqual(psc["runAsUser"], 0)
        self.assertEqual(psc["seccompProfile"]["type"], "RuntimeDefault")
        sc = c["securityContext"]
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertIn("requests", c["resources"])
        self.assertIn("memory", c["resources"]["limits"])

    def test_service(self):
        svc = one(self.docs, "Service")
        (p,) = svc["spec"]["ports"]
        self.assertEqual((p["port"], p["targetPort"]), (443, "https"))
        dep, _ = container(self.docs)
        self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])

    def test_config_file(self):
        cm = one(self.docs, "ConfigMap", "sigil")
        cfg = yaml.safe_load(cm["data"]["config.yaml"])
        self.assertLessEqual(set(cfg), CONFIG_KEYS, "sigil refuses unknown config keys")
        self.assertEqual(cfg["kube"], {"enabled": True})
        self.assertEqual(cfg["listen"], "0.0.0.0:8443")
        self.assertEqual(cfg["noMatchPolicy"], "warn", "a fresh install cannot lock anyone out")
        self.assertEqual(cfg["timeout"], "10s")
        self.assertEqual(cfg["cache"], {"ttl": "5m", "negativeTtl": "30s", "size": 10000})
        # The listener's limits (issue 9: bodies and connections an unauthenticated client may hold).
        self.assertEqual(cfg["server"], {"maxBody": "4Mi", "bodyBudget": "64Mi", "maxConnections": 2048,
                                         "maxConnectionsPerPeer": 512, "readTimeout": "5s", "idleTimeout": "30s",
                                         "lameDuck": "15s"})
        self.assertNotIn("policies", cfg, "policies come from the cluster")
        self.assertNotIn("trustedRoot", cfg)
        dep, c = container(self.docs)
        self.assertEqual(c["command"] + c["args"], ["sigil", "serve", "--config", "/etc/sigil/config.yaml"])
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        self.assertEqual(mounts["/etc/sigil/config.yaml"]["subPath"], "config.yaml")
        # tls.mode=self: no certificate files; sigil keeps its certificate in its own Secret.
        self.assertNotIn("/etc/sigil/tls", mounts)
        self.assertNotIn("tlsCert", cfg)
        self.assertEqual(cfg["selfCert"], {
            "enabled": True, "secretName": "sigil-self-tls", "serviceName": "sigil",
            "validatingWebhooks": ["sigil"], "mutatingWebhooks": ["sigil"], "caValidity": "87600h",
            "caRenewBefore": "17520h", "certValidity": "8760h", "certRenewBefore": "2920h",
            "rolloverGrace": "1h", "resync": "1m"})
        self.assertIn("checksum/config", dep["spec"]["template"]["metadata"]["annotations"])
        # tls.mode=helm: the files from the Secret the chart generates.
        docs = render("--set", "tls.mode=helm")
        cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        dep, c = container(docs)
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        self.assertNotIn("selfCert", cfg)
        self.assertTrue(cfg["tlsCert"].startswith("/etc/sigil/tls/") and cfg["tlsKey"].startswith("/etc/sigil/tls/"))
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        self.assertEqual(vols[mounts["/etc/sigil/tls"]["name"]]["secret"]["secretName"], "sigil-tls")

    def test_helm_test_pod(self):
        pod = one(self.docs, "Pod")
        self.assertEqual(pod["metadata"]["annotations"]["helm.sh/hook"], "test")
        (c,) = pod["spec"]["containers"]
        self.assertIn("https://sigil.sigil.svc:443/readyz", c["args"])
        self.assertIn("--cacert", c["args"])
        self.assertEqual(pod["spec"]["restartPolicy"], "Never")
        self.assertFalse([d for d in render("--skip-tests") if d["kind"] == "Pod"])

    def test_notes(self):
        notes = os.path.join(TMP, "notes.txt")
        render_raw("--notes-out", notes, "--set", "tls.mode=helm")
        with open(notes) as f:
            text = f.read()
        self.assertIn("helm template", text)
        self.assertIn("Argo CD", text)
        render_raw("--notes-out", notes)
        with open(notes) as f:
            text = f.read()
        self.assertIn("tls.mode=self", text)
        self.assertIn("sigil-self-tls", text)
        self.assertIn("noMatchPolicy is warn", text)
        self.assertIn("--set config.noMatchPolicy=deny", text, "NOTES say how to turn it to deny")
        self.assertIn("--wait", text)
        self.assertIn("policyMode=warn", text, "the phased rollout")
        self.assertIn("aks-mcr.yaml", text)
        self.assertIn("kube-system, sigil", text)
        self.assertIn("pinned to the digest sigil verified", text)
        self.assertIn("The release namespace sigil is exempt", text)
        self.assertIn("only the konnectivity-agent pods in kube-system", text)

    def test_network_policy_admits_only_the_api_servers_path(self):
        np = one(self.docs, "NetworkPolicy")
        dep, c = container(self.docs)
        spec = np["spec"]
        self.assertEqual(spec["podSelector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(spec["policyTypes"], ["Ingress"])
        (rule,) = spec["ingress"]
        self.assertEqual(rule["ports"], [{"port": 8443, "protocol": "TCP"}], "the webhook port only")
        self.assertEqual(c["ports"][0]["containerPort"], 8443)
        konnectivity, test_pod = rule["from"]
        self.assertEqual(konnectivity, KONNECTIVITY)
        # The only other source is the `helm test` pod, by labels no ordinary pod carries.
        self.assertEqual(set(test_pod), {"podSelector"})
        self.assertEqual(test_pod["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "test")
        pod = one(self.docs, "Pod")
        for k, v in test_pod["podSelector"]["matchLabels"].items():
            self.assertEqual(pod["metadata"]["labels"].get(k), v, "the helm test pod must be allowed in")
        # Probes come from the node (always allowed by NetworkPolicy) and use the same port.
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            self.assertIn(c[probe]["httpGet"]["port"], ("https", 8443))


def assert_pdb_never_blocks_drains(tc, docs):
    pdb = one(docs, "PodDisruptionBudget")
    tc.assertNotIn("minAvailable", pdb["spec"])
    mu = pdb["spec"]["maxUnavailable"]
    if isinstance(mu, str):
        tc.assertTrue(mu.endswith("%") and int(mu[:-1]) > 0, mu)
    else:
        tc.assertGreaterEqual(mu, 1)
    dep, _ = container(docs)
    tc.assertEqual(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])


class ValueSets(unittest.TestCase):
    def test_cert_manager_mode(self):
        docs = render("--set", "tls.mode=cert-manager")
        vwc, hooks = webhooks(docs)
        self.assertEqual(vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], "sigil/sigil-tls")
        for w in hooks.values():
            self.assertNotIn("caBundle", w["clientConfig"], "cainjector fills it in")
        mwc, m = mutating(docs)
        self.assertEqual(mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], "sigil/sigil-tls")
        self.assertNotIn("caBundle", m["clientConfig"])
        self.assertFalse([d for d in docs if d["kind"] == "Secret"], "no key material rendered")
        cert = one(docs, "Certificate", "sigil-tls")
        self.assertIn("sigil.sigil.svc", cert["spec"]["dnsNames"])
        self.assertEqual(cert["spec"]["secretName"], "sigil-tls")
        self.assertEqual(cert["spec"]["issuerRef"]["name"], "sigil-ca")
        self.assertTrue(one(docs, "Certificate", "sigil-ca")["spec"]["isCA"])
        one(docs, "Issuer", "sigil-ca")
        one(docs, "Issuer", "sigil-selfsigned")
        dep, c = container(docs)
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        self.assertEqual(vols["tls"]["secret"]["secretName"], "sigil-tls")
        # With the user's issuer, no chart CA.
        docs = render("--set", "tls.mode=cert-manager", "--set", "tls.certManager.issuerRef.name=corp-ca",
                      "--set", "tls.certManager.issuerRef.kind=ClusterIssuer")
        self.assertFalse([d for d in docs if d["kind"] == "Issuer"])
        self.assertEqual(one(docs, "Certificate")["spec"]["issuerRef"], {"name": "corp-ca", "kind": "ClusterIssuer"})
        # cert-manager renders are reproducible (what deploy/manifests relies on).
        self.assertEqual(render_raw("--set", "tls.mode=cert-manager").stdout, render_raw("--set", "tls.mode=cert-manager").stdout)

    def test_custom_namespace_exclusions(self):
        values = os.path.join(TMP, "exclusions.yaml")
        with open(values, "w") as f:
            f.write("webhook:\n  excludeNamespaces: [gatekeeper-system, calico-system, sigil]\n"
                    "  namespaceSelectorExpressions:\n    - {key: sigil.dev/exempt, operator: DoesNotExist}\n")
        docs = render("-f", values, namespace="security")
        _, hooks = webhooks(docs)
        exprs = hooks["validate.sigil.dev"]["namespaceSelector"]["matchExpressions"]
        self.assertEqual(exprs[0], {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                    "values": ["kube-system", "security", "gatekeeper-system", "calico-system", "sigil"]})
        self.assertEqual(exprs[-1], {"key": "sigil.dev/exempt", "operator": "DoesNotExist"}, "after the chart's own")
        self.assertEqual(hooks["validate.sigil.dev"]["clientConfig"]["service"]["namespace"], "security")
        self.assertNotIn("namespaceSelector", hooks["validate-policy.sigil.dev"])
        assert_mutating_shares_validating(self, docs)

    def test_network_policy_values(self):
        values = os.path.join(TMP, "np.yaml")
        with open(values, "w") as f:
            yaml.safe_dump({"networkPolicy": {"ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/28"}}]}}, f)
        np = one(render("-f", values), "NetworkPolicy")
        (rule,) = np["spec"]["ingress"]
        self.assertEqual(rule["from"][0], {"ipBlock": {"cidr": "10.0.0.0/28"}}, "the list replaces the AKS default")
        self.assertEqual(len(rule["from"]), 2)
        notes = os.path.join(TMP, "np-notes.txt")
        render_raw("-f", values, "--notes-out", notes)
        with open(notes) as f:
            self.assertIn("only networkPolicy.ingressFrom may reach", f.read())
        # An empty list: port 8443 from anywhere, nothing else.
        np = one(render("--set-json", "networkPolicy.ingressFrom=[]"), "NetworkPolicy")
        self.assertEqual(np["spec"]["ingress"], [{"ports": [{"port": 8443, "protocol": "TCP"}]}])
        self.assertFalse([d for d in render("--set", "networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"])

    def test_refuses_shared_namespaces(self):
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease", "kube-flannel"):
            with self.subTest(namespace=ns):
                r = render_raw(namespace=ns, check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn('refusing to install into namespace "%s"' % ns, r.stderr)
                self.assertIn("exempt from sigil's webhook", r.stderr)
                self.assertIn("allowSharedNamespace=true", r.stderr)
        docs = render("--set", "allowSharedNamespace=true", namespace="default")
        self.assertEqual(one(docs, "Deployment")["metadata"]["namespace"], "default")
        for ns in ("sigil", "sigil-system", "security", "kubesigil"):
            render(namespace=ns)

    def test_dns_looks_up_registry_names_as_written_first(self):
        # The container runtime resolves image names with the node's resolver, without the
        # cluster's search domains; sigil's pod does the same for any name with a dot.
        dep, _ = container(render())
        self.assertEqual(dep["spec"]["template"]["spec"]["dnsConfig"], {"options": [{"name": "ndots", "value": "1"}]})
        dep, _ = container(render("--set", "dnsConfig=null"))
        self.assertNotIn("dnsConfig", dep["spec"]["template"]["spec"])

    def test_server_limits(self):
        docs = render("--set", "config.server.maxBody=6Mi", "--set", "config.server.bodyBudget=128Mi",
                      "--set", "config.server.maxConnectionsPerPeer=1024", "--set", "config.server.idleTimeout=45s")
        cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertEqual(cfg["server"], {"maxBody": "6Mi", "bodyBudget": "128Mi", "maxConnections": 2048,
                                         "maxConnectionsPerPeer": 1024, "readTimeout": "5s", "idleTimeout": "45s",
                                         "lameDuck": "15s"})

    def test_stale_if_error(self):
        def cache(*args):
            return yaml.safe_load(one(render(*args), "ConfigMap", "sigil")["data"]["config.yaml"])["cache"]
        self.assertNotIn("staleIfError", cache(), "off unless set")
        self.assertEqual(cache("--set", "config.cache.staleIfError=1h")["staleIfError"], "1h")
        with self.assertRaises(RenderError):
            render("--set", "config.cache.staleIfError=an hour")

    def test_side_effects_declared(self):
        # Events are a side effect of a (non-dry-run) admission: declared NoneOnDryRun with them.
        _, hooks = webhooks(render())
        self.assertEqual(hooks["validate.sigil.dev"]["sideEffects"], "NoneOnDryRun")
        _, hooks = webhooks(render("--set", "events.enabled=false"))
        self.assertEqual(hooks["validate.sigil.dev"]["sideEffects"], "None")

    def test_tag_ttl(self):
        def cache(*args):
            return yaml.safe_load(one(render(*args), "ConfigMap", "sigil")["data"]["config.yaml"])["cache"]
        self.assertNotIn("tagTtl", cache(), "sigil's default unless set")
        self.assertEqual(cache("--set", "config.cache.tagTtl=30s")["tagTtl"], "30s")
        with self.assertRaises(RenderError):
            render("--set", "config.cache.tagTtl=1.5s")  # sigil takes whole seconds only

    def test_failure_policy_ignore(self):
        docs = render("--set", "webhook.failurePolicy=Ignore")
        _, hooks = webhooks(docs)
        self.assertEqual(hooks["validate.sigil.dev"]["failurePolicy"], "Ignore")
        self.assertEqual(hooks["validate-policy.sigil.dev"]["failurePolicy"], "Fail", "configured on its own")
        self.assertEqual(mutating(docs)[1]["failurePolicy"], "Ignore")
        docs = render("--set", "webhook.timeoutSeconds=5")
        self.assertEqual(mutating(docs)[1]["timeoutSeconds"], 5)
        assert_mutating_shares_validating(self, docs)

    def test_mutating_webhook_can_be_switched_off(self):
        docs = render("--set", "webhook.mutating.enabled=false")
        self.assertFalse([d for d in docs if d["kind"] == "MutatingWebhookConfiguration"])
        webhooks(docs)  # validation stays
        cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertIs(cfg["pinning"], False)
        notes = os.path.join(TMP, "notes-no-mutating.txt")
        render_raw("--set", "webhook.mutating.enabled=false", "--notes-out", notes)
        with open(notes) as f:
            self.assertIn("requireDigest", f.read())

    def test_replicas_3(self):
        docs = render("--set", "replicas=3", "--set", "podDisruptionBudget.maxUnavailable=34%")
        dep, _ = container(docs)
        self.assertEqual(dep["spec"]["replicas"], 3)
        assert_pdb_never_blocks_drains(self, docs)
        docs = render("--set", "replicas=1")
        assert_pdb_never_blocks_drains(self, docs)

    def test_everything_switched_on(self):
        values = os.path.join(TMP, "all.yaml")
        with open(values, "w") as f:
            yaml.safe_dump({
                "priorityClassName": "",
                "priorityClass": {"create": True},
                "networkPolicy": {"enabled": True, "ingressFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"app": "konnectivity-agent"}}}]},
                "config": {"threads": 4, "logLevel": "debug", "noMatchPolicy": "warn", "timeout": "8s",
                           "checks": {"namespacePerSecond": 512, "namespaceBurst": 4096},
                           "registry": {"configSecret": "acr-pull", "caConfigMap": "corp-ca", "insecure": ["127.0.0.1:5000"],
                                        "dns": {"maxLookups": 96, "reservedLookups": 32, "timeout": "500ms", "attempts": 3},
                                        "failFast": {"after": 3, "backoff": "1s", "maxBackoff": "1m"},
                                        "connections": {"max": 256, "reserved": 64, "perHost": 16}},
                           "trustedRoot": {"json": "{\"mediaType\": \"application/vnd.dev.sigstore.trustedroot+json;version=0.1\"}"}},
                "webhook": {"matchConditions": [{"name": "not-dry-run", "expression": "!request.dryRun"}],
                            "annotations": {"example.com/owner": "platform"}, "disableAKSAdmissionsEnforcer": False},
                "image": {"digest": "sha256:" + "a" * 64},
                "podLabels": {"azure.workload.identity/use": "true"},
                "serviceAccount": {"annotations": {"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"}},
                "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            }, f)
        docs = render("-f", values)
        pc = one(docs, "PriorityClass")
        dep, c = container(docs)
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(pod["priorityClassName"], pc["metadata"]["name"])
        self.assertEqual(pc["value"], 1000000)
        self.assertEqual(c["image"], "ghcr.io/sigil-dev/sigil@sha256:" + "a" * 64)
        cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertLessEqual(set(cfg), CONFIG_KEYS)
        self.assertEqual(cfg["threads"], 4)
        self.assertEqual(cfg["timeout"], "8s")
        self.assertEqual(cfg["checks"], {"namespacePerSecond": 512, "namespaceBurst": 4096})
        self.assertEqual(cfg["registry"], {"config": "/etc/sigil/registry/config.json", "ca": "/etc/sigil/registry/ca.pem",
                                           "insecure": ["127.0.0.1:5000"],
                                           "dns": {"maxLookups": 96, "reservedLookups": 32, "timeout": "500ms",
                                                   "attempts": 3},
                                           "failFast": {"after": 3, "backoff": "1s", "maxBackoff": "1m"},
                                           "connections": {"max": 256, "reserved": 64, "perHost": 16}})
        # Every file the config names is mounted.
        mounts = [m["mountPath"] for m in c["volumeMounts"]]
        for p in (cfg["registry"]["config"], cfg["registry"]["ca"], cfg["trustedRoot"]):
            self.assertTrue(any(p.startswith(m + "/") for m in mounts), p)
        vols = {v["name"]: v for v in pod["volumes"]}
        srcs = vols["registry"]["projected"]["sources"]
        self.assertEqual(srcs[0]["secret"]["items"], [{"key": ".dockerconfigjson", "path": "config.json"}])
        self.assertEqual(srcs[1]["configMap"]["name"], "corp-ca")
        tr = one(docs, "ConfigMap", "sigil-trusted-root")
        self.assertIn("trustedroot", tr["data"]["trusted_root.json"])
        self.assertEqual(vols["trusted-root"]["configMap"]["name"], "sigil-trusted-root")
        vwc, hooks = webhooks(docs)
        self.assertNotIn("admissions.enforcer/disabled", vwc["metadata"]["annotations"])
        self.assertEqual(vwc["metadata"]["annotations"]["example.com/owner"], "platform")
        self.assertEqual(hooks["validate.sigil.dev"]["matchConditions"][-1]["name"], "not-dry-run", "after the chart's")
        self.assertFalse([d for d in docs if d["kind"] == "ResourceQuota"], "only for the system-* classes")
        assert_mutating_shares_validating(self, docs)
        np = one(docs, "NetworkPolicy")
        self.assertEqual(np["spec"]["ingress"][0]["ports"], [{"port": 8443, "protocol": "TCP"}])
        self.assertEqual(len(np["spec"]["ingress"][0]["from"]), 2, "konnectivity + the helm test pod")
        self.assertEqual(c["env"], [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}])

    def test_lame_duck_and_grace_follow_the_webhook_timeout(self):
        def shutdown(*args):
            docs = render(*args)
            dep, c = container(docs)
            pod = dep["spec"]["template"]["spec"]
            cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
            self.assertNotIn("lifecycle", c, "sigil's own lame duck replaces a preStop sleep")
            return cfg["server"]["lameDuck"], pod["terminationGracePeriodSeconds"]

        # The lame duck outlasts the webhook timeout; the grace, the lame duck and a drain.
        self.assertEqual(shutdown(), ("15s", 30))
        self.assertEqual(shutdown("--set", "webhook.timeoutSeconds=25"), ("30s", 60))
        self.assertEqual(shutdown("--set", "lameDuckSeconds=0"), ("0s", 15))
        self.assertEqual(shutdown("--set", "lameDuckSeconds=40", "--set", "terminationGracePeriodSeconds=90"),
                         ("40s", 90))
        # A values file written for chart 0.1 still installs (preStopSleepSeconds is ignored).
        self.assertEqual(shutdown("--set", "preStopSleepSeconds=5"), ("15s", 30))
        r = render_raw("--set", "lameDuckSeconds=40", "--set", "terminationGracePeriodSeconds=45", check=False)
        self.assertIn("terminationGracePeriodSeconds (45) must exceed lameDuckSeconds + webhook.timeoutSeconds + 1 (51)",
                      r.stderr)

    def test_azure_workload_identity(self):
        """azureWorkloadIdentity.clientId: the ServiceAccount annotation the federated credential
        names and the pod label the AKS webhook mutates on; other annotations and labels stay."""
        cid = "11111111-2222-3333-4444-555555555555"
        docs = render("--set", "azureWorkloadIdentity.clientId=" + cid,
                      "--set", "serviceAccount.annotations.example\\.com/team=platform",
                      "--set", "podLabels.team=platform")
        sa = one(docs, "ServiceAccount")
        self.assertEqual(sa["metadata"]["annotations"],
                         {"azure.workload.identity/client-id": cid, "example.com/team": "platform"})
        dep, _ = container(docs)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(labels["azure.workload.identity/use"], "true")
        self.assertEqual(labels["team"], "platform")
        # Not on the selector: the Deployment's selector is immutable across upgrades.
        self.assertNotIn("azure.workload.identity/use", dep["spec"]["selector"]["matchLabels"])
        # Off by default: no label, no annotation.
        plain = render()
        self.assertNotIn("annotations", one(plain, "ServiceAccount")["metadata"])
        dep0, _ = container(plain)
        self.assertNotIn("azure.workload.identity/use", dep0["spec"]["template"]["metadata"]["labels"])
        # The config's azure: section, as is.
        cfg_docs = render("--set", "config.azure.managedIdentity.enabled=true",
                          "--set", "config.azure.managedIdentity.clientId=" + cid)
        cfg = yaml.safe_load(one(cfg_docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertEqual(cfg["azure"], {"managedIdentity": {"enabled": True, "clientId": cid}})
        self.assertNotIn("azure", yaml.safe_load(one(plain, "ConfigMap", "sigil")["data"]["config.yaml"]))
        bad = render_raw("--set", "azureWorkloadIdentity.clientId=not-a-guid", check=False)
        self.assertNotEqual(bad.returncode, 0)

    def test_kube_version_floor(self):
        r = render_raw("--kube-version", "1.24.9", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("chart requires kubeVersion", r.stderr)
        render("--kube-version", "v1.28.3-aks.1")

    def test_release_name_prefixes(self):
        docs = render(name="prod")
        _, hooks = webhooks(docs)
        self.assertEqual(hooks["validate.sigil.dev"]["clientConfig"]["service"]["name"], "prod-sigil")
        one(docs, "Service", "prod-sigil")
        one(docs, "ClusterRole", "prod-sigil")


class Schema(unittest.TestCase):
    def rejected(self, *args):
        r = render_raw(*args, check=False)
        self.assertNotEqual(r.returncode, 0, "accepted: %r" % (args,))
        self.assertIn("values don't meet the specifications of the schema", r.stderr)
        return r.stderr

    def test_rejects_bad_values(self):
        cases = [
            (("--set", "webhook.failurePolicy=Maybe"), "/webhook/failurePolicy"),
            (("--set", "webhook.timeoutSeconds=31"), "/webhook/timeoutSeconds"),
            (("--set-string", "replicas=2"), "/replicas"),
            (("--set", "replicas=0"), "/replicas"),
            (("--set", "podDisruptionBudget.maxUnavailable=0"), "/podDisruptionBudget/maxUnavailable"),
            (("--set", "podDisruptionBudget.minAvailable=2"), "'minAvailable' not allowed"),
            (("--set", "tls.mode=self-signed"), "/tls/mode"),
            (("--set", "config.noMatchPolicy=reject"), "/config/noMatchPolicy"),
            (("--set", "config.cache.ttl=5 minutes"), "/config/cache/ttl"),
            (("--set", "webhook.excludeNamespaces[0]=Not_A_Namespace"), "/webhook/excludeNamespaces/0"),
            (("--set", "image.digest=latest"), "/image/digest"),
            (("--set", "replica=3"), "'replica' not allowed"),
            (("--set-string", "webhook.mutating.enabled=yes"), "/webhook/mutating/enabled"),
            (("--set", "webhook.mutating.reinvoke=true"), "'reinvoke' not allowed"),
            (("--set", "config.server.maxBody=4MB"), "/config/server/maxBody"),
            (("--set", "config.server.maxConnections=0"), "/config/server/maxConnections"),
            (("--set", "config.server.idleTimeout=30"), "/config/server/idleTimeout"),
            (("--set-string", "allowSharedNamespace=yes"), "/allowSharedNamespace"),
            (("--set", "scope=some"), "/scope"),
            (("--set", "policyMode=audit"), "/policyMode"),
            (("--set", "crds.install=maybe"), "/crds/install"),
            (("--set", "metrics.port=0"), "/metrics/port"),
            (("--set", "metrics.prometheusRule.rejectionRateThreshold=2"), "/metrics/prometheusRule/rejectionRateThreshold"),
            (("--set", "metrics.serviceMonitor.interval=often"), "/metrics/serviceMonitor/interval"),
            (("--set", "crds.keep=false"), "'keep' not allowed"),
            (("--set", "autoscaling.maxReplicas=0"), "/autoscaling/maxReplicas"),
            (("--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=Never"), "/podDisruptionBudget/unhealthyPodEvictionPolicy"),
            (("--set", "tls.certManager.namespace=Cert_Manager"), "/tls/certManager/namespace"),
            (("--set", "policies.Bad_Name.images[0].glob=x"), "/policies"),
            (("--set-json", 'policies.p={"images":[{"glob":"x"}]}'), "/policies/p"),
            (("--set-json", 'policies.p={"images":[{"glob":"x"}],"authorities":[{"name":"a","static":{"action":"pass"}}],"match":[]}'),
             "'match' not allowed"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                self.assertIn(needle, self.rejected(*args))

    def test_global_is_accepted_for_subcharts(self):
        render("--set", "global.imageRegistry=myacr.azurecr.io", "--set", "global.imagePullSecrets[0].name=x")

    def test_skip_schema_validation(self):
        r = render_raw("--skip-schema-validation", "--set", "config.logLevel=loud")
        self.assertEqual(r.returncode, 0)

    def test_cross_value_checks(self):
        r = render_raw("--set", "terminationGracePeriodSeconds=12", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("terminationGracePeriodSeconds (12) must exceed", r.stderr)
        r = render_raw("--set", "config.trustedRoot.json=x", "--set", "config.trustedRoot.configMap=x", check=False)
        self.assertIn("set json or configMap, not both", r.stderr)
        r = render_raw("--set", "serviceAccount.create=false", check=False)
        self.assertIn("serviceAccount.name is required", r.stderr)
        r = render_raw("--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=5",
                       "--set", "autoscaling.maxReplicas=3", check=False)
        self.assertIn("autoscaling.maxReplicas must be at least autoscaling.minReplicas", r.stderr)

    def test_values_yaml_documents_every_schema_key(self):
        with open(os.path.join(CHART, "values.schema.json")) as f:
            schema = json.load(f)
        with open(os.path.join(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)

        optional = {"successThreshold", "initialDelaySeconds"}  # probe fields left at Kubernetes' defaults
        optional |= {"preStopSleepSeconds"}  # removed in 0.2.0: accepted (0.1 values files) and ignored

        def walk(s, v, path):
            if s.get("type") != "object" or "properties" not in s or not v:
                return
            self.assertIs(s.get("additionalProperties"), False, path + ": unknown keys must be refused")
            self.assertEqual(set(s["properties"]) - optional, set(v), path + ": values.yaml and the schema must list the same keys")
            for k, sub in s["properties"].items():
                if isinstance(v.get(k), dict):
                    walk(sub, v[k], path + "/" + k)
        walk(schema, values, "")


class Metrics(unittest.TestCase):
    """metrics.*: the plain-HTTP /metrics port, the ServiceMonitor and the PrometheusRule."""

    def test_off_by_default(self):
        docs = render()
        cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertNotIn("metrics", cfg)
        _, c = container(docs)
        self.assertEqual([p["name"] for p in c["ports"]], ["https"])
        self.assertEqual([p["name"] for p in one(docs, "Service")["spec"]["ports"]], ["https"])
        kinds = {d["kind"] for d in docs}
        self.assertNotIn("ServiceMonitor", kinds)
        self.assertNotIn("PrometheusRule", kinds)

    def test_switched_on(self):
        docs = render("--set", "metrics.enabled=true", "--set", "metrics.port=9191",
                      "--set", "metrics.serviceMonitor.enabled=true",
                      "--set", "metrics.serviceMonitor.labels.release=kube-prometheus",
                      "--set", "metrics.prometheusRule.enabled=true",
                      "--set-json", "metrics.prometheusRule.rejectionRateThreshold=0.1",
                      "--set-json", 'metrics.ingressFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]')
        cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
        self.assertEqual(cfg["metrics"], {"listen": ":9191"})
        self.assertEqual(cfg["listen"], "0.0.0.0:8443", "the webhook keeps its own port")
        dep, c = container(docs)
        ports = {p["name"]: p for p in c["ports"]}
        self.assertEqual(ports["metrics"]["containerPort"], 9191)
        self.assertEqual(ports["https"]["containerPort"], 8443)
        svc = one(docs, "Service")
        sports = {p["name"]: p for p in svc["spec"]["ports"]}
        self.assertEqual((sports["metrics"]["port"], sports["metrics"]["targetPort"]), (9191, "metrics"))
        # The NetworkPolicy opens the metrics port to metrics.ingressFrom only; 8443 is unchanged.
        webhook_rule, metrics_rule = one(docs, "NetworkPolicy")["spec"]["ingress"]
        self.assertEqual(webhook_rule["ports"], [{"port": 8443, "protocol": "TCP"}])
        self.assertEqual(metrics_rule["ports"], [{"port": 9191, "protocol": "TCP"}])
        self.assertEqual(metrics_rule["from"], [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
        # The ServiceMonitor selects the Service and scrapes its metrics port over plain HTTP.
        sm = one(docs, "ServiceMonitor")
        self.assertEqual(sm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus")
        self.assertTrue(selector_matches(sm["spec"]["selector"], svc["metadata"]["labels"]))
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": ["sigil"]})
        (ep,) = sm["spec"]["endpoints"]
        self.assertEqual((ep["port"], ep["path"], ep["scheme"], ep["interval"]), ("metrics", "/metrics", "http", "30s"))
        # The rules: no ready replica, the rejection rate, the API server's calling errors.
        rule = one(docs, "PrometheusRule")
        (group,) = rule["spec"]["groups"]
        alerts = {r["alert"]: r for r in group["rules"]}
        self.assertEqual(set(alerts), {"SigilNoReadyReplica", "SigilHighRejectionRate", "SigilWebhookCallingErrors",
                                       "SigilDnsLookupsRefused"})
        self.assertIn('sigil_dns_lookups_refused_total{namespace="sigil"}', alerts["SigilDnsLookupsRefused"]["expr"])
        self.assertIn('kube_deployment_status_replicas_available{namespace="sigil", deployment="sigil"} == 0',
                      alerts["SigilNoReadyReplica"]["expr"])
        rej = alerts["SigilHighRejectionRate"]["expr"]
        self.assertIn('result="denied"', rej)
        self.assertTrue(rej.rstrip().endswith("> 0.1"), rej)
        calling = alerts["SigilWebhookCallingErrors"]["expr"]
        self.assertIn("apiserver_admission_webhook_rejection_count", calling)
        self.assertIn("calling_webhook_error", calling)
        # Its name regex covers every webhook the chart registers.
        names = [w["name"] for d in docs if d["kind"].endswith("WebhookConfiguration") for w in d["webhooks"]]
        regex = re.search(r'name=~"([^"]+)"', calling).group(1).replace("\\\\", "\\")
        for n in names:
            self.assertRegex(n, "^(?:" + regex + ")$")
        self.assertIn("{{ $labels.name }}", alerts["SigilWebhookCallingErrors"]["annotations"]["summary"])
        self.assertIn("more than 10% of admissions", alerts["SigilHighRejectionRate"]["annotations"]["summary"])
        # Every sigil_* series the rules read is one sigil exports (app/metrics.cpp).
        with open(os.path.join(ROOT, "app", "metrics.cpp")) as f:
            exported = f.read()
        for r in group["rules"]:
            for metric in re.findall(r"\b(sigil_[a-z_]+?)(?:_count|_sum|_bucket)?\{", r["expr"] + str(r.get("annotations"))):
                self.assertIn('"%s"' % metric, exported, metric)

    def test_rule_without_service_monitor(self):
        docs = render("--set", "metrics.prometheusRule.enabled=true")
        self.assertEqual(len([d for d in docs if d["kind"] == "PrometheusRule"]), 1)
        self.assertNotIn("ServiceMonitor", {d["kind"] for d in docs}, "metrics.enabled is off")


def selector_matches(selector, labels):
    """A Kubernetes label selector (matchLabels + matchExpressions, or a Service's plain map)
    against a set of labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def pod_selectors(docs):
    """Every selector in the render that picks pods: (where, selector)."""
    out = []
    for d in docs:
        kind, name, spec = d["kind"], d["metadata"]["name"], d.get("spec") or {}
        where = "%s %s" % (kind, name)
        if kind == "Service" and spec.get("selector"):
            out.append((where + " spec.selector", spec["selector"]))
        elif kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "PodDisruptionBudget"):
            out.append((where + " spec.selector", spec["selector"]))
            for t in (spec.get("template") or {}).get("spec", {}).get("topologySpreadConstraints", []):
                out.append((where + " topologySpreadConstraints", t["labelSelector"]))
        elif kind == "NetworkPolicy":
            out.append((where + " spec.podSelector", spec["podSelector"]))
    return out


class HookPods(unittest.TestCase):
    """Issue 12 bug: the `helm test` pod carried the Service's and the PDB's selector labels, so
    while it ran the API server could send admissions to the curl pod, and the PDB counted it."""

    def hook_pods(self, docs):
        return [d for d in docs if d["kind"] == "Pod" and "helm.sh/hook" in d["metadata"].get("annotations", {})]

    def test_no_hook_pod_matches_a_workload_selector(self):
        for args in ((), ("--set", "autoscaling.enabled=true"), ("--set", "networkPolicy.enabled=false"),
                     ("--set", "tls.mode=cert-manager"), ("--set", "nameOverride=verify")):
            docs = render(*args)
            hooks = self.hook_pods(docs)
            self.assertTrue(hooks, "the helm test pod is rendered")
            selectors = pod_selectors(docs)
            self.assertGreaterEqual(len(selectors), 5, [w for w, _ in selectors])
            for pod in hooks:
                for where, sel in selectors:
                    with self.subTest(args=args, selector=where):
                        self.assertFalse(selector_matches(sel, pod["metadata"]["labels"]),
                                         "hook pod %s matches %s" % (pod["metadata"]["name"], where))

    def test_webhook_pods_match_every_workload_selector(self):
        docs = render()
        dep, _ = container(docs)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(labels["app.kubernetes.io/component"], "webhook")
        for where, sel in pod_selectors(docs):
            with self.subTest(selector=where):
                self.assertTrue(selector_matches(sel, labels), where)

    def test_the_check_catches_the_old_selectors(self):
        # The selectors of chart 0.1.0 (name and instance only) matched the test pod.
        pod = self.hook_pods(render())[0]
        old = {"app.kubernetes.io/name": "sigil", "app.kubernetes.io/instance": "sigil"}
        self.assertTrue(selector_matches(old, pod["metadata"]["labels"]))
        self.assertTrue(selector_matches({"matchLabels": old}, pod["metadata"]["labels"]))

    def test_the_test_pod_still_reaches_the_webhook(self):
        docs = render()
        pod = self.hook_pods(docs)[0]
        (rule,) = one(docs, "NetworkPolicy")["spec"]["ingress"]
        self.assertTrue(any(selector_matches(p["podSelector"], pod["metadata"]["labels"])
                            for p in rule["from"] if set(p) == {"podSelector"}))


class CRDsInTemplates(unittest.TestCase):
    def test_crds_are_the_files_kept_on_uninstall(self):
        docs = render()
        crds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
        files = crdschema.load_crds(CRD_FILES)
        self.assertEqual(sorted(crds), sorted(c["metadata"]["name"] for c, _ in files.values()))
        for crd, _ in files.values():
            got = crds[crd["metadata"]["name"]]
            self.assertEqual(got["spec"], crd["spec"], "rendered as written")
            self.assertEqual(got["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
                             "uninstall must not delete the CRDs (and with them every policy)")
            self.assertEqual(got["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm")
            self.assertEqual(got["metadata"]["labels"]["app.kubernetes.io/component"], "crd")
        self.assertFalse(os.path.isdir(os.path.join(CHART, "crds")), "crds/ is never upgraded by Helm")

    def test_crds_install_false(self):
        docs = render("--set", "crds.install=false")
        self.assertFalse([d for d in docs if d["kind"] == "CustomResourceDefinition"])
        notes = os.path.join(TMP, "notes-nocrds.txt")
        render_raw("--set", "crds.install=false", "--notes-out", notes)
        with open(notes) as f:
            self.assertIn("crds.install is false", f.read())


class Policies(unittest.TestCase):
    """`policies`: ClusterImagePolicies of the release, valid for the CRD they are written for."""

    @classmethod
    def setUpClass(cls):
        cls.crds = crdschema.load_crds(CRD_FILES)
        cls.values = os.path.join(TMP, "policies.yaml")
        with open(os.path.join(EXAMPLES, "aks-mcr.yaml")) as f:
            mcr = yaml.safe_load(f)
        with open(os.path.join(EXAMPLES, "key-based.yaml")) as f:
            prod = yaml.safe_load(f)
        with open(cls.values, "w") as f:
            yaml.safe_dump({"policies": {"aks-mcr": mcr["spec"], "prod-images": prod["spec"]}}, f)

    def cips(self, docs):
        return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterImagePolicy"}

    def test_rendered_once_the_api_serves_them(self):
        docs = render("-f", self.values, "--api-versions", "sigil.dev/v1alpha1")
        cips = self.cips(docs)
        self.assertEqual(sorted(cips), ["aks-mcr", "prod-images"])
        for name, cip in cips.items():
            self.assertEqual(crdschema.validate_object(self.crds, cip), [], name)
            self.assertEqual(cip["metadata"]["labels"]["app.kubernetes.io/instance"], "sigil")
            self.assertNotIn("mode", cip["spec"], "each policy's own mode (default enforce)")
        self.assertEqual(cips["aks-mcr"]["spec"]["images"], [{"glob": "mcr.microsoft.com/**"}])
        kinds = [d["kind"] for d in docs]
        self.assertLess(kinds.index("ClusterImagePolicy"), kinds.index("ValidatingWebhookConfiguration"))

    def test_first_install_defers_them(self):
        # Without sigil.dev/v1alpha1 in the API (the install that creates the CRDs), Helm could not
        # build the objects at all: they wait for the next upgrade, and NOTES say so.
        self.assertEqual(self.cips(render("-f", self.values)), {})
        notes = os.path.join(TMP, "notes-policies.txt")
        render_raw("-f", self.values, "--notes-out", notes)
        with open(notes) as f:
            text = f.read()
        self.assertIn("NOT YET APPLIED: the 2 ClusterImagePolicies", text)
        render_raw("-f", self.values, "--api-versions", "sigil.dev/v1alpha1", "--notes-out", notes)
        with open(notes) as f:
            text = f.read()
        self.assertNotIn("NOT YET APPLIED", text)
        self.assertIn("Policies of this release: aks-mcr, prod-images.", text)

    def test_policy_mode_for_a_phased_rollout(self):
        for mode in ("warn", "enforce"):
            docs = render("-f", self.values, "--api-versions", "sigil.dev/v1alpha1", "--set", "policyMode=" + mode)
            for name, cip in self.cips(docs).items():
                self.assertEqual(cip["spec"]["mode"], mode, name)
                self.assertEqual(crdschema.validate_object(self.crds, cip), [], name)

    def test_a_policy_the_crd_refuses_is_caught(self):
        # The same check on a policy the API server would refuse (the schema check is not vacuous).
        docs = render("--set-json", 'policies.bad={"images":[{"glob":"x"}],"authorities":[{"name":"a"}]}',
                      "--api-versions", "sigil.dev/v1alpha1")
        self.assertNotEqual(crdschema.validate_object(self.crds, self.cips(docs)["bad"]), [])


class Scope(unittest.TestCase):
    def test_labelled_scope_on_both_pod_webhooks(self):
        docs = render("--set", "scope=labelled")
        _, hooks = webhooks(docs)
        opt_in = {"key": "sigil.dev/enforce", "operator": "In", "values": ["true"]}
        self.assertIn(opt_in, hooks["validate.sigil.dev"]["namespaceSelector"]["matchExpressions"])
        self.assertNotIn("namespaceSelector", hooks["validate-policy.sigil.dev"], "policies are cluster matters")
        assert_mutating_shares_validating(self, docs)
        sel = hooks["validate.sigil.dev"]["namespaceSelector"]
        ns = lambda name, **labels: dict(labels, **{"kubernetes.io/metadata.name": name})  # noqa: E731
        self.assertTrue(selector_matches(sel, ns("shop", **{"sigil.dev/enforce": "true"})))
        self.assertFalse(selector_matches(sel, ns("shop")))
        self.assertFalse(selector_matches(sel, ns("shop", **{"sigil.dev/enforce": "false"})))
        self.assertFalse(selector_matches(sel, ns("sigil", **{"sigil.dev/enforce": "true"})), "never its own namespace")
        notes = os.path.join(TMP, "notes-labelled.txt")
        render_raw("--set", "scope=labelled", "--notes-out", notes)
        with open(notes) as f:
            self.assertIn("kubectl label namespace NAME sigil.dev/enforce=true", f.read())


class AKS(unittest.TestCase):
    def selector(self, docs):
        return webhooks(docs)[1]["validate.sigil.dev"]["namespaceSelector"]

    def test_enforcer_exclusions_follow_the_opt_out(self):
        sel = self.selector(render())
        ns = {"kubernetes.io/metadata.name": "app-routing-system"}
        self.assertTrue(selector_matches(sel, ns))
        self.assertFalse(selector_matches(sel, dict(ns, **{"kubernetes.azure.com/managedby": "aks"})))
        self.assertFalse(selector_matches(sel, dict(ns, **{"control-plane": "true"})))
        self.assertTrue(selector_matches(sel, dict(ns, **{"kubernetes.azure.com/managedby": "someone"})))
        # The Admissions Enforcer left in charge: it adds those itself, the chart does not.
        docs = render("--set", "webhook.disableAKSAdmissionsEnforcer=false")
        sel = self.selector(docs)
        self.assertEqual([e["key"] for e in sel["matchExpressions"]], ["kubernetes.io/metadata.name"])
        self.assertNotIn("annotations", one(docs, "ValidatingWebhookConfiguration")["metadata"])
        assert_mutating_shares_validating(self, docs)

    def test_cert_manager_namespace_excluded_in_cert_manager_mode(self):
        for args, ns in (((), "cert-manager"), (("--set", "tls.certManager.namespace=security-certs"), "security-certs")):
            docs = render("--set", "tls.mode=cert-manager", *args)
            sel = self.selector(docs)
            self.assertIn(ns, sel["matchExpressions"][0]["values"])
            self.assertFalse(selector_matches(sel, {"kubernetes.io/metadata.name": ns}))
            assert_mutating_shares_validating(self, docs)

    def test_mcr_example_is_a_valid_policy(self):
        with open(os.path.join(EXAMPLES, "aks-mcr.yaml")) as f:
            doc = yaml.safe_load(f)
        self.assertEqual(crdschema.validate_object(crdschema.load_crds(CRD_FILES), doc), [])
        self.assertEqual(doc["spec"]["images"], [{"glob": "mcr.microsoft.com/**"}])


class MatchConditions(unittest.TestCase):
    """matchConditions only where the API server has them on (>= 1.28), identical on both pod
    webhooks, and each CEL path the one of its kind."""

    def conditions(self, *args):
        docs = render(*args)
        assert_mutating_shares_validating(self, docs)
        return webhooks(docs)[1]["validate.sigil.dev"].get("matchConditions")

    def test_only_from_1_28(self):
        self.assertIsNone(self.conditions("--kube-version", "1.27.9"))
        self.assertIsNone(self.conditions("--kube-version", "1.27.9", "--set-json",
                                          'webhook.matchConditions=[{"name":"x","expression":"true"}]'))
        self.assertEqual(len(self.conditions("--kube-version", "1.28.0")), 4)
        self.assertEqual(len(self.conditions("--kube-version", "v1.28.3-aks.1")), 4)

    def test_each_kind_is_read_at_its_own_path(self):
        conds = {c["name"]: c["expression"] for c in self.conditions()}
        self.assertEqual(sorted(conds), ["cronjob-images-changed", "not-being-deleted", "pod-images-changed",
                                         "template-images-changed"])
        paths = {"pod-images-changed": "spec", "template-images-changed": "spec.template.spec",
                 "cronjob-images-changed": "spec.jobTemplate.spec.template.spec"}
        covered = {}
        for name, path in paths.items():
            e = conds[name]
            self.assertTrue(e.startswith("request.operation != 'UPDATE' || "), name)
            for side in ("object", "oldObject"):
                for field in ("initContainers", "containers", "ephemeralContainers"):
                    self.assertIn("%s.%s.%s.map(c, has(c.image) ? c.image : '')" % (side, path, field), e)
            # No other PodSpec path appears in it.
            for other, p in paths.items():
                if other != name and len(p) > len(path):
                    self.assertNotIn("object.%s.containers" % p, e)
            for r in re.findall(r"'([a-z]+)'", e.split("||")[1]):
                covered.setdefault(r, []).append(name)
        # Every resource the validating webhook registers has exactly one images-changed condition.
        rules = webhooks(render())[1]["validate.sigil.dev"]["rules"]
        resources = {r.split("/")[0] for rule in rules for r in rule["resources"]}
        self.assertEqual(set(covered), resources)
        self.assertTrue(all(len(v) == 1 for v in covered.values()), covered)
        self.assertEqual(covered["cronjobs"], ["cronjob-images-changed"])
        self.assertEqual(covered["pods"], ["pod-images-changed"])

    def test_switches(self):
        user = '[{"name":"not-dry-run","expression":"!request.dryRun"}]'
        conds = self.conditions("--set", "webhook.defaultMatchConditions=false", "--set-json", "webhook.matchConditions=" + user)
        self.assertEqual(conds, [{"name": "not-dry-run", "expression": "!request.dryRun"}])
        self.assertIsNone(self.conditions("--set", "webhook.defaultMatchConditions=false"))
        conds = self.conditions("--set-json", "webhook.matchConditions=" + user)
        self.assertEqual([c["name"] for c in conds][-1], "not-dry-run")
        _, hooks = webhooks(render())
        self.assertNotIn("matchConditions", hooks["validate-policy.sigil.dev"])


CEL_JS = os.path.join(ROOT, "tests", "support", "cel-js")


def cel_evaluator():
    """Installs tests/support/cel-js (pinned @bufbuild/cel) once per lock file under the system temp
    directory; returns a function (conditions, cases) -> results. Skips when node/npm are missing
    or the npm registry cannot be reached."""
    import hashlib
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise unittest.SkipTest("node and npm are not installed: the matchConditions are not evaluated")
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json", "eval.mjs"):
        with open(os.path.join(CEL_JS, name), "rb") as f:
            h.update(f.read())
    dest = os.path.join(tempfile.gettempdir(), "sigil-node", "cel-js-" + h.hexdigest()[:12])
    if not os.path.isdir(os.path.join(dest, "node_modules", "@bufbuild", "cel")):
        tmp = dest + ".tmp%d" % os.getpid()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(CEL_JS, tmp)
        try:
            r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=tmp, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            r = None
        if r is None or r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise unittest.SkipTest("npm ci could not install @bufbuild/cel (is the npm registry reachable?)")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)

    def evaluate(conditions, cases):
        r = subprocess.run([node, os.path.join(dest, "eval.mjs")], input=json.dumps({"conditions": conditions, "cases": cases}),
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError("eval.mjs failed:\n" + r.stderr)
        return json.loads(r.stdout)
    return evaluate


def _spec(*images, init=(), image_less=False, volumes=()):
    cs = [{"name": "c%d" % i, "image": img} for i, img in enumerate(images)]
    if image_less:
        cs.append({"name": "no-image"})
    spec = {"containers": cs}
    if init:
        spec["initContainers"] = [{"name": "i%d" % i, "image": img} for i, img in enumerate(init)]
    if volumes:
        # An image volume per reference; None is a volume of another kind.
        spec["volumes"] = [{"name": "v%d" % i, "image": {"reference": ref}} if ref else {"name": "v%d" % i, "emptyDir": {}}
                           for i, ref in enumerate(volumes)]
    return spec


def _wrap(kind, spec, **extra):
    """A namespaced object of `kind` whose pod spec is `spec`, at that kind's own path."""
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x", "namespace": "shop"}}
    if kind == "Pod":
        obj["spec"] = spec
    elif kind == "CronJob":
        obj["spec"] = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": spec}}}}
    else:
        obj["spec"] = {"replicas": 2, "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec}}
    obj["spec"].update(extra)
    return obj


RESOURCES = {"Pod": "pods", "Deployment": "deployments", "ReplicaSet": "replicasets", "StatefulSet": "statefulsets",
             "DaemonSet": "daemonsets", "Job": "jobs", "ReplicationController": "replicationcontrollers",
             "CronJob": "cronjobs"}


class MatchConditionsCEL(unittest.TestCase):
    """The rendered matchConditions, evaluated by a real CEL evaluator on the AdmissionRequests the
    API server would send: sigil is called whenever an image can change, skipped only for UPDATEs
    that keep every image or touch an object being deleted, and no expression ever fails."""

    @classmethod
    def setUpClass(cls):
        cls.evaluate = staticmethod(cel_evaluator())
        cls.conditions = webhooks(render())[1]["validate.sigil.dev"]["matchConditions"]

    def case(self, name, kind, op, new, old=None, sub=""):
        req = {"operation": op, "resource": {"group": "", "version": "v1", "resource": RESOURCES[kind]},
               "subResource": sub, "kind": {"kind": kind}, "namespace": "shop", "dryRun": False}
        return {"name": name, "request": req, "object": new, "oldObject": old}

    def cases(self):
        out = []
        for kind in RESOURCES:
            a, b = _spec("app:1", init=("init:1",)), _spec("app:1", init=("init:1",))
            out.append((self.case(kind + " create", kind, "CREATE", _wrap(kind, a)), True))
            same_new = _wrap(kind, a)
            same_new["metadata"]["labels"] = {"changed": "yes"}
            out.append((self.case(kind + " update, same images", kind, "UPDATE", same_new, _wrap(kind, b)), False))
            out.append((self.case(kind + " update, image changed", kind, "UPDATE", _wrap(kind, _spec("app:2", init=("init:1",))),
                                  _wrap(kind, b)), True))
            out.append((self.case(kind + " update, init image changed", kind, "UPDATE",
                                  _wrap(kind, _spec("app:1", init=("evil:1",))), _wrap(kind, b)), True))
            out.append((self.case(kind + " update, container added", kind, "UPDATE",
                                  _wrap(kind, _spec("app:1", "side:1", init=("init:1",))), _wrap(kind, b)), True))
            out.append((self.case(kind + " update, an image-less container", kind, "UPDATE",
                                  _wrap(kind, _spec("app:1", image_less=True)), _wrap(kind, _spec("app:1", image_less=True))), False))
            # sigil reads image volumes too, and compares each field's list by position.
            with_data = _spec("app:1", init=("init:1",), volumes=(None, "data:1"))
            out.append((self.case(kind + " update, same image volumes", kind, "UPDATE", _wrap(kind, with_data),
                                  _wrap(kind, _spec("app:1", init=("init:1",), volumes=(None, "data:1")))), False))
            out.append((self.case(kind + " update, image volume changed", kind, "UPDATE",
                                  _wrap(kind, _spec("app:1", init=("init:1",), volumes=(None, "data:2"))),
                                  _wrap(kind, with_data)), True))
            out.append((self.case(kind + " update, image volume added", kind, "UPDATE", _wrap(kind, with_data),
                                  _wrap(kind, _spec("app:1", init=("init:1",), volumes=(None,)))), True))
            out.append((self.case(kind + " update, init image moved to containers", kind, "UPDATE",
                                  _wrap(kind, _spec("init:1", "app:1")), _wrap(kind, b)), True))
            gone = _wrap(kind, a)
            gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            out.append((self.case(kind + " update while being deleted", kind, "UPDATE", gone, _wrap(kind, b)), False))
        debug = _spec("app:1")
        debug["ephemeralContainers"] = [{"name": "debugger", "image": "busybox:1"}]
        out.append((self.case("kubectl debug", "Pod", "UPDATE", _wrap("Pod", debug), _wrap("Pod", _spec("app:1")),
                              sub="ephemeralcontainers"), True))
        rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "x"}, "spec": {"replicas": 1}}
        out.append((self.case("rc without a template", "ReplicationController", "UPDATE", rc, rc), True))
        return out

    def test_called_exactly_when_an_image_can_change(self):
        cases = self.cases()
        results = self.evaluate(self.conditions, [c for c, _ in cases])
        for c, want_call in cases:
            got = results[c["name"]]
            with self.subTest(case=c["name"]):
                errors = {k: v for k, v in got.items() if v is not True and v is not False}
                self.assertEqual(errors, {}, "an expression failed (failurePolicy would decide)")
                self.assertEqual(all(got.values()), want_call, got)

    def test_a_wrong_path_is_caught(self):
        # The CronJob condition reading a pod template's path: its skip case must then fail.
        wrong = [dict(c, expression=c["expression"].replace("spec.jobTemplate.spec.template.spec", "spec.template.spec"))
                 if c["name"] == "cronjob-images-changed" else c for c in self.conditions]
        same = _wrap("CronJob", _spec("app:1"))
        results = self.evaluate(wrong, [self.case("cron same", "CronJob", "UPDATE", same, same)])
        self.assertTrue(all(results["cron same"].values()), "with the wrong path every CronJob update calls sigil")


class VersionGated(unittest.TestCase):
    def test_pdb_unhealthy_pod_eviction_policy_from_1_27(self):
        self.assertNotIn("unhealthyPodEvictionPolicy", one(render("--kube-version", "1.26.15"), "PodDisruptionBudget")["spec"])
        self.assertEqual(one(render("--kube-version", "1.27.0"), "PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"],
                         "AlwaysAllow")
        pdb = one(render("--set", "podDisruptionBudget.unhealthyPodEvictionPolicy="), "PodDisruptionBudget")
        self.assertNotIn("unhealthyPodEvictionPolicy", pdb["spec"])


class Scaling(unittest.TestCase):
    def test_autoscaler_on_cpu(self):
        docs = render("--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=8")
        hpa = one(docs, "HorizontalPodAutoscaler")
        dep, c = container(docs)
        self.assertNotIn("replicas", dep["spec"], "the autoscaler owns the replica count")
        self.assertEqual(hpa["spec"]["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": "Deployment",
                                                         "name": dep["metadata"]["name"]})
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (2, 8))
        (metric,) = hpa["spec"]["metrics"]
        self.assertEqual(metric["resource"]["name"], "cpu")
        self.assertEqual(metric["resource"]["target"], {"type": "Utilization", "averageUtilization": 75})
        self.assertIn("cpu", c["resources"]["requests"], "utilization is relative to the request")
        self.assertGreaterEqual(int(one(docs, "ResourceQuota")["spec"]["hard"]["pods"]), 2 * 8)
        assert_pdb_never_blocks_drains(self, docs)

    def test_priority(self):
        self.assertFalse([d for d in render("--set", "priorityClass.quota=false") if d["kind"] == "ResourceQuota"])
        docs = render("--set", "priorityClassName=")
        self.assertNotIn("priorityClassName", container(docs)[0]["spec"]["template"]["spec"])
        self.assertFalse([d for d in docs if d["kind"] == "ResourceQuota"])
        docs = render("--set", "priorityClassName=system-node-critical")
        self.assertEqual(one(docs, "ResourceQuota")["spec"]["scopeSelector"]["matchExpressions"][0]["values"],
                         ["system-node-critical"])


class Certificates(unittest.TestCase):
    """tls.mode=helm keeps its certificate across upgrades (lookup), and renews without a CA change."""

    def secrets(self, docs):
        return [d for d in docs if d["kind"] == "Secret"]

    def lookup_file(self, secrets, name):
        p = os.path.join(TMP, name)
        with open(p, "w") as f:
            yaml.safe_dump_all(secrets, f)
        return p

    def ca_bundle(self, docs):
        return webhooks(docs)[1]["validate.sigil.dev"]["clientConfig"]["caBundle"]

    def test_every_render_without_a_cluster_is_new(self):
        a, b = render("--set", "tls.mode=helm"), render("--set", "tls.mode=helm")
        self.assertNotEqual(self.ca_bundle(a), self.ca_bundle(b), "the helm template / Argo CD caveat")

    def test_upgrade_keeps_the_certificate(self):
        first = render("--set", "tls.mode=helm")
        lk = self.lookup_file(self.secrets(first), "lookup-keep.yaml")
        second = render("--set", "tls.mode=helm", "--is-upgrade", "--lookup", lk)
        self.assertEqual(self.ca_bundle(first), self.ca_bundle(second))
        self.assertEqual(one(first, "Secret", "sigil-tls")["data"], one(second, "Secret", "sigil-tls")["data"])

    def test_renewal_keeps_the_ca(self):
        first = render("--set", "tls.mode=helm")
        secrets = self.secrets(first)
        tls = [s for s in secrets if s["metadata"]["name"] == "sigil-tls"][0]
        soon = int(datetime.datetime.now(datetime.timezone.utc).timestamp()) + 10 * 86400
        tls["metadata"]["annotations"]["sigil.dev/not-after"] = str(soon)
        second = render("--set", "tls.mode=helm", "--is-upgrade", "--lookup", self.lookup_file(secrets, "lookup-renew.yaml"))
        self.assertEqual(self.ca_bundle(first), self.ca_bundle(second), "renewal must not change the caBundle")
        new = one(second, "Secret", "sigil-tls")
        self.assertNotEqual(new["data"]["tls.crt"], tls["data"]["tls.crt"])
        self.assertGreater(int(new["metadata"]["annotations"]["sigil.dev/not-after"]), soon)
        if x509 is not None:
            ca = x509.load_pem_x509_certificate(base64.b64decode(self.ca_bundle(second)))
            leaf = x509.load_pem_x509_certificate(base64.b64decode(new["data"]["tls.crt"]))
            ca.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(),
                                   leaf.signature_hash_algorithm)

    def test_new_service_name_gets_a_new_certificate(self):
        first = render("--set", "tls.mode=helm")
        lk = self.lookup_file(self.secrets(first), "lookup-rename.yaml")
        second = render("--set", "tls.mode=helm", "--is-upgrade", "--lookup", lk, "--set", "fullnameOverride=sigil-webhook")
        # Other Secret names: nothing found, everything new, and valid for the new name.
        self.assertIn("sigil-webhook.sigil.svc", one(second, "Secret", "sigil-webhook-tls")["metadata"]["annotations"]["sigil.dev/dns-names"])


class Renderer(unittest.TestCase):
    """helmrender behaves like `helm template` where the chart relies on it."""

    def chart(self, files):
        d = tempfile.mkdtemp(dir=TMP)
        for name, text in files.items():
            p = os.path.join(d, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        return d

    def test_engine_basics(self):
        d = self.chart({
            "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: \"9\"\n",
            "values.yaml": "a: {b: 1, c: keep}\nbig: 1000000\nlist: [x]\ngone: here\n",
            "crds/c.yaml": "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: cs.demo.dev}\n",
            "templates/_h.tpl": '{{- define "demo.n" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}',
            "templates/cm.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ include \"demo.n\" . }}\ndata:\n"
                "  b: {{ .Values.a.b | quote }}\n  c: {{ .Values.a.c }}\n  big: {{ .Values.big | quote }}\n"
                "  set: {{ kindOf .Values.n }}-{{ .Values.n }}\n  str: {{ kindOf .Values.s }}\n"
                "  gone: {{ hasKey .Values \"gone\" | quote }}\n  missing: \"{{ .Values.nope }}\"\n"
                "  tpl: {{ tpl \"{{ .Chart.Version }}\" . }}\n  list: {{ toJson .Values.l }}\n"
                "  yaml: |\n    {{- toYaml .Values.a | nindent 4 }}\n"
                "  caps: {{ .Capabilities.KubeVersion.Minor }}-{{ .Capabilities.APIVersions.Has \"apps/v1\" }}\n"
                "  tmpl: {{ .Template.Name }}\n"),
            "templates/sa.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: first\n---\n# empty\n---\n",
            "templates/hook.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations:\n    helm.sh/hook: test\n",
            "templates/NOTES.txt": "notes for {{ .Release.Name }}",
        })
        out = render_raw("--include-crds", "--set", "a.b=2,n=3,s=true", "--set", "gone=null", "--set", "l={p,q}",
                         "--kube-version", "1.27.1", chart=d, name="rel", namespace="ns").stdout
        docs = [x for x in yaml.safe_load_all(out) if x]
        self.assertEqual([x["kind"] for x in docs], ["CustomResourceDefinition", "ServiceAccount", "ConfigMap", "Pod"])
        data = docs[2]["data"]
        self.assertEqual(docs[2]["metadata"]["name"], "rel-demo")
        self.assertEqual(data["b"], "2")
        self.assertEqual(data["c"], "keep", "maps merge")
        self.assertEqual(data["big"], "1e+06", "numbers from YAML files are float64, as in Helm")
        self.assertEqual(data["set"], "int64-3", "--set integers are int64")
        self.assertEqual(data["str"], "bool")
        self.assertEqual(data["gone"], "false", "null deletes a default")
        self.assertEqual(data["missing"], "", "missing keys render empty, not <no value>")
        self.assertEqual(data["tpl"], "1.2.3")
        self.assertEqual(data["list"], ["p", "q"], "--set l={p,q} is a list")
        self.assertEqual(yaml.safe_load(data["yaml"]), {"b": 2, "c": "keep"})
        self.assertEqual(data["caps"], "27-true")
        self.assertEqual(data["tmpl"], "demo/templates/cm.yaml")
        self.assertNotIn("notes for", out)
        self.assertIn("# Source: demo/crds/c.yaml", out)

    def test_files_set_json_set_file_and_helmignore(self):
        d = self.chart({
            "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            ".helmignore": "*.bak\nsecret/\n",
            "files/a.conf": "A", "files/b.conf": "B", "files/old.bak": "X", "secret/k": "K",
            "templates/cm.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n"
                "  {{- (.Files.Glob \"files/*\").AsConfig | nindent 2 }}\n"
                "  k: {{ .Files.Get \"secret/k\" | quote }}\n  j: {{ toJson .Values.j | quote }}\n"
                "  f: {{ .Values.f | quote }}\n"),
            "templates/z.yaml": "apiVersion: example.com/v1\nkind: Zebra\nmetadata:\n  name: z\n---\n"
                                "apiVersion: example.com/v1\nkind: Aardvark\nmetadata:\n  name: a\n",
            "templates/hook.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\n  annotations:\n"
                                   "    helm.sh/hook: pre-install\n",
        })
        content = os.path.join(TMP, "content.txt")
        with open(content, "w") as f:
            f.write("from a file")
        out = render_raw("--set-json", 'j={"a":[1,2],"b":"x,y"}', "--set-file", "f=" + content, chart=d).stdout
        docs = [x for x in yaml.safe_load_all(out) if x]
        self.assertEqual([x["kind"] for x in docs], ["ConfigMap", "Aardvark", "Zebra", "Job"])
        data = docs[0]["data"]
        self.assertEqual((data["a.conf"], data["b.conf"]), ("A", "B"))
        self.assertNotIn("old.bak", data, ".helmignore")
        self.assertEqual(data["k"], "", ".helmignore'd directory")
        self.assertEqual(json.loads(data["j"]), {"a": [1, 2], "b": "x,y"})
        self.assertEqual(data["f"], "from a file")
        self.assertNotIn("kind: Job", render_raw("--no-hooks", chart=d).stdout)

    def test_errors_like_helm(self):
        d = self.chart({
            "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            "templates/x.yaml": "{{ required \"x.y is required\" .Values.x }}\n",
        })
        r = render_raw(chart=d, check=False)
        self.assertIn("execution error at (demo/templates/x.yaml:1:3): x.y is required", r.stderr)
        d = self.chart({
            "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            "templates/x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations:\n    a: true\n",
        })
        r = render_raw(chart=d, check=False)
        self.assertIn("YAML parse error on demo/templates/x.yaml", r.stderr, "annotations must be strings")


class PlainManifests(unittest.TestCase):
    def test_committed_manifests_are_render_sh_output(self):
        out = os.path.join(TMP, "manifests")
        r = subprocess.run([os.path.join(ROOT, "deploy", "render.sh"), out], env=dict(os.environ, HELMRENDER=RENDERER),
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        committed_dir = os.path.join(ROOT, "deploy", "manifests")
        made = sorted(f for f in os.listdir(out) if f.endswith(".yaml"))
        committed = sorted(f for f in os.listdir(committed_dir) if f.endswith(".yaml"))
        self.assertEqual(made, committed)
        for name in made:
            with open(os.path.join(out, name)) as a, open(os.path.join(committed_dir, name)) as b:
                self.assertEqual(a.read(), b.read(), "deploy/manifests/%s is stale: run deploy/render.sh" % name)

    def test_manifests_are_complete(self):
        docs = []
        d = os.path.join(ROOT, "deploy", "manifests")
        for name in sorted(os.listdir(d)):
            if name.endswith(".yaml"):
                with open(os.path.join(d, name)) as f:
                    docs += [x for x in yaml.safe_load_all(f) if x]
        kinds = [x["kind"] for x in docs]
        self.assertEqual(kinds[0], "Namespace")
        self.assertEqual(kinds.count("CustomResourceDefinition"), 3)
        for k in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Deployment", "Service",
                  "PodDisruptionBudget", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                  "Certificate", "NetworkPolicy"):
            self.assertIn(k, kinds)
        self.assertNotIn("Secret", kinds, "no private key may be committed")
        self.assertNotIn("Pod", kinds, "no helm test hook")
        # Rendered for a current Kubernetes: everything the chart renders only on newer versions.
        _, c = container(docs)
        self.assertNotIn("lifecycle", c, "no preStop: sigil's lame duck keeps it serving after SIGTERM")
        self.assertIn("unhealthyPodEvictionPolicy", one(docs, "PodDisruptionBudget")["spec"])
        _, hooks = webhooks(docs)
        self.assertEqual(len(hooks["validate.sigil.dev"]["matchConditions"]), 4)
        excl = hooks["validate.sigil.dev"]["namespaceSelector"]["matchExpressions"][0]
        self.assertIn("cert-manager", excl["values"], "cert-manager issues these manifests' certificate")
        with open(os.path.join(ROOT, "deploy", "render.sh")) as f:
            self.assertRegex(f.read(), r"\nKUBE_VERSION=1\.(3[3-9]|[4-9][0-9])\.")


class SelfManagedCertificate(unittest.TestCase):
    """tls.mode=self (the default): sigil owns its certificate; the chart renders no key material."""

    def test_renders_are_stable_and_carry_no_certificate(self):
        a, b = render_raw().stdout, render_raw().stdout
        self.assertEqual(a, b, "GitOps: a render is the same every time")
        self.assertNotIn("BEGIN CERTIFICATE", a)
        self.assertNotIn("caBundle:", a, "sigil writes the caBundle; the chart must not clobber it")
        docs = render()
        self.assertFalse([d for d in docs if d["kind"] == "Secret"])
        self.assertFalse([d for d in docs if d["kind"] == "Certificate"])
        self.assertNotIn("cert-manager.io/inject-ca-from", one(docs, "ValidatingWebhookConfiguration")["metadata"]
                         .get("annotations", {}))
        # helm test verifies the serving certificate with the CA sigil keeps in its Secret.
        pod = one(docs, "Pod")
        self.assertEqual(pod["spec"]["volumes"][0]["secret"]["secretName"], "sigil-self-tls")

    def test_the_config_names_what_rbac_allows(self):
        for args, mutating in (((), True), (("--set", "webhook.mutating.enabled=false"), False),
                               (("--set", "tls.self.secretName=my-tls", "--set", "fullnameOverride=sig"), True)):
            docs = render(*args)
            cfg = yaml.safe_load([d for d in docs if d["kind"] == "ConfigMap"
                                  and "config.yaml" in d["data"]][0]["data"]["config.yaml"])["selfCert"]
            vwc = one(docs, "ValidatingWebhookConfiguration")
            svc = one(docs, "Service")
            self.assertEqual(cfg["validatingWebhooks"], [vwc["metadata"]["name"]])
            self.assertEqual(cfg["serviceName"], svc["metadata"]["name"])
            for w in vwc["webhooks"]:
                self.assertEqual(w["clientConfig"]["service"]["name"], cfg["serviceName"])
            named = {(r["resources"][0], n) for r in one(docs, "ClusterRole")["rules"] for n in r.get("resourceNames", [])}
            want = {("validatingwebhookconfigurations", vwc["metadata"]["name"])}
            if mutating:
                mwc = one(docs, "MutatingWebhookConfiguration")
                self.assertEqual(cfg["mutatingWebhooks"], [mwc["metadata"]["name"]])
                want.add(("mutatingwebhookconfigurations", mwc["metadata"]["name"]))
            else:
                self.assertNotIn("mutatingWebhooks", cfg)
            self.assertEqual(named, want)
            (role,) = [d for d in docs if d["kind"] == "Role"]
            self.assertEqual(role["rules"][0]["resourceNames"], [cfg["secretName"]])
        self.assertEqual(cfg["secretName"], "my-tls")

    def test_values_are_checked(self):
        r = render_raw("--set", "tls.mode=selfish", check=False)
        self.assertNotEqual(r.returncode, 0)
        r = render_raw("--set", "tls.self.rolloverGrace=an hour", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("rolloverGrace", r.stderr)
        r = render_raw("--set", "tls.self.unknown=1", check=False)
        self.assertNotEqual(r.returncode, 0)

    def test_other_modes_need_no_self_rbac(self):
        for mode in ("helm", "cert-manager"):
            docs = render("--set", "tls.mode=" + mode)
            self.assertFalse([d for d in docs if d["kind"] in ("Role", "RoleBinding")], mode)
            cfg = yaml.safe_load(one(docs, "ConfigMap", "sigil")["data"]["config.yaml"])
            self.assertNotIn("selfCert", cfg)


if __name__ == "__main__":
    unittest.main(verbosity=2)
