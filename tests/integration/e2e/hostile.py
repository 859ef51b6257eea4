"""A registry front that behaves as an attacker's (or a slow) registry would, in front of the
real distribution registry, on 127.0.0.1.

HostileFront(upstream) forwards every request to the real registry (plain HTTP) and can:
  - delay each request by a random time (a slow registry: fetches stay in flight);
  - count requests per path (how often sigil read each blob);
  - serve the OCI 1.1 referrers API the way registries that have it do (distribution 2.8 has
    none): an index built from the referrers tag schema for repositories that exist, and a
    404 with a NAME_UNKNOWN error body for repositories that do not; optionally hiding the
    tag-schema tags themselves (bundles reachable as referrers only, as cosign v3 pushes them
    to registries with the API).
Only the standard library. Used by test_attacks.py and bench/attacks.py.
"""
import http.client
import http.server
import json
import random
import re
import threading
import time

MT_INDEX = "application/vnd.oci.image.index.v1+json"
REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})(\?.*)?$")
TAG_SCHEMA = re.compile(r"^/v2/(?P<name>.+)/manifests/sha256-[0-9a-f]{64}$")
REPO_OF = re.compile(r"^/v2/(?P<name>.+)/(manifests|blobs|tags|referrers)/")


class HostileFront:
    def __init__(self, upstream, delay_ms=(0, 0), referrers_api=False, hide_tag_schema=False):
        self.upstream = upstream  # "127.0.0.1:PORT" of the real registry (plain HTTP)
        self.delay_ms = delay_ms
        self.referrers_api = referrers_api
        self.hide_tag_schema = hide_tag_schema
        self.counts = {}
        self.lock = threading.Lock()
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                front._handle(self, "HEAD")

            def do_GET(self):
                front._handle(self, "GET")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # sigil hung up mid-answer (its deadline passed): expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def count_prefix(self, prefix):
        with self.lock:
            return sum(n for p, n in self.counts.items() if p.startswith(prefix))

    def reset_counts(self):
        with self.lock:
            self.counts.clear()

    # -----------------------------------------------------------------------------------------

    def _upstream(self, method, path, accept=None):
        c = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            headers = {"Accept": accept} if accept else {}
            c.request(method, path, headers=headers)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def _send(self, h, status, headers, body, method):
        h.send_response(status)
        for k, v in headers.items():
            if k.lower() in ("content-type", "docker-content-digest", "location", "link",
                             "www-authenticate", "oci-filters-applied"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            try:
                h.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _error(self, h, method, status, code, message):
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(h, status, {"Content-Type": "application/json"}, body, method)

    def _handle(self, h, method):
        path = h.path
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
        lo, hi = self.delay_ms
        if hi > 0:
            time.sleep(random.uniform(lo, hi) / 1000.0)
        m = REFERRERS.match(path)
        if m:
            if not self.referrers_api:
                return self._send(h, 404, {"Content-Type": "text/plain"}, b"404 page not found\n",
                                  method)
            return self._referrers(h, method, m.group("name"), m.group("digest"))
        if self.hide_tag_schema and TAG_SCHEMA.match(path):
            return self._error(h, method, 404, "MANIFEST_UNKNOWN", "manifest unknown")
        status, headers, body = self._upstream(method, path, h.headers.get("Accept"))
        self._send(h, status, headers, body, method)

    def _referrers(self, h, method, name, digest):
        status, _, _ = self._upstream("GET", "/v2/%s/tags/list" % name)
        if status == 404:
            return self._error(h, method, 404, "NAME_UNKNOWN",
                               "repository name not known to registry")
        tag = digest.replace(":", "-")
        status, _, body = self._upstream("GET", "/v2/%s/manifests/%s" % (name, tag), MT_INDEX)
        manifests = json.loads(body).get("manifests", []) if status == 200 else []
        doc = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                          "manifests": manifests}).encode()
        self._send(h, 200, {"Content-Type": MT_INDEX}, doc, method)
