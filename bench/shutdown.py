#!/usr/bin/python3
"""bench/shutdown.py: how fast `sigil serve` starts and stops (issue 12's closing numbers).

  python3 bench/shutdown.py [--sigil build/sigil] [--runs 10] [--policies 20] [--lame-duck 2s]

  start -> /readyz     process start (just before exec) to the first GET /readyz that answers 200,
                       with --policies key-based ClusterImagePolicies from a directory (file
                       policies, no cluster), TLS on 127.0.0.1; the target is 200 ms. /readyz is
                       polled every 2 ms on a new TLS connection, so the figure includes up to one
                       poll interval and one TLS handshake.
  SIGTERM -> 503       time to lame duck: SIGTERM to the first GET /readyz answering 503.
  SIGTERM -> exit      with server.lameDuck = --lame-duck and nothing in flight: the lame duck,
                       then the drain (nothing to drain) and the exit; "beyond" is the exit time
                       minus the lame duck.
  SIGTERM -> exit (0s) with lameDuck: 0s, i.e. the drain and exit alone.

Each run is a fresh process. Timings never gate anything: the exit status is 1 only when sigil
does not start, does not answer 503 after SIGTERM, or exits non-zero.
"""

import argparse
import http.client
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))

import fixture  # noqa: E402
import registry  # noqa: E402


def readyz(port, ctx):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=1)
    try:
        c.request("GET", "/readyz")
        return c.getresponse().status
    finally:
        c.close()


def poll(port, ctx, want, proc, limit=20.0, interval=0.002):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            return None
        try:
            if readyz(port, ctx) == want:
                return time.monotonic()
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(interval)
    return None


def one_run(args, tls, policies, lame_duck, work):
    cfg = os.path.join(work, "config-%s.yaml" % lame_duck)
    with open(cfg, "w") as f:
        f.write("server:\n  lameDuck: %s\n" % lame_duck)
    port = registry.free_port()
    ctx = ssl.create_default_context(cafile=tls["ca.crt"])
    log = open(os.path.join(work, "sigil.log"), "ab")
    cmd = [args.sigil, "serve", "--listen", "127.0.0.1:%d" % port, "--tls-cert", tls["server.crt"],
           "--tls-key", tls["server.key"], "--policy", policies, "--config", cfg, "--log-level", "warn"]
    t_start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        t_ready = poll(port, ctx, 200, proc)
        if t_ready is None:
            raise RuntimeError("sigil did not become ready: see %s/sigil.log" % work)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        t_lame = poll(port, ctx, 503, proc, limit=10.0, interval=0.001) if lame_duck != "0s" else None
        if lame_duck != "0s" and t_lame is None:
            raise RuntimeError("/readyz never answered 503 after SIGTERM")
        rc = proc.wait(120)
        t_exit = time.monotonic()
        if rc != 0:
            raise RuntimeError("sigil exited %d after SIGTERM" % rc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return {"ready": t_ready - t_start, "lame": (t_lame - t_term) if t_lame else None,
            "exit": t_exit - t_term}


def ms(xs):
    xs = [x * 1000 for x in xs if x is not None]
    return "median %7.1f ms  min %7.1f  max %7.1f  (n=%d)" % (statistics.median(xs), min(xs), max(xs), len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigil", default=os.path.join(ROOT, "build", "sigil"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--policies", type=int, default=20)
    ap.add_argument("--lame-duck", default="2s", help="server.lameDuck for the SIGTERM -> exit runs")
    args = ap.parse_args()
    if not os.access(args.sigil, os.X_OK):
        sys.exit("bench/shutdown.py: %s is not an executable (build the sigil target)" % args.sigil)
    lame_s = float(args.lame_duck.rstrip("s"))

    with tempfile.TemporaryDirectory(prefix="sigil-bench-shutdown-") as work:
        tls = registry.write_tls_material(work)
        pol = os.path.join(work, "policies")
        os.makedirs(pol)
        for i in range(args.policies):
            _, pub = fixture.keygen("p256", os.path.join(work, "key%d" % i))
            with open(pub) as f:
                pem = f.read()
            with open(os.path.join(pol, "p%02d.yaml" % i), "w") as f:
                f.write(fixture.policy_yaml("team-%02d" % i, ["registry.example/team-%02d/**" % i],
                                            {"release": pem}))
        lame = [one_run(args, tls, pol, args.lame_duck, work) for _ in range(args.runs)]
        quick = [one_run(args, tls, pol, "0s", work) for _ in range(args.runs)]

    print("sigil %s, %d file policies, %d runs each, %d cores" % (args.sigil, args.policies, args.runs,
                                                                   os.cpu_count()))
    print("start -> /readyz 200     " + ms([r["ready"] for r in lame + quick]))
    print("SIGTERM -> /readyz 503   " + ms([r["lame"] for r in lame]))
    print("SIGTERM -> exit (%-5s)   " % args.lame_duck + ms([r["exit"] for r in lame]))
    print("  beyond the lame duck   " + ms([r["exit"] - lame_s for r in lame]))
    print("SIGTERM -> exit (0s)     " + ms([r["exit"] for r in quick]))


if __name__ == "__main__":
    main()
