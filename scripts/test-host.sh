#!/usr/bin/env bash
# A second libvirt host on this machine, for the tests of remote operation (qemu+ssh://).
#
#   test-host.sh up DIR NAME N   start it; DIR (empty, made by the caller) keeps its state
#   test-host.sh down DIR        stop everything it started and remove its namespace
#
# It is a network namespace NAME (with `fleet` in the name) joined to this machine by a veth
# pair on the private 10.251.N.0/30 (this side .1, the host .2), plus a mount namespace in which
# libvirt's and mkheadnode's state dirs are private: fresh tmpfs over /run, /var/lib/libvirt,
# /var/log/libvirt, /var/cache/libvirt, /var/lib/mkheadnode, /var/lib/headnode-config and
# /var/log/mkheadnode, and a copy of this machine's libvirt settings (without its domains, networks and
# pools) over /etc/libvirt. In there run its own virtlogd and libvirtd (under tini, which reaps
# their qemu processes at once) and an sshd that listens on the namespace's address only and
# lets root in with the key DIR/id_ed25519 alone. The base images of this machine are
# bind-mounted read-only at /var/lib/mkheadnode/base.
#
# `up` writes DIR/env: ADDR, URI (with a known_hosts file pinned to the sshd's key, through the
# ssh wrapper DIR/ssh), MNTNS and NETNSINO (the namespaces' inodes). `down` kills exactly the
# processes inside those namespaces (the daemons and any qemu they started), then removes
# the network namespace; it is safe to call twice, and after a failed `up`.
set -euo pipefail

die() { echo "test-host.sh: $*" >&2; exit 1; }

# Inside the new mount namespace: private state, then the daemons.
inner() {
  local dir=$1 addr=$2
  mount --make-rprivate /
  # This machine's base images, held aside before the tmpfs hides them.
  if [ -d /var/lib/mkheadnode/base ]; then
    mkdir -p "$dir/base"
    mount --bind /var/lib/mkheadnode/base "$dir/base"
  fi
  for d in /run /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /var/lib/mkheadnode \
           /var/lib/headnode-config /var/log/mkheadnode; do
    mkdir -p "$d"
    mount -t tmpfs -o mode=0755 "fleet-$(basename "$d")" "$d"
  done
  # The directory layout (owners and modes) libvirt's package made, without its contents.
  (cd "$dir/skel" && find . -type d) | while read -r d; do
    mkdir -p "/var/lib/libvirt/$d"
    chown --reference="$dir/skel/$d" "/var/lib/libvirt/$d"
    chmod --reference="$dir/skel/$d" "/var/lib/libvirt/$d"
  done
  mkdir -p /var/log/libvirt/qemu
  chmod 0755 /var/log/libvirt/qemu
  mount --bind "$dir/etc-libvirt" /etc/libvirt
  mkdir -p /var/lib/mkheadnode/base /run/sshd /run/lock
  chmod 0755 /run/sshd
  if mountpoint -q "$dir/base"; then
    mount --move "$dir/base" /var/lib/mkheadnode/base
    mount -o remount,bind,ro /var/lib/mkheadnode/base
  fi
  virtlogd -d
  setsid tini -s -- libvirtd </dev/null >"$dir/libvirtd.log" 2>&1 &
  /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
  for _ in $(seq 100); do
    [ -S /run/libvirt/libvirt-sock ] && break
    sleep 0.1
  done
  [ -S /run/libvirt/libvirt-sock ] || die "libvirtd did not start (see $dir/libvirtd.log)"
  stat -L -c %i /proc/self/ns/mnt > "$dir/mntns"
}

