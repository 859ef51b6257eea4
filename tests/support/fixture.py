#!/usr/bin/python3
"""Test material for sigil: keys, tiny OCI images, cosign signatures, and the attacks on them.

usage (every command also exists as a function: `import fixture`):
  fixture.py keygen --alg p256|p384|ed25519|rsa OUT_PREFIX      -> OUT.key (PKCS#8), OUT.pub (PKIX)
  fixture.py push-image --registry ADDR --repo R --tag T --content TEXT [--env ENV]   -> digest
  fixture.py push-index --registry ADDR --repo R --tag T --content TEXT [--env ENV]   -> digest
  fixture.py sign --registry ADDR --repo R --digest D --key K.key
                  [--variant ok|bad-sig|payload-digest|wrong-type] [--append] [--env ENV]
  fixture.py copy-signature --registry ADDR --repo R --from-digest D1 --to-digest D2 [--env ENV]
  fixture.py retag --registry ADDR --repo R --tag T --digest D [--env ENV]

ENV is the env.json written by registry.py (scheme, test CA, credentials); without it the
registry is plain http without auth. The registry client speaks the distribution HTTP API
itself (monolithic blob upload POST+PUT, manifest PUT) and answers Basic and Bearer challenges
(token fetched from the realm with the challenge's service and a pull,push scope).

Signatures follow cosign's legacy layout (docs/sigstore-formats.md 1.1): a manifest at tag
sha256-<hex>.sig, one layer per signature, media type
application/vnd.dev.cosign.simplesigning.v1+json, the layer blob is the simple-signing payload
and the annotation dev.cosignproject.cosign/signature is the b64 signature over it.
Standard library + python3-cryptography only.
"""
import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import ssl
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANN_SIGNATURE = "dev.cosignproject.cosign/signature"
COSIGN_TYPE = "cosign container image signature"
ACCEPT = ", ".join([MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST])
VARIANTS = ("ok", "bad-sig", "payload-digest", "wrong-type")


class FixtureError(Exception):
    pass


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# keys


def generate_key(alg):
    if alg == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "rsa":
        return rsa.generate_private_key(65537, 2048)
    raise FixtureError("unknown key algorithm %r (p256, p384, ed25519, rsa)" % alg)


