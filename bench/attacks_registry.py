#!/usr/bin/python3
"""bench/attacks_registry.py: what a hostile registry costs sigil (issue 9, points 4 and 5).

For each attack it starts the real distribution registry and tests/integration/e2e/hostile.py's
front on 127.0.0.1, `sigil serve` as deployed (the chart's config: 10 s webhook timeout, default
cache and budgets), runs the attackers for BENCH_ATTACK_SECONDS (default 15), and meanwhile
posts one legitimate admission (a key-signed image by tag: a HEAD and a cached verdict) every
100 ms. It prints the peak RSS of sigil (VmHWM), its RSS at the end, and the latency (p50, p99,
max) and failures of the legitimate admissions during the attack, next to an idle baseline.

  cut:    6 attackers, each posting pods of 8 slow images (40 signature blobs each, 0-12 ms
          per registry request) with ?timeout= drawn from 30 ms .. 1 s (point 4)
  amp-1m: 8 attackers, pods of 8 images whose .sig lists one 1 MiB blob 64 times (point 5 as
          reported: 19 MB -> 586 MB before)
  amp-wide: 8 attackers, pods of 8 images whose .sig lists 40 distinct 250 KB blobs each
          (the attack adapted to the payload cap: the budgets must hold it)

usage: bench/attacks_registry.py [SIGIL_BINARY]   (default build/sigil)
Numbers, never pass/fail: see bench/README.md.
"""
import base64
import concurrent.futures
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "e2e"))
os.environ.setdefault("SIGIL_SOURCE_DIR", ROOT)

import fixture  # noqa: E402
import harness  # noqa: E402
import hostile  # noqa: E402
from test_attacks import push_signature_manifest, junk_sig  # noqa: E402

SECONDS = float(os.environ.get("BENCH_ATTACK_SECONDS", "15"))


