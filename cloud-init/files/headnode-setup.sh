#!/bin/sh
# Written by mkheadnode: first-boot set-up of the PXE stack.
#
# Images built for mkheadnode run it before cloud-init, from their mkheadnode-early.service,
# which writes the seed's files and brings eth0 up itself and leaves {{early_marker}}. Elsewhere
# cloud-init starts it from bootcmd as the transient unit mkheadnode-setup.service as soon as its
# init stage has written the files this uses, beside cloud-init's config and final stages instead
# of after them. Its output goes to the serial console, where the host's `mkheadnode --wait` reads
# it. In the final stage, `mkheadnode-setup --report` waits for whichever unit ran it, hands its
# outcome to `cloud-init status`, and makes the ssh host keys cloud-init did not. Run by hand, it
# sets up again: every step is safe to repeat.
set -eu
say() { echo "mkheadnode-setup: $*"; }
unit=mkheadnode-setup.service
[ ! -e {{early_marker}} ] || unit=mkheadnode-early.service

# Wait while a unit runs or is queued to run.
settle() {
    while :; do
        case "$(systemctl show -P ActiveState "$1")" in
            activating | deactivating | reloading) ;;
            inactive) [ -n "$(systemctl show -P Job "$1")" ] || return 0 ;;
            *) return 0 ;;
        esac
        sleep 1
    done
}

if [ "${1:-}" = --report ]; then
    settle "$unit"
    # cloud-init made the quick host key types before sshd started; the RSA one takes seconds
    # under emulation and is made here, once the PXE stack serves.
    ssh-keygen -A >/dev/null && systemctl try-reload-or-restart ssh.service || true
    case "$(systemctl show -P ActiveState "$unit"):$(systemctl show -P Result "$unit")" in
        active:success) exit 0 ;;
        failed:* | *:exit-code | *:signal | *:timeout) exit 1 ;; # the unit has said why on the console
        *)
            say "FAILED (never started) while launching $unit (see: journalctl -b -u cloud-init)"
            exit 1
            ;;
    esac
fi

# Whether systemd's view of the units is current, from `systemctl show -p Id -p LoadState
# -p UnitFileState -p NeedDaemonReload` of them in the file $1: every one loaded and unchanged on
# disk since, and those of $2 enabled. Shell builtins only (every process counts at first boot).
units_current() {
    id="" answer=yes
    while IFS='=' read -r key value; do
        case "$key" in
            Id) id=$value ;;
            LoadState) [ "$value" = loaded ] || answer=no ;;
            NeedDaemonReload) [ "$value" = no ] || answer=no ;;
            UnitFileState)
                case " $2 " in *" $id "*) [ "$value" = enabled ] || answer=no ;; esac ;;
        esac
    done < "$1"
    [ "$answer" = yes ]
}

step="starting"
made_policy=""
finish() {
    rc=$?
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ $rc -eq 0 ] || say "FAILED (exit $rc) while $step"
}
trap finish EXIT

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
need /usr/bin/sudo sudo
need /usr/sbin/qemu-ga qemu-guest-agent
need /usr/bin/ipmitool ipmitool
need /usr/sbin/iptables-restore iptables
need /usr/sbin/netfilter-persistent iptables-persistent
need /usr/lib/shim/shimx64.efi.signed shim-signed
need /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed grub-efi-amd64-signed
step="installing packages"
if [ -n "$missing" ]; then
    # cloud-init's config stage owns apt's sources and debconf until it is done, unless it
    # waits for this set-up (images made for mkheadnode order it so).
    systemctl show -P After cloud-config.service | grep -qw $unit || settle cloud-config.service
    say "installing:$missing"
    # Packages must not start their daemons with the packaged configuration (nginx's default
    # site on every address) before the seed's configuration and the firewall are in place.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        made_policy=yes
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    made_policy=""
else
    say "all packages already installed; nothing downloaded"
fi

units="isc-dhcp-server tftpd-hpa fcgiwrap.socket nginx"
ours="etc-moc.mount mkheadnode-profiles.service"
step="configuring the config share and $units"; say "$step"
# (Images made for mkheadnode have it so already: a process each, saved.)
[ ! -e /etc/nginx/sites-enabled/default ] || rm -f /etc/nginx/sites-enabled/default
[ -L /etc/nginx/sites-enabled/mkheadnode ] ||
    ln -sf /etc/nginx/sites-available/mkheadnode /etc/nginx/sites-enabled/mkheadnode
# The firewall loads (its kernel modules take seconds under emulation) while the TFTP root is
# filled; nothing is started before both are done.
say "loading the firewall"
{ iptables-restore < /etc/iptables/rules.v4 && ip6tables-restore < /etc/iptables/rules.v6; } &
firewall=$!
# The kernel settings of {{sysctl_path}} (big TCP sends to many nodes at once), in force from
# now; systemd-sysctl applies them at every later boot.
sysctl -q -p {{sysctl_path}} &
tuned=$!
# What systemd knows of the units this starts, asked in one call (every systemctl is a process,
# over half a second at this point of a boot under emulation) while the TFTP root is filled.
# Images made for mkheadnode carry the seed's unit files and drop-ins already, enabled, and keep
# the services from starting before now with a gate ({{serving_gate}}, below) rather than masks:
# systemd's view is then current, and nothing is unmasked, enabled or reloaded. Elsewhere the
# services may be masked, or the seed has just written unit files that systemd has not read.
[ -d /run/mkheadnode ] || install -d -m 0755 /run/mkheadnode
systemctl show -p Id -p LoadState -p UnitFileState -p NeedDaemonReload \
    $units fcgiwrap.service $ours > /run/mkheadnode/units.state &
