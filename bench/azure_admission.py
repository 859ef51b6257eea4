#!/usr/bin/python3
"""bench/azure_admission.py: a cold admission through the ACR flow with warm tokens, against the
same admission on a registry without auth (issue 11's benchmark).

Two real distribution registries on 127.0.0.1, one with token auth and one without, each behind
tests/support/azure_fakes.py's AcrFront (the same Python TLS front, so both paths pay the same
proxy): the token one does ACR's /oauth2/exchange and /oauth2/token, the other passes /v2/
through anonymously. Workload Identity comes from FakeAad. Each registry holds N signed images
(a new repository each: every admission is cold, its verdict never cached, and on the ACR side
it needs the repository's access token, one /oauth2/token on the path, as a first pull of a
repository does on AKS). Two `sigil serve`: one with the `azure:` section (warmRegistries: the
AAD and refresh tokens are fetched at start, then the benchmark waits for that), one without.
Admissions alternate between the two servers, one at a time. Prints the medians and p90 of
both, the ratio, and the AAD / IMDS / exchange calls made while admitting (target: 0).

usage: bench/azure_admission.py [SIGIL_BINARY] [N]   (defaults: build/sigil, 40)
Numbers, never pass/fail: see bench/README.md section (f).
"""
import json
import os
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "e2e"))
os.environ.setdefault("SIGIL_SOURCE_DIR", ROOT)

import azure_fakes  # noqa: E402
import fixture  # noqa: E402
import harness  # noqa: E402
import registry  # noqa: E402

TENANT = "72f988bf-0000-0000-0000-2d7cd011db47"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build",
                                                                                 "sigil"))
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    os.environ["SIGIL_BIN"] = binary
    d = harness.work_dir("bench-azure")
    for sub in ("reg-acr", "reg-plain", "aad-tls", "acr-tls", "plain-tls", "policies"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    token_file = os.path.join(d, "federated-token")
    with open(token_file, "w") as f:
        f.write("federated-token-1")
    stops = []
    try:
        acr_reg = registry.start(os.path.join(d, "reg-acr"), tls=False, auth="token")
        stops.append(lambda: registry.stop(os.path.join(d, "reg-acr")))
        plain_reg = registry.start(os.path.join(d, "reg-plain"), tls=False, auth="none")
        stops.append(lambda: registry.stop(os.path.join(d, "reg-plain")))
        keys = harness.Keys(d, [("a", "p256")])
        for env in (acr_reg, plain_reg):
            c = fixture.connect(env=env)
            for i in range(n):
                repo = "bench/app%d" % i
                dig = fixture.push_image(c, repo, "v1", "bench %s %d" % (env["address"], i))
                fixture.sign(c, repo, dig, keys.key("a"))
        aad_tls = registry.write_tls_material(os.path.join(d, "aad-tls"))
        aad = azure_fakes.FakeAad(TENANT, CLIENT_ID, token_file, cert=aad_tls["server.crt"],
                                  key=aad_tls["server.key"])
        acr = azure_fakes.AcrFront(acr_reg, lambda: aad.issued, os.path.join(d, "acr-tls"))
        plain = azure_fakes.AcrFront(plain_reg, lambda: set(), os.path.join(d, "plain-tls"),
                                     anonymous=True)
        for fake in (aad, acr, plain):
            stops.append(fake.stop)
        bundle = os.path.join(d, "ca-bundle.pem")
        with open(bundle, "wb") as out:
            for ca in (aad_tls["ca.crt"], acr.ca, plain.ca):
                with open(ca, "rb") as f:
                    out.write(f.read())
        pol = harness.write_policy(os.path.join(d, "policies"), "bench",
                                   ["%s/**" % acr.address, "%s/**" % plain.address],
                                   {"a": keys.pub("a")})

        def config(name, azure):
            path = os.path.join(d, name + ".yaml")
            doc = {"registry": {"ca": bundle}}
            if azure:
                doc["azure"] = azure
            with open(path, "w") as f:
                json.dump(doc, f)
            return path

        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
        plain_srv = harness.SigilServer("bench-plain", [pol], ["--config", config("plain", None)],
                                        env=env)
        stops.append(plain_srv.stop)
        wi_env = dict(env, AZURE_CLIENT_ID=CLIENT_ID, AZURE_TENANT_ID=TENANT,
                      AZURE_FEDERATED_TOKEN_FILE=token_file, AZURE_AUTHORITY_HOST=aad.authority())
        acr_srv = harness.SigilServer("bench-acr", [pol], ["--config", config("acr", {
            "workloadIdentity": "true", "registryHosts": [acr.address],
            "warmRegistries": [acr.address]})], env=wi_env)
        stops.append(acr_srv.stop)
        deadline = time.monotonic() + 15
        while acr.count("/oauth2/exchange") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if acr.count("/oauth2/exchange") == 0:
            sys.exit("the ACR server never warmed its tokens:\n" + acr_srv.log_tail())

        def admit(srv, host, i):
            t = time.perf_counter()
            _, resp = srv.validate(harness.pod_review(["%s/bench/app%d:v1" % (host, i)],
                                                      uid="bench-%d" % i))
            ms = (time.perf_counter() - t) * 1000
            if not (resp or {}).get("allowed"):
                sys.exit("not admitted: %s\n%s" % (json.dumps(resp), srv.log_tail()))
            return ms

        # One warm-up each (connections, first TLS handshakes), on an image not measured.
        admit(plain_srv, plain.address, n - 1)
        admit(acr_srv, acr.address, n - 1)
        before = (aad.count("/"), acr.count("/oauth2/exchange"), acr.count("/oauth2/token"))
        t_plain, t_acr = [], []
        for i in range(n - 1):
            t_plain.append(admit(plain_srv, plain.address, i))
            t_acr.append(admit(acr_srv, acr.address, i))
        after = (aad.count("/"), acr.count("/oauth2/exchange"), acr.count("/oauth2/token"))

        def p90(xs):
            return sorted(xs)[int(0.9 * (len(xs) - 1))]

        mp, ma = statistics.median(t_plain), statistics.median(t_acr)
        print("cold admissions of a new image (new repository), %d each, alternating" % (n - 1))
        print("  registry without auth:   median %7.2f ms  p90 %7.2f ms" % (mp, p90(t_plain)))
        print("  ACR flow, warm tokens:   median %7.2f ms  p90 %7.2f ms" % (ma, p90(t_acr)))
        print("  ratio (median):          %.3f x   (target <= 1.1)" % (ma / mp))
        print("  while admitting: AAD calls %d, IMDS calls 0 (not configured), "
              "/oauth2/exchange %d, /oauth2/token %d (one per new repository)" %
              (after[0] - before[0], after[1] - before[1], after[2] - before[2]))
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - best effort
                print("cleanup: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    main()