def private_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key):
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def keygen(alg, prefix):
    """Writes PREFIX.key (unencrypted PKCS#8 PEM) and PREFIX.pub (PKIX PEM); returns the paths."""
    key = generate_key(alg)
    with open(prefix + ".key", "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(private_pem(key))
    with open(prefix + ".pub", "wb") as f:
        f.write(public_pem(key))
    return prefix + ".key", prefix + ".pub"


def load_private_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def sign_bytes(key, data):
    """cosign's conventions: ECDSA DER over SHA-256 (P-384: SHA-384), Ed25519 pure,
    RSA PKCS#1 v1.5 with SHA-256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        h = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
        return key.sign(data, ec.ECDSA(h))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise FixtureError("unsupported key type %s" % type(key).__name__)


# ---------------------------------------------------------------------------------------------
# registry client (distribution HTTP API)


def _parse_challenge(header):
    """'Bearer realm="x",service="y",scope="z"' -> ('bearer', {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        k = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            j = i + 1
            val = []
            while j < len(rest) and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < len(rest):
                    j += 1
                val.append(rest[j])
                j += 1
            params[k] = "".join(val)
            i = j + 1
        else:
            j = rest.find(",", i)
            j = len(rest) if j < 0 else j
            params[k] = rest[i:j].strip()
            i = j
    return scheme.lower(), params


class Registry:
    """A minimal distribution client for one registry host."""

    def __init__(self, address, scheme="http", ca=None, user=None, password=None, timeout=30):
        self.address = address
        self.scheme = scheme
        self.base = "%s://%s" % (scheme, address)
        self.ctx = ssl.create_default_context(cafile=ca) if scheme == "https" else None
        self.user, self.password = user, password
        self.timeout = timeout
        self.tokens = {}  # repo -> bearer token
        self.use_basic = False  # set once the registry asked for Basic

    @classmethod
    def from_env(cls, env_or_path, address=None):
        env = env_or_path
        if isinstance(env_or_path, str):
            with open(env_or_path) as f:
                env = json.load(f)
        return cls(address or env["address"], env.get("scheme", "http"), env.get("ca"),
                   env.get("user"), env.get("password"))

    def _basic(self):
        return "Basic " + base64.b64encode(
            ("%s:%s" % (self.user or "", self.password or "")).encode()).decode()

    def _fetch_token(self, params, repo):
        realm = params.get("realm")
        if not realm:
            raise FixtureError("bearer challenge without realm")
        q = {}
        if params.get("service"):
            q["service"] = params["service"]
        q["scope"] = "repository:%s:pull,push" % repo if repo else params.get("scope", "")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(q)
        headers = {"Authorization": self._basic()} if self.user else {}
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx) as r:
                doc = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise FixtureError("token request to %s failed: HTTP %d" % (realm, e.code))
        tok = doc.get("token") or doc.get("access_token")
        if not tok:
            raise FixtureError("token response without token")
        return tok

    def _auth_header(self, repo):
        if repo in self.tokens:
            return "Bearer " + self.tokens[repo]
        return None

    def request(self, method, path, data=None, headers=None, repo=None, full_url=None):
        """Returns (status, headers, body); follows one auth challenge."""
        url = full_url or self.base + path
        for attempt in range(2):
            h = dict(headers or {})
            auth = self._auth_header(repo)
            if auth:
                h["Authorization"] = auth
            elif self.use_basic and self.user:
                h["Authorization"] = self._basic()
            req = urllib.request.Request(url, data=data, method=method, headers=h)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                body = e.read()
                if e.code != 401 or attempt == 1:
                    return e.code, e.headers, body
                scheme, params = _parse_challenge(e.headers.get("WWW-Authenticate", ""))
                if scheme == "bearer":
                    self.tokens[repo] = self._fetch_token(params, repo)
                elif scheme == "basic" and self.user and not self.use_basic:
                    self.use_basic = True
                else:
                    return e.code, e.headers, body
        raise AssertionError("unreachable")

    def _abs(self, loc):
        return loc if loc.startswith(("http://", "https://")) else self.base + loc

    def blob_exists(self, repo, digest):
        code, _, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), repo=repo)
        return code == 200

    def put_blob(self, repo, data):
        d = sha256_digest(data)
        if self.blob_exists(repo, d):
            return d
        code, hdr, body = self.request("POST", "/v2/%s/blobs/uploads/" % repo, data=b"",
                                       headers={"Content-Length": "0"}, repo=repo)
        if code != 202 or not hdr.get("Location"):
            raise FixtureError("blob upload start in %s: HTTP %d %r" % (repo, code, body[:200]))
        loc = self._abs(hdr["Location"])
        loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(d)
        code, _, body = self.request("PUT", None, data=data, full_url=loc, repo=repo,
                                     headers={"Content-Type": "application/octet-stream"})
        if code != 201:
            raise FixtureError("blob upload in %s: HTTP %d %r" % (repo, code, body[:200]))
        return d

    def get_blob(self, repo, digest):
        code, _, body = self.request("GET", "/v2/%s/blobs/%s" % (repo, digest), repo=repo)
        if code != 200:
            raise FixtureError("blob %s in %s: HTTP %d" % (digest, repo, code))
        return body

    def put_manifest(self, repo, ref, data, media_type):
        code, _, body = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), data=data,
                                     headers={"Content-Type": media_type}, repo=repo)
        if code != 201:
            raise FixtureError("manifest PUT %s:%s: HTTP %d %r" % (repo, ref, code, body[:300]))
        return sha256_digest(data)

    def get_manifest(self, repo, ref):
        """(bytes, media type) or (None, None) on 404."""
        code, hdr, body = self.request("GET", "/v2/%s/manifests/%s" % (repo, ref),
                                       headers={"Accept": ACCEPT}, repo=repo)
        if code == 404:
            return None, None
        if code != 200:
            raise FixtureError("manifest GET %s:%s: HTTP %d" % (repo, ref, code))
        return body, hdr.get("Content-Type")

    def delete_manifest(self, repo, digest):
        code, _, _ = self.request("DELETE", "/v2/%s/manifests/%s" % (repo, digest), repo=repo)
        return code == 202

    def resolve(self, repo, tag):
        body, _ = self.get_manifest(repo, tag)
        if body is None:
            raise FixtureError("%s:%s not found" % (repo, tag))
        return sha256_digest(body)


def connect(registry=None, env=None):
    """A Registry from an env.json path/dict and/or a plain address."""
    if env:
        return Registry.from_env(env, registry)
    if not registry:
        raise FixtureError("need --registry or --env")
    return Registry(registry)


# ---------------------------------------------------------------------------------------------
# images


