#!/usr/bin/env bash
# The smoke test's PXE "installer": the image's kernel and a busybox initrd whose init does
# what a kickstart's last line does (call the headnode's /boot-default/) and reboots.
# Needs the kernel and modules that scripts/build-image.sh keeps in $OUT_DIR/installer.
set -euo pipefail
OUT_DIR=${OUT_DIR:-/var/lib/mkheadnode/base}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$OUT_DIR/installer
[ -f "$SRC/vmlinuz" ] || { echo "no $SRC/vmlinuz: run scripts/build-image.sh first" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"/{bin,proc,sys,dev,etc,lib/modules}
cp /bin/busybox "$WORK/bin/busybox"
cp "$SRC"/modules/* "$WORK/lib/modules/" 2>/dev/null || true
install -m 0755 "$HERE/../tests/smoke/installer-init" "$WORK/init"
(cd "$WORK" && find . | cpio --quiet -o -H newc | gzip -9) > "$SRC/initrd.gz.tmp"
mv "$SRC/initrd.gz.tmp" "$SRC/initrd.gz"
echo "==> installer initrd: $SRC/initrd.gz ($(du -h "$SRC/initrd.gz" | cut -f1))"
