"""`sigil serve --kube` end to end: the real sigil, over TLS, watching a fake Kubernetes API
server that speaks the real wire format (tests/support/fake_kube.py), verifying real key
signatures (fixture.py) in the real distribution registry.

The contract under test:
  - sigil lists and watches clusterimagepolicies, imagepolicies (all namespaces) and trustroots
    (sigil.dev/v1alpha1); every change recompiles the policy set, swapped atomically; /readyz is
    503 until the three lists were loaded and compiled once;
  - each object gets status.observedGeneration and a Ready condition (True/Compiled, or
    False/Invalid naming the field, or False/SecretUnavailable) through PATCH .../status;
    a policy that fails to compile does not affect the others; an earlier good generation of
    it stays in force after a broken edit or a failed Secret read, never once its key Secret
    or TrustRoot is deleted (the old key is revoked); one that never compiled but whose globs can be read denies every image
    it matches with POLICY_UNAVAILABLE (warns in warn mode) until it compiles, so a policy
    that cannot be compiled never lets through what it would have denied; a Secret read that
    fails with anything but 404 is retried with backoff, well before the resync;
  - key.secretRef reads the Secret's cosign.pub (or its only key), re-read periodically; a
    ClusterImagePolicy's Secret without namespace is in --kube-namespace (default
    sigil-system); an ImagePolicy's are always in its own namespace;
  - an admitted pod's imagePullSecrets and its ServiceAccount's (in the pod's namespace) are
    the credentials used for the registry; nothing leaks between pods;
  - POST /validate-policy refuses an invalid sigil.dev object (code 422, field named).
Changes are applied to the fake while admissions flow, and every expectation is polled with a
generous deadline (the machine may be loaded); nothing sleeps for correctness.
"""
import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import unittest
import uuid

import harness
from harness import fixture, registry
import fake_kube
from test_metrics import scrape_port, value

API = "sigil.dev/v1alpha1"
CIP, IP, TR = "ClusterImagePolicy", "ImagePolicy", "TrustRoot"
CIPS = "/apis/sigil.dev/v1alpha1/clusterimagepolicies"
IPS = "/apis/sigil.dev/v1alpha1/imagepolicies"
TRS = "/apis/sigil.dev/v1alpha1/trustroots"
SIGIL_NS = "sigil-test"
# A change must show in verdicts (and statuses) within this; it normally takes well under 1 s.
CHANGE_TIMEOUT = 20.0
# Secrets are re-read every --kube-resync (5 s here: every sigil these tests start passes it).
RESYNC = "5s"
SECRET_REFRESH_TIMEOUT = 30.0

W = None  # the module's world: registry, keys, images (setUpModule)


def setUpModule():
    global W
    harness.require_registry()
    harness.sigil_bin()
    W = World()


def tearDownModule():
    if W is not None:
        W.reg.stop()


class World:
    """One plain-HTTP registry with every image the tests use, signed by keys a and b."""

    def __init__(self):
        self.reg = harness.RunningRegistry("kube")
        self.addr = self.reg.address
        self.dir = harness.work_dir("kube-keys")
        self.keys = harness.Keys(self.dir, [("a", "p256"), ("b", "p256")])
        self.digest = {}
        signed = {
            "life/app-a": "a", "life/app-b": "b", "life/tool-a": "a",
            "shape/app-b": "b", "shape/unsigned": None, "shapenone/app-a": "a",
            "br/good-a": "a", "br/good-unsigned": None, "br/broken-a": "a",
            "br/badkey-a": "a",
            "sticky/a": "a", "sticky/b": "b",
            "sref/a-img": "a", "sref/a-img-b": "b", "sref/b-img": "b", "sref/m-img": "a",
            "sref/x-img": "a",
            "nsp/both": "ab", "nsp/only-a": "a", "nsp/unsigned": None, "nsfree/a": "a",
            "nsp/steal-b": "b",
            "tr/app": "a", "conv/app": "a", "file/a": "a", "file/unsigned": None,
            "wf/a": "a", "wf/b": "b", "wfgap/a": "a", "wfnew/a": "a", "wfsref/a": "a",
            "ready/a": "a", "ready/unsigned": None, "paging/a": "a", "statuses/a": "a",
            "selfcert/a": "a", "selfcert/unsigned": None,
            "ua/a": "a", "ua/unsigned": None, "ua404/a": "a", "uatr/a": "a", "uawarn/a": "a",
            "uasticky/a": "a", "uasticky/b": "b", "uabad/a": "a",
        }
        for repo, who in signed.items():
            d = self.reg.push(repo, "v1", "kube e2e " + repo)
            self.digest[repo] = d
            for i, k in enumerate(who or ""):
                fixture.sign(self.reg.client, repo, d, self.keys.key(k), append=i > 0)

    def ref(self, repo):
        return self.reg.ref(repo, "v1")

    def glob(self, pattern):
        return "%s/%s" % (self.addr, pattern)

    def pub(self, name):
        return self.keys.pub(name).decode()


# ---------------------------------------------------------------------------------------------
# objects as a user writes them (the fake adds uid, resourceVersion, generation, ...)


def key_auth(name, pem):
    return {"name": name, "key": {"data": pem}}


STATIC_PASS = {"name": "anything", "static": {"action": "pass"}}


def secret_auth(name, secret, namespace=None):
    ref = {"name": secret}
    if namespace:
        ref["namespace"] = namespace
    return {"name": name, "key": {"secretRef": ref}}


def cip(name, globs, authorities, mode=None, labels=None):
    spec = {"images": [{"glob": g} for g in globs], "authorities": authorities}
    if mode:
        spec["mode"] = mode
    md = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": API, "kind": CIP, "metadata": md, "spec": spec}


def ipol(name, ns, globs, authorities):
    o = cip(name, globs, authorities)
    o["kind"] = IP
    o["metadata"]["namespace"] = ns
    return o


def trust_root(name, ca_pem, rekor_pub_pem):
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {"apiVersion": API, "kind": TR, "metadata": {"name": name}, "spec": {"sigstoreKeys": {
        "certificateAuthorities": [{
            "subject": {"organization": "corp", "commonName": "corp signing CA"},
            "uri": "https://fulcio.corp.example", "certChain": b64(ca_pem)}],
        "tLogs": [{"baseURL": "https://rekor.corp.example", "hashAlgorithm": "sha-256",
                   "publicKey": b64(rekor_pub_pem)}]}}}


BAD_PEM = "-----BEGIN PUBLIC KEY-----\nAAAAnotakey\n-----END PUBLIC KEY-----\n"


# ---------------------------------------------------------------------------------------------
# admissions


def pod_review(images, ns="default", sa="default", pull_secrets=(), uid=None):
    """A Pod CREATE in namespace ns; sa=None leaves spec.serviceAccountName out."""
    doc = harness.pod_review(images, uid=uid or str(uuid.uuid4()))
    req = doc["request"]
    req["namespace"] = ns
    obj = req["object"]
    obj["metadata"]["namespace"] = ns
    spec = obj["spec"]
    if sa is None:
        spec.pop("serviceAccountName", None)
    else:
        spec["serviceAccountName"] = sa
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return doc


class Verdict:
    def __init__(self, http_status, resp):
        self.http = http_status
        self.resp = resp
        self.allowed = (resp or {}).get("allowed")
        self.message = harness.message(resp)
        self.code = ((resp or {}).get("status") or {}).get("code")
        ann = (resp or {}).get("auditAnnotations") or {}
        try:
            self.images = json.loads(ann.get("images", "{}"))
        except ValueError:
            self.images = {"<unparsable>": ann.get("images")}
        if not isinstance(self.images, dict):
            self.images = {}

    def entry(self, image):
        return self.images.get(image, "")

    def reason(self, image):
        parts = self.entry(image).split()
        if len(parts) > 1 and not parts[1].startswith("sha256:"):
            return parts[1]
        return ""

    def __repr__(self):
        return "HTTP %s %s" % (self.http, json.dumps(self.resp))


def admit(sigil, images, **pod):
    if isinstance(images, str):
        images = [images]
    st, resp = sigil.validate(pod_review(images, **pod), timeout=30)
    return Verdict(st, resp)


