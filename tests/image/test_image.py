#!/usr/bin/env python3
"""sigil's container image, for real: what scripts/test-image.sh built from the Dockerfile.

  1. the image's configuration: user 65532, ENTRYPOINT ["sigil"], the OCI labels; its root
     filesystem: no shell, the binary, its libraries, CA certificates, /etc/passwd;
  2. pushed by buildah to the real distribution registry (tests/support/registry.py, TLS);
  3. signed there by the test signer (tests/support/fixture.py, cosign's legacy .sig layout);
  4. the image's own entrypoint and environment run from its root filesystem (chroot into the
     mounted image, as the image's USER): `sigil serve`, until GET /readyz answers 200;
  5. that sigil admits a Pod of its own signed image (by tag; /mutate pins it to the digest
     buildah pushed) and denies the same image in a repository where it is not signed.

Environment: SIGIL_IMAGE (the image, e.g. localhost/sigil:test), SIGIL_BUILDAH (the buildah
command with its storage options). Needs root. Run by scripts/test-image.sh.
"""

import base64
import http.client
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))

import fixture  # noqa: E402
import registry  # noqa: E402

IMAGE = os.environ.get("SIGIL_IMAGE", "")
BUILDAH = shlex.split(os.environ.get("SIGIL_BUILDAH", "buildah"))
UID = GID = 65532
# Where the test's files go inside the mounted image (the image itself has only /tmp writable
# in the cluster; here the container layer is writable, and the test's files are removed with it).
IN_IMAGE = "/run/sigil-test"