def build_image(content, arch="amd64"):
    """A deterministic single-layer OCI image whose only file is /hello.txt = content.
    Returns (manifest bytes, {digest: blob bytes})."""
    data = content.encode() if isinstance(content, str) else content
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        ti = tarfile.TarInfo("hello.txt")
        ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        t.addfile(ti, io.BytesIO(data))
    raw = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(raw)
    layer = gz.getvalue()
    cfg = compact({"architecture": arch, "os": "linux", "created": "1970-01-01T00:00:00Z",
                   "config": {"Cmd": ["/hello.txt"]},
                   "rootfs": {"type": "layers", "diff_ids": [sha256_digest(raw)]},
                   "history": [{"created": "1970-01-01T00:00:00Z",
                                "created_by": "sigil tests/support/fixture.py"}]})
    manifest = compact({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256_digest(cfg),
                                   "size": len(cfg)},
                        "layers": [{"mediaType": MT_OCI_LAYER, "digest": sha256_digest(layer),
                                    "size": len(layer)}]})
    return manifest, {sha256_digest(cfg): cfg, sha256_digest(layer): layer}


def push_image(reg, repo, tag, content, arch="amd64"):
    """Pushes the image (blobs, then the manifest at `tag`, or by digest if tag is None)."""
    manifest, blobs = build_image(content, arch)
    for data in blobs.values():
        reg.put_blob(repo, data)
    return reg.put_manifest(repo, tag or sha256_digest(manifest), manifest, MT_OCI_MANIFEST)


def push_index(reg, repo, tag, content, archs=("amd64", "arm64")):
    """Pushes one image per arch (by digest) and an OCI index over them at `tag`."""
    entries = []
    for arch in archs:
        manifest, _ = build_image("%s (%s)" % (content, arch), arch)
        d = push_image(reg, repo, None, "%s (%s)" % (content, arch), arch)
        entries.append({"mediaType": MT_OCI_MANIFEST, "digest": d, "size": len(manifest),
                        "platform": {"architecture": arch, "os": "linux"}})
    index = compact({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries})
    return reg.put_manifest(repo, tag, index, MT_OCI_INDEX)


# ---------------------------------------------------------------------------------------------
# signatures


def signature_tag(digest):
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise FixtureError("not a sha256 digest: %r" % digest)
    return digest.replace(":", "-") + ".sig"


def simple_signing_payload(docker_reference, digest, type_=COSIGN_TYPE, optional=None):
    """The exact bytes cosign signs (Go json.Marshal: compact, no trailing newline)."""
    return compact({"critical": {"identity": {"docker-reference": docker_reference},
                                 "image": {"docker-manifest-digest": digest},
                                 "type": type_},
                    "optional": optional})


def other_digest(d):
    """A well-formed digest that is not `d` (what a signature over another image names)."""
    return sha256_digest(b"not-" + d.encode())


def push_signature_layer(reg, repo, digest, payload, signature_b64, append=False,
                         annotations=None):
    """Writes (or extends, with append) the .sig manifest of `digest`; returns its digest.
    annotations: more layer annotations next to the signature (certificate, chain, bundle,
    rfc3161timestamp: sigstore_fixture.py)."""
    tag = signature_tag(digest)
    layers = []
    if append:
        old, _ = reg.get_manifest(repo, tag)
        if old is not None:
            layers = json.loads(old)["layers"]
    layers.append({"mediaType": MT_SIMPLESIGNING, "size": len(payload),
                   "digest": reg.put_blob(repo, payload),
                   "annotations": dict({ANN_SIGNATURE: signature_b64}, **(annotations or {}))})
    cfg = compact({"architecture": "", "created": "0001-01-01T00:00:00Z",
                   "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers], "os": "",
                   "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
                   "config": {}})
    manifest = compact({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": {"mediaType": MT_OCI_CONFIG, "size": len(cfg),
                                   "digest": reg.put_blob(repo, cfg)},
                        "layers": layers})
    return reg.put_manifest(repo, tag, manifest, MT_OCI_MANIFEST)