def eventually(fn, timeout, interval=0.1):
    """Calls fn until it returns a truthy value or timeout passes; returns (ok, last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return True, last
        if time.monotonic() >= deadline:
            return False, last
        time.sleep(interval)


class Traffic:
    """Admissions in a loop on a background thread while the test changes the cluster."""

    def __init__(self, sigil, images, **pod):
        self.sigil, self.images, self.pod = sigil, images, pod
        self.lock = threading.Lock()
        self.log = []      # (monotonic time answered, image, allowed, reason)
        self.errors = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="traffic")

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        i = 0
        while not self._stop.is_set():
            img = self.images[i % len(self.images)]
            i += 1
            try:
                v = admit(self.sigil, img, uid="traffic-%d" % i, **self.pod)
            except Exception as e:  # noqa: BLE001 - any failure to answer is an error here
                with self.lock:
                    self.errors.append((img, "no answer: %r" % e))
                self._stop.wait(0.1)
                continue
            r = v.reason(img)
            with self.lock:
                if v.http != 200 or v.allowed is None:
                    self.errors.append((img, repr(v)))
                elif v.allowed is False and r in ("", "INTERNAL", "TIMEOUT", "UNKNOWN"):
                    self.errors.append((img, repr(v)))
                self.log.append((time.monotonic(), img, v.allowed, r))
            self._stop.wait(0.02)

    def wait_more(self, n=3, timeout=CHANGE_TIMEOUT):
        """Waits until n more admissions were answered (so they overlap the current state)."""
        with self.lock:
            target = len(self.log) + n
        ok, _ = eventually(lambda: len(self.log) >= target or self.errors, timeout, 0.02)
        return ok

    def since(self, t, image):
        with self.lock:
            return [(a, r) for (tt, im, a, r) in self.log if tt >= t and im == image]

    def stop(self):
        self._stop.set()
        self.thread.join(40)


# ---------------------------------------------------------------------------------------------
# sigil serve --kube


class KubeSigil(harness.SigilServer):
    """`sigil serve --kube` on 127.0.0.1 (TLS from a CA made at test time). Unlike
    harness.SigilServer it can start without waiting for /readyz."""

    def __init__(self, name, kubeconfig=None, config_file=None, namespace=SIGIL_NS,
                 policies=(), extra_args=(), wait_ready=True, ready_timeout=30.0,
                 resync=RESYNC):
        self.dir = harness.work_dir("sigil-" + name)
        tls = registry.write_tls_material(self.dir)
        self.ca = tls["ca.crt"]
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.log = os.path.join(self.dir, "sigil.log")
        self.proc = None
        last = ""
        for _attempt in range(5):
            self.port = harness.free_port()
            args = [harness.sigil_bin(), "serve", "--listen", "127.0.0.1:%d" % self.port,
                    "--tls-cert", tls["server.crt"], "--tls-key", tls["server.key"]]
            if config_file:
                args += ["--config", config_file]
            else:
                args += ["--kube", "--kubeconfig", kubeconfig, "--kube-resync", resync]
                if namespace:
                    args += ["--kube-namespace", namespace]
            for p in policies:
                args += ["--policy", p]
            args += list(extra_args)
            self.args = args
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, start_new_session=True)
            if self._wait_up(20.0):
                break
            last = harness.tail(self.log)
            self.stop()
            if "in use" not in last:
                raise AssertionError("sigil serve --kube did not start: %s\nlog tail:\n%s" %
                                     (" ".join(self.args), last))
        else:
            raise AssertionError("sigil serve --kube: no free port\n" + last)
        if wait_ready and not self.wait_ready(ready_timeout):
            tail = self.log_tail()
            self.stop()
            raise AssertionError("sigil serve --kube never became ready (/readyz 200) within "
                                 "%.0f s: %s\nlog tail:\n%s" % (ready_timeout,
                                                               " ".join(self.args), tail))

    def _wait_up(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.readyz(path="/healthz") == 200:
                return True
            time.sleep(0.05)
        return False

    def readyz(self, path="/readyz"):
        try:
            return self.get(path, timeout=2)[0]
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return None

    def wait_ready(self, timeout):
        ok, _ = eventually(lambda: self.proc.poll() is None and self.readyz() == 200, timeout,
                           0.05)
        return ok

    def validate_policy(self, review_doc):
        st, body = self.post_raw(json.dumps(review_doc).encode(), "/validate-policy")
        if st != 200:
            return st, None
        return st, json.loads(body)["response"]


def policy_review(obj, operation="CREATE"):
    """The AdmissionReview the API server sends for a sigil.dev object (as stored: with the
    server's metadata)."""
    kind = obj["kind"]
    plural = {CIP: "clusterimagepolicies", IP: "imagepolicies", TR: "trustroots"}[kind]
    gvk = {"group": "sigil.dev", "version": "v1alpha1", "kind": kind}
    gvr = {"group": "sigil.dev", "version": "v1alpha1", "resource": plural}
    obj = json.loads(json.dumps(obj))
    md = obj["metadata"]
    md.setdefault("uid", str(uuid.uuid4()))
    md.setdefault("generation", 1)
    md.setdefault("creationTimestamp", fake_kube.now_rfc3339())
    md.setdefault("managedFields", [{"manager": "kubectl-client-side-apply",
                                     "operation": "Update", "apiVersion": API,
                                     "time": md["creationTimestamp"], "fieldsType": "FieldsV1",
                                     "fieldsV1": {"f:spec": {}}}])
    req = {"uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk,
           "requestResource": gvr, "name": md["name"], "operation": operation,
           "userInfo": {"username": "kubernetes-admin",
                        "groups": ["system:masters", "system:authenticated"]},
           "object": obj, "oldObject": None, "dryRun": False,
           "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1",
                       "fieldManager": "kubectl-client-side-apply"}}
    if md.get("namespace"):
        req["namespace"] = md["namespace"]
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": req}


class KubeCase(unittest.TestCase):
    """Helpers; subclasses set cls.fk (FakeKube) and cls.sigil (KubeSigil)."""

    maxDiff = None

    @classmethod
    def start_fake(cls, name, token="sigil-kube-token", token_file=False):
        cls.fk = fake_kube.FakeKube(token=token, workdir=harness.work_dir("fake-kube-" + name))
        cls.fk.start()
        cls.addClassCleanup(cls.fk.stop)
        d = harness.work_dir("kubeconfig-" + name)
        cls.token_file = os.path.join(d, "token") if token_file else None
        cls.kubeconfig = cls.fk.write_kubeconfig(os.path.join(d, "kubeconfig"),
                                                 token_file=cls.token_file)

    @classmethod
    def start_sigil(cls, name, **kw):
        kw.setdefault("kubeconfig", cls.kubeconfig)
        extra = list(kw.pop("extra_args", ())) + ["--insecure-registry", W.addr]
        cls.sigil = KubeSigil(name, extra_args=extra, **kw)
        cls.addClassCleanup(cls.sigil.stop)

    def diag(self):
        reqs = self.fk.requests()[-25:]
        lines = ["%s %s%s -> %s" % (r["method"], r["path"],
                                    ("?" + "&".join("%s=%s" % kv for kv in r["query"].items()))
                                    if r["query"] else "", r["code"]) for r in reqs]
        return ("\n--- fake API: stats %s; last requests:\n  %s\n--- sigil log tail:\n%s" %
                (self.fk.stats, "\n  ".join(lines), self.sigil.log_tail()))

    def verdict(self, image, **pod):
        v = admit(self.sigil, image, **pod)
        self.assertEqual(v.http, 200, repr(v) + self.diag())
        return v

    def wait_verdict(self, image, allowed, reason=None, timeout=CHANGE_TIMEOUT, **pod):
        """Polls until the pod with `image` gets the verdict; returns it."""
        def check():
            v = admit(self.sigil, image, **pod)
            if v.http == 200 and v.allowed is allowed and (reason is None or
                                                           v.reason(image) == reason):
                return v
            check.last = v
            return None
        check.last = None
        ok, v = eventually(check, timeout, 0.1)
        if not ok:
            self.fail("%s (pod %s) never got allowed=%s%s within %.0f s; last: %r%s" % (
                image, pod or "default", allowed, " " + reason if reason else "", timeout,
                check.last, self.diag()))
        return v

    def assertVerdict(self, image, allowed, reason=None, **pod):
        v = self.verdict(image, **pod)
        self.assertIs(v.allowed, allowed, repr(v) + self.diag())
        if reason is not None:
            self.assertEqual(v.reason(image), reason, repr(v))
        return v

    def wait_ready_condition(self, kind, name, ns=None, status="True", reasons=("Compiled",),
                             generation=None, timeout=CHANGE_TIMEOUT):
        """Polls the object's status until its Ready condition has `status`, a reason in
        `reasons` and (status.observedGeneration and the condition's observedGeneration when
        present) == generation (default: the object's metadata.generation)."""
        if isinstance(reasons, str):
            reasons = (reasons,)

        def check():
            o = self.fk.get(kind, name, ns)
            if o is None:
                return None
            gen = generation if generation is not None else o["metadata"]["generation"]
            st = o.get("status") or {}
            c = self.fk.ready_condition(kind, name, ns)
            check.last = st
            if not c or c.get("status") != status or c.get("reason") not in reasons:
                return None
            if st.get("observedGeneration") != gen:
                return None
            if "observedGeneration" in c and c["observedGeneration"] != gen:
                return None
            return c
        check.last = None
        ok, c = eventually(check, timeout, 0.1)
        if not ok:
            self.fail("%s %s%s: Ready never became %s/%s at generation %s within %.0f s; "
                      "status: %s%s" % (kind, ns + "/" if ns else "", name, status,
                                        "|".join(reasons), generation, timeout,
                                        json.dumps(check.last), self.diag()))
        return c


# ---------------------------------------------------------------------------------------------
# readiness


class KubeReadinessTest(KubeCase):
    """/readyz is 200 only once clusterimagepolicies, imagepolicies and trustroots have been
    listed and compiled, and then the listed policies are already enforced. These sigils have
    no --policy at all; one is configured by the config file's `kube:` section."""

    @classmethod
    def setUpClass(cls):
        cls.start_fake("ready")
        cls.fk.apply(CIP, cip("ready-images", [W.glob("ready/**")],
                              [key_auth("key-a", W.pub("a"))]))
        d = harness.work_dir("kube-ready-config")
        cls.config = os.path.join(d, "config.yaml")
        with open(cls.config, "w") as f:
            f.write("kube:\n  enabled: true\n  kubeconfig: %s\n  namespace: %s\n" % (
                json.dumps(cls.kubeconfig), SIGIL_NS))

    def start(self, name, **kw):
        kw.setdefault("kubeconfig", self.kubeconfig)
        self.sigil = KubeSigil(name, wait_ready=False,
                               extra_args=["--insecure-registry", W.addr], **kw)
        self.addCleanup(self.sigil.stop)
        return self.sigil

    def test_config_file_form(self):
        s = self.start("kube-ready-config", config_file=self.config, kubeconfig=None)
        self.assertTrue(s.wait_ready(30), "/readyz never 200" + self.diag())
        self.assertVerdict(W.ref("ready/a"), True)
        self.assertVerdict(W.ref("ready/unsigned"), False, "NOT_SIGNED")

    def test_not_ready_until_every_list_is_loaded(self):
        held = self.fk.hold(path=IPS, method="GET", watch=False)
        self.addCleanup(held.release)
        s = self.start("kube-ready-held")
        self.assertTrue(held.wait_arrived(1, 20), "sigil never listed imagepolicies across "
                        "all namespaces (GET %s)%s" % (IPS, self.diag()))
        # The ImagePolicy list is unanswered: whatever else sigil loaded, it is not ready.
        for _ in range(10):
            self.assertEqual(s.readyz(), 503, self.diag())
            time.sleep(0.05)
        held.release()
        self.assertTrue(s.wait_ready(20), "/readyz never 200 after the lists were answered" +
                        self.diag())
        # Ready means compiled: the very first admission enforces the listed policy.
        self.assertVerdict(W.ref("ready/a"), True)
        self.assertVerdict(W.ref("ready/unsigned"), False, "NOT_SIGNED")
        for p in (CIPS, IPS, TRS):
            self.assertGreaterEqual(self.fk.count(p, watch=False), 1, p)
        self.wait_ready_condition(CIP, "ready-images")

    def test_failed_lists_are_retried(self):
        before = self.fk.count(TRS, watch=False)
        self.fk.fail_next(2, code=500, path=TRS, watch=False)
        s = self.start("kube-ready-retry")
        self.assertTrue(s.wait_ready(45), "/readyz never 200 after two failed trustroot lists"
                        + self.diag())
        codes = [r["code"] for r in self.fk.requests(TRS, watch=False)][before:]
        self.assertEqual(codes[:2], [500, 500], codes)
        self.assertIn(200, codes[2:], codes)
        self.assertVerdict(W.ref("ready/a"), True)


# ---------------------------------------------------------------------------------------------
# a list longer than a page


