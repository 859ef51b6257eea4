"""Fakes of the Azure endpoints sigil talks to on AKS, speaking their documented wire formats,
for tests on 127.0.0.1 only (nothing here can run for real on this machine):

  FakeAad        Microsoft Entra ID's token endpoint, workload identity (client assertion) flow:
                 POST /{tenant}/oauth2/v2.0/token (form: client_id, grant_type=client_credentials,
                 client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
                 client_assertion=<federated token>, scope=<resource>/.default)
                 -> {"token_type":"Bearer","expires_in":N,"ext_expires_in":N,"access_token":JWT}
                 errors: {"error":"invalid_client","error_description":...} (400/401).
  FakeImds       the instance metadata service's managed identity endpoint:
                 GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=]
                 with header Metadata: true -> numbers as STRINGS: {"access_token","expires_in":"N",
                 "expires_on":"<unix>","resource","token_type":"Bearer"}; 400 without the header.
  AcrFront       a TLS front that is "the registry host" the way ACR serves it: /oauth2/exchange
                 (AAD access token -> ACR refresh token) and /oauth2/token (refresh token + scope ->
                 ACR access token, a JWT whose `exp` is its expiry; no expires_in), and /v2/ passed
                 to the real distribution registry (token auth), whose tokens it mints with the
                 registry's own token signer so the registry trusts them. The 401 challenge names
                 realm https://<front>/oauth2/token and service <front>, as ACR's does.
  FakeKeyVault   Azure Key Vault's key API: GET /keys/<name>[/<version>]?api-version=7.4 with an
                 AAD bearer token for https://vault.azure.net -> {"key": JWK, "attributes": ...}.

Every fake counts its requests, records them (never the tokens' values in logs), and can be
told to fail the next n calls with a status (fail_next). JWTs here are unsigned-for-AAD (alg
"none" is never accepted by a real verifier, but sigil does not verify AAD tokens: it only
reads their `exp`/`tid`, as every client does) and ES256 for the registry.
Only the standard library and python3-cryptography.
"""
import base64
import http.server
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

ACR_SCOPE = "https://containerregistry.azure.net/.default"
ACR_RESOURCE = "https://containerregistry.azure.net"
VAULT_SCOPE = "https://vault.azure.net/.default"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unsigned_jwt(claims):
    head = b64url(json.dumps({"typ": "JWT", "alg": "none"}).encode())
    return head + "." + b64url(json.dumps(claims).encode()) + "."


def jwt_claims(token):
    try:
        part = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None


class _Fake:
    """A ThreadingHTTPServer on 127.0.0.1 (TLS when cert/key given) with counting and faults."""

    def __init__(self, name, cert=None, key=None):
        self.name = name
        self.lock = threading.Lock()
        self.requests = []  # (method, path, {form or query keys}) - never token values
        self.faults = []  # [(remaining, status, path_prefix)]
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._dispatch(self, "GET")

            def do_POST(self):
                fake._dispatch(self, "POST")

            def do_HEAD(self):
                fake._dispatch(self, "HEAD")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self.url = "%s://%s" % (self.scheme, self.address)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, n, status, path_prefix=""):
        with self.lock:
            self.faults.append([n, status, path_prefix])

    def count(self, path_prefix=""):
        with self.lock:
            return sum(1 for _, p, _ in self.requests if p.startswith(path_prefix))

    def _fault(self, path):
        with self.lock:
            for f in self.faults:
                if f[0] > 0 and path.startswith(f[2]):
                    f[0] -= 1
                    return f[1]
        return None

    def send_json(self, h, status, obj, headers=None, method="GET"):
        body = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    def _dispatch(self, h, method):
        u = urllib.parse.urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
        query = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
        with self.lock:
            self.requests.append((method, u.path, sorted(set(form) | set(query))))
        status = self._fault(u.path)
        if status is not None:
            headers = {"Retry-After": "0"} if status == 429 else {}
            return self.send_json(h, status, {"error": "injected", "error_description":
                                              "fault injected by the test"}, headers, method)
        self.handle(h, method, u.path, query, form)

    def handle(self, h, method, path, query, form):  # pragma: no cover - overridden
        raise NotImplementedError


