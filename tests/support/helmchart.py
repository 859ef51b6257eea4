"""The Helm chart rendered for real: builds tests/support/helmrender (Go, GOPATH mode, Debian's
sprig and yaml.v3; no network) and runs it. Used by tests/deploy/test_chart.py (the render
checked as objects) and tests/integration/e2e/test_chart_serve.py (the render run)."""

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "sigil")
GOPATH = "/usr/share/gocode"
SPRIG = os.path.join(GOPATH, "src", "github.com", "Masterminds", "sprig")
YAML3 = os.path.join(GOPATH, "src", "gopkg.in", "yaml.v3")
INSTALL_HINT = ("scripts/deps.sh installs golang-go golang-github-masterminds-sprig-dev "
                "golang-gopkg-yaml.v3-dev python3-yaml")


def missing():
    """Why the renderer cannot be built here, or None."""
    if not shutil.which("go"):
        return "go is not installed"
    if not os.path.isdir(SPRIG) or not os.path.isdir(YAML3):
        return "sprig or yaml.v3 is missing under %s" % GOPATH
    return None


def build_renderer(tmp):
    """Builds helmrender into the directory tmp; returns its path."""
    out = os.path.join(tmp, "helmrender")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="")
    if not env.get("GOCACHE") and not env.get("HOME") and not env.get("XDG_CACHE_HOME"):
        env["GOCACHE"] = os.path.join(tmp, "gocache")
    r = subprocess.run(["go", "build", "-o", out, "./tests/support/helmrender"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("building helmrender failed:\n" + r.stdout + r.stderr)
    return out