class KubePagingTest(KubeCase):
    """More ClusterImagePolicies than one page (sigil asks limit=500), and the continue token
    expires between the pages (410): sigil lists again from the top and has them all."""

    N = 520

    @classmethod
    def setUpClass(cls):
        cls.start_fake("paging")
        ka = key_auth("key-a", W.pub("a"))
        for i in range(cls.N):
            cls.fk.apply(CIP, cip("pg-%03d" % i, [W.glob("paging/none-%03d" % i)], [ka]))
        cls.fk.apply(CIP, cip("pg-zzz-last", [W.glob("paging/**")], [ka]))  # on page 2
        cls.fk.expire_next_continue = True
        cls.start_sigil("kube-paging", ready_timeout=60)

    def test_every_page_is_loaded_even_after_an_expired_continue(self):
        # Right after the sync, while sigil writes the 521 statuses: its reads for this
        # admission (the pod's ServiceAccount) are not queued behind them (KubeStatusWritesTest).
        self.assertVerdict(W.ref("paging/a"), True)
        self.wait_ready_condition(CIP, "pg-zzz-last", timeout=60)
        lists = self.fk.requests(CIPS, watch=False)
        firsts = [r for r in lists if not r["query"].get("continue")]
        conts = [r for r in lists if r["query"].get("continue")]
        self.assertTrue(all(r["query"].get("limit") for r in lists), lists[:3])
        self.assertEqual([r["code"] for r in conts][:1], [410], [r["code"] for r in lists])
        self.assertIn(200, [r["code"] for r in conts[1:]])
        self.assertGreaterEqual(len(firsts), 2, "the list did not start over after 410")
        self.assertFalse(self.fk.expire_next_continue)


# ---------------------------------------------------------------------------------------------
# writing many statuses


