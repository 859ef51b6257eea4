#!/usr/bin/python3
"""Keyless and bundle test material for sigil: a self-made sigstore deployment and what it signs.

usage (every command also exists as a function: `import sigstore_fixture`):
  sigstore_fixture.py init STATE [--time ISO] [--name NAME] [--rekor-v2]
  sigstore_fixture.py sign   --registry ADDR|--env ENV --repo R (--digest D|--tag T) SIGNER
                             [--append] [--docker-reference REF]
  sigstore_fixture.py bundle --registry ADDR|--env ENV --repo R (--digest D|--tag T) SIGNER
                             [--version 0.1|0.2|0.3] [--content dsse|message]
                             [--predicate-type URI] [--subject-name NAME] [--out FILE]
  sigstore_fixture.py bundle --no-push --out FILE (--digest D | --artifact FILE) SIGNER ...
SIGNER is either --key KEY.pem (PKCS#8, e.g. from `fixture.py keygen`) [--rekor-state STATE]
or --keyless STATE [--identity ID] [--san-type email|uri|othername] [--issuer URL]
[--issuer-ext v1|v2|both]; plus [--no-tlog] [--rekor-v2] [--tsa [STATE]] [--time ISO]
[--variant V].
Each command prints one JSON object (digests, tags, paths) on stdout.

What each command makes (section numbers are those of docs/sigstore-formats.md in ../shared):
* init (1.3.1-1.3.6): in STATE, a Fulcio-like CA (P-384 root and intermediate, the
  intermediate with the codeSigning EKU), a CT log key (P-256), a Rekor-v1-like log (P-256 key,
  an RFC 6962 Merkle tree kept in STATE so entries accumulate, FILLER_ENTRIES filler leaves
  first, checkpoint origin "rekor.sigil.test - <tree id>"), an RFC 3161 TSA (P-384 root, P-256
  leaf with the critical timeStamping EKU, answered by `openssl ts -reply` with a generated
  config), and two descriptions of that trust: trusted_root.json (sigstore TrustedRoot,
  protobuf JSON) and trustroot.yaml (policy-controller TrustRoot with spec.sigstoreKeys).
  With --rekor-v2 also a Rekor v2 (rekor-tiles) log, in both: Ed25519 key, origin
  log2025-1.rekor.sigil.test, log id = the C2SP note key hash SHA-256(origin || "\n" || 0x01 ||
  key), its own Merkle tree. trusted_root.json states that id; a TrustRoot's sigstoreKeys has no
  id field, so there it is one more tLogs entry (base URL and key) and the verifier derives it.
* Fulcio-like leaves (1.3.1, 1.3.2), minted per signature for an ephemeral P-256 key: empty
  subject, critical SAN (email, URI or the OtherName 1.3.6.1.4.1.57264.1.7), codeSigning EKU,
  issuer extensions .1.1 (raw URL) and/or .1.8 (DER UTF8String), an embedded SCT from the CT key
  (precert signed data over the TBS without the SCT extension), valid 10 minutes from --time.
* sign (1.1): a legacy cosign signature, tag sha256-<hex>.sig, one layer per signature (--append
  adds one), simple-signing payload, annotations certificate + chain (keyless), bundle (the Rekor
  SET over a hashedrekord 0.0.1 entry; --no-tlog leaves it out; key-signed entries go to
  --rekor-state) and, with --tsa, rfc3161timestamp over the raw signature bytes.
* bundle (1.4): a sigstore bundle. --version 0.3 (default): media type
  application/vnd.dev.sigstore.bundle.v0.3+json and a leaf `certificate`; 0.1/0.2:
  ...bundle+json;version=0.x with `x509CertificateChain` [leaf]. --content dsse (default) signs the
  cosign v3 statement (predicateType https://sigstore.dev/cosign/sign/v1, subject = the image
  digest) in DSSE with a dsse 0.0.1 log entry; --content message is a messageSignature over an
  artifact (--artifact FILE; when pushed without one: the image manifest bytes) with a
  hashedrekord 0.0.1 entry. Log entries carry the inclusion promise (SET) and, for 0.2 and 0.3,
  an inclusion proof with a signed checkpoint. --tsa adds an RFC 3161 timestamp over the
  signature bytes. Pushed as cosign v3 does: an OCI 1.1 artifact manifest (artifactType = the
  bundle's media type, empty config {}, one layer = the bundle, subject = the image) and, since
  the registry has no referrers API (distribution 2.8), the referrers tag-schema index at tag
  sha256-<hex>, extended when more bundles are added. --no-push --out FILE writes only the bundle.
  A --rekor-v2 signer (STATE made with init --rekor-v2) logs as cosign v3 does on Rekor v2:
  a hashedrekord 0.0.2 entry (for DSSE over SHA-256 of the PAE), no SET and no integrated time,
  an inclusion proof whose checkpoint carries a witness cosignature before the log's own line,
  and (by default) an RFC 3161 timestamp, the only proof of the signing time. A message bundle
  over an --artifact names it in the in-toto subject by sha256 and by --subject-digests.

Variants (--variant, default ok) change exactly one thing each; VARIANTS says which command takes
which, and Signer refuses a variant that cannot apply (e.g. no-sct with a key):
  bad-sig            the signature's last byte flipped
  payload-digest     payload / statement / message names another digest; the signature over it valid
  wrong-key          key: signed by another key (and logged with it); keyless: the signature is by a
                     key other than the certificate's
  bad-set            the SET's last byte flipped
  set-body-mismatch  the (validly signed and included) log body records another signature
  no-sct             no embedded SCT extension
  bad-sct            the embedded SCT's signature corrupted
  expired-at-tlog    the certificate window ends 20 minutes before the log's integratedTime
  untrusted-ca       leaf from a throw-away CA with the same names as the trusted one
  wrong-issuer-ext   the issuer extension(s) name https://issuer.evil.example
  bad-inclusion      one inclusion-proof hash corrupted (bundles 0.2/0.3)
  bad-checkpoint     the checkpoint signature corrupted (bundles 0.2/0.3)
  wrong-predicate    DSSE statement with predicateType https://slsa.dev/provenance/v1 (bundles)
  root-in-bundle     x509CertificateChain = leaf, intermediate and root (bundles 0.1/0.2)
  bad-tsa            the RFC 3161 timestamp is over other bytes (needs --tsa)
  no-time            keyless with neither a log entry nor a timestamp

STATE layout (written by init, read by everything else):
  state.json                  names, URLs, creation time, log origin and shard offset
  trusted_root.json           TrustedRoot: tlogs, ctlogs, certificateAuthorities (chain
                              intermediate first, root last), timestampAuthorities (leaf, root)
  trustroot.yaml              the same trust as a policy-controller TrustRoot
  fulcio/{root,intermediate}.pem, .key
  ctlog/{key,pub}.pem
  rekor/{key,pub}.pem         log key
  rekor/leaves.bin            the Merkle tree: 32-byte leaf hashes, in order
  rekor/entries.jsonl         one line per entry: tree index, logIndex, integratedTime, kind, body
  rekor2/{key,pub}.pem, rekor2/leaves.bin, witness.pem   the Rekor v2 log (init --rekor-v2)
  tsa/{root,tsa}.pem, .key    TSA root and signing leaf; tsa/ts.cnf, tsa/serial for openssl ts
The signing time is --time (default now, to the second); the leaf is valid from it for ten
minutes and the log integrates the entry at that second. `openssl ts` always stamps the wall
clock, so --tsa needs a leaf that is valid now (Signer says so otherwise).

Debian's /usr/bin/python3 with python3-cryptography 38, the standard library and the `openssl`
CLI only. Registry access goes through fixture.py's client.
"""
import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402
from fixture import FixtureError, compact, sha256_digest  # noqa: E402

