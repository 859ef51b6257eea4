#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing, builds sigil, starts a
# real distribution registry on 127.0.0.1 holding a signed and an unsigned demo image, runs
# `sigil serve` over HTTPS with a generated CA and a policy trusting the demo key, then posts
# two AdmissionReviews to it and shows the allow and the deny (with its reason). Then the same
# for keyless signing: a self-made sigstore (Fulcio-like CA, CT log, Rekor-like log, all on this
# machine) signs one image as release@demo.test and one as someone else; a keyless policy
# admits only the first.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/deps.sh"
echo "== building sigil"
[ "${SIGIL_SKIP_BUILD:-0}" = 1 ] || TARGETS=sigil "$ROOT/scripts/build.sh" >/dev/null  # the binary only, not the tests
SIGIL="${SIGIL_BIN:-$ROOT/build/sigil}"
PY=/usr/bin/python3
SUPPORT="$ROOT/tests/support"
W="${DEMO_DIR:-$(mktemp -d /tmp/sigil-demo.XXXXXX)}"
mkdir -p "$W"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  "$PY" "$SUPPORT/registry.py" stop --dir "$W/registry" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== starting a local registry (docker-registry) on 127.0.0.1"
REG=$("$PY" "$SUPPORT/registry.py" start --dir "$W/registry")
echo "   registry at $REG"

echo "== pushing demo images: one signed with the demo key, one unsigned, two signed keyless"
"$PY" "$SUPPORT/fixture.py" keygen --alg p256 "$W/demo" >/dev/null
SIGNED=$("$PY" "$SUPPORT/fixture.py" push-image --registry "$REG" --repo demo/signed --tag v1 --content "signed demo")
"$PY" "$SUPPORT/fixture.py" push-image --registry "$REG" --repo demo/unsigned --tag v1 --content "unsigned demo" >/dev/null
"$PY" "$SUPPORT/fixture.py" sign --registry "$REG" --repo demo/signed --digest "$SIGNED" --key "$W/demo.key" >/dev/null
echo "   $REG/demo/signed:v1   -> $SIGNED (signed)"
echo "   $REG/demo/unsigned:v1 (not signed)"
"$PY" - "$SUPPORT" "$REG" "$W/sigstore" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import fixture, sigstore_fixture as sf
reg = fixture.connect(sys.argv[2])
auth = sf.init(sys.argv[3])
for repo, who in (("demo/keyless", "release@demo.test"), ("demo/impostor", "mallory@demo.test")):
    d = fixture.push_image(reg, repo, "v1", "keyless demo " + repo)
    sf.bundle(reg, repo, d, sf.Signer(keyless=auth, identity=who, issuer="https://login.demo.test"))
    print("   %s/%s:v1 -> %s (cosign v3 bundle, keyless, signed by %s)" % (sys.argv[2], repo, d, who))
PY

echo "== generating a CA and a serving certificate for sigil"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=sigil demo CA" \
  -keyout "$W/ca.key" -out "$W/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=sigil.sigil.svc" \
  -keyout "$W/tls.key" -out "$W/tls.csr" 2>/dev/null
printf "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:sigil.sigil.svc\nextendedKeyUsage=serverAuth\n" > "$W/ext.cnf"
openssl x509 -req -in "$W/tls.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 1 \
  -extfile "$W/ext.cnf" -out "$W/tls.crt" 2>/dev/null

echo "== writing ClusterImagePolicies: one trusts the demo key, one the identity release@demo.test"
{
  cat <<YAML
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: demo-images
spec:
  images:
    - glob: "$REG/demo/signed"
    - glob: "$REG/demo/unsigned"
  authorities:
    - name: demo-key
      key:
        data: |
YAML
  sed 's/^/          /' "$W/demo.pub"
  cat <<YAML
---
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: demo-keyless
spec:
  images:
    - glob: "$REG/demo/keyless"
    - glob: "$REG/demo/impostor"
  authorities:
    - name: release-identity
      keyless:
        trustRootRef: sigil-test
        identities:
          - issuer: https://login.demo.test
            subject: release@demo.test
---
YAML
  cat "$W/sigstore/trustroot.yaml"
} > "$W/policy.yaml"

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "== starting: sigil serve --listen 127.0.0.1:$PORT --policy policy.yaml --insecure-registry $REG"
"$SIGIL" serve --listen "127.0.0.1:$PORT" --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" \
  --policy "$W/policy.yaml" --insecure-registry "$REG" --log-level warn &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -sf --cacert "$W/ca.crt" "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

review() {  # review IMAGE UID -> AdmissionReview body for `kubectl run`
  "$PY" - "$ROOT/examples/admission/pod-create-kubectl-run.json" "$1" "$2" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
body["request"]["uid"] = sys.argv[3]
body["request"]["object"]["spec"]["containers"][0]["image"] = sys.argv[2]
print(json.dumps(body))
PY
}
show() {
  "$PY" -c '
import json, sys
r = json.load(sys.stdin)["response"]
verdict = "ALLOWED" if r["allowed"] else "DENIED"
print("   uid %s: %s" % (r["uid"], verdict))
if not r["allowed"]:
    print("   reason: " + r["status"]["message"])
for w in r.get("warnings", []):
    print("   warning: " + w)'
}
for case in "signed:11111111-aaaa-4bbb-8ccc-000000000001" "unsigned:22222222-aaaa-4bbb-8ccc-000000000002" \
            "keyless:33333333-aaaa-4bbb-8ccc-000000000003" "impostor:44444444-aaaa-4bbb-8ccc-000000000004"; do
  name=${case%%:*}; uid=${case#*:}
  echo "== POST /validate: kubectl run with $REG/demo/$name:v1"
  review "$REG/demo/$name:v1" "$uid" |
    curl -s --cacert "$W/ca.crt" -H 'Content-Type: application/json' --data-binary @- \
      "https://127.0.0.1:$PORT/validate?timeout=10s" | show
done
echo "== the same check from the command line: sigil verify"
"$SIGIL" verify "$REG/demo/unsigned:v1" --policy "$W/policy.yaml" --insecure-registry "$REG" || echo "   (exit code $?: denied)"
echo "== done (work files in $W)"