class KubeStatusWritesTest(KubeCase):
    """Many policies and a slow API server (each status PATCH takes 20 ms). sigil writes their
    statuses a few at a time and off its compile strand, so an admission's reads are not queued
    behind hundreds of PATCHes; its own writes coming back as MODIFIED (no spec changed) do not
    recompile the set; a status another writer changed is put right without a compile. The
    resync is 10 minutes, so no compile or status write here comes from it."""

    N = 120

    @classmethod
    def setUpClass(cls):
        cls.start_fake("statuses")
        ka = key_auth("key-a", W.pub("a"))
        for i in range(cls.N):
            cls.fk.apply(CIP, cip("st-%03d" % i, [W.glob("statuses/none-%03d" % i)], [ka]))
        cls.fk.apply(CIP, cip("st-zzz", [W.glob("statuses/**")], [ka]))
        cls.fk.status_patch_delay = 0.02
        cls.metrics_port = harness.free_port()
        cls.start_sigil("kube-statuses", resync="10m",
                        extra_args=["--metrics-listen", "127.0.0.1:%d" % cls.metrics_port])

    def compiles(self):
        samples, types = scrape_port(self.metrics_port)
        self.assertEqual(types.get("sigil_policy_compiles_total"), "counter")
        return value(samples, "sigil_policy_compiles_total")

    def wait_all_ready(self):
        for i in range(self.N):
            self.wait_ready_condition(CIP, "st-%03d" % i)
        self.wait_ready_condition(CIP, "st-zzz")

    def test_0_sync_age_is_exported_per_resource(self):
        self.assertVerdict(W.ref("statuses/a"), True)
        samples, types = scrape_port(self.metrics_port)
        self.assertEqual(types.get("sigil_policy_sync_age_seconds"), "gauge")
        for resource in ("clusterimagepolicies", "imagepolicies", "trustroots"):
            age = value(samples, "sigil_policy_sync_age_seconds", resource=resource)
            # Listed, and watched since: the copy is current (a watch renews it as it ends).
            self.assertGreaterEqual(age, 0, resource)
            self.assertLess(age, 600, resource)

    def test_1_statuses_are_written_a_few_at_a_time(self):
        self.assertVerdict(W.ref("statuses/a"), True)
        self.wait_all_ready()
        in_flight = self.fk.stats["status_patches_max_in_flight"]
        self.assertLessEqual(in_flight, 4, "status PATCHes in flight at once (ClusterOptions::"
                             "status_writers)")
        self.assertGreaterEqual(in_flight, 2, "the writers do not run concurrently")

    def test_2_our_own_status_writes_recompile_nothing(self):
        self.wait_all_ready()
        time.sleep(1.0)  # the last writes' MODIFIED events arrive
        # The first compile once all three resources are listed, perhaps one more for a
        # snapshot that arrived during it; none for the 121 statuses coming back.
        first = self.compiles()
        self.assertLessEqual(first, 3, "compiles after the sync and its %d status writes" %
                             (self.N + 1))
        time.sleep(1.0)
        self.assertEqual(self.compiles(), first)

    def test_3_another_writers_status_is_put_right_without_a_compile(self):
        self.wait_all_ready()
        before = self.compiles()
        patches = len(self.fk.patches(CIP, "st-005"))
        self.fk.set_status(CIP, "st-005", {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "Overwritten",
                            "message": "another writer", "observedGeneration": 1,
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
        self.wait_ready_condition(CIP, "st-005", timeout=10)
        self.assertEqual(len(self.fk.patches(CIP, "st-005")), patches + 1)
        self.assertEqual(self.compiles(), before)

    def test_4_a_label_is_no_compile_a_spec_change_is(self):
        self.wait_all_ready()
        ka = key_auth("key-a", W.pub("a"))
        before = self.compiles()
        self.fk.apply(CIP, cip("st-010", [W.glob("statuses/none-010")], [ka],
                               labels={"team": "x"}))
        time.sleep(1.0)  # its MODIFIED event arrives (and would be compiled)
        self.assertEqual(self.compiles(), before, "a label change recompiled the set")
        self.fk.apply(CIP, cip("st-010", [W.glob("statuses/other-010")], [ka],
                               labels={"team": "x"}))
        self.wait_ready_condition(CIP, "st-010", generation=2)
        self.assertEqual(self.compiles(), before + 1)


    def test_5_an_edit_keeps_the_verdicts_of_images_it_does_not_match(self):
        """Verdicts are keyed by the matched policies' compiled content, not by the policy set:
        editing one policy (a tenant's own, say) must not send every other image back to the
        registry, nor, during an outage, retire its last-known-good allow."""
        self.wait_all_ready()
        img = W.ref("statuses/a")  # matched by st-zzz only
        ka = key_auth("key-a", W.pub("a"))
        self.assertVerdict(img, True)
        samples, _ = scrape_port(self.metrics_port)
        hits = value(samples, "sigil_verdict_cache_hits_total")
        misses = value(samples, "sigil_verdict_cache_misses_total")
        compiles = self.compiles()
        # Another policy's spec changes: a new policy set is compiled and published.
        self.fk.apply(CIP, cip("st-011", [W.glob("statuses/else-011")], [ka]))
        self.wait_ready_condition(CIP, "st-011", generation=2)
        self.assertEqual(self.compiles(), compiles + 1)
        self.assertVerdict(img, True)
        samples, _ = scrape_port(self.metrics_port)
        self.assertEqual(value(samples, "sigil_verdict_cache_misses_total"), misses,
                         "an edit of a policy the image does not match retired its verdict")
        self.assertEqual(value(samples, "sigil_verdict_cache_hits_total"), hits + 1)
        # The policy it matches changes: verified anew.
        self.fk.apply(CIP, cip("st-zzz", [W.glob("statuses/**"), W.glob("statuses-more/**")],
                               [ka]))
        self.wait_ready_condition(CIP, "st-zzz", generation=2)
        self.assertVerdict(img, True)
        samples, _ = scrape_port(self.metrics_port)
        self.assertEqual(value(samples, "sigil_verdict_cache_misses_total"), misses + 1)


# ---------------------------------------------------------------------------------------------
# the self-managed serving certificate (the chart's default, tls.mode=self)


class _ServiceConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port that verifies the certificate for `hostname` (the Service's
    name, as the API server does), not for the address it connects to."""

    def __init__(self, port, ctx, hostname, timeout):
        super().__init__("127.0.0.1", port, context=ctx, timeout=timeout)
        self._service_name = hostname

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._service_name)


class SelfCertSigil(KubeSigil):
    """`sigil serve --config` with selfCert and kube on: no --tls-cert. Until trust() is given
    the CA sigil published, nothing can verify it."""

    def __init__(self, name, kubeconfig, service="sigil", secret="sigil-self-tls"):
        self.dir = harness.work_dir("sigil-" + name)
        self.log = os.path.join(self.dir, "sigil.log")
        self.port = harness.free_port()
        self.ctx = None
        self.hostname = "%s.%s.svc" % (service, SIGIL_NS)
        config = os.path.join(self.dir, "config.yaml")
        with open(config, "w") as f:
            json.dump({  # YAML is a superset of JSON
                "listen": "127.0.0.1:%d" % self.port,
                "kube": {"enabled": True, "kubeconfig": kubeconfig, "namespace": SIGIL_NS,
                         "resync": RESYNC},
                "selfCert": {"enabled": True, "secretName": secret, "serviceName": service,
                             "validatingWebhooks": ["sigil"], "mutatingWebhooks": ["sigil"]},
            }, f)
        self.args = [harness.sigil_bin(), "serve", "--config", config,
                     "--insecure-registry", W.addr]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)

    def trust(self, ca_pem, hostname=None):
        self.ctx = ssl.create_default_context(cadata=ca_pem)
        if hostname:
            self.hostname = hostname

    def _conn(self, timeout):
        return _ServiceConnection(self.port, self.ctx, self.hostname, timeout)

    def peer_certificate(self):
        c = self._conn(5)
        try:
            c.connect()
            return c.sock.getpeercert(binary_form=True)
        finally:
            c.close()


class KubeSelfCertTest(KubeCase):
    """The chart's default TLS mode against the fake API server. sigil mints its CA and serving
    certificate into a Secret it creates, publishes the CA as the caBundle of its webhook
    configurations, and serves that certificate: a client trusting only the published caBundle
    and naming the Service (as the API server does) verifies it and gets admissions answered. A
    second replica uses the Secret as it is: no second CA, the bundle unchanged, the same
    certificate served."""

    SECRET = "sigil-self-tls"

    @classmethod
    def setUpClass(cls):
        cls.start_fake("selfcert")
        cls.fk.apply(CIP, cip("sc-images", [W.glob("selfcert/**")],
                              [key_auth("key-a", W.pub("a"))]))
        for kind, path in (("ValidatingWebhookConfiguration", "/validate"),
                           ("MutatingWebhookConfiguration", "/mutate")):
            cls.fk.apply(kind, {"metadata": {"name": "sigil"}, "webhooks": [{
                "name": "pods.sigil.dev", "admissionReviewVersions": ["v1"],
                "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 10,
                "clientConfig": {"service": {"namespace": SIGIL_NS, "name": "sigil",
                                             "path": path, "port": 443}},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                           "operations": ["CREATE", "UPDATE"]}]}]})

    def start_replica(self, name):
        s = SelfCertSigil(name, self.kubeconfig, secret=self.SECRET)
        self.addCleanup(s.stop)
        return s

    def bundle(self, kind):
        o = self.fk.get(kind, "sigil") or {}
        return ((o.get("webhooks") or [{}])[0].get("clientConfig") or {}).get("caBundle", "")

    def wait_published(self, sigil):
        def published():
            return self.fk.get("Secret", self.SECRET, SIGIL_NS) and \
                self.bundle("ValidatingWebhookConfiguration") and \
                self.bundle("MutatingWebhookConfiguration")
        ok, _ = eventually(published, 30)
        self.assertTrue(ok, "no Secret and caBundle within 30 s\n" + sigil.log_tail())

    def test_the_published_ca_verifies_the_served_certificate(self):
        first = self.start_replica("selfcert-1")
        self.wait_published(first)
        secret = self.fk.get("Secret", self.SECRET, SIGIL_NS)
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        for k in ("tls.crt", "tls.key", "ca.crt", "ca.key"):
            self.assertIn(k, data)
        bundle = self.bundle("ValidatingWebhookConfiguration")
        self.assertEqual(self.bundle("MutatingWebhookConfiguration"), bundle)
        # Exactly the Secret's CA (one CA, no rollover under way), as strict base64.
        self.assertEqual(bundle, base64.b64encode(data["ca.crt"]).decode())
        ca_pem = data["ca.crt"].decode()

        # What the API server does: trust the caBundle alone, name the Service.
        first.trust(ca_pem)
        self.assertTrue(first.wait_ready(30), "/readyz never 200 over the published CA\n" +
                        first.log_tail())
        self.assertVerdict_on(first, W.ref("selfcert/a"), True)
        self.assertVerdict_on(first, W.ref("selfcert/unsigned"), False)
        # Both names of the Service are on the certificate.
        first.trust(ca_pem, "sigil.%s.svc.cluster.local" % SIGIL_NS)
        self.assertEqual(first.readyz(), 200)
        # Any other name is refused, as is a client that does not trust the published CA.
        first.trust(ca_pem, "other.%s.svc" % SIGIL_NS)
        self.assertIsNone(first.readyz())
        first.trust(self.fk.ca_pem.decode(), "sigil.%s.svc" % SIGIL_NS)  # another CA
        self.assertIsNone(first.readyz())
        first.trust(ca_pem, "sigil.%s.svc" % SIGIL_NS)
        served = first.peer_certificate()

        # A second replica: the Secret as it is, no new CA, the same certificate.
        creates = self.fk.stats["creates"]
        rv = secret["metadata"]["resourceVersion"]
        second = self.start_replica("selfcert-2")
        second.trust(ca_pem)
        self.assertTrue(second.wait_ready(30), "the second replica never ready over the "
                        "published CA\n" + second.log_tail())
        self.assertEqual(second.peer_certificate(), served)
        self.assertVerdict_on(second, W.ref("selfcert/a"), True)
        self.assertEqual(self.fk.stats["creates"], creates)
        self.assertEqual(self.fk.get("Secret", self.SECRET, SIGIL_NS)["metadata"]
                         ["resourceVersion"], rv)
        self.assertEqual(self.bundle("ValidatingWebhookConfiguration"), bundle)

    def assertVerdict_on(self, sigil, image, allowed):
        v = admit(sigil, image)
        self.assertEqual(v.http, 200, repr(v) + "\n" + sigil.log_tail())
        self.assertIs(v.allowed, allowed, repr(v))


# ---------------------------------------------------------------------------------------------
# policies from the cluster


class KubePolicyTest(KubeCase):
    """One sigil watching one fake cluster; each test uses its own policies and repositories
    (and deletes its objects), so they can share the process."""

    @classmethod
    def setUpClass(cls):
        cls.start_fake("policy")
        pol_dir = os.path.join(harness.work_dir("kube-file-policies"), "policies")
        harness.write_policy(pol_dir, "file-images", W.glob("file/**"), {"key-a": W.pub("a")})
        cls.start_sigil("kube-policy", policies=[pol_dir])

    def tearDown(self):
        for p in self.fk.all_patches():
            self.assertNotIn(p["code"], (400, 415, 422),
                             "sigil sent a status patch the API server refuses: %s" %
                             json.dumps(p))

    def own(self, kind, obj):
        """apply + delete at the end of the test."""
        stored = self.fk.apply(kind, obj)
        md = obj["metadata"]
        self.addCleanup(self.fk.delete, kind, md["name"], md.get("namespace"))
        return stored

    # ---- the lifecycle of one policy ----------------------------------------------------

    def test_policy_created_changed_deleted_while_admissions_flow(self):
        A, B, T = W.ref("life/app-a"), W.ref("life/app-b"), W.ref("life/tool-a")
        traffic = Traffic(self.sigil, [A, B, T]).start()
        self.addCleanup(traffic.stop)
        ka, kb = key_auth("key-a", W.pub("a")), key_auth("key-b", W.pub("b"))

        self.wait_verdict(A, False, "NO_MATCHING_POLICY")
        self.assertTrue(traffic.wait_more())
        # created
        self.fk.apply(CIP, cip("life", [W.glob("life/app-*")], [ka]))
        self.addCleanup(self.fk.delete, CIP, "life")
        self.wait_verdict(A, True)
        self.wait_verdict(B, False, "BAD_SIGNATURE")
        self.assertVerdict(T, False, "NO_MATCHING_POLICY")
        self.wait_ready_condition(CIP, "life", generation=1)
        self.assertTrue(traffic.wait_more())
        # a new key
        self.fk.apply(CIP, cip("life", [W.glob("life/app-*")], [ka, kb]))
        self.wait_verdict(B, True)
        self.assertVerdict(A, True)
        self.assertVerdict(T, False, "NO_MATCHING_POLICY")
        self.wait_ready_condition(CIP, "life", generation=2)
        self.assertTrue(traffic.wait_more())
        # a new glob
        self.fk.apply(CIP, cip("life", [W.glob("life/app-*"), W.glob("life/tool-*")], [ka, kb]))
        self.wait_verdict(T, True)
        self.wait_ready_condition(CIP, "life", generation=3)
        self.assertTrue(traffic.wait_more(6))
        # key a revoked and key b kept, in one change: swapped atomically, so A flips once
        # (allowed -> denied) and B never stops being allowed
        mark = time.monotonic()
        self.fk.apply(CIP, cip("life", [W.glob("life/app-*"), W.glob("life/tool-*")], [kb]))
        self.wait_verdict(A, False, "BAD_SIGNATURE")
        self.wait_verdict(T, False, "BAD_SIGNATURE")
        self.assertVerdict(B, True)
        self.wait_ready_condition(CIP, "life", generation=4)
        self.assertTrue(traffic.wait_more(6))
        a_seq = [a for a, _ in traffic.since(mark, A)]
        if False in a_seq:
            self.assertNotIn(True, a_seq[a_seq.index(False):],
                             "verdicts for %s flip-flopped across one change: %s" % (A, a_seq))
        self.assertNotIn(False, [a for a, _ in traffic.since(mark, B)],
                         "%s was denied while the only change kept its key" % B)
        # deleted
        self.fk.delete(CIP, "life")
        for img in (A, B, T):
            self.wait_verdict(img, False, "NO_MATCHING_POLICY")
        self.assertTrue(traffic.wait_more())
        traffic.stop()
        self.assertEqual(traffic.errors, [], "admissions failed while policies changed")
        self.assertGreaterEqual(len(traffic.log), 20)

    def test_denial_shape(self):
        self.own(CIP, cip("shape-policy", [W.glob("shape/**")], [key_auth("key-a", W.pub("a"))]))
        other, unsigned, nomatch = (W.ref("shape/app-b"), W.ref("shape/unsigned"),
                                    W.ref("shapenone/app-a"))
        v = self.wait_verdict(other, False, "BAD_SIGNATURE")
        self.assertEqual(v.code, 403, repr(v))
        self.assertIn(other, v.message)
        self.assertIn("shape-policy", v.message)
        self.assertNotIn("\n", v.message)
        self.assertRegex(v.entry(other), r"^denied BAD_SIGNATURE sha256:[0-9a-f]{64}$")
        self.assertEqual(v.entry(other).split()[-1], W.digest["shape/app-b"])
        v = self.verdict([other, unsigned, nomatch])
        self.assertIs(v.allowed, False)
        self.assertNotIn("\n", v.message)
        for img in (other, unsigned, nomatch):
            self.assertIn(img, v.message)
        self.assertRegex(v.entry(unsigned), r"^denied NOT_SIGNED sha256:[0-9a-f]{64}$")
        self.assertTrue(v.entry(nomatch).startswith("denied NO_MATCHING_POLICY"), v.images)
        self.assertEqual(set(v.images), {other, unsigned, nomatch})

    def test_file_policies_beside_cluster_policies(self):
        self.assertVerdict(W.ref("file/a"), True)
        self.assertVerdict(W.ref("file/unsigned"), False, "NOT_SIGNED")

    # ---- broken policies ----------------------------------------------------------------

    def test_broken_policy_next_to_good_ones(self):
        bad_glob = cip("br-bad-glob", [W.glob("br/broken-*"), W.glob("br/bad glob/**")],
                       [key_auth("key-a", W.pub("a"))])
        bad_key = cip("br-bad-key", [W.glob("br/badkey-*")], [key_auth("key-x", BAD_PEM)])
        good = cip("br-good", [W.glob("br/good-*")], [key_auth("key-a", W.pub("a"))])
        self.own(CIP, bad_glob)
        self.own(CIP, bad_key)
        self.own(CIP, good)
        self.wait_ready_condition(CIP, "br-good", generation=1)
        c = self.wait_ready_condition(CIP, "br-bad-glob", status="False", reasons="Invalid",
                                      generation=1)
        self.assertIn("spec.images[1].glob", c["message"])
        self.assertIn("invalid glob", c["message"])
        c = self.wait_ready_condition(CIP, "br-bad-key", status="False", reasons="Invalid",
                                      generation=1)
        self.assertIn("spec.authorities[0].key", c["message"])
        # the good one is enforced; the one whose globs cannot be read has nothing to match;
        # the one whose key is broken never compiled, so it denies what it matches
        self.assertVerdict(W.ref("br/good-a"), True)
        self.assertVerdict(W.ref("br/good-unsigned"), False, "NOT_SIGNED")
        self.assertVerdict(W.ref("br/broken-a"), False, "NO_MATCHING_POLICY")
        v = self.assertVerdict(W.ref("br/badkey-a"), False, "POLICY_UNAVAILABLE")
        self.assertIn("policy br-bad-key: the policy cannot be enforced yet: spec.authorities[0].key",
                      v.message)

    def test_valid_then_invalid_keeps_last_good_generation(self):
        ka, kb = key_auth("key-a", W.pub("a")), key_auth("key-b", W.pub("b"))
        self.own(CIP, cip("sticky", [W.glob("sticky/**")], [ka]))
        self.wait_ready_condition(CIP, "sticky", generation=1)
        self.wait_verdict(W.ref("sticky/a"), True)
        self.assertVerdict(W.ref("sticky/b"), False, "BAD_SIGNATURE")
        # generation 2 would trust key b, but one of its globs is invalid: refused whole
        self.fk.apply(CIP, cip("sticky", [W.glob("sticky/**"), W.glob("sticky/bad glob")], [kb]))
        c = self.wait_ready_condition(CIP, "sticky", status="False", reasons="Invalid",
                                      generation=2)
        self.assertIn("spec.images[1].glob", c["message"])
        self.assertTrue(re.search(r"generation\W*1\b|previous|earlier|last good", c["message"]),
                        "the message does not say that the earlier generation stays in force: "
                        + c["message"])
        for _ in range(3):
            self.assertVerdict(W.ref("sticky/a"), True)
            self.assertVerdict(W.ref("sticky/b"), False, "BAD_SIGNATURE")
        # fixed in generation 3: now that one is enforced
        self.fk.apply(CIP, cip("sticky", [W.glob("sticky/**")], [kb]))
        self.wait_ready_condition(CIP, "sticky", generation=3)
        self.wait_verdict(W.ref("sticky/b"), True)
        self.assertVerdict(W.ref("sticky/a"), False, "BAD_SIGNATURE")

    # ---- keys from Secrets --------------------------------------------------------------

    def test_secret_ref_keys(self):
        fk = self.fk
        fk.apply("Secret", fake_kube.secret_object("cosign-a", SIGIL_NS,
                                                   {"cosign.pub": W.pub("a")}))
        fk.apply("Secret", fake_kube.secret_object("only-key", "keys-ns",
                                                   {"release.pem": W.pub("b")}))
        fk.apply("Secret", fake_kube.secret_object("two-keys", SIGIL_NS,
                                                   {"a.pub": W.pub("a"), "b.pub": W.pub("b")}))
        self.own(CIP, cip("sref-default", [W.glob("sref/a-*")],
                          [secret_auth("release", "cosign-a")]))
        self.own(CIP, cip("sref-ns", [W.glob("sref/b-*")],
                          [secret_auth("release", "only-key", "keys-ns")]))
        self.own(CIP, cip("sref-missing", [W.glob("sref/m-*")],
                          [secret_auth("release", "not-yet")]))
        self.own(CIP, cip("sref-ambiguous", [W.glob("sref/x-*")],
                          [secret_auth("release", "two-keys")]))
        self.wait_ready_condition(CIP, "sref-default")
        self.wait_ready_condition(CIP, "sref-ns")
        c = self.wait_ready_condition(CIP, "sref-missing", status="False",
                                      reasons="SecretUnavailable")
        self.assertIn("not-yet", c["message"])
        self.wait_ready_condition(CIP, "sref-ambiguous", status="False",
                                  reasons=("SecretUnavailable", "Invalid"))
        # a secretRef without namespace is read from --kube-namespace
        self.assertGreaterEqual(fk.count("/api/v1/namespaces/%s/secrets/cosign-a" % SIGIL_NS), 1)
        self.assertGreaterEqual(fk.count("/api/v1/namespaces/keys-ns/secrets/only-key"), 1)
        self.assertEqual(fk.count("/api/v1/namespaces/default/secrets/cosign-a"), 0)
        self.assertVerdict(W.ref("sref/a-img"), True)
        self.assertVerdict(W.ref("sref/a-img-b"), False, "BAD_SIGNATURE")
        self.assertVerdict(W.ref("sref/b-img"), True)
        v = self.assertVerdict(W.ref("sref/m-img"), False, "POLICY_UNAVAILABLE")
        self.assertIn("the Secret %s/not-yet does not exist" % SIGIL_NS, v.message)
        self.assertVerdict(W.ref("sref/x-img"), False, "POLICY_UNAVAILABLE")
        # Secrets are re-read: the missing one appears, the other one's key is rotated
        t0 = time.monotonic()
        fk.apply("Secret", fake_kube.secret_object("not-yet", SIGIL_NS,
                                                   {"cosign.pub": W.pub("a")}))
        fk.apply("Secret", fake_kube.secret_object("cosign-a", SIGIL_NS,
                                                   {"cosign.pub": W.pub("b")}))
        self.wait_verdict(W.ref("sref/m-img"), True, timeout=SECRET_REFRESH_TIMEOUT)
        t_appeared = time.monotonic() - t0
        self.wait_verdict(W.ref("sref/a-img-b"), True, timeout=SECRET_REFRESH_TIMEOUT)
        t_rotated = time.monotonic() - t0
        self.wait_verdict(W.ref("sref/a-img"), False, "BAD_SIGNATURE",
                          timeout=SECRET_REFRESH_TIMEOUT)
        self.wait_ready_condition(CIP, "sref-missing", timeout=SECRET_REFRESH_TIMEOUT)
        print("\n  [Secret re-read: created one used after %.1f s, rotated one after %.1f s] "
              % (t_appeared, t_rotated), end="", flush=True)
        # The key Secret is deleted: its key is revoked, not kept as the last good generation.
        fk.delete("Secret", "not-yet", SIGIL_NS)
        v = self.wait_verdict(W.ref("sref/m-img"), False, "POLICY_UNAVAILABLE",
                              timeout=SECRET_REFRESH_TIMEOUT)
        self.assertIn("the Secret %s/not-yet does not exist" % SIGIL_NS, v.message)
        c = self.wait_ready_condition(CIP, "sref-missing", status="False",
                                      reasons="SecretUnavailable", timeout=SECRET_REFRESH_TIMEOUT)
        self.assertNotIn("stays in force", c["message"])

    # ---- policies that cannot be compiled ------------------------------------------------
    # Each has a static-pass baseline for the same images beside it: were the broken policy
    # to drop out, its images would be admitted.

    def warnings(self, v):
        return " ".join((v.resp or {}).get("warnings") or [])

    def test_missing_secret_denies_what_the_policy_matches(self):
        self.own(CIP, cip("ua404-baseline", [W.glob("ua404/**")], [STATIC_PASS]))
        self.own(CIP, cip("ua404-prod", [W.glob("ua404/**")],
                          [secret_auth("release", "ua404-absent")]))
        c = self.wait_ready_condition(CIP, "ua404-prod", status="False",
                                      reasons="SecretUnavailable")
        self.assertIn("ua404-absent does not exist", c["message"])
        self.assertIn("POLICY_UNAVAILABLE", c["message"])
        self.wait_ready_condition(CIP, "ua404-baseline")
        v = self.assertVerdict(W.ref("ua404/a"), False, "POLICY_UNAVAILABLE")
        self.assertEqual(v.code, 403, repr(v))
        self.assertNotIn("\n", v.message)
        self.assertIn("policy ua404-prod: the policy cannot be enforced yet: spec.authorities[0].key."
                      "secretRef: the Secret %s/ua404-absent does not exist" % SIGIL_NS,
                      v.message)
        self.assertRegex(v.entry(W.ref("ua404/a")),
                         r"^denied POLICY_UNAVAILABLE sha256:[0-9a-f]{64}$")
        # the Secret appears: picked up at the next resync (a 404 is not retried sooner)
        self.fk.apply("Secret", fake_kube.secret_object("ua404-absent", SIGIL_NS,
                                                        {"cosign.pub": W.pub("a")}))
        self.addCleanup(self.fk.delete, "Secret", "ua404-absent", SIGIL_NS)
        self.wait_verdict(W.ref("ua404/a"), True, timeout=SECRET_REFRESH_TIMEOUT)
        self.wait_ready_condition(CIP, "ua404-prod", timeout=SECRET_REFRESH_TIMEOUT)

    def test_missing_trust_root_denies_what_the_policy_matches(self):
        keyless = {"name": "corp-keyless", "keyless": {
            "trustRootRef": "ua-no-such-root", "insecureIgnoreSCT": True,
            "identities": [{"issuer": "https://issuer.corp.example",
                            "subject": "release@corp.example"}]}}
        self.own(CIP, cip("uatr-baseline", [W.glob("uatr/**")], [STATIC_PASS]))
        self.own(CIP, cip("uatr-keyless", [W.glob("uatr/**")], [keyless]))
        c = self.wait_ready_condition(CIP, "uatr-keyless", status="False", reasons="Invalid")
        self.assertIn("ua-no-such-root", c["message"])
        self.wait_ready_condition(CIP, "uatr-baseline")
        v = self.assertVerdict(W.ref("uatr/a"), False, "POLICY_UNAVAILABLE")
        self.assertIn("policy uatr-keyless: the policy cannot be enforced yet", v.message)
        self.assertIn('"ua-no-such-root" names no TrustRoot', v.message)

    def test_unavailable_policy_in_warn_mode_warns(self):
        self.own(CIP, cip("uawarn-baseline", [W.glob("uawarn/**")], [STATIC_PASS]))
        self.own(CIP, cip("uawarn-soft", [W.glob("uawarn/**")],
                          [secret_auth("release", "uawarn-absent")], mode="warn"))
        c = self.wait_ready_condition(CIP, "uawarn-soft", status="False",
                                      reasons="SecretUnavailable")
        self.assertIn("warning", c["message"])
        self.wait_ready_condition(CIP, "uawarn-baseline")
        v = self.assertVerdict(W.ref("uawarn/a"), True)
        # warned, not simply allowed by the baseline (the warning itself is cut short)
        self.assertTrue(v.entry(W.ref("uawarn/a")).startswith("warned "), repr(v))
        self.assertIn("not admitted by policy uawarn-soft", self.warnings(v), repr(v))

    def test_unreadable_globs_match_nothing(self):
        # a glob sigil refuses: nothing to match, so the baseline decides; the status says so
        self.own(CIP, cip("uabad-baseline", [W.glob("uabad/**")], [STATIC_PASS]))
        self.own(CIP, cip("uabad-globs", [W.glob("uabad/bad glob/**")],
                          [key_auth("key-a", W.pub("a"))]))
        c = self.wait_ready_condition(CIP, "uabad-globs", status="False", reasons="Invalid")
        self.assertIn("spec.images[0].glob", c["message"])
        self.assertIn("images cannot be read", c["message"])
        self.wait_ready_condition(CIP, "uabad-baseline")
        self.assertVerdict(W.ref("uabad/a"), True)

    # ---- namespaces -----------------------------------------------------------------------

    def test_image_policy_scoped_to_its_namespace_and_never_relaxes(self):
        ka, kb = key_auth("key-a", W.pub("a")), key_auth("key-b", W.pub("b"))
        self.own(CIP, cip("nsp-cluster", [W.glob("nsp/**")], [ka]))
        self.own(IP, ipol("need-b", "team-a", [W.glob("nsp/**")], [kb]))
        self.own(IP, ipol("relax", "team-a", [W.glob("**")],
                          [{"name": "anything", "static": {"action": "pass"}}]))
        self.wait_ready_condition(CIP, "nsp-cluster")
        self.wait_ready_condition(IP, "need-b", "team-a")
        self.wait_ready_condition(IP, "relax", "team-a")
        only_a, both, unsigned = W.ref("nsp/only-a"), W.ref("nsp/both"), W.ref("nsp/unsigned")
        free = W.ref("nsfree/a")
        # team-a must also satisfy its ImagePolicy (key b)
        self.wait_verdict(only_a, False, ns="team-a")
        self.assertVerdict(both, True, ns="team-a")
        # other namespaces see only the cluster policy
        for ns in ("default", "team-b"):
            self.assertVerdict(only_a, True, ns=ns)
            self.assertVerdict(both, True, ns=ns)
        # a namespace's static pass cannot lift a cluster policy's denial, nor the no-match deny
        self.assertVerdict(unsigned, False, "NOT_SIGNED", ns="team-a")
        self.assertVerdict(free, False, "NO_MATCHING_POLICY", ns="team-a")
        self.assertVerdict(free, False, "NO_MATCHING_POLICY", ns="default")
        # the ImagePolicy goes away: team-a is back to the cluster policy alone
        self.fk.delete(IP, "need-b", "team-a")
        self.wait_verdict(only_a, True, ns="team-a")

    def test_image_policy_cannot_read_another_namespaces_secret(self):
        # sigil's own namespace holds a Secret named like the one the team points at
        self.fk.apply("Secret", fake_kube.secret_object("team-key-bait", SIGIL_NS,
                                                        {"cosign.pub": W.pub("b")}))
        self.own(CIP, cip("nsp-steal-cluster", [W.glob("nsp/steal-*")],
                          [{"name": "anything", "static": {"action": "pass"}}]))
        self.own(IP, ipol("steal", "team-c", [W.glob("nsp/steal-*")],
                          [secret_auth("stolen", "team-key-bait", SIGIL_NS)]))
        self.wait_ready_condition(CIP, "nsp-steal-cluster")
        self.wait_ready_condition(IP, "steal", "team-c", status="False",
                                  reasons=("SecretUnavailable", "Invalid"))
        self.assertEqual(self.fk.count("/api/v1/namespaces/%s/secrets/team-key-bait" % SIGIL_NS),
                         0, "an ImagePolicy made sigil read a Secret outside its namespace")
        # it cannot be enforced, so it denies what it matches in its own namespace (without
        # ever reading the Secret); other namespaces see only the cluster's static pass
        self.assertVerdict(W.ref("nsp/steal-b"), False, "POLICY_UNAVAILABLE", ns="team-c")
        self.assertVerdict(W.ref("nsp/steal-b"), True, ns="team-d")

    # ---- trust roots --------------------------------------------------------------------

    def test_trust_roots_and_their_references(self):
        ca_cert, _ = registry.make_ca("corp signing CA")
        from cryptography.hazmat.primitives import serialization
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        rekor_pub = fixture.public_pem(fixture.generate_key("p256"))
        keyless = {"name": "corp-keyless", "keyless": {
            "trustRootRef": "corp-root", "insecureIgnoreSCT": True,
            "identities": [{"issuer": "https://issuer.corp.example",
                            "subject": "release@corp.example"}]}}
        self.own(CIP, cip("tr-keyless", [W.glob("tr/**")], [keyless]))
        c = self.wait_ready_condition(CIP, "tr-keyless", status="False", reasons="Invalid")
        self.assertIn("corp-root", c["message"])
        v = self.assertVerdict(W.ref("tr/app"), False, "POLICY_UNAVAILABLE")
        self.assertIn("corp-root", v.message)
        # the TrustRoot appears: it compiles, and the policy naming it is recompiled
        self.own(TR, trust_root("corp-root", ca_pem, rekor_pub))
        self.wait_ready_condition(TR, "corp-root")
        self.wait_ready_condition(CIP, "tr-keyless")
        v = self.wait_verdict(W.ref("tr/app"), False)
        self.assertNotIn(v.reason(W.ref("tr/app")), ("NO_MATCHING_POLICY", "POLICY_UNAVAILABLE"),
                         repr(v))
        # a broken TrustRoot is refused with the field named
        broken = trust_root("tr-broken", b"not a certificate", rekor_pub)
        self.own(TR, broken)
        c = self.wait_ready_condition(TR, "tr-broken", status="False", reasons="Invalid")
        self.assertIn("spec.sigstoreKeys.certificateAuthorities[0].certChain", c["message"])
        self.wait_ready_condition(TR, "corp-root")

    # ---- /validate-policy ---------------------------------------------------------------

    def test_validate_policy_webhook(self):
        ka = key_auth("key-a", W.pub("a"))
        cases = [
            (cip("vp-good", [W.glob("vp/**")], [ka]), True, None),
            (cip("vp-bad-glob", [W.glob("vp/bad glob")], [ka]), False, "spec.images[0].glob"),
            (ipol("vp-ns", "team-a", [W.glob("vp/**")], [ka]), True, None),
            (ipol("vp-ns-bad", "team-a", [W.glob("vp/**")], [key_auth("k", BAD_PEM)]), False,
             "spec.authorities[0].key"),
            (trust_root("vp-root", b"not a certificate",
                        fixture.public_pem(fixture.generate_key("p256"))), False,
             "spec.sigstoreKeys.certificateAuthorities[0].certChain"),
        ]
        # What others write (annotations, managedFields, status) is not parsed, nor counted
        # against the document cap; a spec past it (256 KiB) is refused.
        noted = cip("vp-annotated", [W.glob("vp/**")], [ka])
        noted["metadata"]["annotations"] = {"tooling.example/notes": "n" * (1536 << 10)}
        cases.append((noted, True, None))
        cases.append((cip("vp-huge", [W.glob("vp/**")],
                          [{"name": "no", "static": {"action": "fail",
                                                     "message": "m" * (300 << 10)}}]),
                      False, "more than sigil accepts"))
        for obj, ok, field in cases:
            with self.subTest(name=obj["metadata"]["name"]):
                doc = policy_review(obj)
                st, resp = self.sigil.validate_policy(doc)
                self.assertEqual(st, 200, self.sigil.log_tail())
                self.assertEqual(resp["uid"], doc["request"]["uid"])
                self.assertIs(resp["allowed"], ok, json.dumps(resp))
                self.assertNotIn("warnings", resp)
                if not ok:
                    self.assertEqual(resp["status"]["code"], 422, json.dumps(resp))
                    self.assertIn(field, resp["status"]["message"])
        # A glob that names a tag is valid, and kubectl warns: a Pod's author picks the tag.
        st, resp = self.sigil.validate_policy(policy_review(
            ipol("vp-by-tag", "team-a", [W.glob("vp/app:prod-*"), W.glob("vp/tools/**")], [ka])))
        self.assertEqual(st, 200, self.sigil.log_tail())
        self.assertIs(resp["allowed"], True, json.dumps(resp))
        self.assertEqual(len(resp.get("warnings", [])), 1, json.dumps(resp))
        self.assertIn('ImagePolicy team-a/vp-by-tag: glob "', resp["warnings"][0])
        self.assertIn('vp/app:prod-*" selects by tag', resp["warnings"][0])
        # validating a policy does not enforce it
        self.assertVerdict(W.ref("file/a"), True)
        self.assertIsNone(self.fk.get(CIP, "vp-good"))

    # ---- status writes ------------------------------------------------------------------

    def test_status_patches_converge(self):
        ka, kb = key_auth("key-a", W.pub("a")), key_auth("key-b", W.pub("b"))

        def sync(gen):
            # a later change in the same watch stream: once its status is written, sigil has
            # processed every earlier event (and any write loop would have shown)
            self.fk.apply(CIP, cip("conv-sync", [W.glob("convsync/**")],
                                   [ka] if gen % 2 else [kb]))
            self.wait_ready_condition(CIP, "conv-sync")

        self.addCleanup(self.fk.delete, CIP, "conv-sync")
        self.own(CIP, cip("conv", [W.glob("conv/**")], [ka]))
        c1 = self.wait_ready_condition(CIP, "conv", generation=1)
        sync(1)
        n1 = len(self.fk.patches(CIP, "conv"))
        self.assertGreaterEqual(n1, 1)
        self.assertLessEqual(n1, 3, self.fk.patches(CIP, "conv"))
        # metadata only (labels): a new resourceVersion, no new generation, no status write
        self.fk.apply(CIP, cip("conv", [W.glob("conv/**")], [ka], labels={"team": "x"}))
        sync(2)
        self.assertEqual(len(self.fk.patches(CIP, "conv")), n1,
                         "a label change made sigil write the status again")
        # a spec change: generation 2, a handful of patches, not a stream
        self.fk.apply(CIP, cip("conv", [W.glob("conv/**")], [ka, kb], labels={"team": "x"}))
        c2 = self.wait_ready_condition(CIP, "conv", generation=2)
        sync(3)
        sync(4)
        ps = self.fk.patches(CIP, "conv")
        self.assertLessEqual(len(ps) - n1, 3, [p["body"] for p in ps])
        # True -> True keeps the transition time (metav1.Condition semantics)
        self.assertEqual(c1["lastTransitionTime"], c2["lastTransitionTime"])
        for p in ps:
            self.assertEqual(p["content_type"].split(";")[0], "application/merge-patch+json")
            self.assertEqual(set(p["body"]), {"status"}, p["body"])
            self.assertEqual(p["code"], 200, p)
        self.assertLessEqual(len(self.fk.patches(CIP, "conv-sync")), 4 * 3)


# ---------------------------------------------------------------------------------------------
# the watch under faults


class KubeWatchFaultsTest(KubeCase):
    """Dropped, cut, expired and timed-out watches; 500s; bookmarks; token rotation. After
    each fault a later change must still reach the verdicts. This sigil runs without
    --kube-namespace (secretRefs default to sigil-system) and its kubeconfig names a tokenFile."""

    @classmethod
    def setUpClass(cls):
        cls.start_fake("watch", token="token-before-rotation", token_file=True)
        cls.fk.apply("Secret", fake_kube.secret_object("wf-key", "sigil-system",
                                                       {"cosign.pub": W.pub("a")}))
        cls.fk.apply(CIP, cip("wf", [W.glob("wf/**")], [key_auth("key-a", W.pub("a"))]))
        cls.fk.apply(CIP, cip("wf-sref", [W.glob("wfsref/**")],
                              [secret_auth("release", "wf-key")]))
        cls.start_sigil("kube-watch", namespace=None)

    def setUp(self):
        self.reset()

    def set_wf(self, *keys):
        self.fk.apply(CIP, cip("wf", [W.glob("wf/**")],
                               [key_auth("key-" + k, W.pub(k)) for k in keys]))

    def reset(self):
        self.set_wf("a")
        self.wait_verdict(W.ref("wf/b"), False, "BAD_SIGNATURE")
        self.wait_verdict(W.ref("wf/a"), True)
        self.fk.wait_watches(CIP, 1, 20)

    def change_arrives(self, timeout=CHANGE_TIMEOUT):
        self.set_wf("a", "b")
        self.wait_verdict(W.ref("wf/b"), True, timeout=timeout)
        self.wait_ready_condition(CIP, "wf", timeout=timeout)

    def lists(self):
        return self.fk.count(CIPS, method="GET", watch=False)

    def test_default_kube_namespace_is_sigil_system(self):
        self.wait_ready_condition(CIP, "wf-sref")
        self.assertGreaterEqual(self.fk.count("/api/v1/namespaces/sigil-system/secrets/wf-key"),
                                1)
        self.assertVerdict(W.ref("wfsref/a"), True)

    def test_watch_requests_are_well_formed(self):
        for path in (CIPS, IPS, TRS):  # imagepolicies across all namespaces
            ws = self.fk.requests(path, watch=True)
            self.assertTrue(ws, "sigil never watched " + path)
            for r in ws:
                q = r["query"]
                self.assertEqual(q.get("allowWatchBookmarks"), "true", r)
                # resumes from the list's (or a later) resourceVersion, never "" or "0"
                self.assertNotIn(q.get("resourceVersion", ""), ("", "0"), r)
                self.assertGreater(int(q.get("timeoutSeconds", "0")), 0, r)
                self.assertTrue(r["user_agent"], r)
        self.assertEqual(self.fk.count("/apis/sigil.dev/v1alpha1/namespaces/", method="GET",
                                       prefix=True), 0,
                         "sigil listed per namespace instead of across all namespaces")

    def test_watch_dropped_mid_stream(self):
        n = self.fk.count(CIPS, watch=True)
        self.assertGreaterEqual(self.fk.drop_watches(kind=CIP), 1)
        self.assertTrue(self.fk.wait_requests(n + 1, CIPS, watch=True, timeout=20),
                        "sigil did not watch again after the drop" + self.diag())
        self.change_arrives()

    def test_watch_dropped_mid_event(self):
        n = self.fk.count(CIPS, watch=True)
        self.assertGreaterEqual(self.fk.drop_watches(mid_event=True, kind=CIP), 1)
        self.assertTrue(self.fk.wait_requests(n + 1, CIPS, watch=True, timeout=20),
                        "sigil did not watch again after half an event" + self.diag())
        self.change_arrives()
        self.assertVerdict(W.ref("wf/a"), True)

    def test_change_whose_event_was_cut_still_arrives(self):
        cuts = self.fk.stats["cuts"]
        self.assertGreaterEqual(self.fk.cut_next_event(kind=CIP), 1)
        self.change_arrives()
        self.assertGreater(self.fk.stats["cuts"], cuts, "the event was never cut")

    def test_clean_end_of_watch_resumes_without_relist(self):
        lists, n = self.lists(), self.fk.count(CIPS, watch=True)
        self.assertGreaterEqual(self.fk.end_watches(kind=CIP), 1)
        self.assertTrue(self.fk.wait_requests(n + 1, CIPS, watch=True, timeout=20), self.diag())
        self.change_arrives()
        self.assertEqual(self.lists(), lists, "a clean end of a watch made sigil list again")

    def _relist_after_gone(self, repo_gap, repo_new):
        gap = cip("wf-gap", [W.glob(repo_gap + "/**")], [key_auth("key-a", W.pub("a"))])
        self.fk.apply(CIP, gap)
        self.addCleanup(self.fk.delete, CIP, "wf-gap")
        self.addCleanup(self.fk.delete, CIP, "wf-new")
        self.wait_verdict(W.ref(repo_gap + "/a"), True)
        self.wait_ready_condition(CIP, "wf-gap")
        lists, gone = self.lists(), self.fk.stats["gone_sent"]
        # while sigil is not watching: one policy deleted, one created, then history compacted
        self.fk.pause_watches()
        self.addCleanup(self.fk.resume_watches)
        self.fk.delete(CIP, "wf-gap")
        self.fk.apply(CIP, cip("wf-new", [W.glob(repo_new + "/**")],
                               [key_auth("key-a", W.pub("a"))]))
        self.fk.expire_history()
        self.fk.resume_watches()
        self.wait_verdict(W.ref(repo_gap + "/a"), False, "NO_MATCHING_POLICY")
        self.wait_verdict(W.ref(repo_new + "/a"), True)
        self.assertGreater(self.fk.stats["gone_sent"], gone, "sigil never met the 410")
        self.assertGreater(self.lists(), lists, "sigil did not list again after 410")
        self.wait_ready_condition(CIP, "wf-new")
        self.change_arrives()

    def test_relist_after_410_error_event(self):
        self.fk.watch_gone_as_http = False
        self._relist_after_gone("wfgap", "wfnew")

    def test_relist_after_http_410(self):
        self.fk.watch_gone_as_http = True
        self.addCleanup(setattr, self.fk, "watch_gone_as_http", False)
        self._relist_after_gone("wfgap", "wfnew")

    def test_410_sent_to_an_open_watch(self):
        lists = self.lists()
        self.assertGreaterEqual(self.fk.send_gone(kind=CIP), 1)
        self.assertTrue(self.fk.wait_requests(lists + 1, CIPS, method="GET", watch=False,
                                              timeout=20), "no relist after ERROR 410" +
                        self.diag())
        self.change_arrives()

    def test_bookmarks_disturb_nothing_and_are_resume_points(self):
        # statuses settled first: no status write may land on this stream after the bookmark
        self.wait_ready_condition(CIP, "wf")
        self.wait_ready_condition(CIP, "wf-sref")
        lists = self.lists()
        for i in range(3):
            # move the cluster's resourceVersion on elsewhere, then bookmark
            self.fk.apply("Secret", fake_kube.secret_object("unrelated", "default",
                                                            {"n": str(i)}))
            before = self.fk.stats["bookmarks_sent"]
            self.assertGreaterEqual(self.fk.bookmark(), 1)
            ok, _ = eventually(lambda: self.fk.stats["bookmarks_sent"] > before, 10, 0.02)
            self.assertTrue(ok, "sigil's watch did not take bookmarks")
            self.assertVerdict(W.ref("wf/a"), True)
            self.assertVerdict(W.ref("wf/b"), False, "BAD_SIGNATURE")
        bm_rv = self.fk.last_bookmark_rv[CIP]
        self.assertEqual(self.lists(), lists, "a bookmark made sigil list again")
        # after a drop, the watch resumes from the bookmark's resourceVersion (the bookmark
        # went out before the FIN on the same stream; nothing changed on it since)
        n = self.fk.count(CIPS, watch=True)
        self.fk.drop_watches(kind=CIP)
        self.assertTrue(self.fk.wait_requests(n + 1, CIPS, watch=True, timeout=20), self.diag())
        resumed = self.fk.requests(CIPS, watch=True)[n]["query"].get("resourceVersion")
        self.assertEqual(resumed, bm_rv, "sigil did not resume from the last bookmark")
        self.assertEqual(self.lists(), lists)
        self.change_arrives()

    def test_watch_errors_back_off_and_recover(self):
        n = self.fk.count(CIPS, watch=True)
        self.fk.fail_next(3, code=500, path=CIPS, watch=True)
        self.fk.drop_watches(kind=CIP)
        self.change_arrives(timeout=60)
        codes = [r["code"] for r in self.fk.requests(CIPS, watch=True)[n:]]
        self.assertEqual(codes[:3], [500, 500, 500], codes)

    def test_status_patch_failure_is_retried(self):
        # one failed write; nothing else happens to the object afterwards, so only a retry
        # (with backoff, seconds) can bring its status to the new generation
        # (an injected failure is answered before the PATCH handler: look at the requests)
        path = CIPS + "/wf/status"
        n = self.fk.count(path, method="PATCH")
        self.fk.fail_next(1, code=500, method="PATCH", path=path)
        self.set_wf("a", "b")
        self.wait_verdict(W.ref("wf/b"), True)
        self.wait_ready_condition(CIP, "wf", timeout=30)
        codes = [r["code"] for r in self.fk.requests(path, method="PATCH")][n:]
        self.assertEqual(codes[0], 500, codes)
        self.assertIn(200, codes)

    def test_token_rotation(self):
        unauthorized = self.fk.stats["unauthorized"]
        # the kubelet writes a new token; the API server stops accepting the old one
        rotated_at = time.time()
        self.fk.write_token_file(self.token_file, "token-after-rotation")
        self.fk.set_token("token-after-rotation")
        self.fk.drop_watches()
        self.change_arrives(timeout=60)
        self.wait_ready_condition(CIP, "wf")  # status writes use the new token too
        for path in (CIPS, IPS, TRS):
            ok, _ = eventually(lambda: [r for r in self.fk.requests(path, watch=True)
                                        if r["authorized"] and r["time"] > rotated_at], 60)
            self.assertTrue(ok, "no authorized watch of %s after the rotation%s" % (
                path, self.diag()))
        patched = [p for p in self.fk.patches(CIP, "wf") if p["time"] > rotated_at]
        self.assertTrue(patched and patched[-1]["code"] == 200, patched)
        print("\n  [401s seen during rotation: %d] " % (self.fk.stats["unauthorized"] -
                                                      unauthorized), end="", flush=True)


# ---------------------------------------------------------------------------------------------
# a Secret that cannot be read when sigil starts


class KubeSecretFaultTest(KubeCase):
    """A fresh sigil whose first reads of a policy's Secret fail with HTTP 500. Its resync is
    10 minutes, so only the retry (exponential backoff from 0.8 s) can bring the policy in.
    A static-pass baseline matches the same images: had the broken policy dropped out, they
    would be admitted."""

    @classmethod
    def setUpClass(cls):
        cls.start_fake("secret-fault")
        fk = cls.fk
        fk.apply("Secret", fake_kube.secret_object("ua-key", SIGIL_NS, {"cosign.pub": W.pub("a")}))
        fk.apply("Secret", fake_kube.secret_object("uasticky-key", SIGIL_NS,
                                                   {"cosign.pub": W.pub("b")}))
        fk.apply(CIP, cip("ua-baseline", [W.glob("ua/**"), W.glob("uasticky/**")],
                          [STATIC_PASS]))

    def start(self, name):
        self.sigil = KubeSigil(name, kubeconfig=self.kubeconfig, resync="10m",
                               extra_args=["--insecure-registry", W.addr])
        self.addCleanup(self.sigil.stop)

    def fail_secret(self, name):
        path = "/api/v1/namespaces/%s/secrets/%s" % (SIGIL_NS, name)
        self.fk.fail_next(-1, code=500, path=path, method="GET")
        self.addCleanup(self.fk.clear_faults)
        return path

    def test_fresh_process_secret_500_denies_until_the_retry_compiles_it(self):
        self.fk.apply(CIP, cip("ua-prod", [W.glob("ua/**")], [secret_auth("release", "ua-key")]))
        self.addCleanup(self.fk.delete, CIP, "ua-prod")
        path = self.fail_secret("ua-key")
        self.start("kube-secret-500")
        # ready (the policy denies, so it is safe), and the images it matches are denied
        self.assertEqual(self.sigil.readyz(), 200)
        for img in ("ua/unsigned", "ua/a"):
            v = self.assertVerdict(W.ref(img), False, "POLICY_UNAVAILABLE")
            self.assertEqual(v.code, 403, repr(v))
            self.assertNotIn("\n", v.message)
            self.assertIn("policy ua-prod: the policy cannot be enforced yet: spec.authorities[0].key."
                          "secretRef: the Secret %s/ua-key could not be read (HTTP 500); "
                          "retrying" % SIGIL_NS, v.message)
        c = self.wait_ready_condition(CIP, "ua-prod", status="False", reasons="SecretUnavailable")
        self.assertIn("HTTP 500", c["message"])
        self.assertIn("denied (POLICY_UNAVAILABLE)", c["message"])
        # retried with backoff while it fails, not left to the resync
        ok, _ = eventually(lambda: self.fk.count(path, method="GET") >= 4, 40)
        self.assertTrue(ok, "the failed Secret read was not retried" + self.diag())
        self.assertVerdict(W.ref("ua/unsigned"), False, "POLICY_UNAVAILABLE")
        times = [r["time"] for r in self.fk.requests(path, method="GET")]
        gaps = ["%.1f" % (b - a) for a, b in zip(times, times[1:])]
        # the fault clears: the next retry compiles the policy
        t0 = time.monotonic()
        self.fk.clear_faults()
        self.wait_verdict(W.ref("ua/a"), True, timeout=60)
        took = time.monotonic() - t0
        self.assertVerdict(W.ref("ua/unsigned"), False, "NOT_SIGNED")
        self.wait_ready_condition(CIP, "ua-prod")
        codes = [r["code"] for r in self.fk.requests(path, method="GET")]
        self.assertEqual(codes[-1], 200, codes)
        self.assertEqual(set(codes[:-1]), {500}, codes)
        print("\n  [gaps between failed Secret reads: %s s; compiled %.1f s after the fault "
              "cleared (resync 10 min)] " % (", ".join(gaps), took), end="", flush=True)

    def test_last_good_generation_stays_while_the_new_one_cannot_read_its_secret(self):
        self.fk.apply(CIP, cip("uasticky", [W.glob("uasticky/**")],
                               [key_auth("key-a", W.pub("a"))]))
        self.addCleanup(self.fk.delete, CIP, "uasticky")
        self.start("kube-secret-sticky")
        self.wait_ready_condition(CIP, "uasticky", generation=1)
        self.assertVerdict(W.ref("uasticky/a"), True)
        self.assertVerdict(W.ref("uasticky/b"), False, "BAD_SIGNATURE")
        # generation 2 reads key b from a Secret, whose reads fail
        path = self.fail_secret("uasticky-key")
        self.fk.apply(CIP, cip("uasticky", [W.glob("uasticky/**")],
                               [secret_auth("release", "uasticky-key")]))
        c = self.wait_ready_condition(CIP, "uasticky", status="False",
                                      reasons="SecretUnavailable", generation=2)
        self.assertIn("HTTP 500", c["message"])
        self.assertIn("generation 1 stays in force", c["message"])
        for _ in range(3):
            self.assertVerdict(W.ref("uasticky/a"), True)
            self.assertVerdict(W.ref("uasticky/b"), False, "BAD_SIGNATURE")
        ok, _ = eventually(lambda: self.fk.count(path, method="GET") >= 2, 40)
        self.assertTrue(ok, "the failed Secret read was not retried" + self.diag())
        # the fault clears: generation 2 is compiled by the retry
        self.fk.clear_faults()
        self.wait_verdict(W.ref("uasticky/b"), True, timeout=60)
        self.assertVerdict(W.ref("uasticky/a"), False, "BAD_SIGNATURE")
        self.wait_ready_condition(CIP, "uasticky", generation=2)


# ---------------------------------------------------------------------------------------------
# pull credentials


class KubePullSecretsTest(KubeCase):
    """A private registry (TLS with a test CA, bearer tokens from our token server): sigil
    reaches it with the admitted pod's imagePullSecrets or its ServiceAccount's, read from the
    pod's namespace, and with nothing else. sigil has no registry credentials of its own."""

    @classmethod
    def setUpClass(cls):
        cls.preg = harness.RunningRegistry("kube-private", tls=True, auth="token")
        cls.addClassCleanup(cls.preg.stop)
        env = cls.preg.env
        d = cls.preg.push("pull/app", "v1", "private signed")
        fixture.sign(cls.preg.client, "pull/app", d, W.keys.key("a"))
        cls.preg.push("pull/unsigned", "v1", "private unsigned")
        cls.app, cls.unsigned = cls.preg.ref("pull/app", "v1"), cls.preg.ref("pull/unsigned",
                                                                               "v1")
        cls.app_by_digest = cls.preg.ref("pull/app", digest=d)
        good = {cls.preg.address: (env["user"], env["password"])}
        cls.start_fake("pull")
        fk = cls.fk
        fk.apply(CIP, cip("private", ["%s/**" % cls.preg.address],
                          [key_auth("key-a", W.pub("a"))]))
        fk.apply("Secret", fake_kube.dockerconfigjson_secret("regcred", "apps", good))
        fk.apply("Secret", fake_kube.dockercfg_secret("legacy", "apps", good))
        fk.apply("Secret", fake_kube.dockerconfigjson_secret(
            "wrongcred", "apps", {cls.preg.address: (env["user"], "wrong-password")}))
        fk.apply("Secret", fake_kube.dockerconfigjson_secret(
            "otherhost", "apps", {"127.0.0.1:1": (env["user"], env["password"])}))
        cfg = json.dumps({"auths": {cls.preg.address: {
            "auth": base64.b64encode(("%s:%s" % (env["user"], env["password"])).encode())
            .decode()}}})
        fk.apply("Secret", fake_kube.secret_object("opaque", "apps", {".dockerconfigjson": cfg}))
        fk.apply("ServiceAccount", fake_kube.service_account_object("default", "apps"))
        fk.apply("ServiceAccount", fake_kube.service_account_object("builder", "apps",
                                                                    ["legacy"]))
        fk.apply("Secret", fake_kube.dockerconfigjson_secret("regcred-sa", "team-sa", good))
        fk.apply("ServiceAccount", fake_kube.service_account_object("default", "team-sa",
                                                                    ["regcred-sa"]))
        # Keys with a path, as ACR's repository-scoped tokens are written: the kubelet uses the
        # most specific one whose path starts the image's.
        fk.apply("Secret", fake_kube.dockerconfigjson_secret("scoped", "apps", {
            cls.preg.address + "/pull": (env["user"], env["password"]),
            cls.preg.address + "/elsewhere": (env["user"], "wrong-password")}))
        fk.apply("Secret", fake_kube.dockerconfigjson_secret("scoped-elsewhere", "apps", {
            cls.preg.address + "/elsewhere": (env["user"], env["password"])}))
        cls.start_sigil("kube-pull", extra_args=["--registry-ca", env["ca"]])

    def test_pull_secret_keys_with_a_path(self):
        self.assertVerdict(self.app, True, ns="apps", pull_secrets=["scoped"])
        self.assertVerdict(self.unsigned, False, "NOT_SIGNED", ns="apps",
                           pull_secrets=["scoped"])
        # A key for another path covers nothing here: no credential was sent.
        self.assertVerdict(self.app, False, "REGISTRY_AUTH", ns="apps",
                           pull_secrets=["scoped-elsewhere"])
        # The allow read with the scoped credential is that credential's: a pod without it is
        # not answered from the cache (by digest: no tag to resolve first).
        self.assertVerdict(self.app_by_digest, True, ns="apps", pull_secrets=["scoped"])
        self.assertVerdict(self.app_by_digest, False, "REGISTRY_AUTH", ns="apps")
        self.assertVerdict(self.app_by_digest, False, "REGISTRY_AUTH", ns="apps",
                           pull_secrets=["scoped-elsewhere"])

    def test_pod_pull_secret(self):
        self.assertVerdict(self.app, True, ns="apps", pull_secrets=["regcred"])
        # the credentials reached the registry; the signature is still what decides
        self.assertVerdict(self.unsigned, False, "NOT_SIGNED", ns="apps",
                           pull_secrets=["regcred"])
        self.assertGreaterEqual(self.fk.count("/api/v1/namespaces/apps/secrets/regcred"), 1)

    def test_service_account_pull_secret_legacy_dockercfg(self):
        self.assertVerdict(self.app, True, ns="apps", sa="builder")
        self.assertGreaterEqual(self.fk.count("/api/v1/namespaces/apps/serviceaccounts/builder"),
                                1)

    def test_default_service_account(self):
        self.assertVerdict(self.app, True, ns="team-sa", sa=None)
        self.assertVerdict(self.app, True, ns="team-sa", sa="default")

    def test_without_credentials_registry_auth(self):
        v = self.assertVerdict(self.app, False, "REGISTRY_AUTH", ns="apps")
        self.assertIn(self.app, v.message)
        self.assertNotIn("\n", v.message)
        self.assertNotIn(self.preg.env["password"], json.dumps(v.resp))

    def test_unusable_credentials_registry_auth(self):
        cases = [
            dict(ns="apps", pull_secrets=["wrongcred"]),
            dict(ns="apps", pull_secrets=["otherhost"]),
            dict(ns="apps", pull_secrets=["opaque"]),       # not a docker secret type
            dict(ns="apps", pull_secrets=["no-such-secret"]),
            dict(ns="other", pull_secrets=["regcred"]),     # exists, but in another namespace
            dict(ns="other", sa="builder"),                 # ServiceAccounts are per namespace
        ]
        for pod in cases:
            with self.subTest(**pod):
                v = self.assertVerdict(self.app, False, "REGISTRY_AUTH", **pod)
                self.assertNotIn(self.preg.env["password"], json.dumps(v.resp))
        # the pod's namespace is where its secrets are looked up
        self.assertGreaterEqual(self.fk.count("/api/v1/namespaces/other/secrets/regcred"), 1)

    def test_no_credentials_leak_between_pods(self):
        for _ in range(3):
            self.assertVerdict(self.app, True, ns="apps", pull_secrets=["regcred"])
            self.assertVerdict(self.app, False, "REGISTRY_AUTH", ns="apps")
            self.assertVerdict(self.app, True, ns="apps", sa="builder")
            self.assertVerdict(self.app, False, "REGISTRY_AUTH", ns="other",
                               pull_secrets=["regcred"])
        # and concurrently
        results, lock = [], threading.Lock()

        def run(with_creds, n):
            for i in range(n):
                pod = dict(ns="apps", pull_secrets=["regcred"]) if with_creds else dict(ns="apps")
                v = admit(self.sigil, self.app, uid="leak-%s-%d" % (with_creds, i), **pod)
                with lock:
                    results.append((with_creds, v.allowed, v.reason(self.app), repr(v)))

        ts = [threading.Thread(target=run, args=(w, 6)) for w in (True, False, True, False)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(len(results), 24)
        for with_creds, allowed, reason, rep in results:
            if with_creds:
                self.assertIs(allowed, True, rep)
            else:
                self.assertEqual((allowed, reason), (False, "REGISTRY_AUTH"), rep)


if __name__ == "__main__":
    unittest.main()
