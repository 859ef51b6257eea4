#!/usr/bin/python3
"""bench/outage.py: admissions during a registry outage in which connections hang.

  python3 bench/outage.py --sigil build/sigil [--images 4] [--admissions 16] [--timeout 5]
      [--gap 0.5]

Starts a real distribution registry on 127.0.0.1 with TLS (tests/support/registry.py) behind
tests/support/latency_proxy.py (no delay), signs --images images, and runs `sigil serve` twice:
with `registry.failFast` at its defaults (after 2 attempts, 2 s backoff) and with it off
(`after: 0`); both with `cache: {ttl: 0s, staleIfError: 1h}`, so every admission asks the
registry and a last-known-good allow may stand. Each run admits every image once while the
registry answers, then makes the proxy hang (it accepts connections and sends nothing, so no TLS handshake
completes: a registry that cannot be reached) and
admits the images in turn, --admissions times, one at a time with --gap seconds between them
(so that backoffs run out and probes go), each with `?timeout=--timeout s`.
Prints per run: how many were allowed, the latency of the first admission in the outage and the
p50 / p95 / max of all, and how many connections reached the hanging registry.

Prints key=value lines, then a table. Exit 1 if an admission in the outage is not allowed (each
has a last-known-good verdict). Numbers never gate a test (tests/integration/e2e/test_outage.py
FailFastOutageTest asserts the behaviour).
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "e2e"))

import fixture  # noqa: E402
import harness  # noqa: E402
import latency_proxy  # noqa: E402


def run(args, name, fail_fast, reg, proxy, images, keys, work):
    policies = os.path.join(work, name + "-policies")
    pol = harness.write_policy(policies, "outage-bench", "%s/bench/**" % proxy.address,
                               {"key-a": keys.pub("a")})
    config = os.path.join(work, name + ".yaml")
    with open(config, "w") as f:
        f.write("cache: {ttl: 0s, negativeTtl: 0s, staleIfError: 1h}\n")
        if not fail_fast:
            f.write("registry: {failFast: {after: 0}}\n")
    sigil = harness.SigilServer("outage-bench-" + name, [pol],
                                ["--registry-ca", reg.env["ca"], "--config", config])
    try:
        proxy.admit()
        for image in images:
            status, resp = sigil.validate(harness.pod_review([image]), timeout=30)
            if status != 200 or resp.get("allowed") is not True:
                raise SystemExit("bench: %s was not admitted before the outage" % image)
        held = proxy.held
        proxy.hang()
        latencies, allowed = [], 0
        for i in range(args.admissions):
            image = images[i % len(images)]
            start = time.monotonic()
            status, resp = sigil.validate(harness.pod_review([image]),
                                          "?timeout=%ds" % args.timeout, timeout=60)
            latencies.append(time.monotonic() - start)
            if status == 200 and resp.get("allowed") is True:
                allowed += 1
            time.sleep(args.gap)
        proxy.admit()
        return {"allowed": allowed, "first": latencies[0],
                "p50": statistics.median(latencies),
                "p95": sorted(latencies)[max(0, int(len(latencies) * 0.95) - 1)],
                "max": max(latencies), "connections": proxy.held - held}
    finally:
        sigil.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sigil", required=True)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--admissions", type=int, default=16)
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between admissions")
    ap.add_argument("--timeout", type=int, default=5, help="?timeout= seconds per admission")
    args = ap.parse_args()
    os.environ["SIGIL_BIN"] = os.path.abspath(args.sigil)
    harness.sigil_bin()
    harness.require_registry()
    work = harness.work_dir("bench-outage")
    reg = harness.RunningRegistry("bench-outage-registry", tls=True)
    proxy = latency_proxy.LatencyProxy(reg.address, 0).start()
    try:
        keys = harness.Keys(work, [("a", "p256")])
        images = []
        for i in range(args.images):
            digest = reg.push("bench/app%d" % i, "v1", "outage bench %d" % i)
            fixture.sign(reg.client, "bench/app%d" % i, digest, keys.key("a"))
            images.append("%s/bench/app%d@%s" % (proxy.address, i, digest))
        results = {}
        for name, on in (("on", True), ("off", False)):
            results[name] = run(args, name, on, reg, proxy, images, keys, work)
    finally:
        proxy.stop()
        reg.stop()
    bad = False
    for name, r in results.items():
        for k, v in r.items():
            print("outage.%s.%s=%s" % (name, k, ("%.4f" % v) if isinstance(v, float) else v))
        bad = bad or r["allowed"] != args.admissions
    print()
    print("%d admissions in a hang outage, one at a time %.1f s apart, ?timeout=%ds, "
          "staleIfError on" % (args.admissions, args.gap, args.timeout))
    print("| registry.failFast | allowed | first (s) | p50 (s) | p95 (s) | max (s) | "
          "connections to the registry |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print("| %s | %d | %.3f | %.4f | %.4f | %.3f | %d |"
              % ("on (after 2, backoff 2s)" if name == "on" else "off (after 0)", r["allowed"],
                 r["first"], r["p50"], r["p95"], r["max"], r["connections"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
