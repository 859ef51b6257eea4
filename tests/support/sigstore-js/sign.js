#!/usr/bin/env node
// An independent sigstore producer for sigil's tests: the real sigstore-js signer
// (`sigstore.attest` / `sigstore.sign`) against @sigstore/mock's Fulcio, Rekor and TSA
// handlers, served over HTTP on 127.0.0.1 by this process, with an unsigned fake OIDC token.
//
// usage: node sign.js --out DIR [--image-digest sha256:HEX]... [--blob FILE]...
//                     [--identity URI] [--issuer URL] [--tsa] [--no-tlog]
//                     [--predicate-type URI]
// writes DIR/trusted_root.json (the mock CA, CT log, Rekor and TSA keys of this run) and
//   DIR/image-<hex>.sigstore.json  v0.3 DSSE bundle of the cosign v3 `sign` statement
//                                  (predicateType https://sigstore.dev/cosign/sign/v1, or an
//                                  attestation's with --predicate-type) with a dsse 0.0.1 Rekor
//                                  entry, per --image-digest
//   DIR/blob-<name>.sigstore.json  v0.2 messageSignature bundle over FILE, per --blob
// and prints {"trusted_root", "identity", "issuer", "bundles": [{kind, digest, path}]}.
//
// The mock services mint new keys and a new root certificate on every start, so one run signs
// a whole batch against one trusted_root.json. The mock CA issues URI SANs only; its leaf is
// signed by the root directly (no intermediate). The mock Rekor logs what it is given; real
// Rekor stores a dsse proposal in another form (envelopeHash, payloadHash, signatures), and
// storedDsse() makes that conversion here. Its inclusion proof is a one-leaf tree (so
// protobuf JSON omits its logIndex 0 and empty hashes). Timestamps are whole seconds.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');

const mock = require('@sigstore/mock');
const sigstore = require('sigstore');

const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
const INTOTO = 'application/vnd.in-toto+json';
const REKOR_URL = 'https://rekor.local'; // checkpoint names must match the trusted root's URL

function parseArgs(argv) {
  const a = { images: [], blobs: [], tlog: true, tsa: false, predicateType: COSIGN_SIGN_PREDICATE,
    identity: 'https://github.com/sigil-test/app/.github/workflows/release.yml@refs/heads/main',
    issuer: 'https://token.actions.githubusercontent.com' };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(argv[i] + ' needs a value');
      return argv[++i];
    };
    switch (argv[i]) {
      case '--out': a.out = value(); break;
      case '--image-digest': a.images.push(value()); break;
      case '--blob': a.blobs.push(value()); break;
      case '--identity': a.identity = value(); break;
      case '--issuer': a.issuer = value(); break;
      case '--tsa': a.tsa = true; break;
      case '--no-tlog': a.tlog = false; break;
      case '--predicate-type': a.predicateType = value(); break;
      default: throw new Error('unknown argument ' + argv[i]);
    }
  }
  if (!a.out) throw new Error('--out DIR is required');
  if (!a.images.length && !a.blobs.length) {
    throw new Error('nothing to sign: give --image-digest or --blob');
  }
  for (const d of a.images) {
    if (!/^sha256:[0-9a-f]{64}$/.test(d)) throw new Error('not a sha256 digest: ' + d);
  }
  return a;
}

const b64 = (b) => Buffer.from(b).toString('base64');
const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const sha256 = (b) => crypto.createHash('sha256').update(b).digest();

// An unsigned JWT: the mock Fulcio decodes it without checking a signature.
function identityToken(sub, iss) {
  const now = Math.floor(Date.now() / 1000);
  return [b64url({ alg: 'none', typ: 'JWT' }),
    b64url({ iss, sub, aud: 'sigstore', iat: now, exp: now + 600 }), ''].join('.');
}

// Rekor's stored form of a dsse 0.0.1 proposal (what it would log and return).
function storedDsse(body) {
  const entry = JSON.parse(body);
  const proposed = entry.kind === 'dsse' && entry.spec && entry.spec.proposedContent;
  if (!proposed) return body;
  const envelope = JSON.parse(proposed.envelope);
  return JSON.stringify({ apiVersion: entry.apiVersion, kind: 'dsse', spec: {
    envelopeHash: { algorithm: 'sha256', value: sha256(proposed.envelope).toString('hex') },
    payloadHash: { algorithm: 'sha256',
      value: sha256(Buffer.from(envelope.payload, 'base64')).toString('hex') },
    signatures: envelope.signatures.map((s, i) => ({ signature: s.sig,
      verifier: proposed.verifiers[i] || proposed.verifiers[0] })) } });
}