MT_BUNDLE = {"0.1": "application/vnd.dev.sigstore.bundle+json;version=0.1",
             "0.2": "application/vnd.dev.sigstore.bundle+json;version=0.2",
             "0.3": "application/vnd.dev.sigstore.bundle.v0.3+json"}
MT_TRUSTED_ROOT = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
MT_INTOTO = "application/vnd.in-toto+json"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
ANN_CERT = "dev.sigstore.cosign/certificate"
ANN_CHAIN = "dev.sigstore.cosign/chain"
ANN_BUNDLE = "dev.sigstore.cosign/bundle"
ANN_TIMESTAMP = "dev.sigstore.cosign/rfc3161timestamp"
ANN_CONTENT = "dev.sigstore.bundle.content"
ANN_PREDICATE = "dev.sigstore.bundle.predicateType"
ANN_CREATED = "org.opencontainers.image.created"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
WRONG_PREDICATE = "https://slsa.dev/provenance/v1"
OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_OTHERNAME_USERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
OID_SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

ORG = "sigil.test"
FULCIO_URL = "https://fulcio.sigil.test"
REKOR_URL = "https://rekor.sigil.test"
REKOR2_URL = "https://log2025-1.rekor.sigil.test"
WITNESS_NAME = "witness.sigil.test/w1"
CTFE_URL = "https://ctfe.sigil.test"
TSA_URL = "https://tsa.sigil.test"
DEFAULT_IDENTITY = "signer@example.com"
DEFAULT_ISSUER = "https://accounts.example.com"
EVIL_ISSUER = "https://issuer.evil.example"
LEAF_VALIDITY = dt.timedelta(minutes=10)
EXPIRED_SHIFT = dt.timedelta(minutes=30)  # expired-at-tlog: the leaf starts this long before
TRUST_START = dt.timedelta(days=365)      # CAs and log keys are valid from this before init
TRUST_YEARS = 10
FILLER_ENTRIES = 5
SHARD_OFFSET = 4000000  # global logIndex = SHARD_OFFSET + index in the tree (1.3.3)
TSA_POLICY = "1.2.3.4.1"

SIGN, BUNDLE = "sign", "bundle"
VARIANTS = {  # variant -> the commands that take it
    "ok": (SIGN, BUNDLE), "bad-sig": (SIGN, BUNDLE), "payload-digest": (SIGN, BUNDLE),
    "wrong-key": (SIGN, BUNDLE), "bad-set": (SIGN, BUNDLE), "set-body-mismatch": (SIGN, BUNDLE),
    "no-sct": (SIGN, BUNDLE), "bad-sct": (SIGN, BUNDLE), "expired-at-tlog": (SIGN, BUNDLE),
    "untrusted-ca": (SIGN, BUNDLE), "wrong-issuer-ext": (SIGN, BUNDLE),
    "bad-inclusion": (BUNDLE,), "bad-checkpoint": (BUNDLE,), "wrong-predicate": (BUNDLE,),
    "root-in-bundle": (BUNDLE,), "bad-tsa": (SIGN, BUNDLE), "no-time": (SIGN, BUNDLE),
}
KEYLESS_ONLY = ("no-sct", "bad-sct", "expired-at-tlog", "untrusted-ca", "wrong-issuer-ext",
                "root-in-bundle", "no-time")
NEEDS_TLOG = ("bad-set", "set-body-mismatch", "expired-at-tlog", "bad-inclusion",
              "bad-checkpoint")


# ---------------------------------------------------------------------------------------------
# encodings (1.0)


def b64(data):
    return base64.b64encode(data).decode()


def sha256(data):
    return hashlib.sha256(data).digest()


def flip(data):
    """Flips the low bit of the last byte: a DER ECDSA signature stays well-formed but wrong."""
    return data[:-1] + bytes([data[-1] ^ 0x01])


def jcs(value):
    """RFC 8785 canonical JSON of dicts, lists, strings, ints, booleans and null (what Rekor
    canonicalizes): keys sorted by UTF-16 code units, no whitespace, non-ASCII raw in UTF-8."""
    def enc(v):
        if isinstance(v, dict):
            items = sorted(v.items(), key=lambda kv: kv[0].encode("utf-16-be"))
            return "{%s}" % ",".join(enc(k) + ":" + enc(x) for k, x in items)
        if isinstance(v, (list, tuple)):
            return "[%s]" % ",".join(enc(x) for x in v)
        if v is None or isinstance(v, (bool, str)):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, int):
            return str(v)
        raise FixtureError("jcs: no canonical form here for %s" % type(v).__name__)
    return enc(value).encode()


def pae(payload_type, payload):
    """DSSE pre-authentication encoding: what a DSSE signature signs."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def der_tlv(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def der_utf8(s):
    return der_tlv(0x0C, s.encode())


def parse_time(s=None):
    """ISO 8601 (a trailing Z allowed) -> aware UTC datetime to the second; None -> now."""
    if s is None:
        t = dt.datetime.now(dt.timezone.utc)
    elif isinstance(s, dt.datetime):
        t = s
    else:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).replace(microsecond=0)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def spki_der(key):
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path, data, mode=0o644):
    with open(path, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data if isinstance(data, bytes) else data.encode())


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@contextlib.contextmanager
def _locked(path):
    """An exclusive flock on `path`: the log and the TSA serial may be shared by processes."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# RFC 6962 Merkle tree (1.0, 1.3.3)


def note_key_hash(name, key):
    """C2SP signed-note Ed25519 key hash: SHA-256(name || "\\n" || 0x01 || raw key). Its first 4
    bytes are a signature line's key hint; all 32 are a Rekor v2 log's id."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256(name.encode() + b"\n\x01" + raw)


def cosignature_line(key, name, note, timestamp=None):
    """A C2SP tlog-cosignature (cosignature/v1) line over the note text by an Ed25519 witness."""
    ts = int(timestamp if timestamp is not None else parse_time().timestamp())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hint = sha256(name.encode() + b"\n\x04" + raw)[:4]
    sig = key.sign(b"cosignature/v1\ntime %d\n" % ts + note.encode())
    return "\u2014 %s %s\n" % (name, b64(hint + struct.pack(">Q", ts) + sig))


def leaf_hash(entry):
    return sha256(b"\x00" + entry)


def _split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_root(leaves):
    """MTH over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return sha256(b"\x01" + tree_root(leaves[:k]) + tree_root(leaves[k:]))


