#!/usr/bin/env bash
# The smoke test's PXE "installer" and the UEFI nodes' local disk, from what
# scripts/build-image.sh keeps in $OUT_DIR/installer:
#   initrd.gz     a busybox initrd whose init does what a kickstart's last line does (call the
#                 headnode's /boot-default/), reports whether Secure Boot was on, and reboots
#   vmlinuz-bad   the image's Debian-signed kernel with one byte changed: its signature no
#                 longer matches, so a Secure Boot chain must refuse it
#   esp.raw       a GPT disk whose EFI system partition boots the signed shim and GRUB from the
#                 removable-media path, and says so: a UEFI node's "local disk"
set -euo pipefail
OUT_DIR=${OUT_DIR:-/var/lib/mkheadnode/base}
HERE=$(cd "$(dirname "$0")" && pwd)
# The installer's /init: beside this script where the Debian package installs both
# (/usr/share/mkheadnode), under tests/smoke/ in the source tree.
INIT=$HERE/installer-init
[ -f "$INIT" ] || INIT=$HERE/../tests/smoke/installer-init
SRC=$OUT_DIR/installer
for f in vmlinuz shimx64.efi grubx64.efi; do
  [ -f "$SRC/$f" ] || { echo "no $SRC/$f: run $HERE/build-image.sh first" >&2; exit 1; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK"/initrd/{bin,proc,sys,dev,etc,lib/modules}
cp /bin/busybox "$WORK/initrd/bin/busybox"
cp "$SRC"/modules/* "$WORK/initrd/lib/modules/" 2>/dev/null || true
install -m 0755 "$INIT" "$WORK/initrd/init"
(cd "$WORK/initrd" && find . | cpio --quiet -o -H newc | gzip -9) > "$SRC/initrd.gz.tmp"
mv "$SRC/initrd.gz.tmp" "$SRC/initrd.gz"
echo "==> installer initrd: $SRC/initrd.gz ($(du -h "$SRC/initrd.gz" | cut -f1))"

# One byte in the middle of the compressed kernel: the image still looks like a kernel to GRUB,
# but its Authenticode hash no longer matches the signature.
cp "$SRC/vmlinuz" "$SRC/vmlinuz-bad.tmp"
size=$(stat -c %s "$SRC/vmlinuz-bad.tmp")
printf '\xa5' | dd of="$SRC/vmlinuz-bad.tmp" bs=1 seek=$((size / 2)) conv=notrunc status=none
cmp -s "$SRC/vmlinuz" "$SRC/vmlinuz-bad.tmp" && { echo "vmlinuz-bad is unchanged" >&2; exit 1; }
mv "$SRC/vmlinuz-bad.tmp" "$SRC/vmlinuz-bad"

# 34 MiB: a 32 MiB FAT partition at 1 MiB, and room for GPT's backup header at the end.
ESP=$WORK/esp.raw
truncate -s 34M "$ESP"
printf 'label: gpt\nstart=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system"\n' |
  sfdisk --quiet "$ESP"
mkfs.vfat --offset 2048 -n ESP "$ESP" 32768 >/dev/null 2>&1
cat > "$WORK/local-grub.cfg" <<'CFG'
echo "smoke: booted from the local disk"
sleep 1
halt
CFG
mmd -i "$ESP@@1M" ::/EFI ::/EFI/BOOT
mcopy -i "$ESP@@1M" "$SRC/shimx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$ESP@@1M" "$SRC/grubx64.efi" ::/EFI/BOOT/grubx64.efi
mcopy -i "$ESP@@1M" "$WORK/local-grub.cfg" ::/EFI/BOOT/grub.cfg
mv "$ESP" "$SRC/esp.raw"
echo "==> UEFI local disk: $SRC/esp.raw"
