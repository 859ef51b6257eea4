"""Shared plumbing for sigil's end-to-end tests: paths, the real registry, the real sigil.

Environment (set by tests/integration/CMakeLists.txt):
  SIGIL_BIN         path of the sigil executable (tests that need it fail without it)
  SIGIL_SOURCE_DIR  repository root (for tests/support and the shared tools next to it)
  SIGIL_WORK_DIR    scratch directory under the build tree
Tests skip only when /usr/bin/docker-registry is not installed.
"""
import base64
import copy
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("SIGIL_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "../../.."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "support"))

import fixture  # noqa: E402
import registry  # noqa: E402

DATA = os.path.join(HERE, "data")
SHARED_DIR = os.path.abspath(os.path.join(SOURCE_DIR, "..", "shared"))


def require_registry():
    if not os.access(registry.REGISTRY_BIN, os.X_OK):
        raise unittest.SkipTest("docker-registry is not installed (apt-get install docker-registry)"
                                "; the end-to-end tests need the real distribution registry")


def sigil_bin():
    b = os.environ.get("SIGIL_BIN", "")
    if not b or not os.access(b, os.X_OK):
        raise AssertionError("SIGIL_BIN=%r is not an executable sigil; build the `sigil` target"
                             " and run through ctest" % b)
    return b


def work_dir(name):
    root = os.environ.get("SIGIL_WORK_DIR") or tempfile.gettempdir()
    os.makedirs(root, exist_ok=True)
    return tempfile.mkdtemp(prefix=name + "-", dir=root)


def tail(path, n=40):
    return registry._tail(path, n)


# ---------------------------------------------------------------------------------------------
# registry


# `127.0.0.1 - - [date] "HEAD /v2/x/manifests/v1 HTTP/1.1" 200 1234 "" "sigil/0.1"`
_ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" ([0-9]{3}) \S+ "[^"]*" "([^"]*)"')


class RunningRegistry:
    """registry.py start/stop around a test class, plus a fixture client for it."""

    def __init__(self, name, tls=False, auth="none"):
        self.dir = work_dir(name)
        self.env = registry.start(self.dir, tls=tls, auth=auth)
        self.address = self.env["address"]
        self.env_path = os.path.join(self.dir, "env.json")
        self.client = fixture.Registry.from_env(self.env)

    def stop(self):
        registry.stop(self.dir)

    def ref(self, repo, tag=None, digest=None):
        r = "%s/%s" % (self.address, repo)
        if tag:
            r += ":" + tag
        if digest:
            r += "@" + digest
        return r

    def push(self, repo, tag, content):
        return fixture.push_image(self.client, repo, tag, content)

    def sigil_requests(self):
        """The requests sigil (User-Agent sigil/...) sent, from the registry's own access log
        (combined format): a list of (method, path, status)."""
        out = []
        try:
            with open(os.path.join(self.dir, "registry.log"), errors="replace") as f:
                for line in f:
                    m = _ACCESS_LINE.search(line)
                    if m and m.group(4).startswith("sigil/"):
                        out.append((m.group(1), m.group(2), int(m.group(3))))
        except OSError:
            pass
        return out

    def settled_sigil_requests(self, quiet=0.3):
        """sigil_requests() once no new access-log line came for `quiet` seconds (the registry
        writes a line after its response, so the last ones may lag sigil's answer)."""
        last, since = None, time.monotonic()
        while True:
            now = self.sigil_requests()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > quiet:
                return now
            time.sleep(0.05)

    def token_count(self):
        try:
            with open(os.path.join(self.dir, "token_count")) as f:
                return int(f.read().strip() or 0)
        except OSError:
            return 0


