#!/usr/bin/python3
"""bench/pinning.py: the tag path with pinning on (issue 14 points 2 and 4).

  python3 bench/pinning.py --sigil build/sigil --bare build/bench_bare_responder \\
      [--threads 2] [--duration 10s] [--connections 32] [--delay-ms 50] [--burst 200]

Starts a real distribution registry on 127.0.0.1 (tests/support/registry.py), `sigil serve
--pinning` (config `cache: {tagTtl: 60s}`, longer than a wrk run) and bench_bare_responder with
the same certificate and threads, then measures:

  (p) warm path: wrk alternates POST /mutate of a Pod by tag and POST /validate of that Pod as
      patched (name:tag@digest), after one warm-up Pod. requests/s against the bare
      responder's (target ratio >= 0.5), and sigil's registry requests during the run, from
      the registry's access log (target 0). Pods/s is half the requests/s.
  (q) a cold new tag: each of N new, signed tags in a new repository admitted once (mutate,
      then validate) through tests/support/latency_proxy.py, which delays every request to
      the registry by --delay-ms: latency / delay is the number of registry round trips on
      the critical path (target <= 3: HEAD, then .sig manifest and referrers at once, then
      the payload blob). Requests per image from the access log.
  (r) a burst: --burst Pods of one new image released at once, by tag (mutate, then validate)
      and by digest (validate), through the same proxy: sigil's requests of each kind from the
      access log (target: one HEAD by tag, one .sig manifest, one payload blob, one referrers
      lookup). The repository's referrers-API answer is learnt first from another image, as
      in steady state.

Prints key=value lines, then a table. Exit 1 when an admission is not allowed or a target is
missed. Numbers never gate a test (tests/integration/e2e/test_tag_cache.py asserts the counts).
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "e2e"))

import fixture  # noqa: E402
import harness  # noqa: E402
import latency_proxy  # noqa: E402


def kv(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and k.startswith("wrk."):
            out[k] = v.strip()
    return out


class Sigil:
    """A keep-alive HTTPS client per thread for one sigil."""

    def __init__(self, server):
        self.server = server
        self.local = threading.local()

    def post(self, path, doc):
        body = json.dumps(doc).encode()
        for attempt in (0, 1):
            c = getattr(self.local, "conn", None)
            reused = c is not None
            if c is None:
                c = self.local.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.server.port, context=self.server.ctx, timeout=30)
            try:
                c.request("POST", path, body, {"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.local.conn = None
                c.close()
                # A kept-alive connection sigil closed while idle: once more on a new one.
                if not reused or attempt == 1:
                    raise
        if r.status != 200:
            raise RuntimeError("%s: HTTP %d %s" % (path, r.status, data[:200]))
        return json.loads(data)["response"]

    def pod(self, image, uid):
        """mutate, apply the patch, validate: (allowed, image as pinned)."""
        review = harness.pod_review([image], uid=uid)
        resp = self.post("/mutate?timeout=10s", review)
        patched = json.loads(json.dumps(review))
        patched["request"]["object"] = harness.apply_json_patch(
            review["request"]["object"], harness.json_patch_of(resp))
        pinned = patched["request"]["object"]["spec"]["containers"][0]["image"]
        return self.post("/validate?timeout=10s", patched)["allowed"], pinned, patched


def cpu_ticks(pid):
    """user + system CPU time of pid so far, in clock ticks (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wrk(args, url, env, pid):
    """wrk's numbers, plus the server's CPU microseconds per request (steadier than
    requests/s on a shared machine: other load steals wall time, not the server's CPU time)."""
    c0 = cpu_ticks(pid)
    out = subprocess.run(args + [url], capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise RuntimeError("wrk failed: " + out.stderr + out.stdout)
    r = kv(out.stdout)
    ticks = cpu_ticks(pid) - c0
    r["cpu_us"] = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(int(r["wrk.requests"]), 1)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sigil", default=os.path.join(ROOT, "build", "sigil"))
    ap.add_argument("--bare", default=os.path.join(ROOT, "build", "bench_bare_responder"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--burst", type=int, default=200)
    args = ap.parse_args()
    os.environ["SIGIL_BIN"] = os.path.abspath(args.sigil)
    work = tempfile.mkdtemp(prefix="sigil-pinning-")
    os.environ.setdefault("SIGIL_WORK_DIR", work)
    failed = []
    stop = []
    try:
        reg = harness.RunningRegistry("bench-pinning")
        stop.append(reg.stop)
        far = latency_proxy.LatencyProxy(reg.address, args.delay_ms / 1000.0).start()
        stop.append(far.stop)
        keys = harness.Keys(work, [("k", "p256")])
        c = reg.client

        def push_signed(repo, tag, content):
            dg = reg.push(repo, tag, content)
            fixture.sign(c, repo, dg, keys.key("k"))
            return dg

        warm_digest = push_signed("bench/warm", "v1", "pinning bench warm")
        cold = ["bench/cold%02d" % i for i in range(args.cold)]
        for repo in cold:
            push_signed(repo, "v1", "pinning bench " + repo)
        burst = {t: push_signed("bench/burst", t, "pinning bench burst " + t)
                 for t in ("learn", "v1", "v2")}
        pol = os.path.join(work, "policies")
        harness.write_policy(pol, "bench-pinning", ["%s/bench/**" % reg.address,
                                                    "%s/bench/**" % far.address],
                             {"k": keys.pub("k")})
        cfg = os.path.join(work, "config.yaml")
        with open(cfg, "w") as f:
            f.write("pinning: true\ncache: {tagTtl: 60s}\nlogLevel: info\n")
        server = harness.SigilServer("bench-pinning", [pol], [
            "--insecure-registry", reg.address, "--insecure-registry", far.address,
            "--config", cfg, "--threads", str(args.threads)])
        stop.append(server.stop)
        sigil = Sigil(server)

        # --- (p) warm path ------------------------------------------------------------------
        tag_ref = "%s/bench/warm:v1" % reg.address
        allowed, pinned, patched = sigil.pod(tag_ref, "9b1d0000-0000-4000-8000-000000000001")
        if not allowed or pinned != tag_ref + "@" + warm_digest:
            raise RuntimeError("warm-up Pod not admitted as pinned: %s %s" % (allowed, pinned))
        mut_body = os.path.join(work, "mutate.json")
        val_body = os.path.join(work, "validate.json")
        with open(mut_body, "w") as f:
            json.dump(harness.pod_review([tag_ref]), f)
        with open(val_body, "w") as f:
            json.dump(patched, f)
        bare_port = harness.free_port()
        bare = subprocess.Popen([args.bare, "--listen", "127.0.0.1:%d" % bare_port,
                                 "--cert", os.path.join(server.dir, "server.crt"),
                                 "--key", os.path.join(server.dir, "server.key"),
                                 "--threads", str(args.threads)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop.append(lambda: (bare.terminate(), bare.wait(5)))
        time.sleep(0.3)
        base = ["wrk", "-t2", "-c%d" % args.connections, "-d" + args.duration, "--latency"]
        env = dict(os.environ, BENCH_BODY=mut_body, BENCH_MUTATE_BODY=mut_body,
                   BENCH_VALIDATE_BODY=val_body)
        w_bare = wrk(base + ["-s", os.path.join(HERE, "post.lua")],
                     "https://127.0.0.1:%d/validate?timeout=10s" % bare_port, env, bare.pid)
        before = len(reg.settled_sigil_requests())
        w_sigil = wrk(base + ["-s", os.path.join(HERE, "mutate_validate.lua")],
                      "https://127.0.0.1:%d/" % server.port, env, server.proc.pid)
        during = reg.settled_sigil_requests()[before:]
        # For reference, in the same run: /validate alone of the pinned Pod (the cached path).
        w_val = wrk(base + ["-s", os.path.join(HERE, "post.lua")],
                    "https://127.0.0.1:%d/validate?timeout=10s" % server.port,
                    dict(env, BENCH_BODY=val_body), server.proc.pid)
        ratio = float(w_sigil["wrk.rps"]) / max(float(w_bare["wrk.rps"]), 1e-9)
        errors = int(w_sigil["wrk.errors"]) + int(w_sigil["wrk.non2xx"])
        allowed_after, _, _ = sigil.pod(tag_ref, "9b1d0000-0000-4000-8000-000000000002")
        print("warm.bare_rps=%s" % w_bare["wrk.rps"])
        print("warm.sigil_rps=%s" % w_sigil["wrk.rps"])
        print("warm.sigil_pods_per_s=%.1f" % (float(w_sigil["wrk.rps"]) / 2))
        print("warm.sigil_p50_ms=%s" % w_sigil["wrk.p50_ms"])
        print("warm.sigil_p99_ms=%s" % w_sigil["wrk.p99_ms"])
        print("warm.ratio=%.2f" % ratio)
        print("warm.sigil_cpu_us=%.1f" % w_sigil["cpu_us"])
        print("warm.bare_cpu_us=%.1f" % w_bare["cpu_us"])
        print("warm.cpu_ratio=%.2f" % (w_bare["cpu_us"] / max(w_sigil["cpu_us"], 1e-9)))
        print("warm.validate_only_rps=%s" % w_val["wrk.rps"])
        print("warm.validate_only_cpu_us=%.1f" % w_val["cpu_us"])
        print("warm.validate_only_ratio=%.2f" % (float(w_val["wrk.rps"]) /
                                                 max(float(w_bare["wrk.rps"]), 1e-9)))
        print("warm.errors=%d" % errors)
        print("warm.registry_requests=%d" % len(during))
        print("warm.still_admits=%s" % ("yes" if allowed_after else "no"))
        if ratio < 0.5:
            failed.append("(p) ratio %.2f < 0.5" % ratio)
        if during:
            failed.append("(p) %d registry requests on the warm path" % len(during))
        if errors or not allowed_after:
            failed.append("(p) errors during the run or not admitted after it")

        # --- (q) cold new tags through the delaying proxy ------------------------------------
        delay = args.delay_ms
        lat, trips, counts = [], [], []
        for i, repo in enumerate(cold):
            before = len(reg.settled_sigil_requests())
            t0 = time.monotonic()
            allowed, pinned, _ = sigil.pod("%s/%s:v1" % (far.address, repo),
                                           "9b1d1000-0000-4000-8000-%012d" % i)
            ms = (time.monotonic() - t0) * 1000
            if not allowed or "@sha256:" not in pinned:
                raise RuntimeError("cold image %s not admitted pinned" % repo)
            lat.append(ms)
            trips.append(int(ms // delay))  # whole delays the admission waited for
            counts.append(len(reg.settled_sigil_requests()[before:]))
        print("cold.delay_ms=%.0f" % delay)
        print("cold.images=%d" % len(cold))
        print("cold.p50_ms=%.1f" % statistics.median(lat))
        print("cold.max_ms=%.1f" % max(lat))
        print("cold.round_trips_max=%d" % max(trips))
        print("cold.requests_max=%d" % max(counts))
        print("cold.requests_min=%d" % min(counts))
        if max(trips) > 3:
            failed.append("(q) %d round trips on a cold tag's critical path" % max(trips))

        # --- (r) a burst of one new image ------------------------------------------------------
        ok, _, _ = sigil.pod("%s/bench/burst:learn" % far.address, "9b1d2000-0000-4000-8000-0")
        if not ok:
            raise RuntimeError("burst learn image not admitted")

        def run_burst(one):
            start = len(reg.settled_sigil_requests())
            gate = threading.Barrier(args.burst)

            def go(i):
                gate.wait(60)
                return one(i)

            with concurrent.futures.ThreadPoolExecutor(args.burst) as pool:
                res = list(pool.map(go, range(args.burst)))
            if not all(r is True for r in res):
                raise RuntimeError("a burst Pod was not admitted: %r" % [r for r in res if r
                                                                           is not True][:3])
            return reg.settled_sigil_requests()[start:]

        def tally(reqs, digest, tag=None):
            name = "/v2/bench/burst"
            sig = fixture.signature_tag(digest)
            n = lambda m, p: sum(1 for r in reqs if r[0] == m and r[1] == p)  # noqa: E731
            return {
                "head": (n("HEAD", "%s/manifests/%s" % (name, tag)) +
                         n("GET", "%s/manifests/%s" % (name, tag))) if tag else 0,
                "sig": n("GET", "%s/manifests/%s" % (name, sig)),
                "blob": sum(1 for r in reqs if r[0] == "GET" and r[1].startswith(name + "/blobs/")),
                "referrers": (n("GET", "%s/referrers/%s" % (name, digest)) +
                              n("GET", "%s/manifests/%s" % (name, digest.replace(":", "-")))),
                "total": len(reqs),
            }

        want = "%s/bench/burst:v1@%s" % (far.address, burst["v1"])

        def by_tag(i):
            a, p, _ = sigil.pod("%s/bench/burst:v1" % far.address,
                                "9b1d3000-0000-4000-8000-%012d" % i)
            return a if p == want else "pinned to " + p

        by_digest_ref = "%s/bench/burst@%s" % (far.address, burst["v2"])

        def by_digest(i):
            return sigil.post("/validate?timeout=10s", harness.pod_review(
                [by_digest_ref], uid="9b1d4000-0000-4000-8000-%012d" % i))["allowed"]

        t_tag = tally(run_burst(by_tag), burst["v1"], "v1")
        t_dig = tally(run_burst(by_digest), burst["v2"])
        for name, t in (("tag", t_tag), ("digest", t_dig)):
            for k, v in t.items():
                print("burst.%s.%s=%d" % (name, k, v))
        if t_tag != {"head": 1, "sig": 1, "blob": 1, "referrers": 1, "total": 4}:
            failed.append("(r) by tag: %r" % t_tag)
        if t_dig != {"head": 0, "sig": 1, "blob": 1, "referrers": 1, "total": 3}:
            failed.append("(r) by digest: %r" % t_dig)
        print("burst.pods=%d" % args.burst)
    finally:
        for f in reversed(stop):
            try:
                f()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        shutil.rmtree(work, ignore_errors=True)
    for f in failed:
        print("target missed: " + f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