class FakeAad(_Fake):
    def __init__(self, tenant, client_id, token_file, ttl=3599, cert=None, key=None):
        super().__init__("aad", cert, key)
        self.tenant, self.client_id, self.token_file, self.ttl = tenant, client_id, token_file, ttl
        self.issued = set()

    def authority(self):
        return self.url + "/"

    def handle(self, h, method, path, query, form):
        if method != "POST" or path != "/%s/oauth2/v2.0/token" % self.tenant:
            return self.send_json(h, 404, {"error": "not_found"})
        with open(self.token_file) as f:
            current = f.read().strip()
        if form.get("grant_type") != "client_credentials" or \
                form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return self.send_json(h, 400, {"error": "unsupported_grant_type",
                                           "error_description": "AADSTS70003"})
        if form.get("client_id") != self.client_id or form.get("client_assertion") != current:
            return self.send_json(h, 401, {"error": "invalid_client",
                                           "error_description": "AADSTS700024: Client assertion "
                                           "is not within its valid time range."})
        scope = form.get("scope", "")
        now = int(time.time())
        tok = unsigned_jwt({"aud": scope.rsplit("/.default", 1)[0], "tid": self.tenant,
                            "appid": self.client_id, "iat": now, "nbf": now,
                            "exp": now + self.ttl, "jti": uuid.uuid4().hex})
        with self.lock:
            self.issued.add(tok)
        self.send_json(h, 200, {"token_type": "Bearer", "expires_in": self.ttl,
                                "ext_expires_in": self.ttl, "access_token": tok})


class FakeImds(_Fake):
    def __init__(self, tenant, client_ids=("system",), ttl=3599):
        super().__init__("imds")
        self.tenant, self.client_ids, self.ttl = tenant, set(client_ids), ttl
        self.issued = set()

    def handle(self, h, method, path, query, form):
        if path != "/metadata/identity/oauth2/token":
            return self.send_json(h, 404, {"error": "not_found"})
        if h.headers.get("Metadata") != "true":
            return self.send_json(h, 400, {"error": "invalid_request", "error_description":
                                           "Required metadata header not specified"})
        if query.get("api-version") != "2018-02-01":
            return self.send_json(h, 400, {"error": "invalid_request",
                                           "error_description": "bad api-version"})
        client = query.get("client_id", "system")
        if client not in self.client_ids:
            return self.send_json(h, 400, {"error": "invalid_request", "error_description":
                                           "Identity not found"})
        now = int(time.time())
        resource = query.get("resource", "")
        tok = unsigned_jwt({"aud": resource, "tid": self.tenant, "appid": client, "iat": now,
                            "exp": now + self.ttl})
        with self.lock:
            self.issued.add(tok)
        # Numbers as strings, as IMDS sends them.
        self.send_json(h, 200, {"access_token": tok, "refresh_token": "",
                                "expires_in": str(self.ttl), "expires_on": str(now + self.ttl),
                                "not_before": str(now), "resource": resource,
                                "token_type": "Bearer"})


