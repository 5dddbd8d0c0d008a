#!/usr/bin/env bash
# Build the test/demo base image offline from Debian's archive (no libguestfs, no downloads
# from anywhere else): Debian 12 with linux-image-amd64 (the cloud kernel lacks 9p), cloud-init
# and the headnode's PXE stack pre-installed, so the guest configures itself with no network.
#
# Also keeps that kernel (Debian-signed, so it boots under Secure Boot), its virtio NIC modules,
# and the signed shim and disk GRUB for the smoke test's PXE "installer" and its UEFI nodes'
# local disk (scripts/build-installer.sh).
#
# Output (outside the repo's tracked files) in $OUT_DIR:
#   debian-12-headnode.qcow2   the base image
#   installer/vmlinuz, installer/modules/, installer/shimx64.efi, installer/grubx64.efi
#   recipe.sha256              cache key: the image is rebuilt only when this recipe (this
#                              script, what it takes from beside itself, the early set-up) changes
#
# EARLY_BIN is the image's early set-up, a static program: `make early` builds it from
# image-early/ in the source tree (the Makefile's `image` passes it); the Debian package installs
# it at /usr/lib/mkheadnode/mkheadnode-early, the default.
set -euo pipefail

OUT_DIR=${OUT_DIR:-/var/lib/mkheadnode/base}
HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=$OUT_DIR/debian-12-headnode.qcow2
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# The UEFI chain that the headnode serves comes from Debian's current release: its signed network
# GRUB (2.12) can fetch over HTTP, which Debian 12's (2.06) cannot, so UEFI nodes load kernels
# and initrds from nginx and UEFI HTTP Boot works. Only the two signed EFI binaries are taken
# (Debian's own, signed by Microsoft and Debian), beside the suite's packaged ones.
EFI_SUITE=${EFI_SUITE:-trixie}
EARLY_BIN=${EARLY_BIN:-/usr/lib/mkheadnode/mkheadnode-early}
if [ ! -x "$EARLY_BIN" ]; then
  echo "build-image.sh: the early set-up $EARLY_BIN is missing: in the source tree \`make early\`" \
    "builds it (or run \`make image\`), else set EARLY_BIN to it" >&2
  exit 1
fi


PACKAGES=(
  linux-image-amd64 systemd-sysv udev dbus kmod locales sudo
  cloud-init ifupdown isc-dhcp-client iproute2 openssh-server qemu-guest-agent
  isc-dhcp-server tftpd-hpa pxelinux syslinux-common nginx-light fcgiwrap python3
  iptables iptables-persistent ipmitool extlinux
  # UEFI and Secure Boot clients: Microsoft-signed shim -> Debian-signed network GRUB
  shim-signed grub-efi-amd64-signed
)

# The seed's unit files and drop-ins that carry nothing of a VLAN's, which the image carries
# too (see "the PXE services" below): image-units/ is the seed's own cloud-init/files/ (a link in
# the source tree, a copy in the Debian package). Each is "source:path in the image".
UNITS=(
  "$HERE/image-units/dhcpd-unit.conf:/etc/systemd/system/isc-dhcp-server.service.d/mkheadnode.conf"
  "$HERE/image-units/tftpd-unit.conf:/etc/systemd/system/tftpd-hpa.service.d/mkheadnode.conf"
  "$HERE/image-units/nginx-unit.conf:/etc/systemd/system/nginx.service.d/mkheadnode.conf"
  "$HERE/image-units/fcgiwrap-unit.conf:/etc/systemd/system/fcgiwrap.service.d/mkheadnode.conf"
  "$HERE/image-units/etc-moc.mount:/etc/systemd/system/etc-moc.mount"
  "$HERE/image-units/mkheadnode-moc-failed.service:/etc/systemd/system/mkheadnode-moc-failed.service"
  "$HERE/image-units/mkheadnode-profiles.service:/etc/systemd/system/mkheadnode-profiles.service"
)
# Where the seed's set-up opens the gate on the PXE services (SERVING_GATE in src/render/seed.rs).
SERVING_GATE=/var/lib/mkheadnode/serving

key=$(cat "$0" "$HERE"/image-firewall/rules.v4 "$HERE"/image-firewall/rules.v6 \
  "$EARLY_BIN" "$HERE"/image-early/mkheadnode-early.service \
  "$HERE"/image-early/modules-load.conf "${UNITS[@]%%:*}" | sha256sum | cut -d' ' -f1)
if [ -f "$IMAGE" ] && [ -f "$OUT_DIR/installer/vmlinuz" ] && [ "$(cat "$OUT_DIR/recipe.sha256" 2>/dev/null)" = "$key" ]; then
  echo "==> image cache hit: $IMAGE ($(du -h "$IMAGE" | cut -f1))"
  exit 0
fi

