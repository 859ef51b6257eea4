#!/usr/bin/python3
"""Instructions per cached admission: sigil serve against bench_bare_responder, under callgrind.

usage: bench/callgrind_cached.py [--build build] [--requests 2000] [--threads 1]
                                 [--log-level info] [--keep DIR] [--top 15]
                                 [--route validate|mutate] [--review FILE]

bench/run.sh (a) measures requests/s; on a shared two-core machine that number moves by 10-20%
from run to run. This counts instructions instead (stable to a fraction of a percent): a real
distribution registry on 127.0.0.1, one signed image, a key policy, then for each server:

  valgrind --tool=callgrind --instr-atstart=no SERVER ...
  warm-up (sigil: the verdict is cached by digest), then instrumentation on (callgrind_control -i)
  N identical AdmissionReviews by digest over one keep-alive TLS connection
  dump, and the dump's total instruction count divided by N.

The TLS handshake is outside the window; every other cost of a request is in it, on every thread
of the server (Asio, OpenSSL, Beast, sigil). It prints both counts, their ratio, and each
server's instructions by component, exclusive counts (OpenSSL, Asio, Beast, simdjson, malloc,
sigil's files, ...). valgrind is needed here only: this is a benchmark, not part of ctest.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import fixture  # noqa: E402
import registry  # noqa: E402


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


def make_cert(w):
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-days", "1", "-subj", "/CN=sigil bench CA", "-keyout", f"{w}/ca.key", "-out", f"{w}/ca.crt")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
       "/CN=127.0.0.1", "-keyout", f"{w}/tls.key", "-out", f"{w}/tls.csr")
    with open(f"{w}/ext.cnf", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", f"{w}/tls.csr", "-CA", f"{w}/ca.crt", "-CAkey",
       f"{w}/ca.key", "-CAcreateserial", "-days", "1", "-extfile", f"{w}/ext.cnf", "-out",
       f"{w}/tls.crt")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Client:
    """One keep-alive TLS connection posting the same body."""

    def __init__(self, port, ca, path="/validate"):
        ctx = ssl.create_default_context(cafile=ca)
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=120)
        self.path = path

    def post(self, body):
        self.conn.request("POST", self.path + "?timeout=30s", body=body,
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
        return json.loads(data)


def wait_ready(port, ca, proc, seconds=120):
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            c = Client(port, ca)
            c.conn.request("GET", "/readyz")
            r = c.conn.getresponse()
            r.read()
            if r.status in (200, 405):  # the bare responder answers GET with 405
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready")


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def measure(name, cmd, port, ca, body, n, w, expect_allowed=True, path="/validate"):
    out = f"{w}/callgrind.{name}"
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
    log = open(f"{w}/{name}.log", "w")
    proc = subprocess.Popen(vg + cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, ca, proc)
        c = Client(port, ca, path)
        for _ in range(20):  # warm: the verdict cache, the allocator, the connection
            rev = c.post(body)
        if rev["response"]["allowed"] is not expect_allowed:
            raise RuntimeError(f"{name}: not allowed: {rev}")
        sh("callgrind_control", "-i", "on", str(proc.pid))
        for _ in range(n):
            rev = c.post(body)
        sh("callgrind_control", "-d", str(proc.pid))
        sh("callgrind_control", "-i", "off", str(proc.pid))
        if rev["response"]["allowed"] is not expect_allowed:
            raise RuntimeError(f"{name}: not allowed after the run: {rev}")
        c.conn.close()
    finally:
        proc.send_signal(2)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    dumps = sorted(p for p in os.listdir(w) if p.startswith(f"callgrind.{name}.{proc.pid}.")
                   and not p.endswith(".0"))
    if not dumps:
        raise RuntimeError(f"{name}: no callgrind dump in {w}")
    dump = os.path.join(w, dumps[0])
    return total_ir(dump) / n, dump


def component(fn):
    """A coarse owner for one callgrind_annotate function line."""
    src = fn.split(":", 1)[0]
    obj = re.search(r"\[([^\]]*)\]\s*$", fn)
    obj = obj.group(1) if obj else ""
    if "libcrypto" in obj or "libssl" in obj:
        return "OpenSSL"
    if "simdjson" in fn:
        return "simdjson"
    if "tcmalloc" in obj or re.search(r"\?\?\?:(free|malloc|calloc|realloc|memalign|operator new|"
                                      r"operator delete|tc_)", fn) or re.search(r"libc\.so.*", obj) and \
            re.search(r":(_int_)?(malloc|free|unlink_chunk|calloc)", fn):
        return "malloc/free"
    if "libc.so" in obj:
        return "libc " + fn.split(":", 1)[1].split(" ")[0][:40]
    for key, name in (("/boost/beast/http", "Beast http"), ("/boost/beast", "Beast core"),
                      ("/boost/asio/ssl", "Asio ssl"), ("/boost/asio", "Asio"),
                      ("spdlog", "spdlog/fmt"), ("/fmt/", "spdlog/fmt"), ("nlohmann", "nlohmann"),
                      ("/c++/12/", "libstdc++ (inlined)"), ("libstdc++", "libstdc++"),
                      ("libboost_url", "Boost.URL"), ("libre2", "RE2")):
        if key in src or key in obj:
            return name
    if "/work/" in src or src.startswith("build/") or "/../" in src:
        parts = src.split("/")
        return "sigil " + "/".join(parts[-2:])
    return "other"


def components(dump, n):
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", dump],
                         capture_output=True, text=True).stdout
    by = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([ \d.]+%\)\s+(.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        k = component(m.group(2))
        by[k] = by.get(k, 0) + int(m.group(1).replace(",", ""))
    return sorted(((v / n, k) for k, v in by.items()), reverse=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one, removed)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--only", choices=["sigil", "bare"], help="measure one server only")
    ap.add_argument("--route", choices=["validate", "mutate"], default="validate",
                    help="validate: a Pod by digest to /validate (default); mutate: a Pod by tag "
                         "to /mutate, sigil with pinning on and a 60 s tag cache (the warm "
                         "mutate path: the tag cache, then the verdict cache)")
    ap.add_argument("--review", help="the Pod AdmissionReview to send (default: "
                    "examples/admission/pod-create-kubectl-run.json, 1.2 KB); every container's "
                    "image is set to the bench's signed image")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            sys.exit(f"callgrind_cached: {tool} is missing (apt-get install valgrind)")
    w = args.keep or tempfile.mkdtemp(prefix="sigil-cg.")
    os.makedirs(w, exist_ok=True)
    reg_dir = f"{w}/registry"
    env = registry.start(reg_dir)
    try:
        reg_addr = env["address"]
        fixture.keygen("p256", f"{w}/bench")
        reg = fixture.connect(reg_addr)
        key = fixture.load_private_key(f"{w}/bench.key")
        digest = fixture.push_image(reg, "bench/app00", "v1", "sigil bench image 0\n")
        fixture.sign(reg, "bench/app00", digest, key)
        pub = open(f"{w}/bench.pub").read()
        with open(f"{w}/policy.yaml", "w") as f:
            f.write("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
                    "metadata:\n  name: bench-images\nspec:\n  images:\n"
                    f"    - glob: \"{reg_addr}/bench/**\"\n  authorities:\n    - name: bench-key\n"
                    "      key:\n        data: |\n" +
                    "".join("          " + line + "\n" for line in pub.splitlines()))
        make_cert(w)
        review = json.load(open(args.review or os.path.join(
            ROOT, "examples/admission/pod-create-kubectl-run.json")))
        mutate = args.route == "mutate"
        image = f"{reg_addr}/bench/app00:v1" if mutate else f"{reg_addr}/bench/app00@{digest}"
        spec = review["request"]["object"]["spec"]
        for field in ("initContainers", "containers", "ephemeralContainers"):
            for c in spec.get(field) or []:
                c["image"] = image
        path = "/" + args.route
        extra = []
        if mutate:
            with open(f"{w}/config.yaml", "w") as f:
                f.write("pinning: true\ncache: {tagTtl: 60s}\n")
            extra = ["--config", f"{w}/config.yaml"]
        body = json.dumps(review).encode()
        ca = f"{w}/ca.crt"
        results = {}
        if args.only in (None, "bare"):
            port = free_port()
            results["bare"] = measure(
                "bare", [f"{args.build}/bench_bare_responder", "--listen", f"127.0.0.1:{port}",
                         "--cert", f"{w}/tls.crt", "--key", f"{w}/tls.key", "--threads",
                         str(args.threads)], port, ca, body, args.requests, w, path=path)
        if args.only in (None, "sigil"):
            port = free_port()
            results["sigil"] = measure(
                "sigil", [f"{args.build}/sigil", "serve", "--listen", f"127.0.0.1:{port}",
                          "--tls-cert", f"{w}/tls.crt", "--tls-key", f"{w}/tls.key", "--policy",
                          f"{w}/policy.yaml", "--insecure-registry", reg_addr, "--threads",
                          str(args.threads), "--log-level", args.log_level] + extra,
                port, ca, body, args.requests, w, path=path)
        by = "by tag to /mutate, pinning on" if mutate else "by digest"
        print(f"instructions per cached admission (callgrind, {args.requests} requests {by} "
              f"on one keep-alive TLS connection, body {len(body)} bytes, threads={args.threads})")
        for name, (ir, dump) in results.items():
            print(f"  {name:6s} {ir:12.0f}   ({dump})")
        if "sigil" in results and "bare" in results:
            print(f"  bare / sigil = {results['bare'][0] / results['sigil'][0]:.3f} "
                  "(the rps ratio if both were CPU-bound on the same cores)")
        if "sigil" in results and args.top:
            for name, (_, dump) in results.items():
                print(f"  {name}, instructions per admission by component (exclusive counts):")
                for ir, comp in components(dump, args.requests)[:args.top]:
                    print(f"    {ir:10.0f}  {comp}")
    finally:
        registry.stop(reg_dir)
        if not args.keep:
            shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
