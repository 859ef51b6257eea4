#!/usr/bin/env node
// An independent, fully offline verifier for sigil's tests, built on @sigstore/verify (the
// sigstore-js verifier) with a TrustedRoot read from a file. It judges what our own producers
// make (tests/support/sigstore_fixture.py, fixture.py) so that a fixture claimed valid is valid
// to a second implementation and a negative variant is really broken.
//
// usage:
//   node verify.js bundle    --bundle FILE POLICY FILE_OR_DIGEST
//   node verify.js legacy    --registry H:P --repo R --digest sha256:HEX POLICY
//   node verify.js referrers --registry H:P --repo R --digest sha256:HEX POLICY
// POLICY: --trusted-root FILE and one of
//   --key PEM                                   key-based (any key hint maps to this key)
//   --certificate-identity ID and/or --certificate-oidc-issuer URL   (exact matches)
//   --any-identity                              chain, SCT, log and time checked, no identity
// and optionally --predicate-type URI (DSSE statements must carry it), --tlog-threshold N
// (default 1), --timestamp-threshold N (default 1: verified SET times + RFC 3161 timestamps),
// --ctlog-threshold N (default 1).
// exit 0 = verified, 1 = rejected, 2 = usage error, 3 = not judgeable by this tool.
//
// legacy: the .sig manifest in the registry (plain HTTP, no auth); each layer becomes a v0.1
// bundle (leaf from dev.sigstore.cosign/certificate, SET from dev.sigstore.cosign/bundle,
// timestamp from dev.sigstore.cosign/rfc3161timestamp, messageSignature over the payload blob)
// and the simple-signing payload must name --digest. referrers: bundles found through
// GET /v2/R/referrers/D or, on 404, the tag-schema index sha256-HEX; each manifest's subject
// must be --digest. Both pass when at least one signature verifies (cosign's rule) and print
// one line per signature.
//
// Checks this file adds to @sigstore/verify (which binds no artifact to a DSSE statement and
// uses only the leaf of a certificate chain): the in-toto subject must contain the digest,
// payloadType must be in-toto, --predicate-type, and a v0.1/0.2 x509CertificateChain must not
// contain a self-signed (root) certificate.
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const INTOTO = 'application/vnd.in-toto+json';
const COSIGN_TYPE = 'cosign container image signature';
const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
const ACCEPT = ['application/vnd.oci.image.manifest.v1+json', MT_INDEX,
  'application/vnd.docker.distribution.manifest.v2+json'].join(', ');
const FLAGS = ['any-identity'];

class Unsupported extends Error {}
class Usage extends Error {}

function parseArgs(argv) {
  const o = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) { o._.push(argv[i]); continue; }
    const name = argv[i].slice(2);
    if (FLAGS.includes(name)) { o[name] = true; continue; }
    if (i + 1 >= argv.length) throw new Usage(argv[i] + ' needs a value');
    o[name] = argv[++i];
  }
  if (!o['trusted-root']) throw new Usage('--trusted-root FILE is required');
  if (!o.key && !o['certificate-identity'] && !o['certificate-oidc-issuer'] && !o['any-identity']) {
    throw new Usage('give --key, --certificate-identity and/or --certificate-oidc-issuer, ' +
      'or --any-identity');
  }
  return o;
}

const sha256hex = (b) => crypto.createHash('sha256').update(b).digest('hex');
const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function verifier(o) {
  const root = TrustedRoot.fromJSON(JSON.parse(fs.readFileSync(o['trusted-root'])));
  let keys;
  if (o.key) {
    const publicKey = crypto.createPublicKey(fs.readFileSync(o.key));
    keys = () => ({ publicKey, validFor: () => true });
  }
  const num = (name, dflt) => (o[name] === undefined ? dflt : Number(o[name]));
  return new Verifier(toTrustMaterial(root, keys), {
    tlogThreshold: num('tlog-threshold', 1),
    timestampThreshold: num('timestamp-threshold', 1),
    ctlogThreshold: num('ctlog-threshold', 1),
  });
}

