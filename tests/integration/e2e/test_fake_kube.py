"""Self-tests of tests/support/fake_kube.py with a plain Python client: the fake must speak the
API server's wire format (lists, paging, watch streams, bookmarks, 410s, status merge patches,
Secrets, tokens), or the sigil tests built on it prove nothing. The watch client here parses
the chunked framing itself, so it sees exactly what went over the wire (a final chunk or not,
half an event)."""
import base64
import http.client
import json
import os
import socket
import ssl
import threading
import time
import unittest

import harness  # noqa: F401  (puts tests/support on sys.path)
import fake_kube

CIP = "ClusterImagePolicy"
IP = "ImagePolicy"
CIPS = "/apis/sigil.dev/v1alpha1/clusterimagepolicies"
IPS = "/apis/sigil.dev/v1alpha1/imagepolicies"


def cip(name, glob="registry.example/app/**", key_data="KEY"):
    return {"apiVersion": "sigil.dev/v1alpha1", "kind": CIP, "metadata": {"name": name},
            "spec": {"images": [{"glob": glob}],
                     "authorities": [{"name": "k", "key": {"data": key_data}}]}}


def ip(name, ns, glob="registry.example/team/**"):
    o = cip(name, glob)
    o["kind"] = IP
    o["metadata"]["namespace"] = ns
    return o


def read(path):
    with open(path) as f:
        return f.read()


def ready(gen, status="True", reason="Compiled", message="enforced"):
    return {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T10:00:00Z", "observedGeneration": gen}


class Client:
    def __init__(self, fk, token=None):
        self.fk = fk
        self.token = token
        self.ctx = ssl.create_default_context(cafile=fk.ca_path)
        self.conn = None

    def _headers(self, extra=None):
        h = {"Accept": "application/json", "User-Agent": "fake-kube-selftest/1.0"}
        tok = self.token if self.token is not None else self.fk.token
        if tok:
            h["Authorization"] = "Bearer " + tok
        h.update(extra or {})
        return h

    def request(self, method, path, body=None, headers=None, keep=False):
        """(status, parsed JSON body, response headers); keep=True reuses one connection."""
        if keep and self.conn is not None:
            c = self.conn
        else:
            c = http.client.HTTPSConnection("127.0.0.1", self.fk.port, context=self.ctx,
                                            timeout=10)
        if keep:
            self.conn = c
        try:
            c.request(method, path, body=body, headers=self._headers(headers))
            r = c.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data else None), dict(r.getheaders())
        finally:
            if not keep:
                c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def patch_status(self, path, patch, ct="application/merge-patch+json"):
        body = patch if isinstance(patch, bytes) else json.dumps(patch).encode()
        return self.request("PATCH", path, body=body, headers={"Content-Type": ct})