def buildah(*args, check=True):
    r = subprocess.run(BUILDAH + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError("buildah %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout.strip()


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


class Image(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not IMAGE:
            raise unittest.SkipTest("SIGIL_IMAGE is not set: run scripts/test-image.sh")
        if os.getuid() != 0:
            raise unittest.SkipTest("needs root (chroot into the image)")
        cls.tmp = tempfile.mkdtemp(prefix="sigil-image-test-")
        cls.proc = None
        cls.ctr = None
        cls.reg_dir = os.path.join(cls.tmp, "registry")
        os.makedirs(cls.reg_dir)
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        info = json.loads(buildah("inspect", "--type", "image", IMAGE))
        cls.config = info["OCIv1"]["config"]

        # 2. push to the real registry over TLS.
        cls.reg = registry.start(cls.reg_dir, tls=True)
        cls.address = cls.reg["address"]
        certs = os.path.join(cls.tmp, "certs")
        os.makedirs(certs)
        shutil.copy(cls.reg["ca"], os.path.join(certs, "ca.crt"))
        digestfile = os.path.join(cls.tmp, "digest")
        cls.version = cls.config.get("Labels", {}).get("org.opencontainers.image.version", "test")
        cls.ref = "%s/sigil:%s" % (cls.address, cls.version)
        buildah("push", "--quiet", "--cert-dir", certs, "--digestfile", digestfile, IMAGE, "docker://" + cls.ref)
        with open(digestfile) as f:
            cls.digest = f.read().strip()
        cls.client = fixture.Registry.from_env(cls.reg)
        # The same image under another name, never signed: what sigil must refuse.
        cls.unsigned_ref = "%s/unsigned/sigil:%s" % (cls.address, cls.version)
        buildah("push", "--quiet", "--cert-dir", certs, IMAGE, "docker://" + cls.unsigned_ref)

        # 3. sign it with the test signer.
        key, pub = fixture.keygen("p256", os.path.join(cls.tmp, "signer"))
        fixture.sign(cls.client, "sigil", cls.digest, key)

        # 4. run the image's entrypoint from its root filesystem.
        cls.ctr = buildah("from", "--pull=never", IMAGE)
        cls.mnt = buildah("mount", cls.ctr)
        cls.rootfs_bytes = du(cls.mnt)
        files = os.path.join(cls.mnt, IN_IMAGE.lstrip("/"))
        os.makedirs(os.path.join(files, "policies"))
        tls = registry.write_tls_material(files)
        cls.ca = tls["ca.crt"]
        with open(pub) as f:
            pem = f.read()
        with open(os.path.join(files, "policies", "self.yaml"), "w") as f:
            f.write(fixture.policy_yaml("sigil-images", ["%s/sigil" % cls.address, "%s/unsigned/**" % cls.address],
                                        {"release-key": pem}))
        shutil.copy(cls.reg["ca"], os.path.join(files, "registry-ca.pem"))
        for d, dirs, fs in os.walk(files):
            for n in dirs + fs:
                os.chown(os.path.join(d, n), UID, GID)
        os.chown(files, UID, GID)
        cls.port = registry.free_port()
        args = cls.config["Entrypoint"] + [
            "serve", "--listen", "127.0.0.1:%d" % cls.port,
            "--tls-cert", IN_IMAGE + "/server.crt", "--tls-key", IN_IMAGE + "/server.key",
            "--policy", IN_IMAGE + "/policies", "--registry-ca", IN_IMAGE + "/registry-ca.pem",
            "--no-match-policy", "deny"]
        env = dict(e.split("=", 1) for e in cls.config.get("Env", []))
        user, _, group = cls.config["User"].partition(":")
        uid, gid = int(user), int(group or user)
        mnt = cls.mnt

        def enter_image():
            os.chroot(mnt)
            os.chdir("/")
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        cls.log = os.path.join(cls.tmp, "sigil.log")
        with open(cls.log, "wb") as log:
            # args[0] is looked up on the image's PATH, inside the image (after the chroot).
            cls.proc = subprocess.Popen(args, env=env, preexec_fn=enter_image, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, start_new_session=True)
        cls.ctx = ssl.create_default_context(cafile=cls.ca)
        cls.ready_after = cls._wait_ready(20.0)

    @classmethod
    def _wait_ready(cls, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if cls.proc.poll() is not None:
                raise AssertionError("sigil exited (%s):\n%s" % (cls.proc.returncode, registry._tail(cls.log)))
            try:
                status, _ = cls.get("/readyz")
                if status == 200:
                    return time.monotonic() - t0
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise AssertionError("GET /readyz never answered 200:\n" + registry._tail(cls.log))

    @classmethod
    def tearDownClass(cls):
        if cls.proc is not None and cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGINT)  # no lame duck
            try:
                cls.proc.wait(15)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait(5)
        if cls.ctr:
            buildah("umount", cls.ctr, check=False)
            buildah("rm", cls.ctr, check=False)
        registry.stop(cls.reg_dir)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def request(cls, method, path, body=None):
        c = http.client.HTTPSConnection("127.0.0.1", cls.port, context=cls.ctx, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    @classmethod
    def get(cls, path):
        return cls.request("GET", path)

    def review(self, path, image):
        with open(os.path.join(ROOT, "examples", "admission", "pod-create-kubectl-run.json")) as f:
            doc = json.load(f)
        doc["request"]["object"]["spec"]["containers"][0]["image"] = image
        status, body = self.request("POST", path, json.dumps(doc).encode())
        self.assertEqual(status, 200, body)
        resp = json.loads(body)["response"]
        self.assertEqual(resp["uid"], doc["request"]["uid"])
        return resp

    # 1. configuration and contents ------------------------------------------------------------

    def test_config_runs_sigil_as_65532(self):
        self.assertEqual(self.config["Entrypoint"], ["sigil"])
        self.assertEqual(self.config["User"], "%d:%d" % (UID, GID))
        self.assertIn("PATH=/usr/local/bin", self.config.get("Env", []))
        with open("/proc/%d/status" % self.proc.pid) as f:
            ids = {line.split(":")[0]: line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:"))}
        self.assertEqual(ids["Uid"], [str(UID)] * 4, "sigil runs as the image's user")
        self.assertEqual(ids["Gid"], [str(GID)] * 4)

    def test_labels(self):
        labels = self.config.get("Labels", {})
        for k in ("title", "description", "source", "version", "revision", "created"):
            self.assertTrue(labels.get("org.opencontainers.image." + k), k)
        self.assertRegex(labels["org.opencontainers.image.version"], r"^\d+\.\d+\.\d+")

    def test_root_filesystem_is_minimal(self):
        for shell in ("bin/sh", "bin/bash", "usr/bin/sh", "usr/bin/bash", "bin/busybox", "usr/bin/apt-get"):
            self.assertFalse(os.path.lexists(os.path.join(self.mnt, shell)), shell + " must not be in the image")
        self.assertTrue(os.access(os.path.join(self.mnt, "usr/local/bin/sigil"), os.X_OK))
        with open(os.path.join(self.mnt, "etc/passwd")) as f:
            self.assertIn("sigil:x:65532:65532:", f.read())
        ca = os.path.join(self.mnt, "etc/ssl/certs/ca-certificates.crt")
        self.assertGreater(os.path.getsize(ca), 100000, "Debian's CA bundle")
        # OpenSSL's default file (what SSL_CTX_set_default_verify_paths loads) resolves inside the image.
        target = os.readlink(os.path.join(self.mnt, "usr/lib/ssl/cert.pem"))
        self.assertTrue(os.path.isfile(os.path.join(self.mnt, target.lstrip("/"))), target)
        self.assertEqual(os.stat(os.path.join(self.mnt, "tmp")).st_mode & 0o7777, 0o1777)

    def test_size(self):
        manifest, _ = self.client.get_manifest("sigil", self.digest)
        m = json.loads(manifest)
        compressed = sum(layer["size"] for layer in m["layers"])
        print("\nimage %s: %d layer(s), %.1f MiB compressed (pushed), %.1f MiB unpacked; /readyz after %.0f ms"
              % (self.ref, len(m["layers"]), compressed / 2**20, self.rootfs_bytes / 2**20, self.ready_after * 1000),
              file=sys.stderr)
        # Not a timing: a guard against the build stage leaking into the runtime image.
        self.assertLess(self.rootfs_bytes, 64 * 2**20)

    # 4. and 5. the image's sigil, at work -------------------------------------------------------

    def test_readyz_and_healthz(self):
        self.assertEqual(self.get("/readyz")[0], 200)
        self.assertEqual(self.get("/healthz")[0], 200)

    def test_admits_its_own_signed_image(self):
        resp = self.review("/validate", self.ref)
        self.assertTrue(resp["allowed"], resp)
        resp = self.review("/validate", "%s/sigil@%s" % (self.address, self.digest))
        self.assertTrue(resp["allowed"], resp)

    def test_pins_its_own_image_to_the_pushed_digest(self):
        resp = self.review("/mutate", self.ref)
        self.assertTrue(resp["allowed"], resp)
        patch = json.loads(base64.b64decode(resp["patch"]))
        values = [op.get("value") for op in patch if op["op"] == "replace"]
        self.assertIn("%s@%s" % (self.ref, self.digest), values)

    def test_denies_the_same_image_unsigned(self):
        resp = self.review("/validate", self.unsigned_ref)
        self.assertFalse(resp["allowed"], resp)
        self.assertIn("unsigned/sigil", resp["status"]["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
