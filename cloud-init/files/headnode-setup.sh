#!/bin/sh
# Written by mkheadnode: first-boot set-up of the PXE stack, run by cloud-init once the
# configuration files are in place. Every step is safe to run again.
set -eu
say() { echo "mkheadnode-setup: $*"; }
step="starting"
# The host's `mkheadnode --wait` reads these lines on the serial console.
trap 'rc=$?; [ $rc -eq 0 ] || say "FAILED (exit $rc) while $step" | tee /dev/console' EXIT

# Install only what the image lacks, so an image with the stack pre-installed needs no network.
missing=""
need() { [ -e "$1" ] || missing="$missing $2"; }
need /usr/sbin/dhcpd isc-dhcp-server
need /usr/sbin/in.tftpd tftpd-hpa
need /usr/lib/PXELINUX/pxelinux.0 pxelinux
need /usr/lib/syslinux/modules/bios/ldlinux.c32 syslinux-common
need /usr/lib/syslinux/memdisk syslinux-common
need /usr/sbin/nginx nginx
need /usr/sbin/fcgiwrap fcgiwrap
need /usr/bin/python3 python3
need /usr/sbin/qemu-ga qemu-guest-agent
need /usr/bin/ipmitool ipmitool
need /usr/sbin/iptables-restore iptables
need /usr/sbin/netfilter-persistent iptables-persistent
step="installing packages"
if [ -n "$missing" ]; then
    say "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
else
    say "all packages already installed; nothing downloaded"
fi

step="filling /var/lib/tftpboot"; say "$step"
install -d -m 0755 /var/lib/tftpboot
install -m 0644 /usr/lib/PXELINUX/pxelinux.0 /var/lib/tftpboot/
for f in ldlinux.c32 menu.c32 chain.c32 mboot.c32 libutil.c32 libcom32.c32; do
    install -m 0644 "/usr/lib/syslinux/modules/bios/$f" /var/lib/tftpboot/
done
install -m 0644 /usr/lib/syslinux/memdisk /var/lib/tftpboot/
# The web server may remove links in pxelinux.cfg, and write nowhere else.
install -d -o root -g www-data -m 0775 /var/lib/tftpboot/pxelinux.cfg
install -m 0644 /usr/local/share/mkheadnode/pxelinux-default /var/lib/tftpboot/pxelinux.cfg/default

step="mounting the config share"; say "$step"
systemctl daemon-reload
systemctl enable etc-moc.mount mkheadnode-profiles.service
systemctl start etc-moc.mount || say "WARNING: /etc/moc is not mounted (see: journalctl -u etc-moc.mount)"
systemctl start mkheadnode-profiles.service || true

step="loading the firewall"; say "$step"
iptables-restore < /etc/iptables/rules.v4
ip6tables-restore < /etc/iptables/rules.v6
# The package enables it; enabling an LSB-backed unit again costs seconds (update-rc.d).
systemctl is-enabled -q netfilter-persistent 2>/dev/null || systemctl enable -q netfilter-persistent

step="starting dhcpd, tftpd, fcgiwrap and nginx"; say "$step"
rm -f /etc/nginx/sites-enabled/default
ln -sf /etc/nginx/sites-available/mkheadnode /etc/nginx/sites-enabled/mkheadnode
units="isc-dhcp-server tftpd-hpa fcgiwrap.socket nginx"
# Images made for mkheadnode ship these masked, so that nothing serves before now.
step="unmasking $units"
systemctl unmask -q $units fcgiwrap.service
for unit in $units; do
    step="enabling $unit"
    systemctl is-enabled -q "$unit" 2>/dev/null || systemctl enable -q "$unit"
done
# One call, so systemd starts them in parallel.
step="starting $units"
systemctl restart $units
say "done" | tee /dev/console