class AcrFront(_Fake):
    """`reg` is a registry.start(..., tls=?, auth="token") env; `aad_tokens` a callable giving
    the set of AAD tokens that may be exchanged (FakeAad.issued | FakeImds.issued)."""

    def __init__(self, reg_env, aad_tokens, tls_dir, access_ttl=300, refresh_ttl=3 * 3600,
                 anonymous=False):
        paths = registry.write_tls_material(tls_dir)
        super().__init__("acr", paths["server.crt"], paths["server.key"])
        self.ca = paths["ca.crt"]
        self.reg = reg_env
        self.aad_tokens = aad_tokens
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl
        d = reg_env["dir"]
        self.signer_key = self.signer_cert = None
        if not anonymous:
            with open(os.path.join(d, "token-signer.key"), "rb") as f:
                self.signer_key = serialization.load_pem_private_key(f.read(), None)
            with open(os.path.join(d, "token-signer.crt"), "rb") as f:
                self.signer_cert = x509.load_pem_x509_certificate(f.read())
        self.refresh_tokens = {}  # token -> (tenant, exp)
        self.revoked_access = set()
        self.issued_access = []
        self.refused = 0  # /v2/ requests with an Authorization answered 401
        self.authorizations = []  # (path, had Authorization) for redirect/lookalike checks
        # A BlobStore: blob GETs are then answered 307 to it, as ACR sends them to storage.
        self.redirect_blobs_to = None
        # A registry without auth behind the same front (a benchmark's baseline): /v2/ passed
        # through without any Authorization check.
        self.anonymous = anonymous

    def challenge(self, scope=None):
        c = 'Bearer realm="%s/oauth2/token",service="%s"' % (self.url, self.address)
        if scope:
            c += ',scope="%s"' % scope
        return c

    def handle(self, h, method, path, query, form):
        if path == "/oauth2/exchange" and method == "POST":
            return self._exchange(h, form)
        if path == "/oauth2/token" and method == "POST":
            return self._token(h, form)
        if path == "/oauth2/token" and method == "GET":
            # The anonymous realm flow: ACR with anonymous pull disabled refuses it.
            with self.lock:
                self.authorizations.append((path, bool(h.headers.get("Authorization"))))
            return self.send_json(h, 401, {"errors": [{"code": "UNAUTHORIZED", "message":
                                                       "anonymous pull is disabled"}]},
                                  {"WWW-Authenticate": self.challenge()}, method)
        if path.startswith("/v2"):
            return self._v2(h, method)
        self.send_json(h, 404, {"errors": [{"code": "NOT_FOUND"}]}, method=method)

    def _exchange(self, h, form):
        if form.get("grant_type") != "access_token" or form.get("service") != self.address:
            return self.send_json(h, 400, {"errors": [{"code": "UNSUPPORTED"}]})
        aad = form.get("access_token", "")
        claims = jwt_claims(aad)
        if aad not in self.aad_tokens() or not claims or claims.get("exp", 0) < time.time():
            return self.send_json(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                       "message": "invalid AAD token"}]})
        if form.get("tenant") and form["tenant"] != claims.get("tid"):
            return self.send_json(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                       "message": "tenant mismatch"}]})
        now = int(time.time())
        rt = unsigned_jwt({"iss": "Azure Container Registry", "aud": self.address,
                           "tenant": claims.get("tid"), "exp": now + self.refresh_ttl,
                           "jti": uuid.uuid4().hex, "grant_type": "refresh_token"})
        with self.lock:
            self.refresh_tokens[rt] = now + self.refresh_ttl
        self.send_json(h, 200, {"refresh_token": rt})

    def _token(self, h, form):
        rt = form.get("refresh_token", "")
        with self.lock:
            exp = self.refresh_tokens.get(rt)
        if form.get("grant_type") != "refresh_token" or exp is None or exp < time.time():
            return self.send_json(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                       "message": "invalid refresh token"}]})
        if form.get("service") != self.address:
            return self.send_json(h, 400, {"errors": [{"code": "UNSUPPORTED"}]})
        access = []
        for one in form.get("scope", "").split(" "):
            p = registry.parse_scope(one)
            if p and p["type"] == "repository":
                p["actions"] = [a for a in p["actions"] if a == "pull"]
                access.append(p)
        tok = registry.make_jwt(self.signer_key, self.signer_cert, "aad-identity", access,
                                self.reg["service"], self.access_ttl)
        with self.lock:
            self.issued_access.append(tok)
        self.send_json(h, 200, {"access_token": tok})  # no expires_in: the JWT's exp says

    def revoke_access_tokens(self):
        """Every access token issued so far is answered 401 from now on (a revoked grant)."""
        with self.lock:
            self.revoked_access.update(self.issued_access)

    def _v2(self, h, method):
        auth = h.headers.get("Authorization", "")
        with self.lock:
            self.authorizations.append((h.path, bool(auth)))
        if self.anonymous:
            auth = ""
        elif not auth.startswith("Bearer ") or auth[7:] in self.revoked_access:
            if auth:
                with self.lock:
                    self.refused += 1
            return self.send_json(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                       "message": "authentication required"}]},
                                  {"WWW-Authenticate": self.challenge()}, method)
        store = self.redirect_blobs_to
        if store is not None and method == "GET" and "/blobs/sha256:" in h.path:
            body, status = self._upstream("GET", h.path, auth, h.headers.get("Accept"))[1:]
            if status != 200:
                return self.send_json(h, status, {"errors": [{"code": "BLOB_UNKNOWN"}]})
            h.send_response(307)
            h.send_header("Location", store.put(body))
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        r, body, _ = self._upstream(method, h.path, auth, h.headers.get("Accept"))
        h.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in ("content-type", "docker-content-digest", "location"):
                h.send_header(k, v)
            if k.lower() == "www-authenticate":
                h.send_header(k, self.challenge())
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    def _upstream(self, method, path, auth, accept):
        import http.client
        scheme = self.reg["scheme"]
        if scheme == "https":
            conn = http.client.HTTPSConnection(self.reg["address"], timeout=30,
                                               context=registry.ssl_context(self.reg["ca"]))
        else:
            conn = http.client.HTTPConnection(self.reg["address"], timeout=30)
        try:
            headers = {"Authorization": auth} if auth else {}
            if accept:
                headers["Accept"] = accept
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        return r, body, r.status