up() {
  local dir=$1 name=$2 n=$3
  [[ $name == *fleet* ]] || die "the namespace's name must have 'fleet' in it: $name"
  local addr="10.251.$n.1" peer="10.251.$n.2" hostif="fl${n}h$$"
  hostif=${hostif:0:15}
  echo "NETNS=$name" > "$dir/env"
  echo "HOSTIF=$hostif" >> "$dir/env"

  # The network: a /30 of our own, nothing routed beyond it.
  ip netns add "$name"
  echo "NETNSINO=$(stat -L -c %i "/run/netns/$name")" >> "$dir/env"
  ip link add "$hostif" type veth peer name eth0 netns "$name"
  ip addr add "$peer/30" dev "$hostif"
  ip link set "$hostif" up
  ip -n "$name" addr add "$addr/30" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" link set lo up

  # libvirt's settings without this machine's domains, networks and pools.
  mkdir -p "$dir/etc-libvirt"
  cp -a /etc/libvirt/*.conf "$dir/etc-libvirt/"
  [ -d /etc/libvirt/nwfilter ] && cp -a /etc/libvirt/nwfilter "$dir/etc-libvirt/"
  mkdir -p "$dir/etc-libvirt/qemu/networks/autostart" "$dir/etc-libvirt/storage/autostart" \
           "$dir/etc-libvirt/secrets"
  mkdir -p "$dir/skel"
  (cd /var/lib/libvirt && find . -type d -not -path './images/*' -not -path './qemu/*/*') |
    while read -r d; do
      mkdir -p "$dir/skel/$d"
      chown --reference="/var/lib/libvirt/$d" "$dir/skel/$d"
      chmod --reference="/var/lib/libvirt/$d" "$dir/skel/$d"
    done
  rm -rf "$dir/skel/qemu/"{domain-*,save,snapshot,checkpoint,nvram,channel,ram,dump} 2>/dev/null || true
  mkdir -p "$dir/skel/qemu/nvram" "$dir/skel/qemu/channel/target"

  # sshd: root by key only, on the namespace's address only.
  ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519" -C "mkheadnode-test-$name"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519" -C "$name"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  chmod 0600 "$dir/authorized_keys"
  cat > "$dir/sshd_config" <<EOF
ListenAddress $addr
HostKey $dir/host_ed25519
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $dir/sshd.pid
Subsystem sftp internal-sftp
EOF
  echo "$addr $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$dir/known_hosts"
  cat > "$dir/ssh" <<EOF
#!/bin/sh
exec ssh -o UserKnownHostsFile=$dir/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes \\
  -o IdentitiesOnly=yes -o IdentityFile=$dir/id_ed25519 -o ConnectTimeout=60 "\$@"
EOF
  chmod 0755 "$dir/ssh"

  ip netns exec "$name" unshare --mount --propagation private -- "$0" inner "$dir" "$addr"
  [ -s "$dir/mntns" ] || die "the namespace did not come up"
  {
    echo "ADDR=$addr"
    echo "MNTNS=$(cat "$dir/mntns")"
    echo "URI=qemu+ssh://root@$addr/system?command=$dir/ssh"
  } >> "$dir/env"
}

# Every process in our mount namespace or our network namespace: only processes this script
# started, and what they started, can be in them (qemu gets a mount namespace of its own from
# libvirt, but stays in libvirtd's network namespace).
ours() {
  local mnt=$1 net=$2 p
  for p in /proc/[0-9]*; do
    if [ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$mnt" ] ||
       { [ -n "$net" ] && [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$net" ]; }; then
      echo "${p#/proc/}"
    fi
  done
  return 0
}

down() {
  local dir=$1
  [ -f "$dir/env" ] || return 0
  # shellcheck disable=SC1091
  . "$dir/env"
  local ns=${MNTNS:-$(cat "$dir/mntns" 2>/dev/null || true)}
  local net=${NETNSINO:-}
  [ "$net" != "$(stat -L -c %i /proc/self/ns/net)" ] || net=""
  if [ -n "$ns" ] && [ "$ns" != "$(stat -L -c %i /proc/self/ns/mnt)" ]; then
    local pids
    pids=$(ours "$ns" "$net")
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 50); do
      pids=$(ours "$ns" "$net")
      [ -z "$pids" ] && break
      sleep 0.1
    done
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  fi
  [ -z "${HOSTIF:-}" ] || ip link del "$HOSTIF" 2>/dev/null || true
  [ -z "${NETNS:-}" ] || ip netns del "$NETNS" 2>/dev/null || true
}

case "${1:-}" in
  up) [ $# -eq 4 ] || die "usage: $0 up DIR NAME N"; up "$2" "$3" "$4" ;;
  inner) inner "$2" "$3" ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; down "$2" ;;
  *) die "usage: $0 up DIR NAME N | down DIR" ;;
esac
