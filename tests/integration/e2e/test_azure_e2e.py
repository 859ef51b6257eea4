"""ACR the way AKS does it, end to end (issue 11): the real `sigil serve` with an `azure:` config
section admits a signed image that lives behind tests/support/azure_fakes.py's AcrFront (the
registry host the way ACR serves it: /oauth2/exchange, /oauth2/token, /v2/ passed to the REAL
distribution registry with token auth), with its AAD token from FakeAad (Workload Identity, the
env the AKS webhook injects) or FakeImds (managed identity). Every negative asserts on the fakes'
request logs: what reached which host, with or without an Authorization."""
import json
import os
import time
import unittest

import harness
from harness import fixture, registry

import azure_fakes  # tests/support, on the path through harness

TENANT = "72f988bf-0000-0000-0000-2d7cd011db47"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
KUBELET_ID = "99999999-8888-7777-6666-555555555555"

W = {}  # the world: registry, fakes, keys, images


def setUpModule():
    harness.require_registry()
    harness.sigil_bin()
    d = harness.work_dir("azure-e2e")
    W["dir"] = d
    for sub in ("registry", "aad-tls", "acr-tls", "store-tls", "kv-tls", "policies"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    W["token_file"] = os.path.join(d, "azure-identity-token")
    with open(W["token_file"], "w") as f:
        f.write("federated-token-1")
    reg = registry.start(os.path.join(d, "registry"), tls=False, auth="token")
    unittest.addModuleCleanup(registry.stop, os.path.join(d, "registry"))
    client = fixture.connect(env=reg)
    keys = harness.Keys(d, [("a", "p256"), ("kv1", "p256"), ("kv2", "p256"), ("other", "p256")])
    W["keys"] = keys
    W["digests"] = {}
    for i in range(8):
        repo = "team/app%d" % i
        W["digests"][repo] = fixture.push_image(client, repo, "v1", "hello from acr %d" % i)
        fixture.sign(client, repo, W["digests"][repo], keys.key("a"))
    fixture.push_image(client, "team/unsigned", "v1", "unsigned in acr")
    # key.kms: images signed by the vault key's first version, by its second (after a
    # rotation), and by a key the vault never held.
    for repo, key in (("kv/v1", "kv1"), ("kv/v2", "kv2"), ("kv/v2b", "kv2"), ("kv/other", "other")):
        W["digests"][repo] = fixture.push_image(client, repo, "v1", "key vault image " + repo)
        fixture.sign(client, repo, W["digests"][repo], keys.key(key))
    aad_tls = registry.write_tls_material(os.path.join(d, "aad-tls"))
    aad = azure_fakes.FakeAad(TENANT, CLIENT_ID, W["token_file"], ttl=3599,
                              cert=aad_tls["server.crt"], key=aad_tls["server.key"])
    imds = azure_fakes.FakeImds(TENANT, client_ids=(KUBELET_ID,))
    acr = azure_fakes.AcrFront(reg, lambda: aad.issued | imds.issued,
                               os.path.join(d, "acr-tls"))
    store = azure_fakes.BlobStore(os.path.join(d, "store-tls"))
    vault = azure_fakes.FakeKeyVault(os.path.join(d, "kv-tls"), lambda: aad.issued | imds.issued,
                                     TENANT)
    vault.keys["cosign"] = [("1f2e3d4c5b6a79880000000000000001", vault_jwk("kv1"))]
    for fake in (aad, imds, acr, store, vault):
        unittest.addModuleCleanup(fake.stop)
    W.update(reg=reg, aad=aad, imds=imds, acr=acr, store=store, vault=vault)
    # One bundle of every fake's CA: registry.ca (system roots plus this) is what sigil's
    # outbound TLS trusts, for the registry and for AAD alike.
    W["ca"] = os.path.join(d, "ca-bundle.pem")
    with open(W["ca"], "wb") as out:
        for ca in (aad_tls["ca.crt"], acr.ca, store.ca, vault.ca):
            with open(ca, "rb") as f:
                out.write(f.read())
    W["policy"] = harness.write_policy(os.path.join(d, "policies"), "acr",
                                       ["%s/**" % acr.address, "localhost:%s/**" %
                                        acr.address.split(":")[1]], {"a": keys.pub("a")})


def vault_jwk(name):
    from cryptography.hazmat.primitives import serialization
    return azure_fakes.ec_jwk(serialization.load_pem_public_key(W["keys"].pub(name)))


def image(repo, host=None):
    return "%s/%s:v1" % (host or W["acr"].address, repo)


def wi_env(token_file=None, client_id=CLIENT_ID):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env.update(AZURE_CLIENT_ID=client_id, AZURE_TENANT_ID=TENANT,
               AZURE_FEDERATED_TOKEN_FILE=token_file or W["token_file"],
               AZURE_AUTHORITY_HOST=W["aad"].authority())
    return env


def no_wi_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}