function policy(o) {
  if (o.key) return undefined;
  const p = {};
  if (o['certificate-identity']) {
    p.subjectAlternativeName = '^' + escapeRegExp(o['certificate-identity']) + '$';
  }
  if (o['certificate-oidc-issuer']) p.extensions = { issuer: o['certificate-oidc-issuer'] };
  return p;
}

function isSelfSigned(der) {
  const c = new crypto.X509Certificate(der);
  return c.subject === c.issuer && c.verify(c.publicKey);
}

// Verifies one bundle (JSON object) against an artifact (bytes) or a digest ('sha256:HEX').
// Returns a short description; throws on rejection.
function verifyBundle(o, v, json, artifact, digest) {
  const b = bundleFromJSON(json);
  const chain = b.verificationMaterial.content.$case === 'x509CertificateChain'
    ? b.verificationMaterial.content.x509CertificateChain.certificates : [];
  if (chain.some((c) => isSelfSigned(Buffer.from(c.rawBytes)))) {
    throw new Error('the bundle\'s certificate chain contains a root certificate');
  }
  const want = digest ? digest.slice('sha256:'.length) : sha256hex(artifact);
  if (b.content.$case === 'dsseEnvelope') {
    v.verify(toSignedEntity(b), policy(o));
    const env = b.content.dsseEnvelope;
    if (env.payloadType !== INTOTO) throw new Error('payloadType is ' + env.payloadType);
    const st = JSON.parse(Buffer.from(env.payload).toString());
    if (!(st.subject || []).some((s) => s.digest && s.digest.sha256 === want)) {
      throw new Error('no in-toto subject has sha256 ' + want);
    }
    if (o['predicate-type'] && st.predicateType !== o['predicate-type']) {
      throw new Error('predicateType is ' + st.predicateType + ', not ' + o['predicate-type']);
    }
    return 'dsse ' + st.predicateType;
  }
  if (!artifact) {
    throw new Unsupported('a messageSignature bundle needs the artifact bytes, not only a digest');
  }
  v.verify(toSignedEntity(b, artifact), policy(o));
  return 'messageSignature';
}

async function get(o, p, accept) {
  const r = await fetch('http://' + o.registry + p, { headers: accept ? { accept } : {} });
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
}

async function blob(o, digest) {
  const r = await get(o, `/v2/${o.repo}/blobs/${digest}`);
  if (r.status !== 200) throw new Error(`blob ${digest}: HTTP ${r.status}`);
  if ('sha256:' + sha256hex(r.body) !== digest) throw new Error(`blob ${digest}: digest mismatch`);
  return r.body;
}

async function manifest(o, ref) {
  const r = await get(o, `/v2/${o.repo}/manifests/${ref}`, ACCEPT);
  return r.status === 200 ? JSON.parse(r.body) : null;
}

function pemCertificates(pem) {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)]
    .map((m) => m[1].replace(/\s+/g, ''));
}

// One legacy .sig layer as a v0.1 bundle over its payload.
function legacyBundle(o, ann, payload) {
  const vm = { tlogEntries: [] };
  if (o.key) vm.publicKey = { hint: 'key' };
  else if (ann['dev.sigstore.cosign/certificate']) {
    const [leaf] = pemCertificates(ann['dev.sigstore.cosign/certificate']);
    vm.x509CertificateChain = { certificates: [{ rawBytes: leaf }] };
  } else throw new Error('no certificate annotation (and no --key)');
  if (ann['dev.sigstore.cosign/bundle']) {
    const rb = JSON.parse(ann['dev.sigstore.cosign/bundle']);
    const body = JSON.parse(Buffer.from(rb.Payload.body, 'base64'));
    vm.tlogEntries.push({ logIndex: String(rb.Payload.logIndex),
      logId: { keyId: Buffer.from(rb.Payload.logID, 'hex').toString('base64') },
      kindVersion: { kind: body.kind, version: body.apiVersion },
      integratedTime: String(rb.Payload.integratedTime),
      inclusionPromise: { signedEntryTimestamp: rb.SignedEntryTimestamp },
      canonicalizedBody: rb.Payload.body });
  }
  if (ann['dev.sigstore.cosign/rfc3161timestamp']) {
    const ts = JSON.parse(ann['dev.sigstore.cosign/rfc3161timestamp']);
    vm.timestampVerificationData = {
      rfc3161Timestamps: [{ signedTimestamp: ts.SignedRFC3161Timestamp }] };
  }
  const digest = crypto.createHash('sha256').update(payload).digest('base64');
  return { mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.1',
    verificationMaterial: vm,
    messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest },
      signature: ann['dev.cosignproject.cosign/signature'] } };
}