def inclusion_path(index, leaves):
    """RFC 6962 PATH(index, leaves): sibling hashes from the leaf up to the root."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return inclusion_path(index, leaves[:k]) + [tree_root(leaves[k:])]
    return inclusion_path(index - k, leaves[k:]) + [tree_root(leaves[:k])]


# ---------------------------------------------------------------------------------------------
# the self-made deployment in STATE


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_cert(subject, key, issuer, issuer_key, not_before, path_len, eku=None):
    """A CA certificate (self-signed when issuer_key is key)."""
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_before + dt.timedelta(days=365 * TRUST_YEARS))
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                      False), True)
         .add_extension(x509.BasicConstraints(True, path_len), True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             issuer_key.public_key()), False))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), False)
    return b.sign(issuer_key, hashes.SHA384())


def _fulcio_pair(not_before):
    """(root, root key, intermediate, intermediate key) with Fulcio's shape."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _ca_cert(_name("sigil-fulcio-root"), root_key, _name("sigil-fulcio-root"), root_key,
                    not_before, 1)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = _ca_cert(_name("sigil-fulcio-intermediate"), inter_key, root.subject, root_key,
                     not_before, 0, ExtendedKeyUsageOID.CODE_SIGNING)
    return root, root_key, inter, inter_key


def _private_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path):
    return serialization.load_pem_private_key(_read(path), None)


def _load_cert(path):
    return x509.load_pem_x509_certificate(_read(path))


TS_CONFIG = """# openssl ts -reply configuration, written by sigstore_fixture.py init
[ sigil_tsa ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class LogEntry:
    """One entry of the Rekor-like log: body, times, indices, SET, inclusion proof, checkpoint."""

    def __init__(self, body, integrated_time, log_index, log_id, tree_index, tree_size, root,
                 hashes_, set_, checkpoint):
        self.body, self.integrated_time, self.log_index = body, integrated_time, log_index
        self.log_id, self.tree_index, self.tree_size = log_id, tree_index, tree_size
        self.root, self.hashes, self.set, self.checkpoint = root, hashes_, set_, checkpoint

    def cosign_annotation(self):
        """dev.sigstore.cosign/bundle: Go field order of cosign's RekorBundle (1.1)."""
        return json.dumps({"SignedEntryTimestamp": b64(self.set),
                           "Payload": {"body": b64(self.body),
                                       "integratedTime": self.integrated_time,
                                       "logIndex": self.log_index, "logID": self.log_id.hex()}},
                          separators=(",", ":"))

    def proto(self, kind, with_proof):
        """A bundle's tlogEntries[] element (protobuf JSON, int64 as strings; 1.4). A Rekor v2
        entry (no SET) has no inclusionPromise and, its integrated time being 0, none of that."""
        e = {"logIndex": str(self.log_index), "logId": {"keyId": b64(self.log_id)},
             "kindVersion": {"kind": kind, "version": "0.0.1" if self.set else "0.0.2"}}
        if self.set is not None:
            e["integratedTime"] = str(self.integrated_time)
            e["inclusionPromise"] = {"signedEntryTimestamp": b64(self.set)}
        if with_proof:
            e["inclusionProof"] = {"logIndex": str(self.tree_index), "rootHash": b64(self.root),
                                   "treeSize": str(self.tree_size),
                                   "hashes": [b64(h) for h in self.hashes],
                                   "checkpoint": {"envelope": self.checkpoint}}
        e["canonicalizedBody"] = b64(self.body)
        return e

    def summary(self):
        return {"logIndex": self.log_index, "treeIndex": self.tree_index,
                "treeSize": self.tree_size, "integratedTime": self.integrated_time}


