#!/usr/bin/env bash
# Prepare a Debian 12 host for mkheadnode: install packages, give /dev/kvm udev's
# permissions, and start libvirt's daemons when no init system does it for us.
# Shared by `make run`, `make test` and .ci/run. Safe to run again.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

PACKAGES=(
  # build (dpkg-dev: dpkg-shlibdeps, which finds the Debian package's Depends; libc6-dev: glibc's
  # libc.a, which the image's static early set-up links)
  pkg-config libvirt-dev dpkg-dev libc6-dev
  # hypervisor
  libvirt-daemon-system libvirt-clients qemu-system-x86 dnsmasq-base
  # validators used by the tests
  libxml2-utils cloud-init isc-dhcp-server tftpd-hpa nginx-light fcgiwrap genisoimage
  # guest-side tests: real IPMI endpoint; the lease parser's property test (Debian's python3)
  ipmitool openipmi python3-hypothesis
  # guest-side tests: the web user's one privileged step (sudo), run as www-data (setpriv)
  sudo
  # images and misc
  mmdebstrap fdisk extlinux syslinux-common pxelinux busybox-static e2fsprogs cpio
  # UEFI and Secure Boot test nodes: firmware, their local disk's ESP, GRUB's config checker
  ovmf dosfstools mtools grub-common
  python3 curl util-linux procps iproute2 time
  # reaps qemu promptly where no init system runs libvirtd
  tini
  # the Open vSwitch attachment's test
  openvswitch-switch
  # benchmarks: the alternative operators use today
  virtinst
  # the guest agent's protocol, spoken to a real qemu-ga on a local socket
  qemu-guest-agent
  # remote operation: a second libvirtd in namespaces, reached over qemu+ssh (scripts/test-host.sh)
  openssh-server openssh-client
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host.sh must run as root (it installs packages and starts libvirtd)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Debian 12's libvirt wants Debian 12's qemu-utils; the image may carry a newer one.
if ! dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '^1:7\.2'; then
  missing+=("qemu-utils/bookworm")
fi

if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Daemons must not be started by package scripts on a machine without an init system.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --allow-downgrades --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# Real BMC endpoints for the tests (IPMI and Redfish, both driving libvirt domains), from PyPI.
if ! python3 -c 'import virtualbmc, sushy_tools, libvirt' 2>/dev/null; then
  log "installing virtualbmc and sushy-tools (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore virtualbmc sushy-tools
fi

# What udev would do: without it libvirt re-probes qemu on every call (~4 s each).
if [ -e /dev/kvm ]; then
  chgrp kvm /dev/kvm 2>/dev/null || true
  chmod 0660 /dev/kvm
fi

# Start the daemons when nothing else runs them (no systemd here).
if ! pgrep -x virtlogd >/dev/null; then log "starting virtlogd"; virtlogd -d; fi
# libvirtd double-forks qemu, so a stopped qemu is reaped by the nearest subreaper, and libvirt
# waits until it is (it polls every 200 ms). systemd reaps at once; a container's minimal PID 1
# may not (this machine's reaps orphans every ~1.8 s, which made every `virsh destroy` 1.4 s).
# tini -s makes itself that subreaper and reaps at once, as systemd would.
if ! pgrep -x libvirtd >/dev/null; then
  log "starting libvirtd (under tini, which reaps its qemu processes)"
  setsid tini -s -- libvirtd </dev/null >/dev/null 2>&1 &
fi
# Open vSwitch for the OVS attachment's test. Its bridges there use OVS's userspace datapath,
# which needs no kernel module (containers often have none).
if ! ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
  log "starting Open vSwitch"
  mkdir -p /var/run/openvswitch /var/log/openvswitch
  [ -f /etc/openvswitch/conf.db ] ||
    ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server --remote=punix:/var/run/openvswitch/db.sock --pidfile --detach --log-file -vconsole:off \
    /etc/openvswitch/conf.db
  ovs-vsctl --no-wait init
  ovs-vswitchd --pidfile --detach --log-file -vconsole:off
fi
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && break
  sleep 0.2
done
virsh -c qemu:///system version >/dev/null || { echo "libvirtd did not come up" >&2; exit 1; }
log "host ready: $(virsh -c qemu:///system version | grep -i 'running hypervisor' | sed 's/^ *//')"
