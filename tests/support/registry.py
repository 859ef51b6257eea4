#!/usr/bin/python3
"""Start and stop a real distribution registry (Debian `docker-registry`) for tests.

usage:
  registry.py start --dir DIR [--tls] [--auth none|basic|token] [--user U] [--password P]
      prints "127.0.0.1:PORT" and writes DIR/env.json:
      {"address", "scheme": "https"|"http", "ca": path|null, "user", "password",
       "pid", "token_pid", "dir", "auth", "service", "token_realm"}
  registry.py stop --dir DIR

The registry listens on 127.0.0.1 only, with its own YAML config and filesystem storage in
DIR. --tls makes a test CA and a server certificate (IP SAN 127.0.0.1, DNS localhost) at run
time. --auth basic uses a bcrypt htpasswd file; --auth token runs a small token server
(the distribution token spec, JWT ES256 with the signer certificate in the `x5c` header,
trusted by the registry through `auth.token.rootcertbundle`). The token server counts the
requests it served in DIR/token_count and logs one JSON line per request in
DIR/token_requests.log so tests can check token caching.

Also importable: start(dir, ...) -> env dict, stop(dir), make_ca(), issue_server_cert().
Only the Python standard library and python3-cryptography.
"""
import argparse
import base64
import datetime as dt
import hashlib
import http.server
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REGISTRY_BIN = "/usr/bin/docker-registry"
SERVICE = "sigil-test-registry"
TOKEN_ISSUER = "sigil-test-token-issuer"
READY_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# certificates