def sign(reg, repo, digest, key, variant="ok", append=False, docker_reference=None):
    """Signs `digest` in `repo` like `cosign sign --key`. key: path or private key object.
    Variants: ok; bad-sig (one bit of the signature flipped); payload-digest (the payload
    names another digest); wrong-type (critical.type is not cosign's).
    Returns {"image", "tag", "manifest", "payload", "signature"}."""
    if variant not in VARIANTS:
        raise FixtureError("unknown variant %r" % variant)
    if isinstance(key, str):
        key = load_private_key(key)
    signed = other_digest(digest) if variant == "payload-digest" else digest
    type_ = "cosign container image attestation" if variant == "wrong-type" else COSIGN_TYPE
    payload = simple_signing_payload(docker_reference or "%s/%s" % (reg.address, repo), signed,
                                     type_)
    sig = sign_bytes(key, payload)
    if variant == "bad-sig":
        sig = sig[:len(sig) // 2] + bytes([sig[len(sig) // 2] ^ 0x01]) + sig[len(sig) // 2 + 1:]
    sig_b64 = base64.b64encode(sig).decode()
    md = push_signature_layer(reg, repo, digest, payload, sig_b64, append)
    return {"image": digest, "tag": signature_tag(digest), "manifest": md,
            "payload": payload.decode(), "signature": sig_b64}


def copy_signature(reg, repo, from_digest, to_digest, to_repo=None):
    """Copies the .sig manifest of from_digest to the .sig tag of to_digest (in to_repo,
    blobs copied along): the 'signature copied from another image' attack."""
    to_repo = to_repo or repo
    body, mt = reg.get_manifest(repo, signature_tag(from_digest))
    if body is None:
        raise FixtureError("%s has no signature in %s" % (from_digest, repo))
    if to_repo != repo:
        m = json.loads(body)
        for desc in [m["config"]] + m["layers"]:
            reg.put_blob(to_repo, reg.get_blob(repo, desc["digest"]))
    return reg.put_manifest(to_repo, signature_tag(to_digest), body, mt or MT_OCI_MANIFEST)


def retag(reg, repo, tag, digest):
    """Points `tag` at the manifest `digest` (the 'tag moved after signing' attack)."""
    body, mt = reg.get_manifest(repo, digest)
    if body is None:
        raise FixtureError("%s not found in %s" % (digest, repo))
    return reg.put_manifest(repo, tag, body, mt or MT_OCI_MANIFEST)


# ---------------------------------------------------------------------------------------------
# configuration files for sigil


def docker_config(path, creds):
    """Writes a docker config.json: creds = {registry address: (user, password)}."""
    auths = {host: {"auth": base64.b64encode(("%s:%s" % up).encode()).decode()}
             for host, up in creds.items()}
    with open(path, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"auths": auths}, f)
    return path


def policy_yaml(name, globs, keys, mode=None, require_digest=False):
    """A ClusterImagePolicy (policy.sigstore.dev/v1beta1); keys = {authority: public PEM}.
    require_digest: spec.requireDigest (tag-only references are refused)."""
    if isinstance(globs, str):
        globs = [globs]
    out = ["apiVersion: policy.sigstore.dev/v1beta1", "kind: ClusterImagePolicy",
           "metadata:", "  name: %s" % name, "spec:", "  images:"]
    out += ["  - glob: %s" % json.dumps(g) for g in globs]
    out.append("  authorities:")
    for auth_name, pem in keys.items():
        pem = pem.decode() if isinstance(pem, bytes) else pem
        out += ["  - name: %s" % auth_name, "    key:", "      data: |"]
        out += ["        " + line for line in pem.strip().splitlines()]
    if mode:
        out.append("  mode: %s" % mode)
    if require_digest:
        out.append("  requireDigest: true")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("--alg", default="p256", choices=["p256", "p384", "ed25519", "rsa"])
    k.add_argument("prefix")

    def reg_args(p):
        p.add_argument("--registry")
        p.add_argument("--env", help="env.json written by registry.py")
        p.add_argument("--repo", required=True)

    for n in ("push-image", "push-index"):
        p = sub.add_parser(n)
        reg_args(p)
        p.add_argument("--tag", required=True)
        p.add_argument("--content", default="hello from a sigil test image\n")
    s = sub.add_parser("sign")
    reg_args(s)
    s.add_argument("--digest", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--variant", default="ok", choices=VARIANTS)
    s.add_argument("--append", action="store_true")
    s.add_argument("--docker-reference")
    c = sub.add_parser("copy-signature")
    reg_args(c)
    c.add_argument("--from-digest", required=True)
    c.add_argument("--to-digest", required=True)
    c.add_argument("--to-repo")
    r = sub.add_parser("retag")
    reg_args(r)
    r.add_argument("--tag", required=True)
    r.add_argument("--digest", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "keygen":
            print(" ".join(keygen(a.alg, a.prefix)))
            return 0
        reg = connect(a.registry, a.env)
        if a.cmd == "push-image":
            print(push_image(reg, a.repo, a.tag, a.content))
        elif a.cmd == "push-index":
            print(push_index(reg, a.repo, a.tag, a.content))
        elif a.cmd == "sign":
            print(json.dumps(sign(reg, a.repo, a.digest, a.key, a.variant, a.append,
                                  a.docker_reference)))
        elif a.cmd == "copy-signature":
            print(copy_signature(reg, a.repo, a.from_digest, a.to_digest, a.to_repo))
        elif a.cmd == "retag":
            print(retag(reg, a.repo, a.tag, a.digest))
    except (FixtureError, OSError, ValueError) as e:
        print("fixture.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