class Authority:
    """The self-made sigstore deployment in a STATE directory (layout: module docstring).
    Authority.create(state) makes one; Authority(state) loads it."""

    def __init__(self, state):
        self.dir = os.path.abspath(state)
        try:
            with open(self.path("state.json")) as f:
                self.meta = json.load(f)
        except OSError as e:
            raise FixtureError("%s is not a sigstore_fixture STATE (run init): %s" % (state, e))
        self.fulcio_root = _load_cert(self.path("fulcio", "root.pem"))
        self.fulcio_intermediate = _load_cert(self.path("fulcio", "intermediate.pem"))
        self.fulcio_key = _load_key(self.path("fulcio", "intermediate.key"))
        self.ct_key = _load_key(self.path("ctlog", "key.pem"))
        self.rekor_key = _load_key(self.path("rekor", "key.pem"))
        self.tsa_root = _load_cert(self.path("tsa", "root.pem"))
        self.tsa_cert = _load_cert(self.path("tsa", "tsa.pem"))
        self.rekor_log_id = sha256(spki_der(self.rekor_key))
        self.rekor2_key = self.witness_key = self.rekor2_log_id = None
        if "rekor2" in self.meta:
            self.rekor2_key = _load_key(self.path("rekor2", "key.pem"))
            self.witness_key = _load_key(self.path("rekor2", "witness.pem"))
            self.rekor2_log_id = note_key_hash(self.meta["rekor2"]["origin"], self.rekor2_key)
        self.trusted_root = self.path("trusted_root.json")
        self.trustroot_yaml = self.path("trustroot.yaml")

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def paths(self):
        """What tests hand to verifiers: trust files, CA certificates, log public keys."""
        return {"trusted_root": self.trusted_root, "trustroot_yaml": self.trustroot_yaml,
                "fulcio_root": self.path("fulcio", "root.pem"),
                "fulcio_intermediate": self.path("fulcio", "intermediate.pem"),
                "rekor_pub": self.path("rekor", "pub.pem"),
                "ctlog_pub": self.path("ctlog", "pub.pem"),
                "tsa_root": self.path("tsa", "root.pem"), "tsa_cert": self.path("tsa", "tsa.pem")}

    # -- creation

    @classmethod
    def create(cls, state, time=None, name="sigil-test", rekor_v2=False):
        t = parse_time(time)
        start = t - TRUST_START
        for sub in ("fulcio", "ctlog", "rekor", "tsa"):
            os.makedirs(os.path.join(state, sub), exist_ok=True)
        p = lambda *parts: os.path.join(state, *parts)  # noqa: E731

        root, root_key, inter, inter_key = _fulcio_pair(start)
        ct_key = ec.generate_private_key(ec.SECP256R1())
        rekor_key = ec.generate_private_key(ec.SECP256R1())
        tsa_root_key = ec.generate_private_key(ec.SECP384R1())
        tsa_root = _ca_cert(_name("sigil-tsa-root"), tsa_root_key, _name("sigil-tsa-root"),
                            tsa_root_key, start, 0)
        tsa_key = ec.generate_private_key(ec.SECP256R1())
        tsa_cert = (x509.CertificateBuilder().subject_name(_name("sigil-tsa"))
                    .issuer_name(tsa_root.subject).public_key(tsa_key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(start)
                    .not_valid_after(start + dt.timedelta(days=365 * TRUST_YEARS))
                    .add_extension(x509.BasicConstraints(False, None), True)
                    .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                                 False, False), True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                                   True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                        tsa_key.public_key()), False)
                    .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                        tsa_root_key.public_key()), False)
                    .sign(tsa_root_key, hashes.SHA384()))

        for sub, name_, cert, key in (("fulcio", "root", root, root_key),
                                      ("fulcio", "intermediate", inter, inter_key),
                                      ("tsa", "root", tsa_root, tsa_root_key),
                                      ("tsa", "tsa", tsa_cert, tsa_key)):
            _write(p(sub, name_ + ".pem"), cert_pem(cert))
            _write(p(sub, name_ + ".key"), _private_pem(key), 0o600)
        for sub, key in (("ctlog", ct_key), ("rekor", rekor_key)):
            _write(p(sub, "key.pem"), _private_pem(key), 0o600)
            _write(p(sub, "pub.pem"), fixture.public_pem(key))
        _write(p("tsa", "serial"), "01\n")
        _write(p("tsa", "ts.cnf"), TS_CONFIG.format(dir=os.path.abspath(p("tsa")),
                                                    policy=TSA_POLICY))

        tree_id = int.from_bytes(sha256(spki_der(rekor_key))[:6], "big")
        meta = {"name": name, "created": rfc3339(t), "trust_start": rfc3339(start),
                "urls": {"fulcio": FULCIO_URL, "rekor": REKOR_URL, "ctfe": CTFE_URL,
                         "tsa": TSA_URL},
                "rekor": {"origin": "%s - %d" % (REKOR_URL[len("https://"):], tree_id),
                          "shard_offset": SHARD_OFFSET}}
        fillers = [leaf_hash(b"sigil filler entry %d" % i) for i in range(FILLER_ENTRIES)]
        if rekor_v2:
            os.makedirs(p("rekor2"), exist_ok=True)
            rekor2_key, witness_key = (ed25519.Ed25519PrivateKey.generate() for _ in range(2))
            _write(p("rekor2", "key.pem"), _private_pem(rekor2_key), 0o600)
            _write(p("rekor2", "pub.pem"), fixture.public_pem(rekor2_key))
            _write(p("rekor2", "witness.pem"), _private_pem(witness_key), 0o600)
            _write(p("rekor2", "leaves.bin"), b"".join(fillers))
            meta["urls"]["rekor2"] = REKOR2_URL
            meta["rekor2"] = {"origin": REKOR2_URL[len("https://"):]}
        _write(p("state.json"), json.dumps(meta, indent=2) + "\n")
        _write(p("rekor", "leaves.bin"), b"".join(fillers))
        _write(p("rekor", "entries.jsonl"), "")

        a = cls(state)
        _write(a.trusted_root, json.dumps(a.trusted_root_doc(), indent=2) + "\n")
        _write(a.trustroot_yaml, a.trustroot_yaml_doc())
        return a

    def trusted_root_doc(self):
        """sigstore TrustedRoot (1.3.6): one log, one CT log, one CA, one TSA."""
        start = {"start": self.meta["trust_start"]}

        def log(url, key):
            return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": b64(spki_der(key)),
                                  "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": start},
                    "logId": {"keyId": b64(sha256(spki_der(key)))}}

        def ca(url, cert, chain):
            return {"subject": {"organization": ORG,
                                "commonName": cert.subject.get_attributes_for_oid(
                                    NameOID.COMMON_NAME)[0].value},
                    "uri": url, "certChain": {"certificates": [{"rawBytes": b64(cert_der(c))}
                                                               for c in chain]},
                    "validFor": start}

        tlogs = [log(REKOR_URL, self.rekor_key)]
        if self.rekor2_key is not None:
            tlogs.append({"baseUrl": REKOR2_URL, "hashAlgorithm": "SHA2_256",
                          "publicKey": {"rawBytes": b64(spki_der(self.rekor2_key)),
                                        "keyDetails": "PKIX_ED25519", "validFor": start},
                          "logId": {"keyId": b64(self.rekor2_log_id)}})
        return {"mediaType": MT_TRUSTED_ROOT,
                "tlogs": tlogs,
                "certificateAuthorities": [ca(FULCIO_URL, self.fulcio_root,
                                              [self.fulcio_intermediate, self.fulcio_root])],
                "ctlogs": [log(CTFE_URL, self.ct_key)],
                "timestampAuthorities": [ca(TSA_URL, self.tsa_root,
                                            [self.tsa_cert, self.tsa_root])]}

    def trustroot_yaml_doc(self):
        """policy-controller TrustRoot (policy.sigstore.dev/v1alpha1) with spec.sigstoreKeys:
        []byte fields are base64 of PEM, certificate chains leaf-most first, root last."""
        chain = lambda certs: b64(b"".join(cert_pem(c) for c in certs))  # noqa: E731
        out = ["apiVersion: policy.sigstore.dev/v1alpha1", "kind: TrustRoot", "metadata:",
               "  name: %s" % self.meta["name"], "spec:", "  sigstoreKeys:"]

        def ca_block(key, url, root, certs):
            cn = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            return ["    %s:" % key, "    - subject:", "        organization: %s" % ORG,
                    "        commonName: %s" % cn, "      uri: %s" % url,
                    "      certChain: %s" % chain(certs)]

        def log_block(key, url, k):
            return ["    %s:" % key, "    - baseURL: %s" % url, "      hashAlgorithm: sha-256",
                    "      publicKey: %s" % b64(fixture.public_pem(k))]

        out += ca_block("certificateAuthorities", FULCIO_URL, self.fulcio_root,
                        [self.fulcio_intermediate, self.fulcio_root])
        out += log_block("tLogs", REKOR_URL, self.rekor_key)
        if self.rekor2_key is not None:
            out += log_block("tLogs", REKOR2_URL, self.rekor2_key)[1:]
        out += log_block("ctLogs", CTFE_URL, self.ct_key)
        out += ca_block("timestampAuthorities", TSA_URL, self.tsa_root,
                        [self.tsa_cert, self.tsa_root])
        return "\n".join(out) + "\n"

    # -- Fulcio

    def issue_leaf(self, public_key, identity, san_type, issuer, issuer_ext, not_before,
                   variant="ok"):
        """A Fulcio-like leaf for public_key (1.3.1) with an embedded SCT (1.3.2).
        Returns (leaf, chain): chain is the CA path above the leaf, intermediate first."""
        chain = [self.fulcio_intermediate, self.fulcio_root]
        ca_key = self.fulcio_key
        if variant == "untrusted-ca":
            root, _, inter, ca_key = _fulcio_pair(not_before - TRUST_START)
            chain = [inter, root]
        if variant == "wrong-issuer-ext":
            issuer = EVIL_ISSUER
        if san_type == "email":
            san = x509.RFC822Name(identity)
        elif san_type == "uri":
            san = x509.UniformResourceIdentifier(identity)
        elif san_type == "othername":
            san = x509.OtherName(OID_OTHERNAME_USERNAME, der_utf8(identity))
        else:
            raise FixtureError("unknown SAN type %r (email, uri, othername)" % san_type)
        b = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(chain[0].subject)
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(not_before).not_valid_after(not_before + LEAF_VALIDITY)
             .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                          False), True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 ca_key.public_key()), False)
             .add_extension(x509.SubjectAlternativeName([san]), True))
        if issuer_ext in ("v1", "both"):
            b = b.add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), False)
        if issuer_ext in ("v2", "both"):
            b = b.add_extension(x509.UnrecognizedExtension(OID_ISSUER_V2, der_utf8(issuer)),
                                False)
        if issuer_ext not in ("v1", "v2", "both"):
            raise FixtureError("unknown issuer extension choice %r (v1, v2, both)" % issuer_ext)
        if variant != "no-sct":
            # The precertificate's TBS is this leaf's TBS without the SCT extension (added last).
            tbs = b.sign(ca_key, hashes.SHA384()).tbs_certificate_bytes
            sct = self._sct(ca_key.public_key(), tbs, int(not_before.timestamp()) * 1000,
                            variant == "bad-sct")
            sct_list = struct.pack(">HH", len(sct) + 2, len(sct)) + sct
            b = b.add_extension(x509.UnrecognizedExtension(OID_SCT_LIST,
                                                           der_tlv(0x04, sct_list)), False)
        return b.sign(ca_key, hashes.SHA384()), chain

    def _sct(self, issuer_public_key, tbs, timestamp_ms, corrupt):
        """A TLS-encoded v1 SCT for a precert entry, signed by the CT log key."""
        signed = (struct.pack(">BBQH", 0, 0, timestamp_ms, 1) + sha256(spki_der(issuer_public_key))
                  + struct.pack(">I", len(tbs))[1:] + tbs + struct.pack(">H", 0))
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        if corrupt:
            sig = flip(sig)
        return (b"\x00" + sha256(spki_der(self.ct_key)) + struct.pack(">QH", timestamp_ms, 0)
                + b"\x04\x03" + struct.pack(">H", len(sig)) + sig)

    # -- Rekor

    def log_entry(self, body, integrated_time, kind, variant="ok"):
        """Appends body (and one filler leaf after it, as other clients would) to the log and
        returns the LogEntry with its SET, inclusion proof and checkpoint against the new tree."""
        leaves_path = self.path("rekor", "leaves.bin")
        with _locked(self.path("rekor", "lock")):
            raw = _read(leaves_path)
            leaves = [raw[i:i + 32] for i in range(0, len(raw), 32)]
            index = len(leaves)
            leaves += [leaf_hash(body), leaf_hash(b"sigil filler entry %d" % (index + 1))]
            with open(leaves_path, "ab") as f:
                f.write(b"".join(leaves[index:]))
            log_index = self.meta["rekor"]["shard_offset"] + index
            with open(self.path("rekor", "entries.jsonl"), "a") as f:
                f.write(json.dumps({"treeIndex": index, "logIndex": log_index, "kind": kind,
                                    "integratedTime": integrated_time, "body": b64(body)}) + "\n")
        root = tree_root(leaves)
        path = inclusion_path(index, leaves)
        if variant == "bad-inclusion":
            path[0] = flip(path[0])
        log_id = self.rekor_log_id
        set_ = self.rekor_key.sign(jcs({"body": b64(body), "integratedTime": integrated_time,
                                        "logID": log_id.hex(), "logIndex": log_index}),
                                   ec.ECDSA(hashes.SHA256()))
        if variant == "bad-set":
            set_ = flip(set_)
        origin = self.meta["rekor"]["origin"]
        note = "%s\n%d\n%s\nTimestamp: %d\n" % (origin, len(leaves), b64(root),
                                                integrated_time * 10**9)
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        if variant == "bad-checkpoint":
            note_sig = flip(note_sig)
        checkpoint = note + "\n\u2014 %s %s\n" % (origin.split(" ")[0],
                                                  b64(log_id[:4] + note_sig))
        return LogEntry(body, integrated_time, log_index, log_id, index, len(leaves), root, path,
                        set_, checkpoint)

    def log_size(self):
        return os.path.getsize(self.path("rekor", "leaves.bin")) // 32

    def log_entry_v2(self, body, variant="ok"):
        """Appends body to the Rekor v2 log; the LogEntry has no SET and no integrated time, and
        its checkpoint (C2SP signed note) is cosigned by a witness whose line comes first."""
        if self.rekor2_key is None:
            raise FixtureError("%s has no Rekor v2 log: make it with init --rekor-v2" % self.dir)
        leaves_path = self.path("rekor2", "leaves.bin")
        with _locked(self.path("rekor2", "lock")):
            raw = _read(leaves_path)
            leaves = [raw[i:i + 32] for i in range(0, len(raw), 32)]
            index = len(leaves)
            leaves += [leaf_hash(body), leaf_hash(b"sigil v2 filler entry %d" % (index + 1))]
            with open(leaves_path, "ab") as f:
                f.write(b"".join(leaves[index:]))
        root = tree_root(leaves)
        path = inclusion_path(index, leaves)
        if variant == "bad-inclusion":
            path[0] = flip(path[0])
        origin = self.meta["rekor2"]["origin"]
        note = "%s\n%d\n%s\n" % (origin, len(leaves), b64(root))
        note_sig = self.rekor2_key.sign(note.encode())
        if variant == "bad-checkpoint":
            note_sig = flip(note_sig)
        checkpoint = (note + "\n" + cosignature_line(self.witness_key, WITNESS_NAME, note) +
                      "\u2014 %s %s\n" % (origin, b64(self.rekor2_log_id[:4] + note_sig)))
        return LogEntry(body, 0, index, self.rekor2_log_id, index, len(leaves), root, path, None,
                        checkpoint)

    # -- TSA

    def timestamp(self, data, variant="ok"):
        """DER TimeStampResp from `openssl ts -reply` over SHA-256(data) (bad-tsa: other bytes)."""
        if variant == "bad-tsa":
            data = b"not the signed bytes: " + data
        with tempfile.TemporaryDirectory(prefix="tsa-") as tmp, \
                _locked(self.path("tsa", "lock")):
            query, reply = os.path.join(tmp, "q.tsq"), os.path.join(tmp, "r.tsr")
            for args in (["ts", "-query", "-digest", hashlib.sha256(data).hexdigest(), "-sha256",
                          "-cert", "-no_nonce", "-out", query],
                         ["ts", "-reply", "-config", self.path("tsa", "ts.cnf"), "-section",
                          "sigil_tsa", "-queryfile", query, "-out", reply]):
                r = subprocess.run(["openssl"] + args, capture_output=True, text=True,
                                   timeout=60, stdin=subprocess.DEVNULL)
                if r.returncode != 0:
                    raise FixtureError("openssl %s failed: %s" % (" ".join(args[:2]),
                                                                  r.stderr.strip()))
            return _read(reply)


