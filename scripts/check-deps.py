#!/usr/bin/python3
"""scripts/check-deps.py: the module rules of ARCHITECTURE.md, enforced on every include.

Every module may include its own headers, the headers of the modules the table allows, and
system/third-party headers, except that pure modules (no I/O, no clock, no Asio) may not
include networking, file or process headers, nor read the clock or the environment. The link
graph in CMake states the same table, but every module sees every header, so a forbidden
header-only include would link fine: this check is what catches it. Exit 1 with one line per
violation (file:line: what), 0 when clean. Run by scripts/test.sh.
"""
import os
import re
import sys

# module -> modules (or "module/header.hpp") it may include. Keep in step with ARCHITECTURE.md.
ALLOWED = {
    "common": set(),
    "asio": set(),
    "crypto": {"common"},
    "oci": {"common"},
    "policy": {"common", "crypto", "oci"},
    "admission": {"common", "oci"},
    "net": {"common"},
    "azure": {"common", "crypto", "net"},
    "registry": {"common", "oci", "net"},
    "kube": {"common", "net"},
    "verify": {"common", "crypto", "policy", "oci",
               "registry/client.hpp", "registry/docker_config.hpp"},
    # The server sees verification only through the Verdict and the per-admission Context
    # (sigil::verdict); app/webhook.cpp is the bridge to the engine.
    "server": {"common", "admission", "oci", "verify/verdict.hpp", "verify/context.hpp",
               "registry/docker_config.hpp"},
    "app": None,  # everything
}
PURE = {"common", "crypto", "oci", "policy", "admission"}
# Headers and calls a pure module may not use (I/O, clocks, environment, Asio).
PURE_FORBIDDEN_INCLUDES = re.compile(
    r"^(boost/asio|boost/beast|fstream|filesystem|cstdio|sys/|unistd\.h|netinet|spdlog)")
PURE_FORBIDDEN_CALLS = re.compile(
    r"\b(std::getenv|getenv\(|system_clock::now|steady_clock::now|std::ifstream|std::ofstream|"
    r"fopen\(|std::filesystem)\b")
# Files of a pure module allowed one of the above, with the reason.
PURE_EXCEPTIONS = {
    "common/clock.hpp": "the Clock interface's system implementation lives here",
}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def modules_root(repo):
    for cand in (repo, os.path.join(repo, "src")):
        if os.path.isdir(os.path.join(cand, "common")) and os.path.isdir(
                os.path.join(cand, "verify")):
            return cand
    sys.exit("check-deps: no module tree under %s" % repo)


def strip_comments(line):
    return line.split("//", 1)[0]


def main():
    repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    root = modules_root(repo)
    problems = []
    for module, allowed in ALLOWED.items():
        mdir = os.path.join(root, module)
        if not os.path.isdir(mdir):
            continue
        for dirpath, _, files in os.walk(mdir):
            for name in sorted(files):
                if not name.endswith((".hpp", ".cpp", ".h", ".cpp.in")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as f:
                    lines = f.readlines()
                for n, line in enumerate(lines, 1):
                    m = INCLUDE.match(line)
                    where = "%s:%d" % (os.path.relpath(path, repo), n)
                    if m:
                        kind, inc = m.groups()
                        top = inc.split("/", 1)[0]
                        if kind == '"' and "/" in inc and top in ALLOWED:
                            if top != module and allowed is not None and \
                                    top not in allowed and inc not in allowed:
                                problems.append("%s: module %s may not include \"%s\"" %
                                                (where, module, inc))
                        if module in PURE and PURE_FORBIDDEN_INCLUDES.match(inc) and \
                                rel not in PURE_EXCEPTIONS:
                            problems.append("%s: pure module %s includes <%s> (I/O, Asio or "
                                            "logging)" % (where, module, inc))
                        continue
                    code = strip_comments(line)
                    if module in PURE and rel not in PURE_EXCEPTIONS and \
                            PURE_FORBIDDEN_CALLS.search(code):
                        problems.append("%s: pure module %s reads the clock, a file or the "
                                        "environment: %s" % (where, module, code.strip()))
    for p in problems:
        print(p)
    if problems:
        print("check-deps: %d violation(s) of ARCHITECTURE.md's module rules" % len(problems))
        return 1
    print("check-deps: every include follows ARCHITECTURE.md's module table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
