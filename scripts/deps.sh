#!/usr/bin/env bash
# Installs what sigil needs on Debian 12 (as root). Idempotent: packages already present are
# skipped quickly by apt.
#   scripts/deps.sh          everything: build, test, benchmark and demo (what scripts/test.sh uses)
#   scripts/deps.sh build    only what building the `sigil` binary needs (the Dockerfile's build stage)
#   scripts/deps.sh image    what scripts/test-image.sh needs besides `build`: buildah, debootstrap,
#                            the registry and the test signer
set -euo pipefail
BUILD=(
  cmake ninja-build ccache g++ lld pkg-config ca-certificates
  libboost1.81-dev libboost-url1.81-dev libssl-dev nlohmann-json3-dev libsimdjson-dev libyaml-cpp-dev
  libspdlog-dev libre2-dev libc-ares-dev libcli11-dev libgoogle-perftools-dev prometheus-cpp-dev
)
IMAGE=(buildah debootstrap docker-registry python3 python3-cryptography curl)
case "${1:-all}" in
  build) PKGS=("${BUILD[@]}") ;;
  image) PKGS=("${IMAGE[@]}") ;;
  all)
    PKGS=(
      "${BUILD[@]}" clang libclang-rt-14-dev clang-format catch2
      docker-registry apache2-utils python3 python3-cryptography python3-cryptography-vectors python3-nacl openssl curl wrk
      golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev python3-yaml
    )
    ;;
  *) echo "usage: $0 [all|build|image]" >&2; exit 2 ;;
esac
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
