"""The Helm chart rendered for real and run: `sigil serve` started with the command, config.yaml
and ports of the chart's Deployment, against the fake API server (tests/support/fake_kube.py)
holding the webhook configurations and the policy the same render made, verifying real
signatures in the real distribution registry.

tests/deploy/test_chart.py checks the render as objects, each against the others. This checks
what only the binary can tell: that a `helm install` comes up and is wired as the chart says.
  - sigil accepts the rendered config.yaml and becomes ready;
  - it publishes its CA (selfCert, the default tls.mode) into the webhook configurations the
    chart renders, and the `helm test` pod's request succeeds: /readyz at
    <service>.<namespace>.svc, verified by the ca.crt of the Secret the pod mounts;
  - every probe's path answers on the port it names;
  - every webhook's service path answers its reviews: /validate allows a signed image and
    denies an unsigned one under the ClusterImagePolicy rendered from the chart's `policies`
    value, /mutate pins the tag to its digest, /validate-policy refuses a broken policy;
  - /metrics on the chart's metrics port serves every sigil_* series the PrometheusRule
    reads, with the label values it selects.
What differs from a cluster, and nothing else: the two listen addresses become 127.0.0.1 with
free ports (after the chart's ports are checked against its Deployment), the service account
mount becomes a kubeconfig for the fake API server plus the release namespace, and the mounted
files are in a temporary directory.
"""
import base64
import copy
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import unittest

import harness
from harness import fixture
import fake_kube
import helmchart
from test_kube import _ServiceConnection as ServiceConnection, eventually, policy_review
from test_metrics import scrape_port

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

NAME, NS = "sigil", "sigil"  # helm install sigil deploy/helm/sigil -n sigil
# Labels Prometheus adds from the scrape target; sigil does not write them.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "endpoint", "container"}


def setUpModule():
    harness.require_registry()
    harness.sigil_bin()
    if yaml is None:
        raise unittest.SkipTest("python3-yaml is not installed")
    why = helmchart.missing()
    if why:
        raise unittest.SkipTest(why + " (" + helmchart.INSTALL_HINT + ")")