class StallServer:
    """Accepts TCP connections and never answers: a registry that hangs."""

    def __init__(self, port=0):
        """port: 0 for a free one; else that port (e.g. a stopped registry's: it now hangs)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)  # hold it open, read nothing, answer nothing
            self.accepted += 1

    def stop(self):
        self._stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# policies and keys


class Keys:
    """Key pairs made at test time in dir: keys['a'] -> (private path, public PEM bytes)."""

    def __init__(self, d, names_algs):
        self.paths = {}
        for name, alg in names_algs:
            k, p = fixture.keygen(alg, os.path.join(d, name))
            self.paths[name] = (k, p)

    def key(self, name):
        return self.paths[name][0]

    def pub_path(self, name):
        return self.paths[name][1]

    def pub(self, name):
        with open(self.paths[name][1], "rb") as f:
            return f.read()


def write_policy(d, name, globs, keys, mode=None, require_digest=False):
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name + ".yaml")
    with open(path, "w") as f:
        f.write(fixture.policy_yaml(name, globs, keys, mode, require_digest))
    return path


# ---------------------------------------------------------------------------------------------
# admission reviews


def review(name, images=None, uid=None):
    """Loads data/NAME.json and substitutes image names: images = {placeholder: new}."""
    with open(os.path.join(DATA, name + ".json")) as f:
        doc = json.load(f)
    images = images or {}

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "image" and isinstance(v, str) and v in images:
                    o[k] = images[v]
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(doc)
    if uid:
        doc["request"]["uid"] = uid
    return doc


def pod_review(images, uid="0f1e2d3c-0000-4000-8000-000000000001", kind="Pod"):
    """A kubectl-run Pod with one container per image."""
    doc = review("pod-create-kubectl-run", uid=uid)
    base = doc["request"]["object"]["spec"]["containers"][0]
    cs = []
    for i, img in enumerate(images):
        c = copy.deepcopy(base)
        c["name"] = "c%d" % i
        c["image"] = img
        cs.append(c)
    doc["request"]["object"]["spec"]["containers"] = cs
    return doc


# ---------------------------------------------------------------------------------------------
# sigil


def free_port():
    return registry.free_port()


class SigilServer:
    """`sigil serve` on 127.0.0.1 with a TLS certificate from a CA made at test time."""

    def __init__(self, name, policies, extra_args=(), env=None, wrap=()):
        """wrap: a command that runs sigil as its trailing arguments and execs it (so that
        signals reach sigil), e.g. test_dns.py's own mount namespace."""
        self.dir = work_dir("sigil-" + name)
        tls = registry.write_tls_material(self.dir)
        self.ca = tls["ca.crt"]
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.log = os.path.join(self.dir, "sigil.log")
        last = ""
        for _attempt in range(5):
            self.port = free_port()
            args = list(wrap) + [sigil_bin(), "serve", "--listen", "127.0.0.1:%d" % self.port,
                    "--tls-cert", tls["server.crt"], "--tls-key", tls["server.key"]]
            for p in policies:
                args += ["--policy", p]
            args += list(extra_args)
            self.args = args
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, env=env, start_new_session=True)
            if self._wait_ready(15.0):
                return
            last = tail(self.log)
            self.stop()
            if "in use" not in last:
                break
        raise AssertionError("sigil serve did not become ready: %s\nlog tail:\n%s" %
                             (" ".join(self.args), last))

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _ = self.get("/readyz", timeout=1)
                if status == 200:
                    return True
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        return False

    def _conn(self, timeout):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)

    def get(self, path, timeout=5):
        c = self._conn(timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def post_raw(self, body, path="/validate", timeout=30,
                 content_type="application/json"):
        """Returns (status, body bytes). A server that answers early and closes while the body
        is still being sent is fine: its answer is read all the same."""
        c = self._conn(timeout)
        try:
            c.putrequest("POST", path)
            c.putheader("Content-Type", content_type)
            c.putheader("Content-Length", str(len(body)))
            c.endheaders()
            try:
                for i in range(0, len(body), 1 << 16):
                    c.send(body[i:i + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def validate(self, review_doc, query="", timeout=30):
        """POSTs an AdmissionReview; returns (http status, response object or None)."""
        return self.review(review_doc, "/validate" + query, timeout)

    def mutate(self, review_doc, query="", timeout=30):
        """POSTs an AdmissionReview to /mutate; returns (http status, response object or None)."""
        return self.review(review_doc, "/mutate" + query, timeout)

    def review(self, review_doc, target, timeout=30):
        status, body = self.post_raw(json.dumps(review_doc).encode(), target, timeout)
        if status != 200:
            return status, None
        doc = json.loads(body)
        assert doc.get("apiVersion") == "admission.k8s.io/v1", doc
        assert doc.get("kind") == "AdmissionReview", doc
        return status, doc["response"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # SIGINT: shut down without the lame duck SIGTERM starts (test_shutdown.py).
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self):
        return tail(self.log)


def run_sigil(args, timeout=60, env=None):
    """Runs the sigil CLI; returns CompletedProcess (text)."""
    return subprocess.run([sigil_bin()] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def message(resp):
    return ((resp or {}).get("status") or {}).get("message", "")


def json_patch_of(resp):
    """The JSONPatch of an admission response (base64 in `patch`), or [] when there is none."""
    if "patch" not in (resp or {}):
        assert "patchType" not in (resp or {}), resp
        return []
    assert resp.get("patchType") == "JSONPatch", resp
    return json.loads(base64.b64decode(resp["patch"]))


def _pointer_parent(doc, pointer):
    assert pointer.startswith("/"), pointer
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    for t in tokens[:-1]:
        doc = doc[int(t)] if isinstance(doc, list) else doc[t]
    last = tokens[-1]
    return doc, int(last) if isinstance(doc, list) else last


def apply_json_patch(obj, patch):
    """Applies the `test` and `replace` operations of an RFC 6902 patch (what the API server does
    with a webhook's patch); a failing test raises, as it makes the API server refuse the patch."""
    obj = copy.deepcopy(obj)
    for op in patch:
        parent, key = _pointer_parent(obj, op["path"])
        if op["op"] == "test":
            if parent[key] != op["value"]:
                raise AssertionError("JSONPatch test failed at %s: %r != %r" % (op["path"], parent[key], op["value"]))
        elif op["op"] == "replace":
            parent[key] = op["value"]
        else:
            raise AssertionError("unexpected JSONPatch operation %r" % op)
    return obj


def have(cmd):
    return shutil.which(cmd) is not None
