#!/usr/bin/python3
"""Soak: sigil serve under steady admissions by tag, one in five a denial, RSS over time.

usage: bench/soak.py [--duration 600] [--rate 2700] [--connections 16] [--threads 2]
                     [--sample 10] [--heaptrack] [--keep DIR] [--sigil build/sigil]

Issue 14 point 5: in a 10-minute run at about 2.7k admissions/s by tag (one review in five a
denial) RSS grew from 25 to 35 MiB. This reproduces that load on 127.0.0.1: a real distribution
registry with one key-signed image and one unsigned image, a key policy for both, `sigil serve`
with its defaults (verdict cache, log level info), and wrk posting `kubectl run` reviews by tag
(four of the signed image, then one of the unsigned one, in turn) at --rate in all (wrk's
per-connection delay; 0 = as fast as it goes). Every --sample seconds it prints VmRSS, VmHWM,
open file descriptors and the admissions so far (from the audit log). At the end: wrk's count,
errors and non-2xx, and the log's allowed/denied counts.

--heaptrack runs sigil under heaptrack (LD_PRELOAD; use a short --duration, it is slow) and
prints heaptrack_print's summary: peak consumers and what was still allocated at exit that
grew with the run. A benchmark, not part of ctest.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import callgrind_cached as cg  # noqa: E402  (its registry, certificate and client helpers)


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def count_lines(path, needle):
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if needle in line:
                n += 1
    return n


def sigil_pid(proc):
    """The sigil process: proc itself, or heaptrack's child running sigil."""
    if not proc.args[0].endswith("heaptrack"):
        return proc.pid
    for _ in range(100):
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        for child in out.split():
            try:
                exe = os.readlink(f"/proc/{child}/exe")
            except OSError:
                continue
            if exe.endswith("/sigil"):
                return int(child)
            # heaptrack's shell may sit in between
            more = subprocess.run(["pgrep", "-P", child], capture_output=True, text=True).stdout
            for g in more.split():
                try:
                    if os.readlink(f"/proc/{g}/exe").endswith("/sigil"):
                        return int(g)
                except OSError:
                    pass
        time.sleep(0.1)
    raise RuntimeError("sigil under heaptrack not found")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigil", default=os.path.join(ROOT, "build", "sigil"))
    ap.add_argument("--duration", type=int, default=600, help="seconds of load")
    ap.add_argument("--rate", type=int, default=2700, help="admissions/s in all (0: unbounded)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--heaptrack", action="store_true")
    ap.add_argument("--keep", help="work directory to keep (default: temporary, removed)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("soak: wrk is missing (scripts/deps.sh installs it)")
    if args.heaptrack and not shutil.which("heaptrack"):
        sys.exit("soak: heaptrack is missing (apt-get install heaptrack)")
    w = args.keep or tempfile.mkdtemp(prefix="sigil-soak.")
    os.makedirs(w, exist_ok=True)
    reg_dir = f"{w}/registry"
    env = cg.registry.start(reg_dir)
    proc = None
    try:
        reg_addr = env["address"]
        cg.fixture.keygen("p256", f"{w}/bench")
        reg = cg.fixture.connect(reg_addr)
        key = cg.fixture.load_private_key(f"{w}/bench.key")
        digest = cg.fixture.push_image(reg, "bench/signed", "v1", "sigil soak signed\n")
        cg.fixture.sign(reg, "bench/signed", digest, key)
        cg.fixture.push_image(reg, "bench/unsigned", "v1", "sigil soak unsigned\n")
        pub = open(f"{w}/bench.pub").read()
        with open(f"{w}/policy.yaml", "w") as f:
            f.write("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
                    "metadata:\n  name: soak\nspec:\n  images:\n"
                    f"    - glob: \"{reg_addr}/bench/**\"\n  authorities:\n    - name: k\n"
                    "      key:\n        data: |\n" +
                    "".join("          " + line + "\n" for line in pub.splitlines()))
        cg.make_cert(w)
        base = json.load(open(os.path.join(ROOT, "examples/admission/pod-create-kubectl-run.json")))
        for name, image in (("allow", f"{reg_addr}/bench/signed:v1"),
                            ("deny", f"{reg_addr}/bench/unsigned:v1")):
            base["request"]["object"]["spec"]["containers"][0]["image"] = image
            with open(f"{w}/{name}.json", "w") as f:
                json.dump(base, f)
        port = cg.free_port()
        cmd = [args.sigil, "serve", "--listen", f"127.0.0.1:{port}", "--tls-cert", f"{w}/tls.crt",
               "--tls-key", f"{w}/tls.key", "--policy", f"{w}/policy.yaml", "--insecure-registry",
               reg_addr, "--threads", str(args.threads), "--log-level", "info"]
        if args.heaptrack:
            cmd = ["heaptrack", "-o", f"{w}/heaptrack.sigil"] + cmd
        log_path = f"{w}/sigil.log"
        proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        cg.wait_ready(port, f"{w}/ca.crt", proc)
        pid = sigil_pid(proc)
        c = cg.Client(port, f"{w}/ca.crt")
        if c.post(open(f"{w}/allow.json", "rb").read())["response"]["allowed"] is not True:
            raise RuntimeError("the signed image is not admitted")
        if c.post(open(f"{w}/deny.json", "rb").read())["response"]["allowed"] is not False:
            raise RuntimeError("the unsigned image is admitted")
        c.conn.close()
        delay_ms = 0 if args.rate <= 0 else max(1, round(args.connections * 1000 / args.rate))
        wrk_env = dict(os.environ, SOAK_BODIES=":".join([f"{w}/allow.json"] * 4 + [f"{w}/deny.json"]),
                       SOAK_DELAY_MS=str(delay_ms))
        wrk = subprocess.Popen(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "-s",
             os.path.join(ROOT, "bench", "soak.lua"), f"https://127.0.0.1:{port}/validate?timeout=10s"],
            env=wrk_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(f"soak: {args.duration} s at {'max' if args.rate <= 0 else args.rate} admissions/s "
              f"({args.connections} connections, {delay_ms} ms apart), 1 in 5 denied, sigil pid {pid}"
              f"{' under heaptrack' if args.heaptrack else ''}")
        print(f"{'t (s)':>7} {'VmRSS MiB':>10} {'VmHWM MiB':>10} {'fds':>5} {'admissions':>11}")
        t0 = time.time()
        while wrk.poll() is None:
            t = time.time() - t0
            print(f"{t:7.0f} {status_kib(pid, 'VmRSS') / 1024:10.1f} "
                  f"{status_kib(pid, 'VmHWM') / 1024:10.1f} {fds(pid):5d} "
                  f"{count_lines(log_path, b'admission uid='):11d}", flush=True)
            try:
                wrk.wait(args.sample)
            except subprocess.TimeoutExpired:
                pass
        out = wrk.stdout.read()
        kv = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("wrk."))
        print(f"{time.time() - t0:7.0f} {status_kib(pid, 'VmRSS') / 1024:10.1f} "
              f"{status_kib(pid, 'VmHWM') / 1024:10.1f} {fds(pid):5d} "
              f"{count_lines(log_path, b'admission uid='):11d}")
        print(f"wrk: {kv.get('wrk.requests', '?')} requests, {kv.get('wrk.rps', '?')}/s, "
              f"p50 {kv.get('wrk.p50_ms', '?')} ms, p99 {kv.get('wrk.p99_ms', '?')} ms, "
              f"errors {kv.get('wrk.errors', '?')}, non-2xx {kv.get('wrk.non2xx', '?')}")
        print(f"log: decision=allowed {count_lines(log_path, b'decision=allowed ')}, "
              f"decision=denied {count_lines(log_path, b'decision=denied')}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        cg.registry.stop(reg_dir)
    if args.heaptrack:
        files = sorted(glob.glob(f"{w}/heaptrack.sigil*"))
        if files:
            summary = subprocess.run(["heaptrack_print", "--print-peaks", "1", "--print-leaks", "1",
                                      "--print-allocators", "0", "--print-temporary", "0",
                                      "--peak-limit", "12", "--print-histogram", "", files[-1]],
                                     capture_output=True, text=True).stdout
            with open(f"{w}/heaptrack.txt", "w") as f:
                f.write(summary)
            print(f"heaptrack: {files[-1]} (summary in {w}/heaptrack.txt)")
            lines = summary.splitlines()
            for i, line in enumerate(lines):
                if re.match(r"(PEAK MEMORY CONSUMERS|MEMORY LEAKS|total runtime|peak heap memory"
                            r"|peak RSS|total memory leaked)", line):
                    print(line)
    if not args.keep:
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
