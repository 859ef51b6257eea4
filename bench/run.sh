#!/usr/bin/env bash
# bench/run.sh: the one command for sigil's benchmarks (see bench/README.md).
#   (a) requests/s of POST /validate on the cached path under wrk on 127.0.0.1, beside
#       bench_bare_responder (a fixed AdmissionReview over the same TLS stack) in the same run,
#       and their ratio (target >= 0.5); then the instructions per cached admission of both
#       servers under callgrind (bench/callgrind_cached.py, needs valgrind), for the `kubectl run`
#       Pod and for a controller's Pod with managedFields (issue 14 point 1: target >= 0.8);
#   (b) cold verification latency (p50, p99) of new, tag-referenced, key-signed images against a
#       local registry, and registry requests per image (target <= 4, +1 in a repository new to
#       sigil on a registry without the referrers API, as the bench's);
#   (c) keyless: CPU time of one keyless verification on a warm process (chain cache warm)
#       against the raw signature checks it performs (target <= 1.3x), and the cold admission of
#       new keyless-signed images (legacy .sig and cosign v3 bundles found through the
#       referrers tag schema).
#   (p) pinning (bench/pinning.py): a Pod by tag, mutate then validate, on the warm path against
#       the bare responder (target >= 0.5, zero registry requests); a cold new tag's round trips
#       on the critical path (target <= 3); a burst of 200 Pods of one new image, by tag and by
#       digest, counted from the registry's access log (one request of each kind).
#   (h) memory and startup: VmRSS with BENCH_MEMORY_IMAGES cached verdicts and the bytes per
#       verdict (target <= 60 MB with 10k), and process start to /readyz (target <= 200 ms).
#   (o) outage (bench/outage.py): admissions, one at a time, while the registry hangs, with
#       registry.failFast on (the default) and off: their latency and the connections that reach
#       the hanging registry (no target: for the record).
# Environment: BUILD_DIR (default build/), BENCH_SKIP_BUILD=1 (use the binaries as they are),
# BENCH_IMAGES (60), BENCH_THREADS (2, for both servers), BENCH_DURATION (10s),
# BENCH_CONNECTIONS (32), BENCH_LOG_LEVEL (sigil's --log-level, default info as deployed),
# BENCH_MEMORY_IMAGES (10000: the cached verdicts of (h); pushing them takes about 6 minutes),
# BENCH_DIR (work directory; default a fresh mktemp, removed at the end unless BENCH_KEEP=1).
# Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
IMAGES="${BENCH_IMAGES:-60}"
THREADS="${BENCH_THREADS:-2}"
DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-32}"
LOG_LEVEL="${BENCH_LOG_LEVEL:-info}"
MEM_IMAGES="${BENCH_MEMORY_IMAGES:-10000}"
PY=/usr/bin/python3
SUPPORT="$ROOT/tests/support"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  "$ROOT/scripts/deps.sh"
  echo "== building (scripts/build.sh -> $BUILD_DIR)"
  BUILD_DIR="$BUILD_DIR" "$ROOT/scripts/build.sh" >/dev/null