def one(docs, kind, name=NAME):
    (d,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return d


def port_of(address):
    return int(address.rsplit(":", 1)[1])


class ServiceClient:
    """HTTPS to 127.0.0.1:port that verifies the served certificate for a Service's DNS name,
    trusting only the given CA: what the API server and the `helm test` pod do."""

    def __init__(self, port, ca_pem, hostname):
        self.port, self.hostname = port, hostname
        self.ctx = ssl.create_default_context(cadata=ca_pem)

    def request(self, method, path, body=None, timeout=30):
        c = ServiceConnection(self.port, self.ctx, self.hostname, timeout)
        try:
            c.request(method, path, body=body,
                      headers={"Content-Type": "application/json"} if body is not None else {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def review(self, path, doc):
        st, body = self.request("POST", path, json.dumps(doc).encode())
        return st, (json.loads(body)["response"] if st == 200 else body)


class ChartServeTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.reg = harness.RunningRegistry("chart-serve")
        cls.addClassCleanup(cls.reg.stop)
        cls.keys = harness.Keys(harness.work_dir("chart-serve-keys"), [("a", "p256")])
        cls.signed = cls.reg.ref("chart/signed", "v1")
        d = cls.reg.push("chart/signed", "v1", "chart e2e signed")
        cls.signed_digest = d
        fixture.sign(cls.reg.client, "chart/signed", d, cls.keys.key("a"))
        cls.reg.push("chart/unsigned", "v1", "chart e2e unsigned")
        cls.unsigned = cls.reg.ref("chart/unsigned", "v1")

        # The render: the defaults, metrics and its alerts on, the test registry (plain HTTP)
        # and one policy for it through the chart's values. --api-versions: an upgrade's render,
        # once the CRDs are served (the first install defers policies).
        cls.dir = harness.work_dir("chart-serve")
        values = os.path.join(cls.dir, "values.yaml")
        with open(values, "w") as f:
            yaml.safe_dump({
                "metrics": {"enabled": True, "prometheusRule": {"enabled": True}},
                "config": {"registry": {"insecure": [cls.reg.address]}},
                "policies": {"chart-images": {
                    "images": [{"glob": cls.reg.address + "/chart/**"}],
                    "authorities": [{"name": "key-a",
                                     "key": {"data": cls.keys.pub("a").decode()}}]}},
            }, f)
        renderer = helmchart.build_renderer(cls.dir)
        r = subprocess.run([renderer, "--name", NAME, "--namespace", NS, "-f", values,
                            "--api-versions", "sigil.dev/v1alpha1", helmchart.CHART],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("the chart does not render:\n" + r.stderr)
        cls.docs = [d for d in yaml.safe_load_all(r.stdout) if d]

        cls.fk = fake_kube.FakeKube(token="chart-serve-token",
                                    workdir=harness.work_dir("fake-kube-chart-serve"))
        cls.fk.start()
        cls.addClassCleanup(cls.fk.stop)
        kubeconfig = cls.fk.write_kubeconfig(os.path.join(cls.dir, "kubeconfig"))
        for d in cls.docs:
            if d["kind"] in ("ClusterImagePolicy", "ValidatingWebhookConfiguration",
                             "MutatingWebhookConfiguration"):
                cls.fk.apply(d["kind"], d)

        dep = one(cls.docs, "Deployment")
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        cls.container = c
        cls.ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        # Each Service port, by number and by name, as the container port it leads to.
        svc = one(cls.docs, "Service")
        cls.via_service = {}
        for p in svc["spec"]["ports"]:
            cls.via_service[p["port"]] = cls.via_service[p["name"]] = cls.ports[p["targetPort"]]
        cfg = yaml.safe_load(one(cls.docs, "ConfigMap")["data"]["config.yaml"])
        cls.secret_name = cfg["selfCert"]["secretName"]
        # The substitutions, each after checking what it replaces.
        assert port_of(cfg["listen"]) == cls.ports["https"], (cfg["listen"], cls.ports)
        assert port_of(cfg["metrics"]["listen"]) == cls.ports["metrics"], (cfg["metrics"], cls.ports)
        assert "kubeconfig" not in cfg["kube"] and "namespace" not in cfg["kube"], cfg["kube"]
        cls.port, cls.metrics_port = harness.free_port(), harness.free_port()
        cfg["listen"] = "127.0.0.1:%d" % cls.port
        cfg["metrics"]["listen"] = "127.0.0.1:%d" % cls.metrics_port
        cfg["kube"].update({"kubeconfig": kubeconfig, "namespace": NS})
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        config_path = os.path.join(cls.dir, "config.yaml")
        with open(config_path, "w") as f:
            yaml.safe_dump(cfg, f)

        # The container's command and arguments; the config file where the pod mounts it.
        argv = c["command"] + c["args"]
        assert argv[0] == "sigil", argv
        argv[0] = harness.sigil_bin()
        mounted = argv[argv.index("--config") + 1]
        assert mounts[mounted]["subPath"] == "config.yaml", mounts[mounted]
        argv[argv.index(mounted)] = config_path
        cls.log = os.path.join(cls.dir, "sigil.log")
        with open(cls.log, "ab") as log:
            cls.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True)
        cls.addClassCleanup(cls.stop)

        cls.hostname = "%s.%s.svc" % (svc["metadata"]["name"], NS)
        ok, _ = eventually(cls.published_ca, 30)
        if not ok:
            raise AssertionError("no serving Secret and caBundle within 30 s\n" + cls.log_tail())
        cls.ca_pem = cls.published_ca()
        cls.client = ServiceClient(cls.port, cls.ca_pem, cls.hostname)
        ok, _ = eventually(lambda: cls.status_of("/readyz") == 200, 30)
        if not ok:
            raise AssertionError("never ready\n" + cls.log_tail())

    @classmethod
    def stop(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGINT)  # no lame duck (SIGTERM starts one)
            try:
                cls.proc.wait(10)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait(5)

    @classmethod
    def log_tail(cls):
        return harness.tail(cls.log)

    @classmethod
    def published_ca(cls):
        """The Secret's ca.crt once sigil has created it and put it in every webhook
        configuration the render holds; else None."""
        secret = cls.fk.get("Secret", cls.secret_name, NS)
        if not secret or "ca.crt" not in (secret.get("data") or {}):
            return None
        ca = base64.b64decode(secret["data"]["ca.crt"])
        for d in cls.docs:
            if d["kind"].endswith("WebhookConfiguration"):
                stored = cls.fk.get(d["kind"], d["metadata"]["name"]) or {}
                for w in stored.get("webhooks") or []:
                    if w["clientConfig"].get("caBundle") != base64.b64encode(ca).decode():
                        return None
        return ca.decode()

    @classmethod
    def status_of(cls, path):
        try:
            return cls.client.request("GET", path, timeout=5)[0]
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return None

    def webhook_path(self, kind, resource):
        """The service path of the one webhook of `kind` whose rules name `resource`, after
        checking that it calls sigil's Service on a port that leads to the https port."""
        (w,) = [w for d in self.docs if d["kind"] == kind for w in d["webhooks"]
                if resource in {r for rule in w["rules"] for r in rule["resources"]}]
        svc = w["clientConfig"]["service"]
        self.assertEqual((svc["name"], svc["namespace"]),
                         (one(self.docs, "Service")["metadata"]["name"], NS))
        self.assertEqual(self.via_service[svc.get("port", 443)], self.ports["https"],
                         "the webhook's Service port leads to the https container port")
        return svc["path"]

    # ---------------------------------------------------------------------------------------

    def test_probes_answer_on_the_ports_they_name(self):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = self.container[probe]["httpGet"]
            self.assertEqual(self.ports[get["port"]], self.ports["https"], probe)
            self.assertEqual(get["scheme"], "HTTPS", probe)
            self.assertEqual(self.status_of(get["path"]), 200, probe + "\n" + self.log_tail())

    def test_the_helm_test_pod_request(self):
        pod = one(self.docs, "Pod", NAME + "-test-readyz")
        (c,) = pod["spec"]["containers"]
        url = c["args"][-1]
        m = re.fullmatch(r"https://([^:/]+):(\d+)(/\S*)", url)
        self.assertTrue(m, url)
        host, port, path = m.groups()
        self.assertEqual(host, self.hostname)
        self.assertEqual(self.via_service[int(port)], self.ports["https"])
        # --cacert: the file the pod mounts from the Secret sigil created.
        cacert = c["args"][c["args"].index("--cacert") + 1]
        (mount,) = [m for m in c["volumeMounts"] if cacert.startswith(m["mountPath"] + "/")]
        (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
        self.assertEqual(vol["secret"]["secretName"], self.secret_name)
        (item,) = [i for i in vol["secret"]["items"]
                   if os.path.join(mount["mountPath"], i["path"]) == cacert]
        ca = base64.b64decode(self.fk.get("Secret", self.secret_name, NS)["data"][item["key"]])
        st, _ = ServiceClient(self.port, ca.decode(), host).request("GET", path)
        self.assertEqual(st, 200, self.log_tail())

    def test_mutate_then_validate_under_the_chart_policy(self):
        # The API server's order: /mutate pins the tag (pinning is on with the mutating
        # webhook), then /validate judges the pinned Pod.
        doc = harness.pod_review([self.signed])
        st, resp = self.client.review(self.webhook_path("MutatingWebhookConfiguration", "pods"),
                                      doc)
        self.assertEqual(st, 200, self.log_tail())
        self.assertTrue(resp["allowed"], resp)
        doc["request"]["object"] = harness.apply_json_patch(doc["request"]["object"],
                                                            harness.json_patch_of(resp))
        pinned = doc["request"]["object"]["spec"]["containers"][0]["image"]
        self.assertEqual(pinned, self.signed + "@" + self.signed_digest)
        validate = self.webhook_path("ValidatingWebhookConfiguration", "pods")
        st, resp = self.client.review(validate, doc)
        self.assertEqual(st, 200, self.log_tail())
        self.assertTrue(resp["allowed"], resp)
        # An unsigned image is denied under the policy the chart rendered, by name.
        st, resp = self.client.review(validate, harness.pod_review([self.unsigned]))
        self.assertEqual(st, 200)
        self.assertFalse(resp["allowed"], resp)
        self.assertIn("policy chart-images", resp["status"]["message"], resp)
        # A tag-only Pod that did not pass /mutate is refused at /validate (NOT_PINNED).
        st, resp = self.client.review(validate, harness.pod_review([self.signed]))
        self.assertEqual(st, 200)
        self.assertFalse(resp["allowed"], resp)
        self.assertIn("NOT_PINNED", resp["auditAnnotations"]["images"], resp)

    def test_validate_policy_refuses_a_broken_policy(self):
        path = self.webhook_path("ValidatingWebhookConfiguration", "clusterimagepolicies")
        good = copy.deepcopy(one(self.docs, "ClusterImagePolicy", "chart-images"))
        st, resp = self.client.review(path, policy_review(good))
        self.assertEqual(st, 200, self.log_tail())
        self.assertTrue(resp["allowed"], resp)
        bad = copy.deepcopy(good)
        bad["spec"]["authorities"][0]["key"]["data"] = "not a key"
        st, resp = self.client.review(path, policy_review(bad))
        self.assertEqual(st, 200)
        self.assertFalse(resp["allowed"], resp)

    def test_metrics_serve_what_the_alerts_read(self):
        # One denial first: the rejection alert reads result="denied".
        self.client.review(self.webhook_path("ValidatingWebhookConfiguration", "pods"),
                           harness.pod_review([self.unsigned]))
        self.assertEqual(self.via_service["metrics"], self.ports["metrics"])
        samples, _ = scrape_port(self.metrics_port)
        rule = one(self.docs, "PrometheusRule")
        checked = 0
        for r in rule["spec"]["groups"][0]["rules"]:
            for name, matchers in re.findall(r"\b(sigil_[a-z_]+)\{([^}]*)\}", r["expr"]):
                want = [(k, op, v) for k, op, v in
                        re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers)
                        if k not in TARGET_LABELS]
                series = [dict(ls) for (n, ls) in samples if n == name]
                self.assertTrue(series, "%s (alert %s) is not served" % (name, r["alert"]))
                self.assertTrue(any(all(self.matches(s.get(k, ""), op, v) for k, op, v in want)
                                    for s in series),
                                "no %s series matches %s (alert %s): %s" % (name, want, r["alert"],
                                                                           series))
                checked += 1
        self.assertGreaterEqual(checked, 3, "the rules read sigil's series")

    @staticmethod
    def matches(value, op, want):
        if op == "=":
            return value == want
        if op == "!=":
            return value != want
        full = re.fullmatch(want, value) is not None
        return full if op == "=~" else not full


if __name__ == "__main__":
    sys.exit(unittest.main())
