#!/usr/bin/env bash
# Lays out the root filesystem of sigil's container image (the Dockerfile's last stage copies it
# onto `scratch`): exactly what the binary needs at run time, nothing else (no shell, no package
# manager, no libc tools).
#   usr/local/bin/sigil                  the binary, stripped of debug information
#   the shared libraries it loads        found with ldd, each at its directory's real path, plus the
#                                        dynamic loader, and the /lib, /lib64 symlinks of the build
#                                        system (Debian 12 is merged-/usr)
#   etc/ssl/certs/ca-certificates.crt    Debian's CA bundle (public registries over TLS), also at
#                                        OpenSSL's default paths /usr/lib/ssl/{cert.pem,certs}
#   etc/passwd, etc/group                root and sigil (65532, the image's USER), no login shell
#   etc/nsswitch.conf                    hosts: files dns (glibc >= 2.34 has both built in)
#   tmp/                                 1777 (Kubernetes mounts an emptyDir there)
#
#   scripts/image-rootfs.sh BINARY OUT_DIR
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY OUT_DIR" >&2; exit 2; }
BIN="$1"
OUT="$2"
[ -x "$BIN" ] || { echo "image-rootfs.sh: $BIN is not an executable" >&2; exit 1; }
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -s "$CA_BUNDLE" ] || { echo "image-rootfs.sh: $CA_BUNDLE missing (apt-get install ca-certificates)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/usr/local/bin" "$OUT/etc/ssl/certs" "$OUT/usr/lib/ssl" "$OUT/tmp"
chmod 1777 "$OUT/tmp"
# Merged /usr: keep the build system's top-level symlinks (/lib -> usr/lib, ...), so the loader's
# path (PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2) and ldd's paths resolve the same way.
for l in /bin /sbin /lib /lib32 /lib64 /libx32; do
  if [ -L "$l" ]; then
    target="$(readlink "$l")"
    mkdir -p "$OUT/$(dirname "$l")"
    # Only library directories: the image has no /bin or /sbin content to point at.
    case "$l" in /lib*) ln -s "$target" "$OUT$l"; mkdir -p "$OUT/${target#/}" ;; esac
  fi
done

install -m 0755 "$BIN" "$OUT/usr/local/bin/sigil"
strip --strip-debug --strip-unneeded "$OUT/usr/local/bin/sigil"

# Every shared object ldd reports ("name => /path (addr)" or "/path (addr)" for the loader),
# copied (symlinks followed) under its soname path, in its directory's real location.
libs="$(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"
if ldd "$BIN" | grep -q "not found"; then
  echo "image-rootfs.sh: unresolved libraries:" >&2
  ldd "$BIN" | grep "not found" >&2
  exit 1
fi
[ -n "$libs" ] || { echo "image-rootfs.sh: ldd found no libraries (static binary?)" >&2; exit 1; }
for lib in $libs; do
  dir="$(realpath "$(dirname "$lib")")"
  mkdir -p "$OUT$dir"
  cp -L "$lib" "$OUT$dir/$(basename "$lib")"
  chmod 0755 "$OUT$dir/$(basename "$lib")"
done

install -m 0644 "$CA_BUNDLE" "$OUT/etc/ssl/certs/ca-certificates.crt"
ln -s /etc/ssl/certs/ca-certificates.crt "$OUT/usr/lib/ssl/cert.pem"
ln -s /etc/ssl/certs "$OUT/usr/lib/ssl/certs"

cat >"$OUT/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
sigil:x:65532:65532:sigil:/nonexistent:/sbin/nologin
PASSWD
cat >"$OUT/etc/group" <<'GROUP'
root:x:0:
sigil:x:65532:
GROUP
echo "hosts: files dns" >"$OUT/etc/nsswitch.conf"
chmod 0644 "$OUT/etc/passwd" "$OUT/etc/group" "$OUT/etc/nsswitch.conf"

# Library directories the binary does not use (e.g. /lib32 on amd64) go again.
for l in "$OUT"/lib*; do
  if [ -L "$l" ] && [ -z "$(ls -A "$OUT/$(readlink "$l" | sed 's,^/,,')" 2>/dev/null)" ]; then
    rmdir "$OUT/$(readlink "$l" | sed 's,^/,,')" 2>/dev/null || true
    rm "$l"
  fi
done

echo "image-rootfs.sh: $(find "$OUT" -type f | wc -l) files, $(du -sk "$OUT" | cut -f1) KiB in $OUT" >&2