asked=$!

step="filling {{tftp_root}}"; say "$step"
modules=""
for f in ldlinux.c32 menu.c32 chain.c32 mboot.c32 libutil.c32 libcom32.c32; do
    modules="$modules /usr/lib/syslinux/modules/bios/$f"
done
# Its folders in one call. The per-node install links of both loaders (pxelinux.cfg, uefi) are
# root's alone: the web server writes nowhere under the TFTP root; it disarms a node through
# {{disarm_helper}} (sudo, one MAC).
install -d -o root -g root -m 0755 {{tftp_root}} {{tftp_root}}/{{efi_dir}} \
    {{tftp_root}}/{{efi_dir}}/profiles {{tftp_root}}/grub {{tftp_root}}/{{pxelinux_cfg}} \
    {{tftp_root}}/{{uefi_dir}}
# BIOS: pxelinux, its modules, and its default (boot the local disk).
install -m 0644 /usr/lib/PXELINUX/{{bios_loader}} $modules /usr/lib/syslinux/memdisk {{tftp_root}}/
# UEFI: the Microsoft-signed shim and the Debian-signed network GRUB it loads (under the name
# shim asks for), and GRUB's config at the prefix built into it. A pair that images made for
# mkheadnode carry in /usr/local/lib/mkheadnode/efi (a GRUB that can fetch over HTTP) goes
# before the packaged one.
efi=/usr/local/lib/mkheadnode/efi
if [ -f $efi/shimx64.efi.signed ] && [ -f $efi/grubnetx64.efi.signed ]; then
    shim=$efi/shimx64.efi.signed grub=$efi/grubnetx64.efi.signed
else
    shim=/usr/lib/shim/shimx64.efi.signed grub=/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed
fi
install -m 0644 $shim {{tftp_root}}/{{efi_dir}}/{{uefi_loader}}
install -m 0644 $grub {{tftp_root}}/{{efi_dir}}/grubx64.efi
install -m 0644 /usr/local/share/mkheadnode/grub.cfg {{tftp_root}}/grub/grub.cfg
install -m 0644 /usr/local/share/mkheadnode/pxelinux-default {{tftp_root}}/{{pxelinux_cfg}}/default

step="asking systemd about $units"
wait "$asked"
if units_current /run/mkheadnode/units.state "$ours"; then
    say "{{units_current}}"
else
    step="reloading systemd for the PXE services' units"; say "$step"
    # Every unmask or enable reloads systemd (~1.7 s under emulation) unless told not to; one
    # daemon-reload covers them all.
    systemctl --no-reload unmask -q $units fcgiwrap.service
    systemctl --no-reload enable -q $ours
    # Enabling an LSB-backed unit again costs seconds (update-rc.d); the packages did it already.
    if systemctl is-enabled $units netfilter-persistent 2>/dev/null | grep -qvx enabled; then
        for u in $units netfilter-persistent; do
            systemctl is-enabled -q "$u" 2>/dev/null || systemctl --no-reload enable -q "$u"
        done
    fi
    systemctl daemon-reload
fi

step="loading the firewall"
wait "$firewall"
step="applying {{sysctl_path}}"
wait "$tuned"

step="starting $units"; say "$step"
# The gate that images made for mkheadnode put on the services: from now on, at this boot and
# every boot after, they may start.
gate={{serving_gate}}
[ -d "${gate%/*}" ] || install -d -m 0755 "${gate%/*}"
: > "$gate"
# At first boot this runs inside cloud-init's init stage, before sysinit.target, and every
# service would wait for the end of that stage (seconds under emulation) for nothing it needs:
# the disks, eth0, the firewall and the services' files are all in place by now. So they start
# with their ordering ignored, one after another where one needs the other (share, then the
# profiles on it).
now=--job-mode=ignore-dependencies
# The share and the guest agent are queued first; the share, then the profiles on it, are
# waited for beside the services' start.
systemctl start --no-block $now etc-moc.mount qemu-guest-agent.service
{ systemctl start $now etc-moc.mount && systemctl start $now mkheadnode-profiles.service; } &
published=$!
# One call, so systemd starts them in parallel.
systemctl restart $now $units
# The guest agent must be running by now: the host's node commands (install, nodes, profile
# publishing) go through it as soon as this says done, and it would otherwise wait for the end
# of cloud-init's init stage, tens of seconds later when this runs before cloud-init.
systemctl start $now qemu-guest-agent.service

step="publishing install profiles"
wait "$published" || say "WARNING: /etc/moc is not mounted (see: journalctl -u etc-moc.mount)"
say "done"