def init(state, time=None, name="sigil-test", rekor_v2=False):
    """Makes the deployment in STATE; returns the Authority (see Authority.paths())."""
    return Authority.create(state, time, name, rekor_v2)


def _authority(a):
    return a if a is None or isinstance(a, Authority) else Authority(a)


# ---------------------------------------------------------------------------------------------
# signers


class Signer:
    """Who signs and which evidence comes along.

    key: a private key (object or PKCS#8 PEM path) for key-based signing; or keyless: an
    Authority (or STATE path) whose Fulcio-like CA certifies a fresh P-256 key for `identity`.
    The log is keyless's (or `rekor`'s for keys) unless tlog=False; tsa is an Authority/STATE or
    True for "the same as the log's". variant: see VARIANTS and the module docstring."""

    def __init__(self, key=None, keyless=None, identity=DEFAULT_IDENTITY, san_type="email",
                 issuer=DEFAULT_ISSUER, issuer_ext="both", rekor=None, tsa=None, tlog=True,
                 time=None, variant="ok", rekor_v2=False):
        if variant not in VARIANTS:
            raise FixtureError("unknown variant %r (%s)" % (variant, ", ".join(VARIANTS)))
        if (key is None) == (keyless is None):
            raise FixtureError("give exactly one of key and keyless")
        self.variant = variant
        self.time = parse_time(time)
        keyless, rekor = _authority(keyless), _authority(rekor)
        home = keyless or rekor
        if variant == "no-time":
            if tsa:
                raise FixtureError("no-time means no timestamp: drop --tsa")
            tlog = False
        self.log = home if tlog else None
        self.rekor_v2 = rekor_v2 and self.log is not None
        if self.rekor_v2 and tsa is None:
            tsa = True  # cosign v3 on Rekor v2 always asks a TSA: the log proves no time
        if tsa is True and home is None:
            raise FixtureError("--tsa without a STATE: give --tsa STATE or --rekor-state")
        self.tsa = home if tsa is True else _authority(tsa or None)
        self.identity = identity if keyless else None
        self.leaf, self.chain = None, []
        if keyless:
            cert_key = ec.generate_private_key(ec.SECP256R1())  # ephemeral, as cosign
            not_before = self.time - (EXPIRED_SHIFT if variant == "expired-at-tlog" else
                                      dt.timedelta(0))
            self.leaf, self.chain = keyless.issue_leaf(cert_key.public_key(), identity, san_type,
                                                       issuer, issuer_ext, not_before, variant)
            self.key = cert_key
        else:
            self.key = fixture.load_private_key(key) if isinstance(key, str) else key
        if variant == "wrong-key":
            self.key = ec.generate_private_key(ec.SECP256R1())
        self._check()

    def _check(self):
        v = self.variant
        if v in KEYLESS_ONLY and self.leaf is None:
            raise FixtureError("variant %s needs a keyless signer" % v)
        if v in NEEDS_TLOG and self.log is None:
            raise FixtureError("variant %s needs a log entry (keyless, or --rekor-state)" % v)
        if v == "bad-tsa" and self.tsa is None:
            raise FixtureError("variant bad-tsa needs --tsa")
        if self.rekor_v2 and v in ("bad-set", "expired-at-tlog"):
            raise FixtureError("variant %s needs a SET, which Rekor v2 entries lack" % v)
        if self.tsa and self.leaf is not None and v != "expired-at-tlog":
            now = dt.datetime.now(dt.timezone.utc)
            if not (self.leaf.not_valid_before.replace(tzinfo=dt.timezone.utc) <= now <=
                    self.leaf.not_valid_after.replace(tzinfo=dt.timezone.utc)):
                raise FixtureError("openssl ts stamps the current time, which is outside this "
                                   "leaf's window: use --time within the last 10 minutes")

    def require(self, command):
        if command not in VARIANTS[self.variant]:
            raise FixtureError("variant %s does not apply to %s" % (self.variant, command))

    def sign(self, data):
        sig = fixture.sign_bytes(self.key, data)
        return flip(sig) if self.variant == "bad-sig" else sig

    def sign_digest(self, digest):
        """Signs a SHA-256 digest as sign() would sign the bytes behind it (ECDSA, RSA)."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            raise FixtureError("Ed25519 signs messages, not digests: give the artifact bytes")
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            if self.key.curve.name != "secp256r1":
                raise FixtureError("a SHA-256 digest needs a P-256 key")
            sig = self.key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            sig = self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return flip(sig) if self.variant == "bad-sig" else sig

    def verifier_pem(self):
        """What the log records as the verifier: the leaf, or the signing key's PEM."""
        return cert_pem(self.leaf) if self.leaf is not None else fixture.public_pem(self.key)

    def key_hint(self):
        return b64(sha256(spki_der(self.key)))

    def record(self, body, kind):
        if self.log is None:
            return None
        if self.rekor_v2:
            return self.log.log_entry_v2(body, self.variant)
        return self.log.log_entry(body, int(self.time.timestamp()), kind, self.variant)

    def key_details(self):
        """protobuf-specs PublicKeyDetails of the signing key (a Rekor v2 verifier's)."""
        k = self.key
        if isinstance(k, ed25519.Ed25519PrivateKey):
            return "PKIX_ED25519"
        if isinstance(k, ec.EllipticCurvePrivateKey):
            return {"secp256r1": "PKIX_ECDSA_P256_SHA_256", "secp384r1": "PKIX_ECDSA_P384_SHA_384",
                    "secp521r1": "PKIX_ECDSA_P521_SHA_512"}[k.curve.name]
        return "PKIX_RSA_PKCS1V15_%d_SHA256" % k.key_size

    def timestamp(self, signature):
        return self.tsa.timestamp(signature, self.variant) if self.tsa else None

    def logged_signature(self, sig):
        """The signature the log body records (set-body-mismatch: another one)."""
        return flip(sig) if self.variant == "set-body-mismatch" else sig