async function startServices() {
  const keyPair = () => crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const [caKeys, ctKeys, rekorKeys, tsaKeys] = [keyPair(), keyPair(), keyPair(), keyPair()];
  const ctlog = await mock.initializeCTLog(ctKeys);
  const ca = await mock.initializeCA(caKeys, ctlog);
  const tlog = await mock.initializeTLog(REKOR_URL, rekorKeys);
  const tsa = await mock.initializeTSA(tsaKeys);
  // The mock writes genTime with trimmed fractional seconds ("...03.27Z"), which
  // @sigstore/core 3.2.1 cannot parse (it takes exactly three digits): stamp whole seconds.
  tsa.getCurrentTime = () => new Date(Math.floor(Date.now() / 1000) * 1000);
  const rekor = mock.rekorHandler(tlog);
  const handlers = [mock.fulcioHandler(ca, { subjectClaim: 'sub' }), rekor, mock.tsaHandler(tsa)];

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const h = handlers.find((x) => req.method === 'POST' && req.url === x.path);
      if (!h) { res.writeHead(404); res.end(); return; }
      let body = Buffer.concat(chunks).toString();
      if (h === rekor) body = storedDsse(body);
      const r = await h.fn(body);
      res.writeHead(r.statusCode, { 'content-type': r.contentType || 'application/json' });
      res.end(r.response);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

  const spki = (kp) => kp.publicKey.export({ type: 'spki', format: 'der' });
  const start = new Date(Date.now() - 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  const log = (url, kp) => ({ baseUrl: url, hashAlgorithm: 'SHA2_256',
    publicKey: { rawBytes: b64(spki(kp)), keyDetails: 'PKIX_ECDSA_P256_SHA_256',
      validFor: { start } },
    logId: { keyId: b64(sha256(spki(kp))) } });
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [log(REKOR_URL, rekorKeys)],
    certificateAuthorities: [{ subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
      uri: 'https://fulcio.local', validFor: { start },
      certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] } }],
    ctlogs: [log('https://ctfe.local', ctKeys)],
    timestampAuthorities: [{ subject: { organization: 'sigstore.mock', commonName: 'tsa' },
      uri: 'https://tsa.local', validFor: { start },
      certChain: { certificates: [{ rawBytes: b64(tsa.intCertificate) },
        { rawBytes: b64(tsa.rootCertificate) }] } }],
  };
  return { server, url: 'http://127.0.0.1:' + server.address().port, trustedRoot };
}

function cosignStatement(digest, predicateType) {
  return Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: 'image', digest: { sha256: digest.slice('sha256:'.length) } }],
    predicateType, predicate: {} }));
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  fs.mkdirSync(a.out, { recursive: true });
  const svc = await startServices();
  try {
    const opts = { fulcioURL: svc.url, rekorURL: svc.url, tlogUpload: a.tlog,
      tsaServerURL: a.tsa ? svc.url : undefined,
      identityToken: identityToken(a.identity, a.issuer) };
    const bundles = [];
    const write = (name, bundle) => {
      const p = path.join(a.out, name);
      fs.writeFileSync(p, JSON.stringify(bundle));
      return p;
    };
    for (const d of a.images) {
      const bundle = await sigstore.attest(cosignStatement(d, a.predicateType), INTOTO, opts);
      bundles.push({ kind: 'image', digest: d,
        path: write('image-' + d.slice(7) + '.sigstore.json', bundle) });
    }
    for (const f of a.blobs) {
      const data = fs.readFileSync(f);
      const bundle = await sigstore.sign(data, opts);
      bundles.push({ kind: 'blob', digest: 'sha256:' + sha256(data).toString('hex'), artifact: f,
        path: write('blob-' + path.basename(f) + '.sigstore.json', bundle) });
    }
    const tr = path.join(a.out, 'trusted_root.json');
    fs.writeFileSync(tr, JSON.stringify(svc.trustedRoot, null, 2) + '\n');
    console.log(JSON.stringify({ trusted_root: tr, identity: a.identity, issuer: a.issuer,
      bundles }));
  } finally {
    svc.server.close();
  }
}

main().catch((e) => { console.error('sign.js: ' + (e && e.stack || e)); process.exit(1); });