t0=$(date +%s)
stage() { echo "==> [$(( $(date +%s) - t0 ))s] $*"; }
WORK=$(mktemp -d /var/tmp/mkheadnode-image.XXXXXX)
MNT=""
cleanup() {
  [ -n "$MNT" ] && mountpoint -q "$MNT" && umount "$MNT"
  rm -rf "$WORK"
}
trap cleanup EXIT
ROOT=$WORK/rootfs

stage "mmdebstrap $SUITE (${#PACKAGES[@]} packages)"
include=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --quiet --variant=minbase --mode=root --include="$include" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  "$SUITE" "$ROOT" "$MIRROR"

stage "the UEFI chain from $EFI_SUITE: shim-signed and grub-efi-amd64-signed"
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/archives/partial" "$WORK/efi"
echo "deb $MIRROR $EFI_SUITE main" > "$WORK/apt/sources.list"
apt_efi=(-o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache::Archives=$WORK/apt/archives"
  -o APT::Sandbox::User=root)
apt-get "${apt_efi[@]}" update -qq
(cd "$WORK/efi" && apt-get "${apt_efi[@]}" download -qq shim-signed grub-efi-amd64-signed)
EFI=$ROOT/usr/local/lib/mkheadnode/efi
mkdir -p "$EFI"
for deb in "$WORK"/efi/*.deb; do
  dpkg-deb -x "$deb" "$WORK/efi/x"
  dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb" >> "$EFI/VERSIONS"
done
install -m 0644 "$WORK/efi/x/usr/lib/shim/shimx64.efi.signed" "$EFI/shimx64.efi.signed"
install -m 0644 "$WORK/efi/x/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" "$EFI/grubnetx64.efi.signed"
cat "$EFI/VERSIONS"

stage "configuring the root filesystem"
# The firewall, in force from the first boot: netfilter-persistent loads it before
# network-pre.target, so before any interface is up or any service listens, until the seed's
# set-up loads the headnode's own rules (which it also writes here, for the boots after).
# This replaces whatever iptables-persistent saved from the build machine when it was installed.
install -m 0640 "$HERE/image-firewall/rules.v4" "$ROOT/etc/iptables/rules.v4"
install -m 0640 "$HERE/image-firewall/rules.v6" "$ROOT/etc/iptables/rules.v6"
chroot "$ROOT" systemctl enable -q netfilter-persistent
echo "headnode" > "$ROOT/etc/hostname"
: > "$ROOT/etc/machine-id"
rm -f "$ROOT"/etc/ssh/ssh_host_*
# No fsck at boot (pass 0): it sat first on the way to the set-up (1.5 s under TCG) and only ever
# finds the disk clean; ext4 replays its journal after a crash at mount, and a headnode's disk is
# a throwaway overlay that `mkheadnode rebuild` makes anew.
echo "/dev/vda1 / ext4 defaults,errors=remount-ro 0 0" > "$ROOT/etc/fstab"
echo "en_US.UTF-8 UTF-8" > "$ROOT/etc/locale.gen"
chroot "$ROOT" locale-gen >/dev/null
echo 'LANG=en_US.UTF-8' > "$ROOT/etc/default/locale"
# Only NoCloud (the seed) and None: no probing of cloud metadata services at boot. The image
# boots with extlinux, so cloud-init's grub-dpkg step (~1 s under TCG) has nothing to do.
cat > "$ROOT/etc/cloud/cloud.cfg.d/90-mkheadnode.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
grub_dpkg:
  enabled: false
CFG
# cloud-init's systemd generator runs ds-identify, a shell script that probes every block device
# and DMI for a datasource (~1 s under TCG, while systemd waits for its generators). This image
# always has cloud-init on with NoCloud, which finds the seed itself.
echo "policy: enabled" > "$ROOT/etc/cloud/ds-identify.cfg"
# Nor does it need cloud-init's generator at all (a shell script: 1.3 s under TCG at every boot
# and every daemon-reload), which only decides whether cloud-init runs: here it always does, so
# cloud-init.target is wanted statically, as the generator would have it. (So the kernel's
# `cloud-init=disabled` and /etc/cloud/cloud-init.disabled do not apply to this image.)
mkdir -p "$ROOT/etc/systemd/system-generators"
ln -sf /dev/null "$ROOT/etc/systemd/system-generators/cloud-init-generator"
ln -sf /lib/systemd/system/cloud-init.target "$ROOT/etc/systemd/system/multi-user.target.wants/cloud-init.target"
# The PXE services stay enabled as their packages left them, behind a gate: nothing serves before
# the seed's set-up has written their configuration and loaded the firewall, and then opens it
# ($SERVING_GATE). Masking them instead would have the set-up unmask them and reload systemd,
# seconds under TCG. The image also carries the seed's unit files and drop-ins that are the same
# for every headnode, enabled, so that systemd has read them at boot: the early set-up leaves a
# file that is already there as it is, and the set-up reloads systemd only if one changed.
for unit in isc-dhcp-server.service tftpd-hpa.service nginx.service fcgiwrap.socket \
  fcgiwrap.service mkheadnode-profiles.service; do
  mkdir -p "$ROOT/etc/systemd/system/$unit.d"
  printf '# mkheadnode image: starts only once the seed has set the headnode up.\n[Unit]\nConditionPathExists=%s\n' \
    "$SERVING_GATE" > "$ROOT/etc/systemd/system/$unit.d/mkheadnode-gate.conf"
done
for unit in "${UNITS[@]}"; do
  install -D -m 0644 "${unit%%:*}" "$ROOT${unit#*:}"
done
chroot "$ROOT" systemctl enable -q etc-moc.mount mkheadnode-profiles.service
# nginx serves the seed's site only (linked ahead of the seed, which writes it): its default
# site answers on every address.
rm -f "$ROOT/etc/nginx/sites-enabled/default"
ln -sf /etc/nginx/sites-available/mkheadnode "$ROOT/etc/nginx/sites-enabled/mkheadnode"
# Nothing that timers would run during a short-lived test VM, and no e2scrub (it checks LVM
# snapshots; there are none) competing with first boot.
rm -f "$ROOT"/etc/systemd/system/timers.target.wants/*
chroot "$ROOT" systemctl disable -q e2scrub_reap.service
# Drivers for what a headnode VM never uses, loaded by udev at every boot otherwise: KVM inside
# the guest, a floppy drive, the PC speaker, the chipset's IDE and SMBus (its disks and seed are
# virtio), CPU frequency scaling, a PS/2 mouse. Each costs a signature check under TCG.
cat > "$ROOT/etc/modprobe.d/mkheadnode-image.conf" <<'CFG'
blacklist kvm_amd
blacklist kvm_intel
blacklist floppy
blacklist pcspkr
blacklist ata_piix
blacklist ata_generic
blacklist i2c_piix4
blacklist powernow_k8
blacklist acpi_cpufreq
blacklist psmouse
blacklist serio_raw
CFG
# Early units for what a headnode never uses: binary formats, hugepages, POSIX message queues,
# debugfs and tracefs, the DRM module systemd-logind asks for (there is no display), and the
# modules systemd loads ahead for device mapper, loop devices, FUSE and EFI's pstore (none of
# which a headnode has; the kernel still loads them on demand).
chroot "$ROOT" systemctl mask -q systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  modprobe@drm.service modprobe@dm_mod.service modprobe@loop.service modprobe@fuse.service \
  modprobe@efi_pstore.service sys-fs-fuse-connections.mount
# systemd's generators for what a headnode VM has none of (encrypted, integrity or verity
# volumes, hibernation, GPT auto-discovery, an rc.local, offline updates, units run from the
# kernel's command line): each is a process at every boot and every daemon-reload, ~2 s of a
# reload in all under TCG. The debug generator stays (systemd.mask=, systemd.debug_shell for a
# rescue from the console).
mkdir -p "$ROOT/etc/systemd/system-generators"
for g in cryptsetup integritysetup veritysetup hibernate-resume gpt-auto rc-local system-update \
  run; do
  ln -sf /dev/null "$ROOT/etc/systemd/system-generators/systemd-$g-generator"
done
# The first boot's set-up straight from the seed, before cloud-init (image-early/src/main.rs in
# the source tree says how and when), and the modules the firewall, the config share and the
# seed need, loaded in one go early at boot.
install -D -m 0755 "$EARLY_BIN" "$ROOT/usr/local/lib/mkheadnode/mkheadnode-early"
install -m 0644 "$HERE/image-early/mkheadnode-early.service" "$ROOT/etc/systemd/system/mkheadnode-early.service"
chroot "$ROOT" systemctl enable -q mkheadnode-early.service
install -m 0644 "$HERE/image-early/modules-load.conf" "$ROOT/etc/modules-load.d/mkheadnode-image.conf"
# cloud-init's config and final stages wait for the seed's set-up (a unit its init stage starts):
# they have nothing the PXE stack needs, and under TCG they would take CPU from it.
for stage in cloud-config cloud-final; do
  mkdir -p "$ROOT/etc/systemd/system/$stage.service.d"
  printf '[Unit]\nAfter=mkheadnode-setup.service\n' > "$ROOT/etc/systemd/system/$stage.service.d/mkheadnode.conf"
done
# An initramfs with only what mounting the root disk needs (virtio-blk, ext4): ~35 MB of every
# driver is slow to load and unpack under TCG, and its udev probes them all. Nor does it need
# udev (~2 s under TCG): the kernel's devtmpfs makes /dev/vda1 when virtio-blk loads. udev's
# initramfs parts are diverted out of initramfs-tools' folders (which it runs and copies whole),
# so that an upgrade of udev does not bring them back.
echo MODULES=list > "$ROOT/etc/initramfs-tools/conf.d/mkheadnode"
mkdir -p "$ROOT/usr/share/mkheadnode-image/initramfs-off"
for f in hooks/udev scripts/init-top/udev scripts/init-bottom/udev; do
  chroot "$ROOT" dpkg-divert --quiet --local --rename \
    --divert "/usr/share/mkheadnode-image/initramfs-off/${f//\//-}" --add "/usr/share/initramfs-tools/$f"
done
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >> "$ROOT/etc/initramfs-tools/modules"
chroot "$ROOT" update-initramfs -u -k all >/dev/null
kver=$(basename "$(ls -d "$ROOT"/lib/modules/*)")
mkdir -p "$ROOT/boot/extlinux"
# acpi=noirq: legacy PCI interrupts are routed by the firmware's PIR table rather than by ACPI's
# link devices, whose AML took ~0.4 s each under TCG while the initramfs loaded virtio_pci (1.6 s
# for the four). The virtio devices interrupt through MSI-X either way.
# cryptomgr.notests: no self-test of each crypto algorithm as the kernel registers it (~0.4 s of
# emulated hashing and ciphers at every boot); they check the kernel's own implementations, the
# same on every boot of this image.
cat > "$ROOT/boot/extlinux/extlinux.conf" <<CFG
DEFAULT linux
TIMEOUT 0
PROMPT 0
LABEL linux
  LINUX /boot/vmlinuz-$kver
  INITRD /boot/initrd.img-$kver
  APPEND root=/dev/vda1 ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 acpi=noirq cryptomgr.notests
CFG

# systemd's "needs update" units (ConditionNeedsUpdate: system users, the hardware database,
# the journal's catalog, ldconfig) run at a boot where /usr is newer than /etc/.updated and
# /var/.updated, which systemd-update-done writes. The packages' scripts did that work in this
# root already, so it is marked up to date as systemd-update-done marks it (/usr's time, to the
# nanosecond): no systemd-sysusers on the way to udev's start at first boot (~1 s under TCG).
# The users it would make are made here.
chroot "$ROOT" systemd-sysusers
usr_time=$(stat -c %.9Y "$ROOT/usr" | tr -d .)
for d in etc var; do
  printf 'TIMESTAMP_NSEC=%s\n' "$usr_time" > "$ROOT/$d/.updated"
  touch -r "$ROOT/usr" "$ROOT/$d/.updated"
done

stage "keeping the kernel and NIC modules for the installer (kernel $kver)"
rm -rf "$OUT_DIR/installer" && mkdir -p "$OUT_DIR/installer/modules"
cp "$ROOT/boot/vmlinuz-$kver" "$OUT_DIR/installer/vmlinuz"
for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  f=$(find "$ROOT/lib/modules/$kver" -name "$m.ko*" | head -1)
  # Unpacked here: the installer's busybox insmod takes plain .ko files (the signature that
  # Secure Boot's lockdown checks is on the uncompressed module).
  case "$f" in
    "") ;;
    *.ko.xz) xz -dc "$f" > "$OUT_DIR/installer/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" > "$OUT_DIR/installer/modules/$m.ko" ;;
    *) cp "$f" "$OUT_DIR/installer/modules/" ;;
  esac
done

# The UEFI nodes' local disk in the smoke test boots the same signed chain from an ESP.
cp "$ROOT/usr/lib/shim/shimx64.efi.signed" "$OUT_DIR/installer/shimx64.efi"
cp "$ROOT/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" "$OUT_DIR/installer/grubx64.efi"

stage "making the disk"
RAW=$WORK/disk.raw
truncate -s 2G "$RAW"
echo 'start=2048, type=83, bootable' | sfdisk --quiet "$RAW"
mkfs.ext4 -q -L root -E offset=1048576 -d "$ROOT" "$RAW" 2047M
MNT=$WORK/mnt
mkdir -p "$MNT"
mount -o loop,offset=1048576 "$RAW" "$MNT"
extlinux --install "$MNT/boot/extlinux" >/dev/null 2>&1
umount "$MNT"
dd if=/usr/lib/EXTLINUX/mbr.bin of="$RAW" bs=440 count=1 conv=notrunc status=none

stage "converting to compressed qcow2"
mkdir -p "$OUT_DIR"
qemu-img convert -c -O qcow2 "$RAW" "$IMAGE.tmp"
mv "$IMAGE.tmp" "$IMAGE"
chmod 0644 "$IMAGE"
echo "$key" > "$OUT_DIR/recipe.sha256"
stage "done: $IMAGE ($(du -h "$IMAGE" | cut -f1) on disk)"