def hashedrekord_body(hex_digest, signature, verifier_pem):
    """Rekor hashedrekord 0.0.1 as stored (JCS; 1.1 step 4)."""
    return jcs({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hex_digest}},
        "signature": {"content": b64(signature), "publicKey": {"content": b64(verifier_pem)}}}})


def hashedrekord_v002_body(digest, signature, signer):
    """Rekor v2 hashedrekord 0.0.2 as stored (JCS of protobuf JSON; 1.3.3): the SHA-256 digest of
    the signed bytes (for DSSE: of the PAE), the signature and its verifier (the leaf's DER, or
    the key's SPKI) with the key's details."""
    if signer.leaf is not None:
        verifier = {"x509Certificate": {"rawBytes": b64(cert_der(signer.leaf))}}
    else:
        verifier = {"publicKey": {"rawBytes": b64(spki_der(signer.key))}}
    verifier["keyDetails"] = signer.key_details()
    return jcs({"apiVersion": "0.0.2", "kind": "hashedrekord", "spec": {"hashedRekordV002": {
        "data": {"algorithm": "SHA2_256", "digest": b64(digest)},
        "signature": {"content": b64(signature), "verifier": verifier}}}})


def dsse_body(envelope, payload, signature, verifier_pem):
    """Rekor dsse 0.0.1 as stored (JCS; 1.1 step 4)."""
    return jcs({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
        "signatures": [{"signature": b64(signature), "verifier": b64(verifier_pem)}]}})


def _evidence(signer):
    return {"variant": signer.variant, "identity": signer.identity,
            "certificate": cert_pem(signer.leaf).decode() if signer.leaf is not None else None}


# ---------------------------------------------------------------------------------------------
# legacy .sig (1.1)


def sign(reg, repo, digest, signer, append=False, docker_reference=None):
    """Signs `digest` like `cosign sign` (legacy .sig layout, keyless or key). Returns
    {"image", "tag", "manifest", "payload", "signature", "annotations", "log_entry",
    "variant", "identity", "certificate"}."""
    signer.require(SIGN)
    signed = fixture.other_digest(digest) if signer.variant == "payload-digest" else digest
    payload = fixture.simple_signing_payload(docker_reference or "%s/%s" % (reg.address, repo),
                                             signed)
    sig = signer.sign(payload)
    ann = {}
    if signer.leaf is not None:
        ann[ANN_CERT] = cert_pem(signer.leaf).decode()
        ann[ANN_CHAIN] = b"".join(cert_pem(c) for c in signer.chain).decode()
    entry = signer.record(hashedrekord_body(hashlib.sha256(payload).hexdigest(),
                                            signer.logged_signature(sig), signer.verifier_pem()),
                          "hashedrekord")
    if entry:
        ann[ANN_BUNDLE] = entry.cosign_annotation()
    ts = signer.timestamp(sig)
    if ts:
        ann[ANN_TIMESTAMP] = compact({"SignedRFC3161Timestamp": b64(ts)}).decode()
    manifest = fixture.push_signature_layer(reg, repo, digest, payload, b64(sig), append, ann)
    return dict(_evidence(signer), image=digest, tag=fixture.signature_tag(digest),
                manifest=manifest, payload=payload.decode(), signature=b64(sig),
                annotations=ann, log_entry=entry.summary() if entry else None)