class BlobStore(_Fake):
    """Blob storage on another origin (ACR's 307 target): serves what put() stored under a
    one-time path and records whether each GET carried an Authorization (it must not)."""

    def __init__(self, tls_dir):
        paths = registry.write_tls_material(tls_dir)
        super().__init__("storage", paths["server.crt"], paths["server.key"])
        self.ca = paths["ca.crt"]
        self.blobs = {}
        self.authorizations = []  # (path, had Authorization)

    def put(self, body):
        name = "/blob/" + uuid.uuid4().hex
        with self.lock:
            self.blobs[name] = body
        return self.url + name + "?sig=sas-token"

    def handle(self, h, method, path, query, form):
        with self.lock:
            self.authorizations.append((path, bool(h.headers.get("Authorization"))))
            body = self.blobs.get(path)
        if body is None:
            return self.send_json(h, 404, {"error": "BlobNotFound"}, method=method)
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)


class FakeKeyVault(_Fake):
    """keys: {name: [(version, jwk dict), ...]} newest last; tokens(): AAD tokens accepted."""

    def __init__(self, tls_dir, tokens, tenant):
        paths = registry.write_tls_material(tls_dir)
        super().__init__("keyvault", paths["server.crt"], paths["server.key"])
        self.ca = paths["ca.crt"]
        self.keys = {}
        self.tokens = tokens
        self.tenant = tenant

    def handle(self, h, method, path, query, form):
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens():
            return self.send_json(h, 401, {"error": {"code": "Unauthorized",
                                                     "message": "AKV10000: missing token"}},
                                  {"WWW-Authenticate": 'Bearer authorization="https://login.'
                                   'microsoftonline.com/%s", resource="https://vault.azure.net"'
                                   % self.tenant})
        if query.get("api-version") != "7.4":
            return self.send_json(h, 400, {"error": {"code": "BadParameter"}})
        parts = [p for p in path.split("/") if p]
        if len(parts) not in (2, 3) or parts[0] != "keys" or parts[1] not in self.keys:
            return self.send_json(h, 404, {"error": {"code": "KeyNotFound"}})
        versions = self.keys[parts[1]]
        if len(parts) == 3:
            match = [v for v in versions if v[0] == parts[2]]
            if not match:
                return self.send_json(h, 404, {"error": {"code": "KeyNotFound"}})
            version, jwk = match[0]
        else:
            version, jwk = versions[-1]
        key = dict(jwk, kid="%s/keys/%s/%s" % (self.url, parts[1], version),
                   key_ops=["sign", "verify"])
        now = int(time.time())
        self.send_json(h, 200, {"key": key, "attributes": {"enabled": True, "created": now,
                                                           "updated": now,
                                                           "recoveryLevel": "Recoverable"}})


def ec_jwk(public_key):
    """A JWK of an EC public key (cryptography object), as Key Vault returns it."""
    nums = public_key.public_numbers()
    size = (public_key.curve.key_size + 7) // 8
    crv = {256: "P-256", 384: "P-384", 521: "P-521"}[public_key.curve.key_size]
    return {"kty": "EC", "crv": crv, "x": b64url(nums.x.to_bytes(size, "big")),
            "y": b64url(nums.y.to_bytes(size, "big"))}


def rsa_jwk(public_key):
    nums = public_key.public_numbers()
    n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "n": b64url(n), "e": b64url(e)}