def rss_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def run_attack(name, sigil, attacker, legit_image, seconds):
    stop = threading.Event()
    lat, fails = [], 0
    peak = [rss_kib(sigil.proc.pid, "VmRSS")]

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(sigil.proc.pid, "VmRSS"))
            time.sleep(0.05)

    def attack_loop(i):
        n = 0
        while not stop.is_set():
            try:
                attacker(i, n)
            except Exception:  # noqa: BLE001 - an attacker does not care
                pass
            n += 1

    threads = [threading.Thread(target=sampler, daemon=True)]
    workers = 6 if name == "cut" else 8
    if attacker:
        threads += [threading.Thread(target=attack_loop, args=(i,), daemon=True)
                    for i in range(workers)]
    for t in threads:
        t.start()
    end = time.monotonic() + seconds
    review = harness.pod_review([legit_image])
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            status, resp = sigil.validate(review, "?timeout=10s", timeout=15)
            ok = status == 200 and resp and resp.get("allowed") is True
        except Exception:  # noqa: BLE001
            ok = False
        lat.append((time.monotonic() - t0) * 1000)
        fails += 0 if ok else 1
        time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
    stop.set()
    for t in threads:
        t.join(20)
    alive = sigil.proc.poll() is None
    return {
        "attack": name, "legit_n": len(lat), "legit_failed": fails,
        "p50_ms": round(pct(lat, 50), 1), "p99_ms": round(pct(lat, 99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "peak_rss_mib": round(max(peak[0], rss_kib(sigil.proc.pid, "VmHWM") if alive else 0)
                              / 1024, 1),
        "end_rss_mib": round(rss_kib(sigil.proc.pid, "VmRSS") / 1024, 1) if alive else None,
        "sigil_alive": alive,
    }


def main():
    if len(sys.argv) > 1:
        os.environ["SIGIL_BIN"] = os.path.abspath(sys.argv[1])
    else:
        os.environ.setdefault("SIGIL_BIN", os.path.join(ROOT, "build", "sigil"))
    os.environ.setdefault("SIGIL_WORK_DIR", tempfile.mkdtemp(prefix="sigil-attacks-"))
    reg = harness.RunningRegistry("bench-attacks")
    fronts = []
    sigils = []
    try:
        d = harness.work_dir("bench-attacks")
        keys = harness.Keys(d, [("a", "p256")])
        c = reg.client
        slow = hostile.HostileFront(reg.address, delay_ms=(0, 12))
        fast = hostile.HostileFront(reg.address)
        fronts += [slow, fast]
        print("== preparing registry content")
        good = reg.push("legit/app", "v1", "legit")
        for front in (slow, fast):
            fixture.sign(c, "legit/app", good, keys.key("a"), append=True,
                         docker_reference="%s/legit/app" % front.address)
        cut_images = []
        for i in range(8):
            repo = "cut/img%d" % i
            digest = reg.push(repo, "v1", "cut %d" % i)
            push_signature_manifest(c, repo, digest, [
                (fixture.simple_signing_payload("x/%d" % n, digest), junk_sig())
                for n in range(40)])
            cut_images.append("%s/%s:v1" % (slow.address, repo))
        amp1m, wide = [], []
        blob = os.urandom(1 << 20)
        for i in range(8):
            repo = "amp1m/img%d" % i
            digest = reg.push(repo, "v1", "amp %d" % i)
            push_signature_manifest(c, repo, digest, [(blob, junk_sig()) for _ in range(64)])
            amp1m.append("%s/%s:v1" % (fast.address, repo))
            repo = "wide/img%d" % i
            digest = reg.push(repo, "v1", "wide %d" % i)
            push_signature_manifest(c, repo, digest, [(os.urandom(250 * 1000), junk_sig())
                                                      for _ in range(40)])
            wide.append("%s/%s:v1" % (fast.address, repo))
        policies = os.path.join(d, "policies")
        pols = [harness.write_policy(policies, "p%d" % i, "%s/**" % f.address,
                                     {"key-a": keys.pub("a")}) for i, f in enumerate(fronts)]
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            # The chart's defaults (deploy/helm/sigil/values.yaml) where they matter here.
            f.write("timeout: 10s\ncache: {ttl: 5m, negativeTtl: 30s, size: 10000}\n"
                    "logLevel: warn\n")
        results = []
        for name, front, images in (("idle", fast, None), ("cut", slow, cut_images),
                                    ("amp-1m", fast, amp1m), ("amp-wide", fast, wide)):
            sigil = harness.SigilServer("bench-" + name, pols,
                                        ["--config", config, "--insecure-registry",
                                         slow.address, "--insecure-registry", fast.address])
            sigils.append(sigil)
            rng = random.Random(name)
            attacker = None
            if images:
                def attacker(i, n, images=images, name=name, sigil=sigil, rng=rng):
                    imgs = list(images)
                    rng.shuffle(imgs)
                    q = "?timeout=" + (rng.choice(["30ms", "50ms", "80ms", "120ms", "200ms",
                                                   "350ms", "600ms", "1s"])
                                       if name == "cut" else "10s")
                    sigil.validate(harness.pod_review(imgs, uid="%08d-0000-4000-8000-%012d" %
                                                      (i, n)), q, timeout=15)
            legit = "%s/legit/app:v1" % fast.address
            sigil.validate(harness.pod_review([legit]), "?timeout=10s")  # warm the cache
            r = run_attack(name, sigil, attacker, legit, 5 if name == "idle" else SECONDS)
            results.append(r)
            print(json.dumps(r))
            sigil.stop()
        print()
        print("%-9s %12s %10s %9s %9s %9s %8s" % ("attack", "peak RSS", "end RSS", "legit p50",
                                                  "p99", "max", "failed"))
        for r in results:
            print("%-9s %9.1f MiB %6s MiB %6.1f ms %6.1f ms %6.1f ms %4d/%d" % (
                r["attack"], r["peak_rss_mib"], r["end_rss_mib"], r["p50_ms"], r["p99_ms"],
                r["max_ms"], r["legit_failed"], r["legit_n"]))
    finally:
        for s in sigils:
            s.stop()
        for f in fronts:
            f.stop()
        reg.stop()


if __name__ == "__main__":
    main()
