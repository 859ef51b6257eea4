#!/usr/bin/python3
"""cosign's legacy attestations (`cosign attest` without the new bundle format) for sigil's tests.

usage (every command also exists as a function: `import attest_fixture`):
  attest_fixture.py attest --registry ADDR|--env ENV --repo R --digest D --predicate-type URI
                           [--predicate JSON] SIGNER       (SIGNER as in sigstore_fixture.py)
  attest_fixture.py copy --registry ADDR|--env ENV --repo R --from-digest D1 --to-digest D2

The layout (docs/sigstore-formats.md 1.2; cosign specs/ATTESTATION_SPEC.md, cmd/cosign/cli/attest):
an OCI image manifest at tag sha256-<hex>.att in the image's repository, one layer per
attestation (`--append`, the default, adds one as cosign does), layer media type
application/vnd.dsse.envelope.v1+json, the layer blob a DSSE envelope
{"payloadType":"application/vnd.in-toto+json","payload":<b64 statement>,"signatures":[{"keyid":"",
"sig":<b64>}]} whose statement is {"_type":"https://in-toto.io/Statement/v0.1","predicateType",
"subject":[{"name","digest":{"sha256"}}],"predicate"}. Layer annotations as cosign writes them:
dev.cosignproject.cosign/signature "" (present, empty), predicateType, and for keyless the
certificate and chain; dev.sigstore.cosign/bundle with the Rekor SET over a dsse 0.0.1 entry
(unless the signer has no log); dev.sigstore.cosign/rfc3161timestamp over the envelope blob
(cosign's VerifyRFC3161Timestamp stamps an attestation's payload, its signature annotation being
empty). Signer variants that apply (sigstore_fixture.py): ok, bad-sig, payload-digest (the
statement's subject is another digest), wrong-key, bad-set, set-body-mismatch, bad-tsa, no-sct,
bad-sct, untrusted-ca, wrong-issuer-ext, expired-at-tlog, no-time.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402
import sigstore_fixture as sf  # noqa: E402
from fixture import FixtureError, compact  # noqa: E402

MT_DSSE = "application/vnd.dsse.envelope.v1+json"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
ANN_PREDICATE_TYPE = "predicateType"
ATTEST_VARIANTS = ("ok", "bad-sig", "payload-digest", "wrong-key", "bad-set", "set-body-mismatch",
                   "bad-tsa", "no-sct", "bad-sct", "untrusted-ca", "wrong-issuer-ext",
                   "expired-at-tlog", "no-time")


def attestation_tag(digest):
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise FixtureError("not a sha256 digest: %r" % digest)
    return digest.replace(":", "-") + ".att"


def statement(digest, predicate_type, predicate=None, name="image"):
    """The in-toto statement cosign attest writes (compact JSON bytes)."""
    return compact({"_type": STATEMENT_V01, "predicateType": predicate_type,
                    "subject": [{"name": name, "digest": {"sha256": digest.split(":", 1)[1]}}],
                    "predicate": predicate if predicate is not None else {}})


def make_attestation(signer, digest, predicate_type, predicate=None, name="image"):
    """(envelope bytes, layer annotations) of one attestation of `digest` by `signer`."""
    if signer.variant not in ATTEST_VARIANTS:
        raise FixtureError("variant %s does not apply to attest" % signer.variant)
    if signer.rekor_v2:
        raise FixtureError("a legacy .att carries a Rekor v1 SET: no --rekor-v2 signer")
    bound = fixture.other_digest(digest) if signer.variant == "payload-digest" else digest
    payload = statement(bound, predicate_type, predicate, name)
    sig = signer.sign(sf.pae(sf.MT_INTOTO, payload))
    envelope = compact({"payloadType": sf.MT_INTOTO, "payload": sf.b64(payload),
                        "signatures": [{"keyid": "", "sig": sf.b64(sig)}]})
    ann = {fixture.ANN_SIGNATURE: "", ANN_PREDICATE_TYPE: predicate_type}
    if signer.leaf is not None:
        ann[sf.ANN_CERT] = sf.cert_pem(signer.leaf).decode()
        ann[sf.ANN_CHAIN] = b"".join(sf.cert_pem(c) for c in signer.chain).decode()
    entry = signer.record(sf.dsse_body(envelope, payload, signer.logged_signature(sig),
                                       signer.verifier_pem()), "dsse")
    if entry:
        ann[sf.ANN_BUNDLE] = entry.cosign_annotation()
    ts = signer.timestamp(envelope)
    if ts:
        ann[sf.ANN_TIMESTAMP] = compact({"SignedRFC3161Timestamp": sf.b64(ts)}).decode()
    return envelope, ann


def push_attestation_layer(reg, repo, digest, envelope, annotations, append=True):
    """Writes (or extends) the .att manifest of `digest`; returns its digest."""
    tag = attestation_tag(digest)
    layers = []
    if append:
        old, _ = reg.get_manifest(repo, tag)
        if old is not None:
            layers = json.loads(old)["layers"]
    layers.append({"mediaType": MT_DSSE, "size": len(envelope),
                   "digest": reg.put_blob(repo, envelope), "annotations": annotations})
    cfg = compact({"architecture": "", "created": "0001-01-01T00:00:00Z",
                   "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers], "os": "",
                   "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
                   "config": {}})
    manifest = compact({"schemaVersion": 2, "mediaType": fixture.MT_OCI_MANIFEST,
                        "config": {"mediaType": fixture.MT_OCI_CONFIG, "size": len(cfg),
                                   "digest": reg.put_blob(repo, cfg)},
                        "layers": layers})
    return reg.put_manifest(repo, tag, manifest, fixture.MT_OCI_MANIFEST)


def attest(reg, repo, digest, signer, predicate_type, predicate=None, append=True):
    """`cosign attest --type predicate_type` of `digest` in `repo` (legacy layout). Returns
    {"image", "tag", "manifest", "envelope", "annotations", "variant", "identity"}."""
    envelope, ann = make_attestation(signer, digest, predicate_type, predicate,
                                     "%s/%s" % (reg.address, repo))
    manifest = push_attestation_layer(reg, repo, digest, envelope, ann, append)
    return {"image": digest, "tag": attestation_tag(digest), "manifest": manifest,
            "envelope": envelope.decode(), "annotations": ann, "variant": signer.variant,
            "identity": signer.identity}


def copy_attestations(reg, repo, from_digest, to_digest, to_repo=None):
    """Copies the .att manifest of from_digest to the .att tag of to_digest (blobs along): the
    'attestation copied from another image' attack."""
    to_repo = to_repo or repo
    body, mt = reg.get_manifest(repo, attestation_tag(from_digest))
    if body is None:
        raise FixtureError("%s has no attestations in %s" % (from_digest, repo))
    if to_repo != repo:
        m = json.loads(body)
        for desc in [m["config"]] + m["layers"]:
            reg.put_blob(to_repo, reg.get_blob(repo, desc["digest"]))
    return reg.put_manifest(to_repo, attestation_tag(to_digest), body,
                            mt or fixture.MT_OCI_MANIFEST)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("attest")
    c = sub.add_parser("copy")
    for p in (a, c):
        p.add_argument("--registry")
        p.add_argument("--env")
        p.add_argument("--repo", required=True)
    a.add_argument("--digest", required=True)
    a.add_argument("--predicate-type", required=True)
    a.add_argument("--predicate", help="the predicate as JSON text (default {})")
    sf._signer_args(a)
    c.add_argument("--from-digest", required=True)
    c.add_argument("--to-digest", required=True)
    c.add_argument("--to-repo")
    args = ap.parse_args(argv)
    try:
        reg = fixture.connect(args.registry, args.env)
        if args.cmd == "attest":
            predicate = json.loads(args.predicate) if args.predicate else None
            print(json.dumps(attest(reg, args.repo, args.digest, sf._make_signer(args),
                                    args.predicate_type, predicate)))
        else:
            print(copy_attestations(reg, args.repo, args.from_digest, args.to_digest,
                                    args.to_repo))
    except (FixtureError, OSError, ValueError) as e:
        print("attest_fixture.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