async function verifyLegacy(o, v) {
  const tag = o.digest.replace(':', '-') + '.sig';
  const m = await manifest(o, tag);
  if (!m) throw new Error('no signature manifest at tag ' + tag);
  let ok = 0;
  for (const [i, layer] of m.layers.entries()) {
    try {
      const payload = await blob(o, layer.digest);
      verifyBundle(o, v, legacyBundle(o, layer.annotations || {}, payload), payload);
      const ss = JSON.parse(payload);
      if (ss.critical.type !== COSIGN_TYPE) throw new Error('critical.type is ' + ss.critical.type);
      const named = ss.critical.image['docker-manifest-digest'];
      if (named !== o.digest) throw new Error('the payload names ' + named);
      ok++;
      console.log(`layer ${i}: OK`);
    } catch (e) {
      console.log(`layer ${i}: FAIL ${describe(e)}`);
    }
  }
  return ok > 0;
}

async function verifyReferrers(o, v) {
  let index;
  let via = 'referrers API';
  const r = await get(o, `/v2/${o.repo}/referrers/${o.digest}`, MT_INDEX);
  if (r.status === 200) index = JSON.parse(r.body);
  else {
    via = 'tag schema';
    const tag = o.digest.replace(':', '-');
    index = await manifest(o, tag);
    if (!index) throw new Error('no referrers API and no index at tag ' + tag);
  }
  let ok = 0;
  for (const d of index.manifests || []) {
    if (!/^application\/vnd\.dev\.sigstore\.bundle/.test(d.artifactType || '')) continue;
    try {
      const m = await manifest(o, d.digest);
      if (!m || !m.subject || m.subject.digest !== o.digest) {
        throw new Error('subject is not ' + o.digest);
      }
      const bundle = JSON.parse(await blob(o, m.layers[0].digest));
      const what = verifyBundle(o, v, bundle, null, o.digest);
      ok++;
      console.log(`referrer ${d.digest} (${via}): OK ${what}`);
    } catch (e) {
      console.log(`referrer ${d.digest} (${via}): FAIL ${describe(e)}`);
    }
  }
  return ok > 0;
}

function describe(e) {
  return (e.code ? e.code + ': ' : '') + (e.message || String(e));
}

async function main() {
  const argv = process.argv.slice(2);
  const cmd = argv.shift();
  const o = parseArgs(argv);
  const v = verifier(o);
  if (cmd === 'bundle') {
    const target = o._[0];
    if (!o.bundle || !target) throw new Usage('bundle needs --bundle FILE and FILE_OR_DIGEST');
    const isDigest = /^sha256:[0-9a-f]{64}$/.test(target) && !fs.existsSync(target);
    const what = verifyBundle(o, v, JSON.parse(fs.readFileSync(o.bundle)),
      isDigest ? null : fs.readFileSync(target), isDigest ? target : null);
    console.log('OK ' + what);
    return true;
  }
  if (cmd !== 'legacy' && cmd !== 'referrers') {
    throw new Usage('the command is bundle, legacy or referrers');
  }
  if (!o.registry || !o.repo || !/^sha256:[0-9a-f]{64}$/.test(o.digest || '')) {
    throw new Usage(cmd + ' needs --registry, --repo and --digest sha256:HEX');
  }
  return cmd === 'legacy' ? verifyLegacy(o, v) : verifyReferrers(o, v);
}

main().then((ok) => process.exit(ok ? 0 : 1), (e) => {
  const kind = e instanceof Usage ? 'USAGE ' : e instanceof Unsupported ? 'UNSUPPORTED ' : 'FAIL ';
  console.log(kind + describe(e));
  process.exit(e instanceof Usage ? 2 : e instanceof Unsupported ? 3 : 1);
});