def write_config(name, azure):
    path = os.path.join(W["dir"], name + ".yaml")
    with open(path, "w") as f:
        json.dump({"azure": azure, "registry": {"ca": W["ca"]},
                   "cache": {"ttl": "0s", "negativeTtl": "0s"}}, f)  # JSON is YAML
    return path


def serve(name, azure, env):
    s = harness.SigilServer("azure-" + name, [W["policy"]],
                            ["--config", write_config(name, azure), "--log-level", "debug"],
                            env=env)
    return s


def admit(s, img, uid):
    status, resp = s.validate(harness.pod_review([img], uid=uid))
    assert status == 200, status
    return resp


def counts():
    a = W["acr"]
    with a.lock:
        posts = [p for m, p, _ in a.requests if m == "POST"]
    return {"aad": W["aad"].count("/"), "imds": W["imds"].count("/"),
            "exchange": posts.count("/oauth2/exchange"), "token": posts.count("/oauth2/token")}


def wait_warm(s, before):
    """/readyz does not wait for Azure; the start's warm-up is done when the exchange ran."""
    deadline = time.monotonic() + 15
    while counts()["exchange"] == before["exchange"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counts()["exchange"] > before["exchange"], "no warm-up:\n" + s.log_tail()


def reasons(resp):
    """The audit annotation's verdicts: "denied REGISTRY_AUTH ...", "allowed"."""
    return json.dumps((resp or {}).get("auditAnnotations") or {})


def delta(before, after):
    return {k: after[k] - before[k] for k in after}


class WorkloadIdentityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        before = counts()
        cls.s = serve("wi", {"workloadIdentity": "true", "registryHosts": [W["acr"].address],
                             "warmRegistries": [W["acr"].address]}, wi_env())
        cls.addClassCleanup(cls.s.stop)
        wait_warm(cls.s, before)

    def test_admitted_through_workload_identity(self):
        before = counts()
        resp = admit(self.s, image("team/app0"), "wi-1")
        self.assertIs(resp["allowed"], True, json.dumps(resp) + self.s.log_tail())
        resp = admit(self.s, image("team/unsigned"), "wi-2")
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("NOT_SIGNED", reasons(resp))
        # The registry was warmed at start: the AAD token and the refresh token are cached, so
        # the admissions asked AAD nothing; only access tokens per repository scope.
        d = delta(before, counts())
        self.assertEqual(d["aad"], 0, d)
        self.assertEqual(d["exchange"], 0, d)
        self.assertGreaterEqual(d["token"], 1, d)
        with open(self.s.log) as f:
            log = f.read()
        self.assertNotIn("federated-token-1", log)
        # The binary's startup constructor replaced OpenSSL's allocator before OpenSSL's first
        # allocation (app/openssl_alloc.hpp): this TLS-heavy admission ran through it.
        self.assertIn("OpenSSL allocates through sigil's functions (free(NULL) skipped): yes", log)

    def test_lookalike_host_gets_no_token(self):
        # localhost:PORT is the same AcrFront under a name the allowlist does not hold: sigil
        # must reach it anonymously (and be denied), never with an Azure-derived token.
        port = W["acr"].address.split(":")[1]
        acr = W["acr"]
        with acr.lock:
            seen = len(acr.authorizations)
        before = counts()
        resp = admit(self.s, image("team/app1", "localhost:" + port), "wi-lookalike")
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        self.assertIn("REGISTRY_AUTH", reasons(resp), harness.message(resp))
        with acr.lock:
            new = acr.authorizations[seen:]
        self.assertTrue(new, "sigil never reached the lookalike host")
        self.assertEqual([p for p, had in new if had], [],
                         "an Authorization reached a host outside the allowlist")
        d = delta(before, counts())
        self.assertEqual((d["exchange"], d["token"]), (0, 0), d)

    def test_401_then_one_refresh(self):
        resp = admit(self.s, image("team/app1"), "wi-401-a")
        self.assertIs(resp["allowed"], True, json.dumps(resp) + self.s.log_tail())
        W["acr"].revoke_access_tokens()
        refused = W["acr"].refused
        before = counts()
        # A new image in the same repository: the cached access token is refused, sigil drops
        # it, fetches one new access token and is admitted.
        client = fixture.connect(env=W["reg"])
        dig = fixture.push_image(client, "team/app1", "v2", "second image in app1")
        fixture.sign(client, "team/app1", dig, W["keys"].key("a"))
        resp = admit(self.s, "%s/team/app1:v2" % W["acr"].address, "wi-401-b")
        self.assertIs(resp["allowed"], True, json.dumps(resp) + self.s.log_tail())
        d = delta(before, counts())
        self.assertGreaterEqual(d["token"], 1, d)
        self.assertEqual(d["aad"], 0, d)
        self.assertGreaterEqual(W["acr"].refused - refused, 1, "the revoked token was never sent")

    def test_redirect_carries_no_authorization(self):
        store = W["store"]
        W["acr"].redirect_blobs_to = store
        try:
            resp = admit(self.s, image("team/app2"), "wi-redirect")
        finally:
            W["acr"].redirect_blobs_to = None
        self.assertIs(resp["allowed"], True, json.dumps(resp) + self.s.log_tail())
        with store.lock:
            got = list(store.authorizations)
        self.assertTrue(got, "no blob was fetched through the redirect")
        self.assertEqual([p for p, had in got if had], [],
                         "an Authorization followed the 307 to another origin")


class ManagedIdentityTest(unittest.TestCase):
    def test_admitted_through_imds(self):
        s = serve("imds", {"workloadIdentity": "false",
                           "managedIdentity": {"enabled": True, "clientId": KUBELET_ID,
                                               "endpoint": W["imds"].url},
                           "registryHosts": [W["acr"].address]}, no_wi_env())
        try:
            before = counts()
            resp = admit(s, image("team/app3"), "imds-1")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            d = delta(before, counts())
            self.assertGreaterEqual(d["imds"], 1, d)
            self.assertEqual(d["aad"], 0, d)
        finally:
            s.stop()

    def test_imds_429_retried(self):
        s = serve("imds429", {"workloadIdentity": "false",
                              "managedIdentity": {"enabled": True, "clientId": KUBELET_ID,
                                                  "endpoint": W["imds"].url},
                              "registryHosts": [W["acr"].address]}, no_wi_env())
        try:
            W["imds"].fail_next(1, 429, "/metadata")
            resp = admit(s, image("team/app4"), "imds-429")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
        finally:
            s.stop()


class AllSourcesFailTest(unittest.TestCase):
    def test_denial_names_the_sources_tried(self):
        bad = os.path.join(W["dir"], "stale-token")
        with open(bad, "w") as f:
            f.write("not-the-current-federated-token")
        s = serve("fail", {"workloadIdentity": "true",
                           "managedIdentity": {"enabled": True, "clientId":
                                               "00000000-dead-beef-0000-000000000000",
                                               "endpoint": W["imds"].url},
                           "registryHosts": [W["acr"].address]}, wi_env(token_file=bad))
        try:
            resp = admit(s, image("team/app5"), "fail-1")
            self.assertIs(resp["allowed"], False, json.dumps(resp))
            msg = harness.message(resp)
            self.assertNotIn("\n", msg)
            self.assertIn("REGISTRY_AUTH", reasons(resp), msg)
            self.assertIn("refused access", msg)
            # The denial names every credential source tried, in order, and what each gave, in
            # sigil's words (typed, registry/client.hpp): never the registry's or AAD's words
            # (ARCHITECTURE 3), nothing token-shaped.
            tried = msg[msg.index("(tried "):]
            order = ["pod pull secret: none for this host", "docker config: none for this host",
                     "azure workload identity: refused", "azure managed identity: ",
                     "anonymous: refused (401)"]
            at = [tried.find(x) for x in order]
            self.assertTrue(all(i >= 0 for i in at) and at == sorted(at), msg)
            self.assertNotIn("AADSTS", msg)
            self.assertNotIn("eyJ", msg)
            # The log line of that failure has the details.
            with open(s.log) as f:
                log = f.read()
            failure = [ln for ln in log.splitlines() if "team/app5" in ln and "warning" in ln]
            self.assertTrue(failure, log)
            self.assertIn("azure workload identity", failure[-1])
            self.assertIn("azure managed identity", failure[-1])
            self.assertIn("unauthorized", failure[-1])
            self.assertNotIn("not-the-current-federated-token", msg + log)
        finally:
            s.stop()


def kms_policy(name, vault_host):
    """A ClusterImagePolicy whose one authority is a Key Vault key (cosign's azurekms form)."""
    path = os.path.join(W["dir"], "policies-" + name, "kv.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: vault-signed
spec:
  images:
    - glob: "%s/kv/**"
  authorities:
    - name: key-vault
      key:
        kms: azurekms://%s/cosign
""" % (W["acr"].address, vault_host))
    return path


def serve_kms(name, vault_host):
    cfg = os.path.join(W["dir"], name + ".yaml")
    with open(cfg, "w") as f:
        # The verdict cache stays on (its defaults): a rotation must retire cached verdicts.
        json.dump({"azure": {"workloadIdentity": "true", "registryHosts": [W["acr"].address],
                             "vaultHosts": [W["vault"].address],
                             "keyVault": {"minRefetchSeconds": 0}},
                   "registry": {"ca": W["ca"]}}, f)
    return harness.SigilServer("azure-" + name, [kms_policy(name, vault_host)],
                               ["--config", cfg, "--log-level", "debug"], env=wi_env())


class KeyVaultKeyTest(unittest.TestCase):
    """key.kms: azurekms://<vault>/<key> read from the (fake) Key Vault with the Workload
    Identity's AAD token for https://vault.azure.net/.default, only from an allowed vault
    host; a rotation (a new key version) is picked up when a signature fails with the old."""

    def test_vault_key_admits_denies_and_follows_a_rotation(self):
        vault = W["vault"]
        s = serve_kms("kv", vault.address)
        try:
            resp = admit(s, image("kv/v1"), "kv-1")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            self.assertGreaterEqual(vault.count("/keys/cosign"), 1)
            resp = admit(s, image("kv/other"), "kv-2")
            self.assertIs(resp["allowed"], False, json.dumps(resp))
            self.assertIn("BAD_SIGNATURE", reasons(resp), harness.message(resp))
            # Signed by the key's next version, before the vault has it: denied. (That denial
            # is cached for the negative TTL, so the rotation below is shown with kv/v2b.)
            self.assertIs(admit(s, image("kv/v2"), "kv-3")["allowed"], False)

            # The vault rotates: a new version becomes the newest. The first image signed with
            # it fails with the cached key, sigil reads the key again and admits it.
            vault.keys["cosign"].append(("2f2e3d4c5b6a79880000000000000002", vault_jwk("kv2")))
            before = vault.count("/keys/cosign")
            resp = admit(s, image("kv/v2b"), "kv-4")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            self.assertGreater(vault.count("/keys/cosign"), before, "the key was never refetched")
            # The old version is no longer the key: its image's cached admission is retired.
            resp = admit(s, image("kv/v1"), "kv-5")
            self.assertIs(resp["allowed"], False, json.dumps(resp) + s.log_tail())
            with open(s.log) as f:
                log = f.read()
            self.assertNotIn("federated-token-1", log)
        finally:
            vault.keys["cosign"] = vault.keys["cosign"][:1]
            s.stop()

    def test_vault_key_read_ahead_of_the_first_admission(self):
        # The policies name the key: sigil reads it when the set is loaded, so the first pod
        # does not wait for AAD and Key Vault on the admission path.
        vault = W["vault"]
        before = vault.count("/keys/cosign")
        s = serve_kms("kv-ahead", vault.address)
        try:
            deadline = time.monotonic() + 10
            while vault.count("/keys/cosign") == before and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertGreater(vault.count("/keys/cosign"), before,
                               "the key was not read ahead:\n" + s.log_tail())
            read = vault.count("/keys/cosign")
            resp = admit(s, image("kv/v1"), "kv-ahead-1")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            self.assertEqual(vault.count("/keys/cosign"), read,
                             "the first admission read the key again")
        finally:
            s.stop()

    def test_vault_outside_the_host_list_gets_no_token(self):
        # localhost:PORT is the same fake vault under a name vaultHosts does not hold.
        vault = W["vault"]
        port = vault.address.split(":")[1]
        s = serve_kms("kv-lookalike", "localhost:" + port)
        try:
            before = vault.count("/")
            resp = admit(s, image("kv/v1"), "kv-host")
            self.assertIs(resp["allowed"], False, json.dumps(resp))
            msg = harness.message(resp)
            self.assertNotIn("\n", msg)
            self.assertIn("POLICY_UNAVAILABLE", reasons(resp), msg)
            self.assertIn("azurekms://localhost:%s/cosign" % port, msg)
            self.assertIn("not in the Key Vault host list", msg)
            self.assertEqual(vault.count("/"), before, "a vault outside the list was asked")
        finally:
            s.stop()


class BackgroundRefreshTest(unittest.TestCase):
    """AAD tokens living 45 s with refreshBeforeSeconds 300: every background tick (15 s)
    refreshes them, so tokens expire in the middle of the run; admissions after the first
    tokens' expiry still make no AAD or exchange call."""

    def test_expiry_mid_run_refreshed_in_background(self):
        aad, acr = W["aad"], W["acr"]
        old_ttl, old_access = aad.ttl, acr.access_ttl
        aad.ttl, acr.access_ttl = 45, 45
        s = None
        try:
            warm_before = counts()
            s = serve("refresh", {"workloadIdentity": "true",
                                  "registryHosts": [acr.address],
                                  "warmRegistries": [acr.address],
                                  "refreshBeforeSeconds": 300}, wi_env())
            wait_warm(s, warm_before)
            resp = admit(s, image("team/app6"), "refresh-0")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            started = time.monotonic()
            # Past the first AAD and access tokens' expiry (45 s), with refreshes in between.
            while time.monotonic() - started < 50:
                time.sleep(1)
            # Right after a background refresh, so the next tick is ~15 s away.
            n = aad.count("/")
            deadline = time.monotonic() + 20
            while aad.count("/") == n and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertGreater(aad.count("/"), n, "no background AAD refresh:\n" + s.log_tail())
            time.sleep(0.5)
            before = counts()
            resp = admit(s, image("team/app7"), "refresh-1")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            resp = admit(s, image("team/app6"), "refresh-2")
            self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
            d = delta(before, counts())
            self.assertEqual((d["aad"], d["exchange"]), (0, 0),
                             "AAD or the exchange on the admission path: %s" % d)
        finally:
            aad.ttl, acr.access_ttl = old_ttl, old_access
            if s:
                s.stop()


if __name__ == "__main__":
    unittest.main()


class TokenRefreshMetricsTest(unittest.TestCase):
    """sigil_token_refreshes_total{source, result} counts every token fetched from AAD, IMDS and
    ACR (issue 12 point 8, fed by azure::Options::on_refresh): the counts equal what the fakes
    served, and failures count as failed by source."""

    def scrape(self, port):
        from test_metrics import scrape_port
        return scrape_port(port)[0]

    def serve_with_metrics(self, name, azure, env):
        port = harness.free_port()
        s = harness.SigilServer("azure-" + name, [W["policy"]],
                                ["--config", write_config(name, azure),
                                 "--metrics-listen", "127.0.0.1:%d" % port], env=env)
        self.addCleanup(s.stop)
        return s, port

    def test_refreshes_counted_by_source_and_result(self):
        from test_metrics import value
        before = counts()
        s, port = self.serve_with_metrics("metrics-ok", {
            "workloadIdentity": "true", "registryHosts": [W["acr"].address],
            "warmRegistries": [W["acr"].address]}, wi_env())
        wait_warm(s, before)
        resp = admit(s, image("team/app1"), "metrics-1")
        self.assertIs(resp["allowed"], True, json.dumps(resp) + s.log_tail())
        d = delta(before, counts())
        m = self.scrape(port)

        def n(source, result):
            return value(m, "sigil_token_refreshes_total", source=source, result=result)

        self.assertGreaterEqual(d["aad"], 1, d)
        self.assertEqual(n("workload-identity", "ok"), d["aad"], (d, m))
        self.assertEqual(n("acr-refresh-token", "ok"), d["exchange"], (d, m))
        self.assertEqual(n("acr-access-token", "ok"), d["token"], (d, m))
        self.assertEqual(n("workload-identity", "failed") + n("acr-refresh-token", "failed") +
                         n("acr-access-token", "failed"), 0, m)

    def test_failures_counted_by_source(self):
        from test_metrics import value
        bad = os.path.join(W["dir"], "stale-token-metrics")
        with open(bad, "w") as f:
            f.write("not-the-current-federated-token")
        s, port = self.serve_with_metrics("metrics-fail", {
            "workloadIdentity": "true",
            "managedIdentity": {"enabled": True, "clientId": "00000000-dead-beef-0000-000000000000",
                                "endpoint": W["imds"].url},
            "registryHosts": [W["acr"].address]}, wi_env(token_file=bad))
        resp = admit(s, image("team/app5"), "metrics-fail-1")
        self.assertIs(resp["allowed"], False, json.dumps(resp))
        m = self.scrape(port)
        self.assertGreaterEqual(value(m, "sigil_token_refreshes_total",
                                      source="workload-identity", result="failed"), 1, m)
        self.assertGreaterEqual(value(m, "sigil_token_refreshes_total",
                                      source="managed-identity", result="failed"), 1, m)
        self.assertEqual(value(m, "sigil_token_refreshes_total", result="ok"), 0, m)