# ---------------------------------------------------------------------------------------------
# bundles (1.4)


def statement(digest, name, predicate_type=COSIGN_SIGN_PREDICATE, digests=None):
    """The cosign v3 `sign` statement for `digest` (compact JSON bytes); `digests` (alg -> hex)
    replaces the subject's digest map (e.g. a subject named only by sha512)."""
    return compact({"_type": STATEMENT_V1,
                    "subject": [{"name": name,
                                 "digest": digests or {"sha256": digest.split(":", 1)[1]}}],
                    "predicateType": predicate_type, "predicate": {}})


def make_bundle(signer, digest=None, artifact=None, version="0.3", content="dsse",
                subject_name=None, predicate_type=COSIGN_SIGN_PREDICATE, subject_digests=None):
    """A sigstore bundle over an image digest (dsse, or message with `artifact`) or an
    artifact's bytes (artifact: bytes or a path). Returns {"bundle": bytes, "media_type",
    "digest" (what it binds), "content", "signature", "predicate_type", "log_entry", "variant",
    "identity", "certificate"}."""
    signer.require(BUNDLE)
    v = signer.variant
    if version not in MT_BUNDLE:
        raise FixtureError("unknown bundle version %r (0.1, 0.2, 0.3)" % version)
    if content not in ("dsse", "message"):
        raise FixtureError("unknown content %r (dsse, message)" % content)
    if v in ("bad-inclusion", "bad-checkpoint") and version == "0.1":
        raise FixtureError("%s needs an inclusion proof: bundle version 0.2 or 0.3" % v)
    if v == "root-in-bundle" and version == "0.3":
        raise FixtureError("root-in-bundle needs an x509CertificateChain: version 0.1 or 0.2")
    if v == "wrong-predicate" and content != "dsse":
        raise FixtureError("wrong-predicate needs --content dsse")
    if signer.rekor_v2 and version == "0.1":
        raise FixtureError("a Rekor v2 entry has no SET: bundle version 0.2 or 0.3")
    if isinstance(artifact, str):
        subject_name = subject_name or os.path.basename(artifact)
        artifact = _read(artifact)
    if digest is None:
        if artifact is None:
            raise FixtureError("a bundle needs a digest or an artifact")
        digest = sha256_digest(artifact)
    bound = fixture.other_digest(digest) if v == "payload-digest" else digest

    if content == "dsse":
        ptype = WRONG_PREDICATE if v == "wrong-predicate" else predicate_type
        digests = None
        if subject_digests:
            if artifact is None:
                raise FixtureError("subject digests other than sha256 need the artifact bytes")
            subject_bytes = b"not-" + artifact if v == "payload-digest" else artifact
            digests = {alg: hashlib.new(alg, subject_bytes).hexdigest()
                       for alg in subject_digests}
        payload = statement(bound, subject_name or digest, ptype, digests)
        sig = signer.sign(pae(MT_INTOTO, payload))
        envelope = {"payload": b64(payload), "payloadType": MT_INTOTO,
                    "signatures": [{"sig": b64(sig), "keyid": ""}]}
        if signer.rekor_v2:  # "hashedrekord over DSSE" (rekor-v2-spec 6.1.4)
            body = hashedrekord_v002_body(sha256(pae(MT_INTOTO, payload)),
                                          signer.logged_signature(sig), signer)
            kind = "hashedrekord"
        else:
            body = dsse_body(compact(envelope), payload, signer.logged_signature(sig),
                             signer.verifier_pem())
            kind = "dsse"
        signed_content = {"dsseEnvelope": envelope}
    else:
        ptype = None
        if artifact is not None:
            message = b"not-" + artifact if v == "payload-digest" else artifact
            md = sha256(message)
            sig = signer.sign(message)
        else:
            md = bytes.fromhex(bound.split(":", 1)[1])
            sig = signer.sign_digest(md)
        if signer.rekor_v2:
            body = hashedrekord_v002_body(md, signer.logged_signature(sig), signer)
        else:
            body = hashedrekord_body(md.hex(), signer.logged_signature(sig),
                                     signer.verifier_pem())
        kind = "hashedrekord"
        signed_content = {"messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(md)}, "signature": b64(sig)}}

    if signer.leaf is None:
        vm = {"publicKey": {"hint": signer.key_hint()}}
    elif version == "0.3":
        vm = {"certificate": {"rawBytes": b64(cert_der(signer.leaf))}}
    else:
        certs = [signer.leaf] + (signer.chain if v == "root-in-bundle" else [])
        vm = {"x509CertificateChain": {"certificates": [{"rawBytes": b64(cert_der(c))}
                                                        for c in certs]}}
    entry = signer.record(body, kind)
    vm["tlogEntries"] = [entry.proto(kind, with_proof=version != "0.1")] if entry else []
    ts = signer.timestamp(sig)
    if ts:
        vm["timestampVerificationData"] = {"rfc3161Timestamps": [{"signedTimestamp": b64(ts)}]}
    doc = dict({"mediaType": MT_BUNDLE[version], "verificationMaterial": vm}, **signed_content)
    return dict(_evidence(signer), bundle=compact(doc), media_type=MT_BUNDLE[version],
                digest=digest, content=content, signature=b64(sig), predicate_type=ptype,
                log_entry=entry.summary() if entry else None)


def referrers_tag(digest):
    """The referrers tag-schema tag of a digest: <alg>-<hex>."""
    return digest.replace(":", "-")


def has_referrers_api(reg, repo, digest):
    code, _, _ = reg.request("GET", "/v2/%s/referrers/%s" % (repo, digest),
                               headers={"Accept": fixture.MT_OCI_INDEX}, repo=repo)
    return code == 200


def push_bundle(reg, repo, image_digest, made, created=None):
    """Attaches a made bundle to image_digest as cosign v3 does (OCI 1.1 referrer, plus the
    tag-schema index when the registry has no referrers API). Returns {"referrer",
    "referrer_manifest" (bytes), "bundle_digest", "index_tag" (None with a referrers API),
    "index_digest"}."""
    body, media_type = reg.get_manifest(repo, image_digest)
    if body is None:
        raise FixtureError("%s not found in %s" % (image_digest, repo))
    mt = made["media_type"]
    ann = {ANN_CONTENT: "dsse-envelope" if made["content"] == "dsse" else "message-signature"}
    if made["predicate_type"]:
        ann[ANN_PREDICATE] = made["predicate_type"]
    ann[ANN_CREATED] = created or rfc3339(parse_time())
    bundle_digest = reg.put_blob(repo, made["bundle"])
    manifest = compact({
        "schemaVersion": 2, "mediaType": fixture.MT_OCI_MANIFEST, "artifactType": mt,
        "config": {"mediaType": MT_EMPTY, "artifactType": mt,
                   "digest": reg.put_blob(repo, EMPTY_CONFIG), "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": mt, "digest": bundle_digest, "size": len(made["bundle"])}],
        "subject": {"mediaType": media_type or fixture.MT_OCI_MANIFEST, "digest": image_digest,
                    "size": len(body)},
        "annotations": ann})
    referrer = reg.put_manifest(repo, sha256_digest(manifest), manifest, fixture.MT_OCI_MANIFEST)
    out = {"referrer": referrer, "referrer_manifest": manifest, "bundle_digest": bundle_digest,
           "index_tag": None, "index_digest": None}
    if not has_referrers_api(reg, repo, image_digest):
        tag = referrers_tag(image_digest)
        old, _ = reg.get_manifest(repo, tag)
        index = (json.loads(old) if old else
                 {"schemaVersion": 2, "mediaType": fixture.MT_OCI_INDEX, "manifests": []})
        index["manifests"] = [m for m in index["manifests"] if m.get("digest") != referrer]
        index["manifests"].append({"mediaType": fixture.MT_OCI_MANIFEST, "digest": referrer,
                                   "size": len(manifest), "artifactType": mt,
                                   "annotations": ann})
        out["index_tag"] = tag
        out["index_digest"] = reg.put_manifest(repo, tag, compact(index), fixture.MT_OCI_INDEX)
    return out