def _write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigil tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="sigil test CA"):
    """Returns (cert, key) of a fresh self-signed P-256 CA valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue_server_cert(ca_cert, ca_key, hosts=("127.0.0.1", "localhost"), cn="127.0.0.1"):
    """Returns (cert, key): a TLS server certificate for `hosts` (IPs become IP SANs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    sans = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_tls_material(d):
    """Writes DIR/ca.crt, ca.key, server.crt (leaf then CA), server.key. Returns paths."""
    ca_cert, ca_key = make_ca()
    srv_cert, srv_key = issue_server_cert(ca_cert, ca_key)
    paths = {k: os.path.join(d, k) for k in ("ca.crt", "ca.key", "server.crt", "server.key")}
    _write(paths["ca.crt"], ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths["ca.key"], _key_pem(ca_key), 0o600)
    _write(paths["server.crt"], srv_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths["server.key"], _key_pem(srv_key), 0o600)
    return paths


def _token_signer(d):
    """A self-signed ES256 signing certificate; the registry trusts it as its root bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("sigil test token signer"))
            .issuer_name(_name("sigil test token signer"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    _write(os.path.join(d, "token-signer.crt"), cert.public_bytes(serialization.Encoding.PEM))
    _write(os.path.join(d, "token-signer.key"), _key_pem(key), 0o600)


# ---------------------------------------------------------------------------------------------
# token server (runs as `registry.py token-server --dir DIR`, a separate process)


def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def libtrust_key_id(public_key):
    """docker/libtrust key id: base32(sha256(SPKI DER)[:30]) in 4-char groups joined by ':'."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def make_jwt(key, cert, sub, access, service, ttl=300, now=None):
    now = int(time.time()) if now is None else now
    header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(key.public_key()),
              "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]}
    claims = {"iss": TOKEN_ISSUER, "sub": sub, "aud": service, "exp": now + ttl,
              "nbf": now - 30, "iat": now, "jti": uuid.uuid4().hex, "access": access}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def parse_scope(scope):
    """'repository:test/app:pull,push' -> {'type','name','actions'}; None if malformed.
    Names may contain ':' only in the registry-host form, so split type first and actions last."""
    first = scope.find(":")
    last = scope.rfind(":")
    if first <= 0 or last <= first:
        return None
    actions = [a for a in scope[last + 1:].split(",") if a]
    return {"type": scope[:first], "name": scope[first + 1:last], "actions": actions}


def run_token_server(d):
    with open(os.path.join(d, "token-config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "token-signer.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(d, "token-signer.crt"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    lock = threading.Lock()
    state = {"count": 0}
    count_path = os.path.join(d, "token_count")
    log_path = os.path.join(d, "token_requests.log")
    _write(count_path, b"0\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; requests go to token_requests.log
            pass

        def _send(self, code, obj, extra=None):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            user = None
            auth = self.headers.get("Authorization", "")
            outcome = "anonymous"
            if auth:
                ok = False
                if auth[:6].lower() == "basic ":
                    try:
                        u_, _, p_ = base64.b64decode(auth[6:].strip(), validate=True) \
                            .decode().partition(":")
                        ok = u_ == cfg["user"] and p_ == cfg["password"]
                    except (ValueError, UnicodeDecodeError):
                        ok = False
                outcome = "ok" if ok else "bad-credentials"
                user = cfg["user"] if ok else None
            with lock:
                state["count"] += 1
                _write(count_path, ("%d\n" % state["count"]).encode())
                with open(log_path, "a") as f:
                    f.write(json.dumps({"path": u.path, "service": q.get("service"),
                                        "scope": q.get("scope"), "user": user,
                                        "outcome": outcome}) + "\n")
            if u.path != "/token":
                return self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
            if outcome == "bad-credentials":
                return self._send(401, {"errors": [{"code": "UNAUTHORIZED",
                                                    "message": "bad credentials"}]},
                                  {"WWW-Authenticate": 'Basic realm="sigil-test-token"'})
            service = (q.get("service") or [""])[0]
            if service != cfg["service"]:
                return self._send(400, {"errors": [{"code": "DENIED",
                                                    "message": "unknown service"}]})
            access = []
            if user is not None:  # authenticated: grant what was asked, pull and push only
                for sc in q.get("scope", []):
                    for one in sc.split(" "):
                        p = parse_scope(one)
                        if p and p["type"] == "repository":
                            p["actions"] = [a for a in p["actions"] if a in ("pull", "push")]
                            access.append(p)
            now = int(time.time())
            tok = make_jwt(key, cert, user or "", access, service, 300, now)
            issued = dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            self._send(200, {"token": tok, "access_token": tok, "expires_in": 300,
                             "issued_at": issued})

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if cfg.get("tls"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg["cert"], cfg["key"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    _write(os.path.join(d, "token.port"), ("%d\n" % srv.server_address[1]).encode())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv.serve_forever()


# ---------------------------------------------------------------------------------------------
# registry process management


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def ssl_context(ca):
    """Client context trusting only `ca` (or the default store when ca is None)."""
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def _tail(path, n=30):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
    except OSError:
        return "(no log)"


def _probe(url, ctx):
    """HTTP status of GET url, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return None


# Popen objects of the processes this interpreter started, kept so they are reaped on stop
# (and not reported as leaked while they are meant to keep running).
_procs = {}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _config_yaml(d, port, tls, auth, token_realm):
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  accesslog:",
        "    disabled: false",
        "storage:",
        "  filesystem:",
        "    rootdirectory: %s" % json.dumps(os.path.join(d, "storage")),
        "  delete:",
        "    enabled: true",
        "  cache:",
        "    blobdescriptor: inmemory",
        "http:",
        "  addr: 127.0.0.1:%d" % port,
        "  secret: sigil-test-secret",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if tls:
        lines += ["  tls:",
                  "    certificate: %s" % json.dumps(os.path.join(d, "server.crt")),
                  "    key: %s" % json.dumps(os.path.join(d, "server.key"))]
    if auth == "basic":
        lines += ["auth:", "  htpasswd:", "    realm: sigil-test-registry",
                  "    path: %s" % json.dumps(os.path.join(d, "htpasswd"))]
    elif auth == "token":
        lines += ["auth:", "  token:",
                  "    realm: %s" % json.dumps(token_realm),
                  "    service: %s" % SERVICE,
                  "    issuer: %s" % TOKEN_ISSUER,
                  "    rootcertbundle: %s" % json.dumps(os.path.join(d, "token-signer.crt"))]
    return "\n".join(lines) + "\n"


def _htpasswd(user, password):
    try:
        out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                             capture_output=True, timeout=30).stdout
    except FileNotFoundError:
        try:
            import bcrypt  # optional
        except ImportError:
            raise SystemExit("--auth basic needs `htpasswd` (apache2-utils) or python bcrypt")
        h = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
        return ("%s:%s\n" % (user, h)).encode()
    return out.strip() + b"\n"


def _start_token_server(d, tls, user, password):
    _token_signer(d)
    cfg = {"user": user, "password": password, "service": SERVICE, "tls": tls,
           "cert": os.path.join(d, "server.crt"), "key": os.path.join(d, "server.key")}
    _write(os.path.join(d, "token-config.json"), json.dumps(cfg).encode(), 0o600)
    port_file = os.path.join(d, "token.port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    log = open(os.path.join(d, "token.log"), "ab")
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "token-server", "--dir", d],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    _procs[p.pid] = p
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(port_file):
            with open(port_file) as f:
                return p.pid, int(f.read().strip())
        if p.poll() is not None:
            break
        time.sleep(0.05)
    _kill(p.pid)
    raise RuntimeError("token server did not start:\n" + _tail(os.path.join(d, "token.log")))


def start(d, tls=False, auth="none", user=None, password=None):
    """Starts a registry (and its token server); returns the env dict also written to
    DIR/env.json. Raises RuntimeError with the registry's log tail if it does not come up."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        raise RuntimeError("%s not installed (Debian package docker-registry)" % REGISTRY_BIN)
    if auth not in ("none", "basic", "token"):
        raise ValueError("auth must be none, basic or token")
    d = os.path.abspath(d)
    os.makedirs(os.path.join(d, "storage"), exist_ok=True)
    if auth != "none":
        user = user or "sigil"
        password = password or "s3cret-test-password"
    ca = None
    if tls:
        ca = write_tls_material(d)["ca.crt"]
    if auth == "basic":
        _write(os.path.join(d, "htpasswd"), _htpasswd(user, password), 0o600)
    token_pid, token_realm = None, None
    scheme = "https" if tls else "http"
    if auth == "token":
        token_pid, tport = _start_token_server(d, tls, user, password)
        token_realm = "%s://127.0.0.1:%d/token" % (scheme, tport)
    ctx = ssl_context(ca) if tls else None
    log_path = os.path.join(d, "registry.log")
    last_err = "registry did not start"
    for _attempt in range(5):
        port = free_port()
        cfg_path = os.path.join(d, "config.yml")
        _write(cfg_path, _config_yaml(d, port, tls, auth, token_realm).encode())
        log = open(log_path, "ab")
        p = subprocess.Popen([REGISTRY_BIN, "serve", cfg_path], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, start_new_session=True, cwd=d)
        _procs[p.pid] = p
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        url = "%s://127.0.0.1:%d/v2/" % (scheme, port)
        status = None
        while time.monotonic() < deadline and p.poll() is None:
            status = _probe(url, ctx)
            if status in (200, 401):
                break
            time.sleep(0.05)
        if status in (200, 401) and p.poll() is None:
            env = {"address": "127.0.0.1:%d" % port, "scheme": scheme, "ca": ca,
                   "user": user, "password": password, "pid": p.pid, "token_pid": token_pid,
                   "dir": d, "auth": auth, "service": SERVICE if auth == "token" else None,
                   "token_realm": token_realm}
            _write(os.path.join(d, "env.json"), json.dumps(env, indent=1).encode(), 0o600)
            return env
        tail = _tail(log_path)
        _kill(p.pid)
        last_err = "registry on port %d did not answer %s within %.0fs; log tail:\n%s" % (
            port, url, READY_TIMEOUT, tail)
        if "address already in use" not in tail:
            break
    if token_pid:
        _kill(token_pid)
    raise RuntimeError(last_err)


def _kill(pid, timeout=5.0):
    p = _procs.pop(pid, None)
    if p is not None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return
    if not pid or not _alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # reap if it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _ours(pid, marker):
    """True if pid is still the process we started (guards against pid reuse)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return marker in f.read()
    except OSError:
        return False


def stop(d):
    path = os.path.join(os.path.abspath(d), "env.json")
    try:
        with open(path) as f:
            env = json.load(f)
    except (OSError, ValueError):
        return
    if env.get("pid") and _ours(env["pid"], b"docker-registry"):
        _kill(env["pid"])
    if env.get("token_pid") and _ours(env["token_pid"], b"token-server"):
        _kill(env["token_pid"])


def load_env(d_or_file):
    p = d_or_file if d_or_file.endswith(".json") else os.path.join(d_or_file, "env.json")
    with open(p) as f:
        return json.load(f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--dir", required=True)
    s.add_argument("--tls", action="store_true")
    s.add_argument("--auth", default="none", choices=["none", "basic", "token"])
    s.add_argument("--user")
    s.add_argument("--password")
    t = sub.add_parser("stop")
    t.add_argument("--dir", required=True)
    ts = sub.add_parser("token-server", help="internal: run the token server for DIR")
    ts.add_argument("--dir", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "start":
        try:
            env = start(a.dir, a.tls, a.auth, a.user, a.password)
        except (RuntimeError, ValueError) as e:
            print("registry.py: %s" % e, file=sys.stderr)
            return 1
        print(env["address"])
    elif a.cmd == "stop":
        stop(a.dir)
    else:
        run_token_server(os.path.abspath(a.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