fi
SIGIL="$BUILD_DIR/sigil"
BARE="$BUILD_DIR/bench_bare_responder"
COLD="$BUILD_DIR/bench_cold_verify"
KEYLESS="$BUILD_DIR/bench_keyless_verify"
for b in "$SIGIL" "$BARE" "$COLD" "$KEYLESS"; do
  [ -x "$b" ] || { echo "bench: $b is missing (build failed?)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "bench: wrk is missing (scripts/deps.sh installs it)" >&2; exit 2; }

W="${BENCH_DIR:-$(mktemp -d /tmp/sigil-bench.XXXXXX)}"
mkdir -p "$W"
SIGIL_PID=""
SIGILM_PID=""
BARE_PID=""
# stop_pid NAME PID: SIGINT (sigil: no lame duck), up to 5 s to exit, then SIGKILL (and say so).
stop_pid() {
  kill -INT "$2" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$2" 2>/dev/null || { wait "$2" 2>/dev/null || true; return 0; }; sleep 0.1; done
  echo "bench: $1 (pid $2) still running 5 s after SIGINT; killing it" >&2
  kill -9 "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
}
cleanup() {
  [ -n "$SIGIL_PID" ] && stop_pid sigil "$SIGIL_PID"
  [ -n "$SIGILM_PID" ] && stop_pid sigil-metrics "$SIGILM_PID"
  [ -n "$BARE_PID" ] && stop_pid bench_bare_responder "$BARE_PID"
  "$PY" "$SUPPORT/registry.py" stop --dir "$W/registry" >/dev/null 2>&1 || true
  if [ -z "${BENCH_DIR:-}" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# kv FILE KEY -> the value of KEY=... in FILE (last one wins)
kv() { awk -F= -v k="$2" '$1 == k { v = $2 } END { print v }' "$1"; }

echo "== local registry on 127.0.0.1"
REG=$("$PY" "$SUPPORT/registry.py" start --dir "$W/registry")
echo "   $REG"

echo "== pushing and signing $IMAGES distinct images with one key"
"$PY" "$SUPPORT/fixture.py" keygen --alg p256 "$W/bench" >/dev/null
# One Python process for all of them (a process per push would dominate the setup time).
"$PY" - "$SUPPORT" "$REG" "$W/bench.key" "$IMAGES" "$W/signed.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import fixture
reg_addr, key_path, n, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
# out: "IMAGE:TAG DIGEST" per line
reg = fixture.connect(reg_addr)
key = fixture.load_private_key(key_path)
with open(out, "w") as f:
    for i in range(n):
        repo = "bench/app%02d" % i
        digest = fixture.push_image(reg, repo, "v1", "sigil bench image %d\n" % i)
        fixture.sign(reg, repo, digest, key)
        f.write("%s/%s:v1 %s\n" % (reg_addr, repo, digest))
PY
cut -d' ' -f1 "$W/signed.txt" > "$W/images.txt"

{
  cat <<YAML
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: bench-images
spec:
  images:
    - glob: "$REG/bench/**"
  authorities:
    - name: bench-key
      key:
        data: |
YAML
  sed 's/^/          /' "$W/bench.pub"
} > "$W/policy.yaml"

echo "== (b) cold verification: bench_cold_verify over $IMAGES new images"
"$COLD" --registry "$REG" --policy "$W/policy.yaml" --images-file "$W/images.txt" \
  > "$W/cold.txt" 2> "$W/cold.err" || {
  echo "bench: bench_cold_verify failed:" >&2; cat "$W/cold.err" >&2; exit 1; }

echo "== (c) keyless: signing $IMAGES more images keyless (legacy .sig) and $IMAGES as cosign v3 bundles"
"$PY" - "$SUPPORT" "$REG" "$W/keyless-state" "$IMAGES" "$W/keyless.txt" "$W/bundles.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import fixture, sigstore_fixture as sf
reg_addr, state, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
auth = sf.init(state)
reg = fixture.connect(reg_addr)
with open(sys.argv[5], "w") as legacy, open(sys.argv[6], "w") as bundles:
    for i in range(n):
        for kind, out in (("keyless", legacy), ("bundle", bundles)):
            repo = "bench/%s%02d" % (kind, i)
            digest = fixture.push_image(reg, repo, "v1", "sigil bench %s image %d\n" % (kind, i))
            signer = sf.Signer(keyless=auth, identity="bench@sigil.test",
                               issuer="https://accounts.sigil.test")
            (sf.sign if kind == "keyless" else sf.bundle)(reg, repo, digest, signer)
            out.write("%s/%s:v1\n" % (reg_addr, repo))
PY
cat > "$W/keyless-policy.yaml" <<YAML
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: bench-keyless
spec:
  images:
    - glob: "$REG/bench/keyless*"
    - glob: "$REG/bench/bundle*"
  authorities:
    - name: bench-identity
      keyless:
        identities:
          - issuer: https://accounts.sigil.test
            subject: bench@sigil.test
YAML
for kind in keyless bundles; do
  "$COLD" --registry "$REG" --policy "$W/keyless-policy.yaml" --images-file "$W/$kind.txt" \
    --trusted-root "$W/keyless-state/trusted_root.json" --prefix "$kind" \
    > "$W/cold-$kind.txt" 2> "$W/cold-$kind.err" || {
    echo "bench: bench_cold_verify ($kind) failed:" >&2; cat "$W/cold-$kind.err" >&2; exit 1; }
done
"$KEYLESS" > "$W/keyless-cpu.txt" 2> "$W/keyless-cpu.err" || {
  echo "bench: bench_keyless_verify failed:" >&2; cat "$W/keyless-cpu.err" >&2; exit 1; }

echo "== (h) memory with ${MEM_IMAGES} cached verdicts (bench/memory.py) and start/stop (bench/shutdown.py)"
"$PY" "$ROOT/bench/memory.py" --sigil "$SIGIL" --images "$MEM_IMAGES" > "$W/memory.txt" 2>&1 || {
  echo "bench: bench/memory.py failed:" >&2; cat "$W/memory.txt" >&2; exit 1; }
"$PY" "$ROOT/bench/shutdown.py" --sigil "$SIGIL" --runs 5 > "$W/shutdown.txt" 2>&1 || {
  echo "bench: bench/shutdown.py failed:" >&2; cat "$W/shutdown.txt" >&2; exit 1; }

echo "== (p) pinning: mutate + validate warm path, cold tag round trips, 200-Pod bursts (bench/pinning.py)"
PINNING_OK=yes
"$PY" "$ROOT/bench/pinning.py" --sigil "$SIGIL" --bare "$BARE" --threads "$THREADS" \
  --duration "$DURATION" --connections "$CONNS" > "$W/pinning.txt" 2>&1 || PINNING_OK=no
grep -q '^warm.ratio=' "$W/pinning.txt" || { echo "bench: bench/pinning.py failed:" >&2; cat "$W/pinning.txt" >&2; exit 1; }

echo "== (o) a registry that hangs, registry.failFast on and off (bench/outage.py)"
"$PY" "$ROOT/bench/outage.py" --sigil "$SIGIL" > "$W/outage.txt" 2>&1 || {
  echo "bench: bench/outage.py failed:" >&2; cat "$W/outage.txt" >&2; exit 1; }

echo "== (a) instructions per cached admission under callgrind (bench/callgrind_cached.py)"
CG_OK=no
if command -v valgrind > /dev/null && command -v callgrind_control > /dev/null; then
  "$PY" "$ROOT/bench/callgrind_cached.py" --build "$BUILD_DIR" --requests 500 --top 0 \
    > "$W/callgrind.txt" 2>&1 &&
    "$PY" "$ROOT/bench/callgrind_cached.py" --build "$BUILD_DIR" --requests 300 --top 0 \
      --review "$ROOT/tests/unit/admission/data/pod-create-by-controller.json" \
      > "$W/callgrind-controller.txt" 2>&1 && CG_OK=yes
  [ "$CG_OK" = yes ] || { echo "bench: bench/callgrind_cached.py failed:" >&2; cat "$W"/callgrind*.txt >&2; exit 1; }
fi

echo "== serving certificate (throwaway CA)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=sigil bench CA" -keyout "$W/ca.key" -out "$W/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$W/tls.key" -out "$W/tls.csr" 2>/dev/null
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n" > "$W/ext.cnf"
openssl x509 -req -in "$W/tls.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 1 \
  -extfile "$W/ext.cnf" -out "$W/tls.crt" 2>/dev/null

# The AdmissionReviews wrk posts: `kubectl run` of the first signed image, by tag (each
# admission resolves the tag: one HEAD to the registry even when the verdict is cached) and
# by digest (the fully cached path: no registry request).
review() {  # review IMAGE > body
  "$PY" - "$ROOT/examples/admission/pod-create-kubectl-run.json" "$1" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
body["request"]["object"]["spec"]["containers"][0]["image"] = sys.argv[2]
print(json.dumps(body))
PY
}
read -r FIRST FIRST_DIGEST < "$W/signed.txt"
review "$FIRST" > "$W/review-tag.json"
review "${FIRST%:v1}@$FIRST_DIGEST" > "$W/review-digest.json"

SIGIL_PORT=$(free_port)
"$SIGIL" serve --listen "127.0.0.1:$SIGIL_PORT" --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" \
  --policy "$W/policy.yaml" --insecure-registry "$REG" --threads "$THREADS" \
  --log-level "$LOG_LEVEL" > "$W/sigil.log" 2>&1 &
SIGIL_PID=$!
# The same sigil with /metrics on (every admission observed, every registry exchange counted):
# benched right after the one above, for the metrics overhead on the cached path.
SIGILM_PORT=$(free_port)
METRICS_PORT=$(free_port)
"$SIGIL" serve --listen "127.0.0.1:$SIGILM_PORT" --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" \
  --policy "$W/policy.yaml" --insecure-registry "$REG" --threads "$THREADS" \
  --log-level "$LOG_LEVEL" --metrics-listen "127.0.0.1:$METRICS_PORT" > "$W/sigil-metrics.log" 2>&1 &
SIGILM_PID=$!
BARE_PORT=$(free_port)
"$BARE" --listen "127.0.0.1:$BARE_PORT" --cert "$W/tls.crt" --key "$W/tls.key" \
  --threads "$THREADS" > "$W/bare.log" 2>&1 &
BARE_PID=$!

post() {  # post PORT [BODY] -> response body
  curl -s --max-time 15 --cacert "$W/ca.crt" -H 'Content-Type: application/json' \
    --data-binary @"${2:-$W/review-tag.json}" "https://127.0.0.1:$1/validate?timeout=10s"
}
for _ in $(seq 1 100); do
  curl -sf --cacert "$W/ca.crt" "https://127.0.0.1:$SIGIL_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$SIGIL_PID" 2>/dev/null || { echo "bench: sigil exited:" >&2; cat "$W/sigil.log" >&2; exit 1; }
  sleep 0.1
done
for _ in $(seq 1 100); do
  curl -sf --cacert "$W/ca.crt" "https://127.0.0.1:$SIGILM_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$SIGILM_PID" 2>/dev/null || { echo "bench: sigil (metrics) exited:" >&2; cat "$W/sigil-metrics.log" >&2; exit 1; }
  sleep 0.1
done
for _ in $(seq 1 100); do
  post "$BARE_PORT" >/dev/null 2>&1 && break
  kill -0 "$BARE_PID" 2>/dev/null || { echo "bench: bare responder exited:" >&2; cat "$W/bare.log" >&2; exit 1; }
  sleep 0.1
done

allowed() { "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["response"]["allowed"] is True else 1)'; }
echo "== warming sigil's cache with one request (by tag, then by digest)"
for kind in tag digest; do
  for port in "$SIGIL_PORT" "$SIGILM_PORT"; do
    post "$port" "$W/review-$kind.json" > "$W/warm-$kind.json" || true
    allowed < "$W/warm-$kind.json" || {
      echo "bench: sigil did not admit the signed image ($kind, port $port):" >&2
      cat "$W/warm-$kind.json" "$W/sigil.log" "$W/sigil-metrics.log" >&2; exit 1; }
  done
done

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks (/proc/PID/stat).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
WRK=(wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/bench/post.lua")
echo "== (a) wrk ${WRK[*]:1:3} against bench_bare_responder"
BENCH_BODY="$W/review-tag.json" "${WRK[@]}" "https://127.0.0.1:$BARE_PORT/validate?timeout=10s" > "$W/wrk-bare.txt" 2>&1
for kind in tag digest; do
  echo "== (a) wrk ${WRK[*]:1:3} against sigil, image by $kind (threads=$THREADS, log level $LOG_LEVEL)"
  c0=$(cpu_ticks "$SIGIL_PID")
  BENCH_BODY="$W/review-$kind.json" "${WRK[@]}" "https://127.0.0.1:$SIGIL_PORT/validate?timeout=10s" \
    > "$W/wrk-sigil-$kind.txt" 2>&1
  echo "sigil.cpu_ticks=$(( $(cpu_ticks "$SIGIL_PID") - c0 ))" >> "$W/wrk-sigil-$kind.txt"
  echo "== (a) the same against sigil with --metrics-listen, image by $kind"
  c0=$(cpu_ticks "$SIGILM_PID")
  BENCH_BODY="$W/review-$kind.json" "${WRK[@]}" "https://127.0.0.1:$SIGILM_PORT/validate?timeout=10s" \
    > "$W/wrk-sigilm-$kind.txt" 2>&1
  echo "sigil.cpu_ticks=$(( $(cpu_ticks "$SIGILM_PID") - c0 ))" >> "$W/wrk-sigilm-$kind.txt"
done
curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" > "$W/metrics.txt" || true
METRICS_ADMISSIONS=$(awk '/^sigil_admission_duration_seconds_count\{/ { n += $2 } END { print n + 0 }' "$W/metrics.txt")
# After load: still admitting (not a pile of timeouts answered 200 with allowed=false)?
SIGIL_STILL_ALLOWS=yes
for kind in tag digest; do
  post "$SIGIL_PORT" "$W/review-$kind.json" > "$W/after-$kind.json" || true
  allowed < "$W/after-$kind.json" || SIGIL_STILL_ALLOWS=no
done
SIGIL_RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SIGIL_PID/status" 2>/dev/null || echo "?")
BARE_RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$BARE_PID/status" 2>/dev/null || echo "?")
DENIED_LINES=$(grep -c 'decision=denied' "$W/sigil.log" || true)

[ -n "$(kv "$W/wrk-bare.txt" wrk.rps)" ] && [ -n "$(kv "$W/wrk-sigil-tag.txt" wrk.rps)" ] &&
  [ -n "$(kv "$W/wrk-sigil-digest.txt" wrk.rps)" ] ||
  { echo "bench: wrk produced no result:" >&2; cat "$W"/wrk-*.txt >&2; exit 1; }
RPS_B=$(kv "$W/wrk-bare.txt" wrk.rps)
ratio() { awk -v s="$(kv "$1" wrk.rps)" -v b="$RPS_B" 'BEGIN { printf "%.2f", (b > 0 ? s / b : 0) }'; }
RATIO_T=$(ratio "$W/wrk-sigil-tag.txt"); RATIO_D=$(ratio "$W/wrk-sigil-digest.txt")
REQ_MAX=$(kv "$W/cold.txt" cold.tag.requests_max_after_first)
mark() { if awk -v v="$1" -v t="$3" "BEGIN { exit !(v $2 t) }"; then echo PASS; else echo FAIL; fi; }
# By tag without pinning every admission resolves the tag afresh (a HEAD): no target; point 2's
# tag path is (p), with pinning.
RATIO_D_MARK=$(mark "$RATIO_D" ">=" 0.5)
# 4 requests per new tag (HEAD, .sig, payload blob, one bundle lookup), plus one where the registry
# has no referrers API and the repository is new to sigil: that 404 is learnt per repository
# (a NAME_UNKNOWN must not teach a whole host), and every image here has its own repository.
REQ_MARK=$(mark "$REQ_MAX" "<=" 5)
errs() { echo $(( $(kv "$1" wrk.errors) + $(kv "$1" wrk.non2xx) )); }
row() {  # row LABEL KEY
  printf '%-40s %12s %12s %12s\n' "$1" "$(kv "$W/wrk-sigil-tag.txt" "$2")" \
    "$(kv "$W/wrk-sigil-digest.txt" "$2")" "$(kv "$W/wrk-bare.txt" "$2")"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "sigil benchmark ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), server threads=$THREADS, wrk -t2 -c$CONNS -d$DURATION)"
printf '%-40s %12s %12s %12s\n' "(a) POST /validate, cached verdict" "sigil (tag)" "sigil (dig)" "bare"
row "    requests/s" wrk.rps
row "    latency p50 (ms)" wrk.p50_ms
row "    latency p99 (ms)" wrk.p99_ms
printf '%-40s %12s %12s %12s\n' "    socket errors + non-2xx" "$(errs "$W/wrk-sigil-tag.txt")" \
  "$(errs "$W/wrk-sigil-digest.txt")" "$(errs "$W/wrk-bare.txt")"
printf '%-40s %12s %12s %12s   target >= 0.50 (digest): %s; by tag: see (p)\n' "    ratio to bare" "$RATIO_T" \
  "$RATIO_D" "1.00" "$RATIO_D_MARK"
printf '%-40s %25s %12s\n' "    peak RSS (MiB, VmHWM)" "$(mib "$SIGIL_RSS_KB")" "$(mib "$BARE_RSS_KB")"
# callgrind's count per admission: "  sigil   117686   (dump)", "  bare / sigil = 0.734 (...)".
cg() { awk -v k="$2" '$1 == k && $2 ~ /^[0-9]/ { print $2 } $1 == "bare" && $2 == "/" && k == "ratio" { print $5 }' "$1"; }
cg_row() {  # cg_row LABEL FILE
  printf '%-40s %12s %12s %12s   target >= 0.80: %s\n' "$1" "$(cg "$2" sigil)" "$(cg "$2" bare)" \
    "$(cg "$2" ratio)" "$(mark "$(cg "$2" ratio)" ">=" 0.8)"
}
CG_MARK=PASS
if [ "$CG_OK" = yes ]; then
  for f in "$W/callgrind.txt" "$W/callgrind-controller.txt"; do
    [ "$(mark "$(cg "$f" ratio)" ">=" 0.8)" = PASS ] || CG_MARK=FAIL
  done
  printf '%-40s %12s %12s %12s\n' "    instructions per admission (callgrind)" "sigil (dig)" "bare" "bare/sigil"
  cg_row "      kubectl run Pod, 1.2 KB" "$W/callgrind.txt"
  cg_row "      ReplicaSet's Pod, managedFields, 3.3 KB" "$W/callgrind-controller.txt"
else
  printf '%-40s %s\n' "    instructions per admission" "skipped: valgrind is not installed (apt-get install valgrind)"
fi
mratio() { awk -v m="$(kv "$W/wrk-sigilm-$1.txt" wrk.rps)" -v s="$(kv "$W/wrk-sigil-$1.txt" wrk.rps)" \
  'BEGIN { printf "%.3f", (s > 0 ? m / s : 0) }'; }
printf '%-40s %12s %12s\n' "    with /metrics on: requests/s" "$(kv "$W/wrk-sigilm-tag.txt" wrk.rps)" \
  "$(kv "$W/wrk-sigilm-digest.txt" wrk.rps)"
printf '%-40s %12s %12s   (%s admissions observed)\n' "    metrics on / off" "$(mratio tag)" \
  "$(mratio digest)" "$METRICS_ADMISSIONS"
# CPU per admission is steadier than requests/s on a shared machine: other load steals wall time
# from both servers alike, but not CPU time from the one being measured.
cpu_us() { awk -v t="$(kv "$1" sigil.cpu_ticks)" -v n="$(kv "$1" wrk.requests)" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }'; }
printf '%-40s %12s %12s\n' "    CPU us per admission, metrics off" "$(cpu_us "$W/wrk-sigil-tag.txt")" \
  "$(cpu_us "$W/wrk-sigil-digest.txt")"
printf '%-40s %12s %12s\n' "    CPU us per admission, metrics on" "$(cpu_us "$W/wrk-sigilm-tag.txt")" \
  "$(cpu_us "$W/wrk-sigilm-digest.txt")"
printf '%-40s %25s\n' "    sigil still admits after the runs" "$SIGIL_STILL_ALLOWS"
printf '%-40s %25s\n' "    denials logged during the runs" "$DENIED_LINES"
echo
printf '%-44s %12s %12s\n' "(b) cold verification, $(kv "$W/cold.txt" cold.tag.images) new images" "by tag" "by digest"
printf '%-44s %12s %12s\n' "    latency p50 (ms)" "$(kv "$W/cold.txt" cold.tag.p50_ms)" "$(kv "$W/cold.txt" cold.digest.p50_ms)"
printf '%-44s %12s %12s\n' "    latency p99 (ms)" "$(kv "$W/cold.txt" cold.tag.p99_ms)" "$(kv "$W/cold.txt" cold.digest.p99_ms)"
printf '%-44s %12s %12s\n' "    latency mean (ms)" "$(kv "$W/cold.txt" cold.tag.mean_ms)" "$(kv "$W/cold.txt" cold.digest.mean_ms)"
printf '%-44s %12s %12s\n' "    registry requests per image (mean)" "$(kv "$W/cold.txt" cold.tag.requests_mean)" "$(kv "$W/cold.txt" cold.digest.requests_mean)"
printf '%-44s %12s %12s   target <= 4, +1 in a new repository without the referrers API (by tag): %s\n' "    registry requests per image (max)" "$REQ_MAX" "$(kv "$W/cold.txt" cold.digest.requests_max_after_first)" "$REQ_MARK"
printf '%-44s %12s %12s\n' "    the run's first image (learns the registry)" "$(kv "$W/cold.txt" cold.tag.requests_first)" "$(kv "$W/cold.txt" cold.digest.requests_first)"
echo
KEYLESS_RATIO=$(kv "$W/keyless-cpu.txt" ratio.legacy)
KEYLESS_DSSE=$(kv "$W/keyless-cpu.txt" ratio.dsse_bundle)
# Both kinds of signature must be within the target: the mark is the worse of the two.
KEYLESS_MARK=$( [ "$(mark "$KEYLESS_RATIO" "<=" 1.3)" = PASS ] && mark "$KEYLESS_DSSE" "<=" 1.3 || echo FAIL)
printf '%-44s %12s %12s\n' "(c) keyless, CPU per signature (warm)" "legacy .sig" "v3 bundle"
printf '%-44s %12s %12s\n' "    verify_entity (us)" "$(kv "$W/keyless-cpu.txt" verify.legacy_us)" "$(kv "$W/keyless-cpu.txt" verify.dsse_bundle_us)"
printf '%-44s %12s\n' "    raw checks it performs (us, leaf cert + 3)" "$(kv "$W/keyless-cpu.txt" raw.total_us)"
printf '%-44s %12s\n' "      signature, SET, SCT (P-256, us each)" "$(kv "$W/keyless-cpu.txt" raw.signature_us) $(kv "$W/keyless-cpu.txt" raw.set_us) $(kv "$W/keyless-cpu.txt" raw.sct_us)"
printf '%-44s %12s\n' "      leaf cert; intermediate, cached (P-384, us)" "$(kv "$W/keyless-cpu.txt" raw.leaf_cert_us) $(kv "$W/keyless-cpu.txt" raw.intermediate_cert_us)"
printf '%-44s %12s %12s   target <= 1.3x (both): %s\n' "    ratio" "$KEYLESS_RATIO" "$KEYLESS_DSSE" "$KEYLESS_MARK"
printf '%-44s %12s\n' "    verify_entity without the chain cache (us)" "$(kv "$W/keyless-cpu.txt" verify.legacy_uncached_us)"
printf '%-44s %12s %12s\n' "    cold admission, $(kv "$W/cold-keyless.txt" keyless.tag.images) new images, by tag" "legacy .sig" "v3 bundle"
printf '%-44s %12s %12s\n' "      latency p50 (ms)" "$(kv "$W/cold-keyless.txt" keyless.tag.p50_ms)" "$(kv "$W/cold-bundles.txt" bundles.tag.p50_ms)"
printf '%-44s %12s %12s\n' "      latency p99 (ms)" "$(kv "$W/cold-keyless.txt" keyless.tag.p99_ms)" "$(kv "$W/cold-bundles.txt" bundles.tag.p99_ms)"
printf '%-44s %12s %12s\n' "      registry requests per image (max)" "$(kv "$W/cold-keyless.txt" keyless.tag.requests_max_after_first)" "$(kv "$W/cold-bundles.txt" bundles.tag.requests_max_after_first)"
echo
P="$W/pinning.txt"
echo "(p) pinning on: a Pod by tag, mutate then validate, warm (sigil --pinning, cache.tagTtl 60s)"
printf '%-44s %12s %12s\n' "    requests/s (two per Pod)" "$(kv "$P" warm.sigil_rps)" "bare $(kv "$P" warm.bare_rps)"
printf '%-44s %12s   target >= 0.50: %s\n' "    ratio to bare" "$(kv "$P" warm.ratio)" "$(mark "$(kv "$P" warm.ratio)" ">=" 0.5)"
printf '%-44s %12s %12s   (CPU ratio %s)\n' "    CPU us per request, sigil / bare" "$(kv "$P" warm.sigil_cpu_us)" "$(kv "$P" warm.bare_cpu_us)" "$(kv "$P" warm.cpu_ratio)"
printf '%-44s %12s   target 0: %s\n' "    registry requests during the run" "$(kv "$P" warm.registry_requests)" "$(mark "$(kv "$P" warm.registry_requests)" "==" 0)"
printf '%-44s %12s   (%s ms per registry request, %s images)\n' "    cold new tag, p50 latency (ms)" "$(kv "$P" cold.p50_ms)" "$(kv "$P" cold.delay_ms)" "$(kv "$P" cold.images)"
printf '%-44s %12s   target <= 3: %s\n' "    round trips on the critical path (max)" "$(kv "$P" cold.round_trips_max)" "$(mark "$(kv "$P" cold.round_trips_max)" "<=" 3)"
printf '%-44s %12s\n' "    registry requests per cold image" "$(kv "$P" cold.requests_max)"
printf '%-44s %12s %12s   target 1/1/1/1 and -/1/1/1\n' "    burst of $(kv "$P" burst.pods) Pods: HEAD/.sig/blob/referrers" \
  "$(kv "$P" burst.tag.head)/$(kv "$P" burst.tag.sig)/$(kv "$P" burst.tag.blob)/$(kv "$P" burst.tag.referrers)" \
  "-/$(kv "$P" burst.digest.sig)/$(kv "$P" burst.digest.blob)/$(kv "$P" burst.digest.referrers)"
printf '%-44s %12s %12s\n' "      (by tag, by digest; total requests)" "$(kv "$P" burst.tag.total)" "$(kv "$P" burst.digest.total)"
grep '^target missed' "$P" | sed 's/^/    /' || true
echo
echo "(h) memory and startup (bench/memory.py, bench/shutdown.py)"
sed -n 's/^VmRSS/    VmRSS/p; s/^per cached/    per cached/p; s/^admitted/    admitted/p' "$W/memory.txt"
sed -n 's/^start -> \/readyz/    start -> \/readyz (target <= 200 ms)/p; s/^SIGTERM/    SIGTERM/p' "$W/shutdown.txt"
echo
echo "(o) a registry that hangs (bench/outage.py)"
sed -n 's/^|/    |/p; s/^\([0-9]* admissions in a hang outage.*\)/    \1/p' "$W/outage.txt"
echo
[ "$PINNING_OK" = yes ] && [ "$RATIO_D_MARK" = PASS ] && [ "$CG_MARK" = PASS ] && [ "$REQ_MARK" = PASS ] && [ "$KEYLESS_MARK" = PASS ] && [ "$SIGIL_STILL_ALLOWS" = yes ] && exit 0
exit 1