class RawWatch:
    """A watch over a raw TLS socket: status, headers, then chunks parsed by hand."""

    def __init__(self, fk, path, token=None, timeout=10):
        ctx = ssl.create_default_context(cafile=fk.ca_path)
        raw = socket.create_connection(("127.0.0.1", fk.port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        tok = token if token is not None else fk.token
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: application/json\r\n"
               "Authorization: Bearer %s\r\nUser-Agent: fake-kube-selftest/1.0\r\n\r\n"
               % (path, fk.port, tok))
        self.sock.sendall(req.encode())
        self.buf = b""
        self.eof = False
        head = self._until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for ln in lines[1:]:
            if ln:
                k, _, v = ln.partition(":")
                self.headers[k.strip().lower()] = v.strip()
        self.body_bytes = b""   # de-chunked payload
        self.final_chunk = False
        self.chunks = 0
        if "content-length" in self.headers:
            self.body_bytes = self._exact(int(self.headers["content-length"]))
            self.final_chunk = True

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except (ssl.SSLError, ConnectionResetError, OSError):
            d = b""
        if not d:
            self.eof = True
        self.buf += d
        return bool(d)

    def _until(self, sep):
        while sep not in self.buf:
            if not self._fill():
                raise EOFError("connection closed before %r" % sep)
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i - len(sep)], self.buf[i:]
        return out

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed mid-chunk")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_chunk(self):
        """One chunk's data; b"" at the final chunk; raises EOFError on an abrupt close."""
        size = int(self._until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            self._until(b"\r\n")
            self.final_chunk = True
            return b""
        data = self._exact(size)
        self._exact(2)
        self.chunks += 1
        self.body_bytes += data
        return data

    def events(self, n, timeout=10):
        """Reads until n complete event lines arrived (or the stream ended); returns them."""
        self.sock.settimeout(timeout)
        while self.body_bytes.count(b"\n") < n:
            try:
                if self.read_chunk() == b"":
                    break
            except EOFError:
                break
        return self.lines()

    def lines(self):
        return [json.loads(ln) for ln in self.body_bytes.split(b"\n")[:-1] if ln]

    def drain(self, timeout=10):
        """Reads to the end; returns 'final' (clean end) or 'abrupt'."""
        self.sock.settimeout(timeout)
        while True:
            try:
                if self.read_chunk() == b"":
                    return "final"
            except EOFError:
                return "abrupt"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class FakeKubeTest(unittest.TestCase):
    def setUp(self):
        self.fk = fake_kube.FakeKube(token="tok-1",
                                     workdir=harness.work_dir("fake-kube")).start()
        self.addCleanup(self.fk.stop)
        self.c = Client(self.fk)
        self.watches = []

    def tearDown(self):
        for w in self.watches:
            w.close()
        if self.c.conn is not None:
            self.c.conn.close()

    def watch(self, path, **kw):
        w = RawWatch(self.fk, path, **kw)
        self.watches.append(w)
        return w

    # ---- objects and lists ------------------------------------------------------------------

    def test_objects_carry_server_metadata_and_generation_follows_spec(self):
        a = self.fk.apply(CIP, cip("a"))
        md = a["metadata"]
        self.assertEqual(a["apiVersion"], "sigil.dev/v1alpha1")
        self.assertEqual(md["generation"], 1)
        for f in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
            self.assertIn(f, md)
        self.assertIsInstance(md["resourceVersion"], str)
        self.assertIn("kubectl.kubernetes.io/last-applied-configuration", md["annotations"])
        # the same object again: nothing written
        self.assertEqual(self.fk.apply(CIP, cip("a"))["metadata"]["resourceVersion"],
                         md["resourceVersion"])
        # labels: new resourceVersion, same generation
        lab = cip("a")
        lab["metadata"]["labels"] = {"team": "x"}
        b = self.fk.apply(CIP, lab)
        self.assertNotEqual(b["metadata"]["resourceVersion"], md["resourceVersion"])
        self.assertEqual(b["metadata"]["generation"], 1)
        self.assertEqual(b["metadata"]["uid"], md["uid"])
        # spec: generation + 1; a status in the applied object is ignored (status subresource)
        sp = cip("a", glob="registry.example/other/**")
        sp["status"] = {"observedGeneration": 99}
        c = self.fk.apply(CIP, sp)
        self.assertEqual(c["metadata"]["generation"], 2)
        self.assertNotIn("status", c)
        self.assertGreater(int(c["metadata"]["resourceVersion"]),
                           int(b["metadata"]["resourceVersion"]))

    def test_list_shape_and_scopes(self):
        self.fk.apply(CIP, cip("b"))
        self.fk.apply(CIP, cip("a"))
        self.fk.apply(IP, ip("p", "team-a"))
        self.fk.apply(IP, ip("q", "team-b"))
        st, lst, hdr = self.c.get(CIPS)
        self.assertEqual(st, 200)
        self.assertEqual(hdr.get("Content-Type"), "application/json")
        self.assertEqual(lst["kind"], "ClusterImagePolicyList")
        self.assertEqual(lst["apiVersion"], "sigil.dev/v1alpha1")
        self.assertEqual(lst["metadata"]["resourceVersion"], self.fk.resource_version)
        self.assertNotIn("continue", lst["metadata"])
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]], ["a", "b"])
        for i in lst["items"]:
            self.assertEqual((i["kind"], i["apiVersion"]), (CIP, "sigil.dev/v1alpha1"))
        _, all_ns, _ = self.c.get(IPS)
        self.assertEqual([(i["metadata"]["namespace"], i["metadata"]["name"])
                          for i in all_ns["items"]], [("team-a", "p"), ("team-b", "q")])
        _, one, _ = self.c.get("/apis/sigil.dev/v1alpha1/namespaces/team-b/imagepolicies")
        self.assertEqual([i["metadata"]["name"] for i in one["items"]], ["q"])
        # a cluster-scoped kind has no namespaced path
        st, body, _ = self.c.get("/apis/sigil.dev/v1alpha1/namespaces/x/clusterimagepolicies")
        self.assertEqual((st, body["kind"], body["reason"]), (404, "Status", "NotFound"))
        # label selector
        lab = cip("b")
        lab["metadata"]["labels"] = {"tier": "prod"}
        self.fk.apply(CIP, lab)
        _, sel, _ = self.c.get(CIPS + "?labelSelector=tier%3Dprod")
        self.assertEqual([i["metadata"]["name"] for i in sel["items"]], ["b"])

    def test_paging_is_a_consistent_snapshot_and_tokens_expire(self):
        for n in "abcde":
            self.fk.apply(CIP, cip(n))
        st, p1, _ = self.c.get(CIPS + "?limit=2")
        self.assertEqual([i["metadata"]["name"] for i in p1["items"]], ["a", "b"])
        self.assertEqual(p1["metadata"]["remainingItemCount"], 3)
        rv = p1["metadata"]["resourceVersion"]
        # changes after the first page do not show in later pages
        self.fk.delete(CIP, "c")
        self.fk.apply(CIP, cip("bb"))
        tok = p1["metadata"]["continue"]
        _, p2, _ = self.c.get(CIPS + "?limit=2&continue=" + tok)
        self.assertEqual([i["metadata"]["name"] for i in p2["items"]], ["c", "d"])
        self.assertEqual(p2["metadata"]["resourceVersion"], rv)
        _, p3, _ = self.c.get(CIPS + "?limit=2&continue=" + p2["metadata"]["continue"])
        self.assertEqual([i["metadata"]["name"] for i in p3["items"]], ["e"])
        self.assertNotIn("continue", p3["metadata"])
        # resourceVersion=0: from the cache, limit ignored
        _, cache, _ = self.c.get(CIPS + "?limit=1&resourceVersion=0")
        self.assertEqual(len(cache["items"]), 5)
        # an expired continue token is 410 Expired, a garbage one 400
        _, q1, _ = self.c.get(CIPS + "?limit=2")
        self.fk.expire_continue_tokens()
        st, body, _ = self.c.get(CIPS + "?limit=2&continue=" + q1["metadata"]["continue"])
        self.assertEqual((st, body["code"], body["reason"]), (410, 410, "Expired"))
        st, _, _ = self.c.get(CIPS + "?limit=2&continue=bm90LWEtdG9rZW4=")
        self.assertEqual(st, 400)
        _, q3, _ = self.c.get(CIPS + "?limit=2")
        self.fk.expire_next_continue = True
        self.assertEqual(self.c.get(CIPS + "?limit=2&continue=" + q3["metadata"]["continue"])[0],
                         410)
        self.assertFalse(self.fk.expire_next_continue)
        _, q2, _ = self.c.get(CIPS + "?limit=2")
        self.assertEqual(self.c.get(CIPS + "?limit=2&continue=" + q2["metadata"]["continue"])[0],
                         200)
        self.fk.expire_history()
        st, _, _ = self.c.get(CIPS + "?limit=2&continue=" + q2["metadata"]["continue"])
        self.assertEqual(st, 410)

    def test_get_one_and_not_found_status(self):
        self.fk.apply(CIP, cip("a"))
        st, o, _ = self.c.get(CIPS + "/a")
        self.assertEqual((st, o["metadata"]["name"], o["kind"]), (200, "a", CIP))
        st, s, _ = self.c.get(CIPS + "/nope")
        self.assertEqual(st, 404)
        self.assertEqual((s["kind"], s["apiVersion"], s["status"], s["reason"], s["code"]),
                         ("Status", "v1", "Failure", "NotFound", 404))
        self.assertEqual(s["message"], 'clusterimagepolicies.sigil.dev "nope" not found')
        self.assertEqual(s["details"], {"name": "nope", "group": "sigil.dev",
                                        "kind": "clusterimagepolicies"})

    def test_secrets_and_service_accounts(self):
        self.fk.apply("Secret", fake_kube.dockerconfigjson_secret(
            "regcred", "apps", {"127.0.0.1:5000": ("u", "p")}))
        self.fk.apply("Secret", fake_kube.dockercfg_secret("old", "apps",
                                                           {"127.0.0.1:5000": ("u", "p")}))
        self.fk.apply("Secret", fake_kube.secret_object("key", "sigil-system",
                                                        {"cosign.pub": "PEM"}))
        self.fk.apply("ServiceAccount", fake_kube.service_account_object("default", "apps",
                                                                         ["regcred"]))
        st, s, _ = self.c.get("/api/v1/namespaces/apps/secrets/regcred")
        self.assertEqual((st, s["kind"], s["apiVersion"], s["type"]),
                         (200, "Secret", "v1", "kubernetes.io/dockerconfigjson"))
        cfg = json.loads(base64.b64decode(s["data"][".dockerconfigjson"]))
        self.assertEqual(base64.b64decode(cfg["auths"]["127.0.0.1:5000"]["auth"]), b"u:p")
        self.assertNotIn("generation", s["metadata"])
        _, old, _ = self.c.get("/api/v1/namespaces/apps/secrets/old")
        self.assertEqual(old["type"], "kubernetes.io/dockercfg")
        self.assertIn("127.0.0.1:5000", json.loads(base64.b64decode(old["data"][".dockercfg"])))
        _, k, _ = self.c.get("/api/v1/namespaces/sigil-system/secrets/key")
        self.assertEqual((k["type"], base64.b64decode(k["data"]["cosign.pub"])),
                         ("Opaque", b"PEM"))
        _, sa, _ = self.c.get("/api/v1/namespaces/apps/serviceaccounts/default")
        self.assertEqual(sa["imagePullSecrets"], [{"name": "regcred"}])
        st, nf, _ = self.c.get("/api/v1/namespaces/other/secrets/regcred")
        self.assertEqual((st, nf["reason"], nf["message"]),
                         (404, "NotFound", 'secrets "regcred" not found'))
        st, nf, _ = self.c.get("/api/v1/namespaces/apps/serviceaccounts/nope")
        self.assertEqual((st, nf["details"]["kind"]), (404, "serviceaccounts"))
        # the real API refuses a docker secret without its key
        bad = fake_kube.secret_object("bad", "apps", {"x": "y"},
                                      "kubernetes.io/dockerconfigjson")
        with self.assertRaises(ValueError):
            self.fk.apply("Secret", bad)
        # stringData is write-only: folded into data
        sd = {"metadata": {"name": "sd", "namespace": "apps"}, "stringData": {"a": "b"}}
        self.assertEqual(self.fk.apply("Secret", sd)["data"], {"a": "Yg=="})

    def test_create_and_replace_with_preconditions(self):
        def send(method, path, obj):
            return self.c.request(method, path, body=json.dumps(obj).encode(),
                                  headers={"Content-Type": "application/json"})
        secrets = "/api/v1/namespaces/apps/secrets"
        sec = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "tls"}, "data": {"tls.crt": "QQ==", "tls.key": "Qg=="}}
        st, made, _ = send("POST", secrets, sec)
        self.assertEqual((st, made["metadata"]["namespace"]), (201, "apps"))
        rv = made["metadata"]["resourceVersion"]
        st, s, _ = send("POST", secrets, sec)
        self.assertEqual((st, s["reason"]), (409, "AlreadyExists"))
        made["data"]["tls.crt"] = "Qw=="
        st, put, _ = send("PUT", secrets + "/tls", made)
        self.assertEqual(st, 200)
        self.assertEqual(put["metadata"]["uid"], made["metadata"]["uid"])
        self.assertNotEqual(put["metadata"]["resourceVersion"], rv)
        st, s, _ = send("PUT", secrets + "/tls", made)  # made still carries the old version
        self.assertEqual((st, s["reason"]), (409, "Conflict"))
        st, s, _ = send("PUT", secrets + "/other", put)
        self.assertEqual(st, 400)  # the name in the URL is not the object's
        st, s, _ = send("PUT", secrets + "/nope", dict(put, metadata={"name": "nope"}))
        self.assertEqual((st, s["reason"]), (404, "NotFound"))
        self.assertEqual(self.fk.stats["creates"], 1)
        self.assertEqual(self.fk.stats["replaces"], 1)
        # A webhook configuration's caBundle is strict standard base64, as Go decodes []byte.
        vwc = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        cfg = self.fk.apply("ValidatingWebhookConfiguration", {
            "metadata": {"name": "w"},
            "webhooks": [{"name": "a.example", "clientConfig": {"url": "https://x"}}]})
        cfg["webhooks"][0]["clientConfig"]["caBundle"] = "QUJD"
        st, ok, _ = send("PUT", vwc + "/w", cfg)
        self.assertEqual((st, ok["metadata"]["generation"]), (200, 2))
        ok["webhooks"][0]["clientConfig"]["caBundle"] = "QUJD=QUFB"
        st, s, _ = send("PUT", vwc + "/w", ok)
        self.assertEqual(st, 400)

    # ---- tokens -----------------------------------------------------------------------------

    def test_bearer_token_checked_and_rotated(self):
        for tok in ("", "wrong"):
            st, s, _ = Client(self.fk, token=tok).get(CIPS)
            self.assertEqual((st, s["kind"], s["reason"], s["code"]),
                             (401, "Status", "Unauthorized", 401))
        self.assertEqual(Client(self.fk).get(CIPS)[0], 200)
        self.fk.set_token("tok-2")
        self.assertEqual(Client(self.fk, token="tok-1").get(CIPS)[0], 401)
        self.assertEqual(Client(self.fk, token="tok-2").get(CIPS)[0], 200)
        self.assertEqual(self.fk.stats["unauthorized"], 3)
        self.assertEqual(self.fk.count(CIPS, watch=False), 5)

    def test_kubeconfig(self):
        d = harness.work_dir("fake-kube-kubeconfig")
        p = self.fk.write_kubeconfig(os.path.join(d, "kubeconfig"))
        text = read(p)
        self.assertIn("server: https://127.0.0.1:%d\n" % self.fk.port, text)
        ca = text.split("certificate-authority-data: ")[1].split("\n")[0]
        self.assertEqual(base64.b64decode(ca), self.fk.ca_pem)
        self.assertIn('token: "tok-1"', text)
        self.assertIn("current-context: fake", text)
        tf = os.path.join(d, "token")
        text = read(self.fk.write_kubeconfig(p, token_file=tf))
        self.assertIn("tokenFile: %s" % json.dumps(tf), text)
        self.assertEqual(read(tf).strip(), "tok-1")

    def test_keep_alive(self):
        for _ in range(3):
            st, _, _ = self.c.get(CIPS, keep=True)
            self.assertEqual(st, 200)
        st, _, _ = self.c.get(CIPS + "/missing", keep=True)  # an error keeps it too
        self.assertEqual(st, 404)
        self.assertEqual(self.c.get(CIPS, keep=True)[0], 200)

    # ---- watch ------------------------------------------------------------------------------

    def test_watch_from_list_rv_sees_later_events_in_order(self):
        self.fk.apply(CIP, cip("a"))
        _, lst, _ = self.c.get(CIPS)
        rv = lst["metadata"]["resourceVersion"]
        w = self.watch(CIPS + "?watch=1&resourceVersion=%s&timeoutSeconds=30" % rv)
        self.assertEqual(w.status, 200)
        self.assertEqual(w.headers.get("transfer-encoding"), "chunked")
        self.assertEqual(w.headers.get("content-type"), "application/json")
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.apply(CIP, cip("b"))
        self.fk.apply(CIP, cip("a", glob="registry.example/x/**"))
        self.fk.apply(IP, ip("other-kind", "ns"))  # not on this stream
        self.fk.delete(CIP, "b")
        ev = w.events(3)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in ev],
                         [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")])
        self.assertEqual(ev[1]["object"]["metadata"]["generation"], 2)
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in ev]
        self.assertEqual(rvs, sorted(rvs))
        self.assertGreater(rvs[0], int(rv))
        self.assertEqual(ev[2]["object"]["kind"], CIP)
        # one event per chunk, newline-terminated compact JSON
        self.assertTrue(w.body_bytes.endswith(b"\n"))
        self.assertNotIn(b", ", w.body_bytes.split(b"\n")[0])

    def test_watch_resumes_exactly_after_rv(self):
        a = self.fk.apply(CIP, cip("a"))
        self.fk.apply(CIP, cip("b"))
        self.fk.apply(CIP, cip("c"))
        w = self.watch(CIPS + "?watch=true&resourceVersion=%s" % a["metadata"]["resourceVersion"])
        self.assertEqual([e["object"]["metadata"]["name"] for e in w.events(2)], ["b", "c"])

    def test_watch_without_rv_starts_with_synthetic_added(self):
        self.fk.apply(CIP, cip("a"))
        self.fk.apply(CIP, cip("b"))
        w = self.watch(CIPS + "?watch=1")
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.apply(CIP, cip("c"))
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in w.events(3)],
                         [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")])

    def test_namespaced_watch_sees_only_its_namespace(self):
        w = self.watch("/apis/sigil.dev/v1alpha1/namespaces/team-a/imagepolicies?watch=1"
                       "&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(IP))
        self.fk.apply(IP, ip("x", "team-b"))
        self.fk.apply(IP, ip("y", "team-a"))
        ev = w.events(1)
        self.assertEqual([(e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
                          for e in ev], [("team-a", "y")])

    def test_bookmarks_only_when_allowed(self):
        rv = self.fk.resource_version
        w1 = self.watch(CIPS + "?watch=1&allowWatchBookmarks=true&resourceVersion=" + rv)
        w2 = self.watch(CIPS + "?watch=1&resourceVersion=" + rv)
        self.assertTrue(self.fk.wait_watches(CIP, 2))
        self.fk.apply(IP, ip("elsewhere", "ns"))  # moves the global RV, not on these streams
        self.assertEqual(self.fk.bookmark(), 2)
        ev = w1.events(1)
        self.assertEqual(ev, [{"type": "BOOKMARK", "object": {
            "kind": CIP, "apiVersion": "sigil.dev/v1alpha1",
            "metadata": {"resourceVersion": self.fk.resource_version}}}])
        self.fk.apply(CIP, cip("after"))
        ev2 = w2.events(1)
        self.assertEqual([e["type"] for e in ev2], ["ADDED"])  # no bookmark on w2
        # a watch from a bookmark's RV is valid and resumes after it
        w3 = self.watch(CIPS + "?watch=1&resourceVersion=" +
                        ev[0]["object"]["metadata"]["resourceVersion"])
        self.assertEqual([e["object"]["metadata"]["name"] for e in w3.events(1)], ["after"])

    def test_timeout_seconds_ends_cleanly_and_end_watches(self):
        w = self.watch(CIPS + "?watch=1&timeoutSeconds=1&resourceVersion=" +
                       self.fk.resource_version)
        t0 = time.monotonic()
        self.assertEqual(w.drain(), "final")
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)
        w2 = self.watch(CIPS + "?watch=1&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.end_watches()
        self.assertEqual(w2.drain(), "final")

    def test_too_old_rv_is_error_410_event_or_http_410(self):
        a = self.fk.apply(CIP, cip("a"))
        old = a["metadata"]["resourceVersion"]
        self.fk.expire_history()
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + old)
        self.assertEqual(w.status, 200)
        ev = w.events(1)
        self.assertEqual(ev[0]["type"], "ERROR")
        s = ev[0]["object"]
        self.assertEqual((s["kind"], s["status"], s["code"], s["reason"]),
                         ("Status", "Failure", 410, "Expired"))
        self.assertIn("too old resource version", s["message"])
        self.assertEqual(w.drain(), "final")
        # a fresh list's RV is watchable again
        _, lst, _ = self.c.get(CIPS)
        w2 = self.watch(CIPS + "?watch=1&resourceVersion=" + lst["metadata"]["resourceVersion"])
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.apply(CIP, cip("b"))
        self.assertEqual(w2.events(1)[0]["type"], "ADDED")
        # the HTTP form
        self.fk.watch_gone_as_http = True
        w3 = self.watch(CIPS + "?watch=1&resourceVersion=" + old)
        self.assertEqual(w3.status, 410)
        body = json.loads(w3.body_bytes)
        self.assertEqual((body["kind"], body["code"], body["reason"]), ("Status", 410, "Expired"))
        self.assertEqual(self.fk.stats["gone_sent"], 2)

    def test_send_gone_to_open_watches(self):
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.send_gone()
        ev = w.events(1)
        self.assertEqual((ev[0]["type"], ev[0]["object"]["code"]), ("ERROR", 410))
        self.assertEqual(w.drain(), "final")

    def test_rv_from_the_future_is_504_too_large(self):
        w = self.watch(CIPS + "?watch=1&resourceVersion=%d" %
                       (int(self.fk.resource_version) + 1000))
        self.assertEqual(w.status, 504)
        body = json.loads(w.body_bytes)
        self.assertEqual(body["details"]["causes"][0]["reason"], "ResourceVersionTooLarge")

    def test_drop_mid_stream_and_mid_event(self):
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.apply(CIP, cip("a"))
        self.assertEqual(len(w.events(1)), 1)
        self.assertEqual(self.fk.drop_watches(), 1)
        self.assertEqual(w.drain(), "abrupt")
        self.assertFalse(w.final_chunk)
        w2 = self.watch(CIPS + "?watch=1&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.drop_watches(mid_event=True)
        self.assertEqual(w2.drain(), "abrupt")
        self.assertTrue(w2.body_bytes)
        self.assertFalse(w2.body_bytes.endswith(b"\n"))  # half an event line
        with self.assertRaises(ValueError):
            json.loads(w2.body_bytes)
        self.assertEqual(self.fk.stats["drops"], 2)
        self.assertTrue(self.fk.wait_watches_closed(CIP))

    def test_events_after_a_drop_or_end_go_to_the_next_watch_only(self):
        for stop in (lambda: self.fk.drop_watches(), lambda: self.fk.end_watches(),
                     lambda: self.fk.send_gone()):
            rv = self.fk.resource_version
            w = self.watch(CIPS + "?watch=1&allowWatchBookmarks=1&resourceVersion=" + rv)
            self.assertTrue(self.fk.wait_watches(CIP))
            stop()
            self.fk.bookmark()
            self.fk.apply(CIP, cip("late-%d" % len(self.watches)))
            w.drain()
            self.assertEqual([e for e in w.lines() if e["type"] != "ERROR"], [])
            self.assertTrue(self.fk.wait_watches_closed(CIP))
            w2 = self.watch(CIPS + "?watch=1&resourceVersion=" + rv)
            self.assertEqual([e["type"] for e in w2.events(1)], ["ADDED"])
            w2.close()

    def test_cut_next_event_then_resume_gets_it_whole(self):
        rv = self.fk.resource_version
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + rv)
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.cut_next_event()
        self.fk.apply(CIP, cip("a"))
        self.assertEqual(w.drain(), "abrupt")
        self.assertEqual(w.lines(), [])
        self.assertTrue(w.body_bytes)
        w2 = self.watch(CIPS + "?watch=1&resourceVersion=" + rv)
        self.assertEqual([e["object"]["metadata"]["name"] for e in w2.events(1)], ["a"])
        self.assertEqual(self.fk.stats["cuts"], 1)

    def test_split_chunks_still_reassemble(self):
        self.fk.split_chunks = True
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(CIP))
        for n in "abc":
            self.fk.apply(CIP, cip(n, key_data="K" * 500))
        self.assertEqual([e["object"]["metadata"]["name"] for e in w.events(3)],
                         ["a", "b", "c"])
        self.assertGreater(w.chunks, 3)

    def test_pause_and_resume_watches(self):
        rv = self.fk.resource_version
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + rv)
        self.assertTrue(self.fk.wait_watches(CIP))
        self.fk.pause_watches()
        self.assertEqual(w.drain(), "abrupt")
        result = {}

        def rewatch():
            ww = RawWatch(self.fk, CIPS + "?watch=1&resourceVersion=" + rv, timeout=20)
            self.watches.append(ww)
            result["status"] = ww.status
            result["events"] = ww.events(1)

        t = threading.Thread(target=rewatch)
        t.start()
        self.assertTrue(self.fk.wait_requests(2, CIPS, watch=True))
        self.fk.apply(CIP, cip("during-pause"))
        time.sleep(0.2)
        self.assertNotIn("status", result)  # unanswered while paused
        self.fk.resume_watches()
        t.join(15)
        self.assertEqual(result["status"], 200)
        self.assertEqual(result["events"][0]["object"]["metadata"]["name"], "during-pause")

    def test_client_that_goes_away_is_not_counted_as_watching(self):
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(CIP))
        w.close()
        deadline = time.monotonic() + 5
        while self.fk.open_watches(CIP) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.fk.open_watches(CIP), 0)

    # ---- status subresource -----------------------------------------------------------------

    def test_status_merge_patch(self):
        a = self.fk.apply(CIP, cip("a"))
        path = CIPS + "/a/status"
        st, o, _ = self.c.patch_status(path, {"status": {"observedGeneration": 1,
                                                         "conditions": [ready(1)]},
                                              "spec": {"images": []}})
        self.assertEqual(st, 200, o)
        self.assertEqual(o["status"]["conditions"][0]["reason"], "Compiled")
        self.assertEqual(o["spec"], a["spec"])  # only .status is taken from the patch
        self.assertEqual(o["metadata"]["generation"], 1)
        self.assertGreater(int(o["metadata"]["resourceVersion"]),
                           int(a["metadata"]["resourceVersion"]))
        self.assertEqual(self.fk.status_of(CIP, "a")["observedGeneration"], 1)
        self.assertTrue(any(m.get("subresource") == "status" and
                            m["manager"] == "fake-kube-selftest"
                            for m in o["metadata"]["managedFields"]))
        # the same patch again: a no-op, no new resourceVersion
        st, o2, _ = self.c.patch_status(path, {"status": {"observedGeneration": 1,
                                                          "conditions": [ready(1)]}})
        self.assertEqual(o2["metadata"]["resourceVersion"], o["metadata"]["resourceVersion"])
        # merge: a list is replaced whole; null deletes a key; unknown fields are pruned
        st, o3, _ = self.c.patch_status(path, {"status": {
            "observedGeneration": None, "extra": 1,
            "conditions": [ready(1, "False", "Invalid", "spec.images[0].glob: bad")]}})
        self.assertEqual(st, 200, o3)
        self.assertEqual(o3["status"], {"conditions": [
            ready(1, "False", "Invalid", "spec.images[0].glob: bad")]})
        ps = self.fk.patches(CIP, "a")
        self.assertEqual(len(ps), 3)
        self.assertEqual([p["noop"] for p in ps], [False, True, False])
        self.assertTrue(all(p["content_type"] == "application/merge-patch+json" for p in ps))
        self.assertEqual(ps[0]["body"]["status"]["observedGeneration"], 1)

    def test_status_patch_sends_modified_on_watch(self):
        self.fk.apply(CIP, cip("a"))
        w = self.watch(CIPS + "?watch=1&resourceVersion=" + self.fk.resource_version)
        self.assertTrue(self.fk.wait_watches(CIP))
        self.c.patch_status(CIPS + "/a/status", {"status": {"conditions": [ready(1)]}})
        ev = w.events(1)
        self.assertEqual(ev[0]["type"], "MODIFIED")
        self.assertEqual(ev[0]["object"]["status"]["conditions"][0]["type"], "Ready")

    def test_status_patch_errors(self):
        self.fk.apply(CIP, cip("a"))
        self.fk.apply(IP, ip("p", "team-a"))
        path = CIPS + "/a/status"
        st, s, _ = self.c.patch_status(path, {"status": {}}, ct="application/json-patch+json")
        self.assertEqual((st, s["reason"]), (415, "UnsupportedMediaType"))
        st, s, _ = self.c.patch_status(path, {"status": {}},
                                       ct="application/strategic-merge-patch+json")
        self.assertEqual(st, 415)
        st, s, _ = self.c.patch_status(path, b"{not json")
        self.assertEqual(st, 400)
        bad = ready(1)
        bad["reason"] = "not a reason!"
        del bad["lastTransitionTime"]
        st, s, _ = self.c.patch_status(path, {"status": {"conditions": [bad]}})
        self.assertEqual((st, s["reason"]), (422, "Invalid"), s)
        fields = {c["field"] for c in s["details"]["causes"]}
        self.assertEqual(fields, {"status.conditions[0].reason",
                                  "status.conditions[0].lastTransitionTime"})
        st, s, _ = self.c.patch_status(path, {"status": {"conditions": [ready(1), ready(1)]}})
        self.assertEqual(st, 422)
        st, s, _ = self.c.patch_status(path, {"status": {"observedGeneration": "1"}})
        self.assertEqual(st, 422)
        st, s, _ = self.c.patch_status(path, {"metadata": {"resourceVersion": "1"},
                                              "status": {"observedGeneration": 1}})
        self.assertEqual((st, s["reason"]), (409, "Conflict"))
        st, s, _ = self.c.patch_status(CIPS + "/missing/status", {"status": {}})
        self.assertEqual(st, 404)
        # ImagePolicy status is namespaced; Secrets have no status subresource
        st, o, _ = self.c.patch_status(
            "/apis/sigil.dev/v1alpha1/namespaces/team-a/imagepolicies/p/status",
            {"status": {"observedGeneration": 1}})
        self.assertEqual(st, 200, o)
        self.assertEqual(self.fk.status_of(IP, "p", "team-a"), {"observedGeneration": 1})
        self.fk.apply("Secret", fake_kube.secret_object("s", "team-a", {"a": "b"}))
        st, _, _ = self.c.patch_status("/api/v1/namespaces/team-a/secrets/s/status",
                                       {"status": {}})
        self.assertEqual(st, 404)
        self.assertEqual([p["code"] for p in self.fk.patches(CIP, "a")],
                         [415, 415, 400, 422, 422, 422, 409])

    def test_trustroot_status_too(self):
        self.fk.apply("TrustRoot", {"metadata": {"name": "corp"},
                                    "spec": {"sigstoreKeys": {}}})
        st, o, _ = self.c.patch_status("/apis/sigil.dev/v1alpha1/trustroots/corp/status",
                                       {"status": {"conditions": [ready(1)]}})
        self.assertEqual(st, 200, o)

    # ---- faults -----------------------------------------------------------------------------

    def test_fail_next_and_counts(self):
        self.fk.fail_next(2, path=CIPS, watch=False)
        st, s, _ = self.c.get(CIPS)
        self.assertEqual((st, s["kind"], s["code"]), (500, "Status", 500))
        self.assertEqual(self.c.get(CIPS)[0], 500)
        self.assertEqual(self.c.get(CIPS)[0], 200)
        self.assertEqual(self.c.get(IPS)[0], 200)
        self.assertEqual(self.fk.count(CIPS), 3)
        self.assertEqual(self.fk.count(IPS), 1)
        self.assertEqual([r["code"] for r in self.fk.requests(CIPS)], [500, 500, 200])
        self.assertEqual(self.fk.count("/apis/sigil.dev/", prefix=True), 4)
        self.fk.fail_next(-1, code=503, path=IPS)
        for _ in range(3):
            self.assertEqual(self.c.get(IPS)[0], 503)
        self.fk.clear_faults()
        self.assertEqual(self.c.get(IPS)[0], 200)

    def test_hold_and_release(self):
        h = self.fk.hold(path=CIPS, watch=False)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", self.c.get(CIPS)))
        t.start()
        self.assertTrue(h.wait_arrived(1))
        self.assertNotIn("r", out)
        self.assertEqual(self.c.get(IPS)[0], 200)  # others are not held
        h.release()
        t.join(10)
        self.assertEqual(out["r"][0], 200)


if __name__ == "__main__":
    unittest.main()
