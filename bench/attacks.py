#!/usr/bin/python3
"""bench/attacks.py: peak RSS of `sigil serve` and the latency of a legitimate admission while an
unauthenticated client floods the webhook port (issue 9, points 7 and 8). See bench/README.md.

  python3 bench/attacks.py [--sigil build/sigil] [--before OTHER_SIGIL] [--legit 20]

For each attack, a fresh `sigil serve` in the chart's default configuration
(tests/support/attacks.py: deployed_config; TLS, policies from a file) against a real
distribution registry on 127.0.0.1, one warm-up admission, then the attack; once every attacker
has its request out, --legit admissions are sent one after another, each on a new connection
(a key-signed image by tag: one registry HEAD each, the verdict cached), and checked (allowed).
Peak RSS is the largest VmRSS sampled every 20 ms from the start of the attack to its end.
--before runs the same attacks against another binary (e.g. one built from main before these
limits) with its own defaults (the config without the `server:` section).

Attacks:
  none             no attack (the baseline)
  bodies-7MiB      80 connections, each holding a 7 MiB body but its last KiB (the report)
  bodies-4MiB      80 x (4 MiB - 4 KiB): under the body limit, over the body budget
  chunked-4MiB     80 chunked bodies of 4 MiB - 64 KiB, held the same way
  idle-2048        2048 idle keep-alive connections from one address (the report)
  idle-2600x8      2600 idle keep-alive connections from 8 addresses (past the global cap)
Timings never gate anything; the exit status is 1 only when a legitimate admission got a wrong
or no answer.
"""
import argparse
import http.client
import json
import os
import ssl
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import attacks  # noqa: E402
import fixture  # noqa: E402
import registry  # noqa: E402

MiB = attacks.MiB
ATTACKS = ["none", "bodies-7MiB", "bodies-4MiB", "chunked-4MiB", "idle-2048", "idle-2600x8"]


def pod_review(image, uid):
    with open(os.path.join(ROOT, "examples", "admission", "pod-create-kubectl-run.json")) as f:
        doc = json.load(f)
    doc["request"]["uid"] = uid
    doc["request"]["object"]["spec"]["containers"][0]["image"] = image
    return doc


