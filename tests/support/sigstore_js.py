"""sigstore-js for sigil's tests: the independent producer (sigstore-js/sign.js) and verifier
(sigstore-js/verify.js), run with Node.

install() puts the versions pinned in sigstore-js/package-lock.json into a cache directory next
to the test work directory ($SIGIL_WORK_DIR/../node/sigstore-js-<hash of the lock>; without
SIGIL_WORK_DIR under the system temp directory) with `npm ci --no-audit --no-fund`, once per
lock file and machine, and runs the scripts from the repository with NODE_PATH pointing there.
Without node/npm (Node >= 20.17), or when npm cannot reach its registry, it raises
unittest.SkipTest saying so. Only `npm ci` touches the network; the scripts use 127.0.0.1 only.

  sign(out_dir, image_digests, blobs, ...)        -> sign.js's JSON summary (bundles, trusted root)
  verify_bundle(bundle, trusted_root, target, ...) -> Verdict
  verify_legacy(registry, repo, digest, trusted_root, ...) / verify_referrers(...) -> Verdict
Policy keywords: key=PEM path | identity=..., issuer=... | any_identity=True; predicate_type,
tlog_threshold, timestamp_threshold, ctlog_threshold (see verify.js).
"""
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import unittest

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sigstore-js")
MIN_NODE = (20, 17)
INSTALL_TIMEOUT = 200  # within the ctest TIMEOUT of the modules that use it (300 s)

_modules = None
_unavailable = None  # why install() skipped, so later callers skip at once


def cache_root():
    work = os.environ.get("SIGIL_WORK_DIR")
    if work:
        return os.path.join(os.path.dirname(os.path.abspath(work)), "node")
    return os.path.join(tempfile.gettempdir(), "sigil-node")


def _node_version(node):
    r = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    try:
        return tuple(int(x) for x in r.stdout.strip().lstrip("v").split(".")[:2])
    except ValueError:
        return (0, 0)


@contextlib.contextmanager
def _locked(path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install():
    """The node_modules directory with the pinned packages (installed on first use)."""
    global _modules, _unavailable
    if _modules:
        return _modules
    if _unavailable:
        raise unittest.SkipTest(_unavailable)
    try:
        _modules = _install()
    except unittest.SkipTest as e:
        _unavailable = str(e)
        raise
    return _modules


def _install():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise unittest.SkipTest("node and npm are not installed: no sigstore-js cross-check "
                                "(apt-get install nodejs npm)")
    if _node_version(node) < MIN_NODE:
        raise unittest.SkipTest("node %s is too old for the pinned sigstore-js (needs >= %d.%d)"
                                % (".".join(map(str, _node_version(node))), *MIN_NODE))
    files = ("package.json", "package-lock.json")
    h = hashlib.sha256()
    for f in files:
        with open(os.path.join(JS_DIR, f), "rb") as fh:
            h.update(fh.read())
    root = cache_root()
    dest = os.path.join(root, "sigstore-js-" + h.hexdigest()[:12])
    marker = os.path.join(dest, "node_modules", ".sigil-installed")
    os.makedirs(root, exist_ok=True)
    with _locked(os.path.join(root, ".install.lock")):
        if not os.path.exists(marker):
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest)
            for f in files:
                shutil.copyfile(os.path.join(JS_DIR, f), os.path.join(dest, f))
            try:
                r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=dest,
                                   capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                                   stdin=subprocess.DEVNULL)
                failed = r.returncode != 0 and (r.stdout + r.stderr)[-2000:]
            except subprocess.TimeoutExpired:
                failed = "npm ci ran longer than %d s" % INSTALL_TIMEOUT
            if failed:
                raise unittest.SkipTest("npm ci could not install the pinned sigstore-js "
                                        "packages (is the npm registry reachable?):\n" + failed)
            open(marker, "w").close()
    return os.path.join(dest, "node_modules")


def run(script, args, timeout=120):
    """Runs sigstore-js/SCRIPT with the pinned packages; returns the CompletedProcess (text)."""
    env = dict(os.environ, NODE_PATH=install())
    return subprocess.run(["node", os.path.join(JS_DIR, script)] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def sign(out_dir, image_digests=(), blobs=(), identity=None, issuer=None, tsa=False, tlog=True,
         predicate_type=None):
    """Signs with the real sigstore-js signer against @sigstore/mock services (sign.js);
    predicate_type: attest image digests with that in-toto predicate instead of cosign's sign."""
    args = ["--out", out_dir]
    for d in image_digests:
        args += ["--image-digest", d]
    for b in blobs:
        args += ["--blob", b]
    if identity:
        args += ["--identity", identity]
    if issuer:
        args += ["--issuer", issuer]
    if tsa:
        args.append("--tsa")
    if not tlog:
        args.append("--no-tlog")
    if predicate_type:
        args += ["--predicate-type", predicate_type]
    r = run("sign.js", args)
    if r.returncode != 0:
        raise AssertionError("sign.js failed:\n" + r.stdout + r.stderr)
    return json.loads(r.stdout)


class Verdict:
    """verify.js's answer: ok (exit 0), code (0 verified, 1 rejected, 3 not judgeable), output."""

    def __init__(self, proc):
        self.code = proc.returncode
        self.ok = proc.returncode == 0
        self.output = (proc.stdout + proc.stderr).strip()

    def __repr__(self):
        return "Verdict(code=%d, %r)" % (self.code, self.output)


def _policy(trusted_root, key=None, identity=None, issuer=None, any_identity=False,
            predicate_type=None, tlog_threshold=None, timestamp_threshold=None,
            ctlog_threshold=None):
    args = ["--trusted-root", trusted_root]
    for flag, value in (("--key", key), ("--certificate-identity", identity),
                        ("--certificate-oidc-issuer", issuer),
                        ("--predicate-type", predicate_type),
                        ("--tlog-threshold", tlog_threshold),
                        ("--timestamp-threshold", timestamp_threshold),
                        ("--ctlog-threshold", ctlog_threshold)):
        if value is not None:
            args += [flag, str(value)]
    if any_identity:
        args.append("--any-identity")
    return args


def _verify(args):
    r = run("verify.js", args)
    if r.returncode == 2:
        raise AssertionError("verify.js usage error: %s\n%s" % (" ".join(args), r.stdout))
    return Verdict(r)


def verify_bundle(bundle, trusted_root, target, **policy):
    """bundle: path or bytes; target: the artifact's path or 'sha256:<hex>'."""
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        if isinstance(bundle, bytes):
            path = os.path.join(tmp, "bundle.json")
            with open(path, "wb") as f:
                f.write(bundle)
            bundle = path
        return _verify(["bundle", "--bundle", bundle] + _policy(trusted_root, **policy) +
                       [target])


def verify_legacy(registry, repo, digest, trusted_root, **policy):
    return _verify(["legacy", "--registry", registry, "--repo", repo, "--digest", digest] +
                   _policy(trusted_root, **policy))


def verify_referrers(registry, repo, digest, trusted_root, **policy):
    return _verify(["referrers", "--registry", registry, "--repo", repo, "--digest", digest] +
                   _policy(trusted_root, **policy))