def bundle(reg, repo, digest, signer, version="0.3", content="dsse", artifact=None,
           subject_name=None, predicate_type=COSIGN_SIGN_PREDICATE, subject_digests=None):
    """make_bundle + push_bundle for an image in the registry. A message bundle without an
    artifact signs the image manifest bytes (so it binds the image digest)."""
    if content == "message" and artifact is None:
        artifact, _ = reg.get_manifest(repo, digest)
        if artifact is None:
            raise FixtureError("%s not found in %s" % (digest, repo))
    made = make_bundle(signer, digest, artifact, version, content,
                       subject_name or "%s/%s" % (reg.address, repo), predicate_type,
                       subject_digests)
    return dict(made, image=digest, **push_bundle(reg, repo, digest, made, rfc3339(signer.time)))


# ---------------------------------------------------------------------------------------------
# CLI


def _signer_args(p):
    g = p.add_argument_group("signer")
    g.add_argument("--key", help="PKCS#8 PEM private key (key-based signing)")
    g.add_argument("--keyless", metavar="STATE", help="sign keyless with the CA in STATE")
    g.add_argument("--identity", default=DEFAULT_IDENTITY)
    g.add_argument("--san-type", default="email", choices=["email", "uri", "othername"])
    g.add_argument("--issuer", default=DEFAULT_ISSUER)
    g.add_argument("--issuer-ext", default="both", choices=["v1", "v2", "both"])
    g.add_argument("--rekor-state", metavar="STATE", help="log key-signed entries in STATE")
    g.add_argument("--no-tlog", action="store_true", help="no log entry")
    g.add_argument("--rekor-v2", action="store_true",
                   help="log in the Rekor v2 log of the STATE (init --rekor-v2)")
    g.add_argument("--tsa", nargs="?", const=True, metavar="STATE",
                   help="add an RFC 3161 timestamp (TSA of STATE, default the log's)")
    g.add_argument("--time", help="signing time, ISO 8601 (default now)")
    g.add_argument("--variant", default="ok", choices=list(VARIANTS))


def _target_args(p, required=True):
    p.add_argument("--registry")
    p.add_argument("--env", help="env.json written by registry.py")
    p.add_argument("--repo", required=required)
    p.add_argument("--digest")
    p.add_argument("--tag")


def _make_signer(a):
    return Signer(key=a.key, keyless=a.keyless, identity=a.identity, san_type=a.san_type,
                  issuer=a.issuer, issuer_ext=a.issuer_ext, rekor=a.rekor_state, tsa=a.tsa,
                  tlog=not a.no_tlog, time=a.time, variant=a.variant, rekor_v2=a.rekor_v2)


def _resolve(reg, a):
    if a.digest:
        return a.digest
    if not a.tag:
        raise FixtureError("need --digest or --tag")
    return reg.resolve(a.repo, a.tag)


def _subject_digests(a):
    return [x for x in (a.subject_digests or "").split(",") if x] or None


def _printable(d):
    """The JSON summary: the bundle as text, other bytes (manifests) left out."""
    return {k: v.decode() if k == "bundle" else v for k, v in d.items()
            if k == "bundle" or not isinstance(v, bytes)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init", help="make the self-made deployment in STATE")
    i.add_argument("state")
    i.add_argument("--time", help="the deployment's 'now', ISO 8601 (default now)")
    i.add_argument("--name", default="sigil-test", help="metadata.name of trustroot.yaml")
    i.add_argument("--rekor-v2", action="store_true", help="also a Rekor v2 (rekor-tiles) log")
    s = sub.add_parser("sign", help="legacy cosign .sig signature")
    _target_args(s)
    _signer_args(s)
    s.add_argument("--append", action="store_true", help="add a layer to an existing .sig")
    s.add_argument("--docker-reference")
    b = sub.add_parser("bundle", help="sigstore bundle, pushed as an OCI 1.1 referrer")
    _target_args(b, required=False)
    _signer_args(b)
    b.add_argument("--version", default="0.3", choices=sorted(MT_BUNDLE))
    b.add_argument("--content", default="dsse", choices=["dsse", "message"])
    b.add_argument("--artifact", help="file for a message bundle")
    b.add_argument("--predicate-type", default=COSIGN_SIGN_PREDICATE)
    b.add_argument("--subject-name", help="in-toto subject name (default registry/repo)")
    b.add_argument("--subject-digests", help="comma-separated algorithms naming the subject "
                   "(e.g. sha512; needs --artifact)")
    b.add_argument("--no-push", action="store_true", help="only write --out")
    b.add_argument("--out", help="also write the bundle JSON to this file")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "init":
            out = Authority.create(a.state, a.time, a.name, a.rekor_v2).paths()
        elif a.cmd == "sign":
            reg = fixture.connect(a.registry, a.env)
            out = sign(reg, a.repo, _resolve(reg, a), _make_signer(a), a.append,
                       a.docker_reference)
        elif a.no_push:
            if not a.out:
                raise FixtureError("--no-push needs --out")
            out = make_bundle(_make_signer(a), a.digest, a.artifact, a.version, a.content,
                              a.subject_name, a.predicate_type, _subject_digests(a))
        else:
            if not a.repo:
                raise FixtureError("bundle needs --repo (or --no-push)")
            reg = fixture.connect(a.registry, a.env)
            out = bundle(reg, a.repo, _resolve(reg, a), _make_signer(a), a.version, a.content,
                         a.artifact, a.subject_name, a.predicate_type, _subject_digests(a))
        if a.cmd == "bundle" and a.out:
            _write(a.out, out["bundle"])
            out["out"] = a.out
        print(json.dumps(_printable(out)))
    except (FixtureError, OSError, ValueError) as e:
        print("sigstore_fixture.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