class Sigil:
    def __init__(self, binary, work, config, log_name):
        tls = registry.write_tls_material(work)
        self.ctx = ssl.create_default_context(cafile=tls["ca.crt"])
        self.port = registry.free_port()
        config = dict(config, listen="127.0.0.1:%d" % self.port, tlsCert=tls["server.crt"],
                      tlsKey=tls["server.key"])
        path = attacks.write_config(os.path.join(work, log_name + ".yaml"), config)
        self.log = os.path.join(work, log_name + ".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([binary, "serve", "--config", path], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    c.close()
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sigil did not start: see " + self.log)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)  # no lame duck (SIGTERM would start one)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_attack(name, sigil):
    if name == "none":
        return None
    if name.startswith("bodies-") or name.startswith("chunked-"):
        size = {"bodies-7MiB": 7 * MiB, "bodies-4MiB": 4 * MiB - 4096,
                "chunked-4MiB": 4 * MiB - 64 * 1024}[name]
        a = attacks.PartialBodies(sigil.port, sigil.ctx, 80, size, chunked=name.startswith("chunked"))
        a.start()
        a.wait_in_place()
        return a
    n, sources = {"idle-2048": (2048, ("127.0.0.2",)),
                  "idle-2600x8": (2600, tuple("127.0.0.%d" % i for i in range(10, 18)))}[name]
    a = attacks.IdleConnections(sigil.port, sigil.ctx, n, sources=sources)
    a.open()
    return a


def stop_attack(a):
    if a is None:
        return {}
    if isinstance(a, attacks.PartialBodies):
        a.stop()
        return dict(a.outcomes)
    out = {"open": len(a.socks), "failed": a.failed, "evicted": a.closed()}
    a.close()
    return out


def measure(binary, config, name, image, legit, work, label):
    sigil = Sigil(binary, work, config, "%s-%s" % (label, name))
    try:
        status, resp, _ = attacks.admit(sigil.port, sigil.ctx, pod_review(image, str(uuid.uuid4())))
        if status != 200 or not resp["allowed"]:
            raise RuntimeError("warm-up admission failed: %s %s (see %s)" % (status, resp, sigil.log))
        sampler = attacks.RssSampler(sigil.proc.pid)
        before = sampler.rss()
        sampler.start()
        t0 = time.monotonic()
        a = run_attack(name, sigil)
        setup = time.monotonic() - t0
        lat, wrong = [], 0
        for _ in range(legit):
            uid = str(uuid.uuid4())
            status, resp, sec = attacks.admit(sigil.port, sigil.ctx, pod_review(image, uid))
            ok = status == 200 and resp.get("uid") == uid and resp.get("allowed") is True
            wrong += 0 if ok else 1
            if ok:
                lat.append(sec * 1000)
        during_rss = sampler.rss()
        outcome = stop_attack(a)
        peak = sampler.stop()
        return {"binary": label, "attack": name, "rss_before_mib": before / MiB,
                "rss_peak_mib": peak / MiB, "rss_end_of_attack_mib": during_rss / MiB,
                "attack_setup_s": setup, "legit": legit, "legit_wrong_or_unanswered": wrong,
                "latency_ms": lat, "outcome": outcome}
    finally:
        sigil.stop()


def fmt_latency(lat):
    if not lat:
        return "      -        -        -"
    s = sorted(lat)
    p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
    return "%7.1f  %7.1f  %7.1f" % (statistics.median(s), p90, s[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigil", default=os.path.join(ROOT, "build", "sigil"))
    ap.add_argument("--before", help="another sigil binary to run the same attacks against")
    ap.add_argument("--legit", type=int, default=20, help="legitimate admissions per attack")
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sigil-attacks-")
    reg_dir = os.path.join(work, "registry")
    env = registry.start(reg_dir)
    try:
        reg = fixture.Registry.from_env(env)
        key, pub = fixture.keygen("p256", os.path.join(work, "bench"))
        digest = fixture.push_image(reg, "bench/app", "v1", "sigil attack bench image\n")
        fixture.sign(reg, "bench/app", digest, key)
        image = "%s/bench/app:v1" % env["address"]
        with open(pub, "rb") as f:
            pem = f.read()
        policy = os.path.join(work, "policy.yaml")
        with open(policy, "w") as f:
            f.write(fixture.policy_yaml("bench", "%s/bench/**" % env["address"], {"bench-key": pem}))
        deployed = attacks.deployed_config("", "", [policy], [env["address"]])
        runs = [("after", args.sigil, deployed)]
        if args.before:
            old = {k: v for k, v in deployed.items() if k != "server"}
            runs.insert(0, ("before", args.before, old))
        results = []
        for label, binary, config in runs:
            for name in args.attacks.split(","):
                print("== %s: %s" % (label, name), file=sys.stderr, flush=True)
                results.append(measure(binary, config, name, image, args.legit, work, label))
        print()
        print("%-7s %-13s %9s %9s %6s  %7s  %7s  %7s  %s" % (
            "sigil", "attack", "RSS MiB", "peak MiB", "wrong", "p50 ms", "p90 ms", "max ms", "attack outcome"))
        for r in results:
            print("%-7s %-13s %9.1f %9.1f %3d/%-2d  %s  %s" % (
                r["binary"], r["attack"], r["rss_before_mib"], r["rss_peak_mib"],
                r["legit_wrong_or_unanswered"], r["legit"], fmt_latency(r["latency_ms"]),
                json.dumps(r["outcome"], sort_keys=True)))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        return 1 if any(r["legit_wrong_or_unanswered"] for r in results if r["binary"] == "after") else 0
    finally:
        registry.stop(reg_dir)


if __name__ == "__main__":
    sys.exit(main())
