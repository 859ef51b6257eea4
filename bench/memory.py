#!/usr/bin/python3
"""bench/memory.py: sigil's resident memory with N cached verdicts (issue 14 point 5).

  python3 bench/memory.py [--sigil build/sigil] [--images 10000] [--workers 8]

Pushes N distinct key-signed images to a local distribution registry on 127.0.0.1 (one
repository, one shared layer, N manifests and N cosign .sig manifests), starts `sigil serve` with
one key policy (file policy, no cluster, cache.size >= N), then:

  baseline     VmRSS after one admission (TLS, policy, registry client, one verdict all warm)
  after N      VmRSS after every image was admitted once, by digest (N verdicts in the cache;
               sigil_verdict_cache_misses_total is checked to be N + 1)
  per verdict  (after - baseline) / N: an upper bound on a cached verdict's cost, since it also
               counts whatever else the N cold verifications left behind (allocator slack, the
               registry client's pools)
  again        VmRSS after admitting all N a second time (all cache hits: must not grow)

The target is at most 60 MB with 10k cached verdicts. Every admission must be allowed; the exit
status is 1 when one is not, or when sigil does not start. Numbers never gate anything.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import ssl
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
import registry  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def push_all(reg_addr, key, n, workers):
    """N manifests sharing one layer and one config, each signed: returns the digests."""
    local = threading.local()

    def reg():
        if not hasattr(local, "reg"):
            local.reg = fixture.connect(reg_addr)
        return local.reg

    def one(i):
        return fixture.push_image(reg(), "bench/mem", "v%d" % i, "sigil memory bench image %d\n" % i)

    def sign(d):
        fixture.sign(reg(), "bench/mem", d, key)
        return d

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        digests = list(ex.map(one, range(n)))
        list(ex.map(sign, digests))
    return digests


class Client:
    def __init__(self, port, ctx):
        self.port, self.ctx, self.conn = port, ctx, None

    def post(self, body):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                        timeout=30)
            try:
                self.conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def admit_all(port, ctx, images, workers):
    local = threading.local()

    def one(img):
        if not hasattr(local, "c"):
            local.c = Client(port, ctx)
        doc = harness.pod_review([img])
        status, body = local.c.post(json.dumps(doc))
        if status != 200:
            return "%s: HTTP %d" % (img, status)
        resp = json.loads(body)["response"]
        if not resp.get("allowed"):
            return "%s: denied: %s" % (img, resp.get("status", {}).get("message"))
        return None

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return [e for e in ex.map(one, images) if e]


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigil", default=os.path.join(ROOT, "build", "sigil"))
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    if not os.access(args.sigil, os.X_OK):
        sys.exit("bench/memory.py: %s is not an executable (build the sigil target)" % args.sigil)

    with tempfile.TemporaryDirectory(prefix="sigil-bench-memory-") as work:
        reg_addr = registry.start(os.path.join(work, "registry"))["address"]
        proc = None
        try:
            priv, pub = fixture.keygen("p256", os.path.join(work, "bench"))
            key = fixture.load_private_key(priv)
            t0 = time.monotonic()
            digests = push_all(reg_addr, key, args.images + 1, args.workers)
            print("pushed and signed %d images in %.0f s" % (len(digests), time.monotonic() - t0))
            images = ["%s/bench/mem@%s" % (reg_addr, d) for d in digests]

            pol = os.path.join(work, "policies")
            with open(pub) as f:
                harness.write_policy(pol, "bench-mem", ["%s/bench/**" % reg_addr], {"bench-key": f.read()})
            cfg = os.path.join(work, "config.yaml")
            with open(cfg, "w") as f:
                f.write("cache:\n  size: %d\n  ttl: 1h\n" % (args.images * 2))
            tls = registry.write_tls_material(work)
            port, mport = registry.free_port(), registry.free_port()
            ctx = ssl.create_default_context(cafile=tls["ca.crt"])
            log = open(os.path.join(work, "sigil.log"), "ab")
            proc = subprocess.Popen(
                [args.sigil, "serve", "--listen", "127.0.0.1:%d" % port, "--tls-cert",
                 tls["server.crt"], "--tls-key", tls["server.key"], "--policy", pol, "--config", cfg,
                 "--metrics-listen", "127.0.0.1:%d" % mport, "--insecure-registry", reg_addr,
                 "--log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            for _ in range(500):
                try:
                    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=1)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        break
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    pass
                time.sleep(0.02)
            else:
                sys.exit("sigil did not become ready: see its log")

            errors = admit_all(port, ctx, images[:1], 1)
            if errors:
                sys.exit("bench/memory.py: " + errors[0])
            base = rss_kib(proc.pid)
            t0 = time.monotonic()
            errors = admit_all(port, ctx, images[1:], args.workers)
            cold_s = time.monotonic() - t0
            if errors:
                sys.exit("bench/memory.py: %d admissions failed, first: %s" % (len(errors), errors[0]))
            after = rss_kib(proc.pid)
            misses = metric(mport, "sigil_verdict_cache_misses_total")
            errors = admit_all(port, ctx, images[1:], args.workers)
            if errors:
                sys.exit("bench/memory.py: %d cached admissions failed" % len(errors))
            again = rss_kib(proc.pid)
            hits = metric(mport, "sigil_verdict_cache_hits_total")

            n = args.images
            print("admitted %d new images in %.1f s (%.0f/s); verdict cache misses %s, hits %s"
                  % (n, cold_s, n / cold_s, misses, hits))
            print("VmRSS baseline (1 verdict)   %8.1f MiB" % (base / 1024))
            print("VmRSS with %5d verdicts     %8.1f MiB   target <= 60 MB (%.1f MB)"
                  % (n, after / 1024, after * 1024 / 1e6))
            print("VmRSS after %5d cache hits  %8.1f MiB" % (n, again / 1024))
            print("per cached verdict (upper bound) %6.0f bytes" % ((after - base) * 1024 / n))
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            registry.stop(os.path.join(work, "registry"))


if __name__ == "__main__":
    main()
