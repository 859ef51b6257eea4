#!/usr/bin/env bash
# Refreshes data/sigstore/trusted_root.public-good.json, the sigstore public-good trust root
# compiled into sigil (keyless policies without trustRootRef and without --trusted-root use it).
#
#   scripts/refresh-trusted-root.sh          # TUF update from https://tuf-repo-cdn.sigstore.dev,
#                                            # every metadata signature checked by @sigstore/tuf,
#                                            # starting from the root.json pinned in that package
#   scripts/refresh-trusted-root.sh --seed   # offline: the trusted_root.json that the pinned
#                                            # @sigstore/tuf package itself ships (seeds.json)
#
# Needs node and npm (the npm registry). Review the diff before committing: a new root changes
# what sigil trusts. sigil itself never fetches anything at runtime.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/data/sigstore/trusted_root.public-good.json"
TUF_VERSION="${TUF_VERSION:-4.0.2}"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
cd "$W"
npm install --no-audit --no-fund --silent "@sigstore/tuf@$TUF_VERSION" >/dev/null
if [ "${1:-}" = "--seed" ]; then
  node -e '
    const fs = require("fs");
    const seeds = require("@sigstore/tuf/seeds.json");
    const mirror = Object.keys(seeds)[0];
    process.stdout.write(Buffer.from(seeds[mirror].targets["trusted_root.json"], "base64"));
  ' > "$W/trusted_root.json"
else
  node -e '
    const { getTrustedRoot } = require("@sigstore/tuf");
    getTrustedRoot({ cachePath: process.argv[1] + "/tuf-cache", forceCache: false })
      .then((root) => process.stdout.write(JSON.stringify(root, null, 2) + "\n"))
      .catch((e) => { console.error("TUF update failed: " + e.message); process.exit(1); });
  ' "$W" > "$W/trusted_root.json"
fi
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1]));
  if (!r.certificateAuthorities || !r.tlogs) { console.error("not a trusted root"); process.exit(1); }' \
  "$W/trusted_root.json"
cp "$W/trusted_root.json" "$OUT"
echo "wrote $OUT ($(sha256sum "$OUT" | cut -c1-16)…); rebuild sigil to compile it in"
