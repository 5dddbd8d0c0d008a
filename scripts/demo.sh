#!/usr/bin/env bash
# `make run`: a headnode for demo VLAN 42 on this machine's libvirt, made by mkheadnode exactly
# as an operator would. Both networks are isolated libvirt networks (no forwarding), so no
# guest packet leaves this machine: `vlan42` has no DHCP of libvirt's (the headnode serves it),
# `mkheadnode-public` stands in for the public network, with libvirt's DHCP.
set -euo pipefail
VLAN=${VLAN:-42}
BIN=${BIN:-target/release/mkheadnode}
IMAGE=${IMAGE:-/var/lib/mkheadnode/base/debian-12-headnode.qcow2}

net() {
  local name=$1 xml=$2
  if ! virsh -q net-info "$name" >/dev/null 2>&1; then
    printf '%s\n' "$xml" > "/tmp/$name.xml"
    virsh -q net-define "/tmp/$name.xml" >/dev/null
    echo "==> defined isolated network $name"
  fi
  virsh -q net-info "$name" | grep 'Active: *yes' >/dev/null || virsh -q net-start "$name" >/dev/null
}
net "vlan$VLAN" "<network><name>vlan$VLAN</name><bridge stp='off'/><dns enable='no'/></network>"
net mkheadnode-public "<network><name>mkheadnode-public</name><bridge stp='off'/><ip address='172.31.255.1' prefix='24'><dhcp><range start='172.31.255.100' end='172.31.255.200'/></dhcp></ip></network>"

"$BIN" check "$VLAN" --base-image "$IMAGE" --public-network mkheadnode-public || true
"$BIN" "$VLAN" --base-image "$IMAGE" --public-network mkheadnode-public --wait

mac=$("$BIN" status "$VLAN" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["public_mac"])')
ip=$(virsh -q net-dhcp-leases mkheadnode-public | awk -v m="$mac" '$3 == m { sub("/.*", "", $5); print $5 }' | tail -1)
echo
echo "headnode-$VLAN is up. From here:"
hint() { printf '  %-40s # %s\n' "$1" "$2"; }
hint "virsh console headnode-$VLAN" "serial console (Ctrl-] leaves)"
# ssh logs in with a key only: offer it only where one is configured (the seed carries them).
keys=$("$BIN" --dry-run --virt-type qemu "$VLAN" --base-image "$IMAGE" --public-network mkheadnode-public 2>/dev/null |
  sed -n 's/^ssh_authorized_keys: //p' | head -1) || keys=
if [ -n "$keys" ] && [ "$keys" != "[]" ]; then
  hint "ssh debian@${ip:-<its public address>}" "public side, default user, with the configured key"
else
  echo "  (no ssh key is configured, so ssh cannot log in: add one with --ssh-key KEY or"
  echo "   ssh_authorized_keys in /etc/mkheadnode/config.toml and \`$BIN rebuild $VLAN\`; until then, virsh console)"
fi
hint "$BIN status $VLAN" "what libvirt and the tool know of it"
echo "Its config share is /var/lib/headnode-config/$VLAN (machines.txt, profiles/, bmc.conf)."
echo "Remove it with: $BIN teardown $VLAN --purge"
