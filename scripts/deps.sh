#!/usr/bin/env bash
# Installs what sigil needs to build, test, benchmark and demo on Debian 12 (as root).
# Idempotent: packages already present are skipped quickly by apt.
set -euo pipefail
PKGS=(
  cmake ninja-build ccache g++ pkg-config clang libclang-rt-14-dev clang-format
  libboost1.81-dev libboost-url1.81-dev libssl-dev nlohmann-json3-dev libsimdjson-dev libyaml-cpp-dev
  libspdlog-dev catch2 libre2-dev libcli11-dev libgoogle-perftools-dev
  docker-registry apache2-utils python3 python3-cryptography python3-cryptography-vectors python3-nacl openssl curl wrk
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev python3-yaml
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "== installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
