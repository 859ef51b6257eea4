"""Cross-checks with independent tools from ../shared/tools (skipped when that is absent):
our signatures verified by sigstore-js (node/verify.js verify-legacy), and signatures made by
the independent producer sigfixture.py (with a cosign-encrypted key) admitted by sigil."""
import os
import shutil
import subprocess
import unittest

import harness
from harness import fixture

TOOLS = os.path.join(harness.SHARED_DIR, "tools")
PY = "/usr/bin/python3"


def setUpModule():
    harness.require_registry()
    if not os.path.isdir(TOOLS):
        raise unittest.SkipTest("%s is absent: no independent tools to cross-check with" % TOOLS)


def node_dir():
    """A private copy of tools/node with its pinned dependencies installed (once per build)."""
    src = os.path.join(TOOLS, "node")
    if not os.path.exists(os.path.join(src, "verify.js")):
        raise unittest.SkipTest("%s/verify.js is absent" % src)
    if not (harness.have("node") and harness.have("npm")):
        raise unittest.SkipTest("node/npm not installed")
    root = os.environ.get("SIGIL_WORK_DIR") or harness.work_dir("node")
    dst = os.path.join(root, "node-verifier")
    if not os.path.exists(os.path.join(dst, "node_modules", ".sigil-installed")):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        for f in os.listdir(dst):
            os.chmod(os.path.join(dst, f), 0o644)
        r = subprocess.run(["npm", "ci" if os.path.exists(os.path.join(dst, "package-lock.json"))
                            else "install", "--no-audit", "--no-fund"],
                           cwd=dst, capture_output=True, text=True, timeout=240)
        if r.returncode != 0:
            raise unittest.SkipTest("npm could not install the verifier's pinned packages "
                                    "(offline?):\n" + r.stderr[-2000:])
        open(os.path.join(dst, "node_modules", ".sigil-installed"), "w").close()
    return dst


class OurSignaturesVerifiedBySigstoreJs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = node_dir()
        cls.reg = harness.RunningRegistry("crosscheck-node")  # verify.js speaks plain http
        cls.addClassCleanup(cls.reg.stop)
        cls.keys = harness.Keys(harness.work_dir("crosscheck-keys"),
                                [("p256", "p256"), ("ed25519", "ed25519"), ("rsa", "rsa")])

    def node_verify(self, repo, digest, pub):
        r = subprocess.run(["node", os.path.join(self.node, "verify.js"), "verify-legacy",
                            "--registry", self.reg.address, "--repo", repo, "--digest", digest,
                            "--key", pub], capture_output=True, text=True, timeout=120,
                           cwd=self.node)
        return r.returncode, r.stdout + r.stderr

    def test_valid_signatures(self):
        for alg in ("p256", "ed25519", "rsa"):
            with self.subTest(alg=alg):
                d = self.reg.push("test/node-" + alg, "v1", "node " + alg)
                fixture.sign(self.reg.client, "test/node-" + alg, d, self.keys.key(alg))
                code, out = self.node_verify("test/node-" + alg, d, self.keys.pub_path(alg))
                self.assertEqual(code, 0, out)

    def test_bad_variants_rejected(self):
        for variant in ("bad-sig", "payload-digest", "wrong-type"):
            with self.subTest(variant=variant):
                repo = "test/node-" + variant
                d = self.reg.push(repo, "v1", "node " + variant)
                fixture.sign(self.reg.client, repo, d, self.keys.key("p256"), variant)
                code, out = self.node_verify(repo, d, self.keys.pub_path("p256"))
                self.assertEqual(code, 1, out)


class IndependentSignaturesAdmittedBySigil(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.sigil_bin()
        for t in ("sigfixture.py", "cosign_key.py"):
            if not os.path.exists(os.path.join(TOOLS, t)):
                raise unittest.SkipTest("%s/%s is absent" % (TOOLS, t))
        cls.reg = harness.RunningRegistry("crosscheck-sigfixture")
        cls.addClassCleanup(cls.reg.stop)
        cls.dir = harness.work_dir("crosscheck-cosign-keys")
        cls.prefix = os.path.join(cls.dir, "cosign")
        env = dict(os.environ, COSIGN_PASSWORD="testpw")
        subprocess.run([PY, os.path.join(TOOLS, "cosign_key.py"), "gen", cls.prefix],
                       check=True, capture_output=True, timeout=120, env=env)

    def sigfixture_sign(self, repo, digest, variant="ok"):
        r = subprocess.run([PY, os.path.join(TOOLS, "sigfixture.py"), "sign",
                            "--registry", self.reg.address, "--repo", repo, "--digest", digest,
                            "--key", self.prefix + ".key", "--password", "testpw",
                            "--variant", variant], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)

    def sigil_verify(self, repo):
        return harness.run_sigil(["verify", self.reg.ref(repo, "v1"), "--key",
                                  self.prefix + ".pub", "--insecure-registry", self.reg.address])

    def test_admitted(self):
        d = self.reg.push("test/indep", "v1", "independent")
        self.sigfixture_sign("test/indep", d)
        r = self.sigil_verify("test/indep")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_independent_negatives_denied(self):
        for variant in ("bad-sig", "payload-digest", "wrong-key"):
            with self.subTest(variant=variant):
                repo = "test/indep-" + variant
                d = self.reg.push(repo, "v1", "independent " + variant)
                self.sigfixture_sign(repo, d, variant)
                r = self.sigil_verify(repo)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
