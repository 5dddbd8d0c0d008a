/*!
The documents of a selftest's lab ([`Lab`]): its two transient networks, each test node's
domain, and the files the operator would write (machines.txt, bmc.conf, the install profile).
*/

use crate::model::selftest::{Firmware, Lab, TestNode, PROFILE};
use quick_xml::escape::escape;
use std::fmt::Write as _;

/// The VLAN's network: an isolated bridge with no address or DHCP of libvirt's (the headnode
/// serves DHCP there). The host's BMC address is added to the bridge separately, only where
/// that subnet is free on the host.
pub fn vlan_network(lab: &Lab) -> String {
    format!(
        "<network><name>{}</name><bridge name='{}' stp='off'/><dns enable='no'/></network>",
        escape(&lab.vlan_network),
        escape(&lab.vlan_bridge)
    )
}

/// The public side's network: isolated, with libvirt's DHCP on a /24 of the lab's own.
pub fn public_network(lab: &Lab) -> String {
    let [a, b, c, _] = lab.public_gateway.octets();
    format!(
        "<network><name>{}</name><bridge stp='off'/><ip address='{}' prefix='24'>\
         <dhcp><range start='{a}.{b}.{c}.100' end='{a}.{b}.{c}.200'/></dhcp></ip></network>",
        escape(&lab.public_network),
        lab.public_gateway
    )
}

/// A test node's domain, shut off: network boot first, then its disk; the serial console to a
/// file. UEFI nodes run OVMF with their own copy of its variables (Secure Boot: q35 with SMM and
/// Microsoft's keys, which trust Debian's shim) and a NIC without option ROM, so that OVMF's own
/// PXE stack runs, as a server's firmware would.
pub fn node_domain(lab: &Lab, node: &TestNode, virt_type: &str) -> String {
    let (machine, firmware, features, rom) = match node.firmware.ovmf() {
        None => ("pc", "<bios useserial='yes'/>".to_string(), "", ""),
        Some((code, _)) => {
            let sb = node.firmware == Firmware::SecureBoot;
            let loader = format!(
                "<loader readonly='yes' secure='{}' type='pflash'>{}</loader>\
                 <nvram>{}</nvram>",
                if sb { "yes" } else { "no" },
                escape(lab.ovmf_dir.join(code).display().to_string()),
                escape(lab.node_vars(node).display().to_string())
            );
            let smm = if sb { "<smm state='on'/>" } else { "" };
            ("q35", loader, smm, "<rom bar='off'/>")
        }
    };
    format!(
        "<domain type='{virt_type}'><name>{name}</name><memory unit='MiB'>512</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64' machine='{machine}'>hvm</type>{firmware}\
         <boot dev='network'/><boot dev='hd'/></os><features><acpi/>{features}</features>\
         <devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>\
         <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>\
         <interface type='network'><mac address='{mac}'/><source network='{net}'/>\
         <model type='virtio'/>{rom}</interface>\
         <serial type='file'><source path='{log}' append='on'/><target port='0'/></serial>\
         </devices></domain>",
        name = escape(&node.name),
        disk = escape(lab.node_disk(node).display().to_string()),
        mac = node.mac,
        net = escape(&lab.vlan_network),
        log = escape(lab.node_log(node).display().to_string()),
    )
}

/// machines.txt: each node's MAC and BMC address.
pub fn machines(lab: &Lab) -> String {
    let mut out = String::from("# mkheadnode selftest's nodes\n");
    for n in &lab.nodes {
        let _ = writeln!(out, "{} {}  # {}", n.mac, n.bmc, n.label());
    }
    out
}

/// bmc.conf: IPMI with `password` for the nodes a virtual BMC powers on (where `ipmi`), none
/// for the rest.
pub fn bmc_conf(lab: &Lab, port: u16, password: &str, ipmi: bool) -> String {
    let mut out = format!(
        "[default]\ndriver = ipmi\nusername = admin\npassword = {password}\nport = {port}\n"
    );
    for n in lab.nodes.iter().filter(|n| !(n.ipmi && ipmi)) {
        let _ = write!(out, "[{}]\ndriver = none\n", n.bmc);
    }
    out
}

/// The install profile's pxelinux.cfg: the installer kernel and initrd over TFTP.
pub fn pxelinux_cfg() -> String {
    format!(
        "DEFAULT install\nLABEL install\n  KERNEL {PROFILE}/vmlinuz\n  INITRD {PROFILE}/initrd.gz\n  \
         APPEND console=ttyS0,115200 headnode=@HEADNODE@\n"
    )
}

/// The install profile's grub.cfg: first a kernel whose signature is broken (saying whether it
/// was refused), then the signed one; both over HTTP from the headnode's nginx.
pub fn grub_cfg() -> String {
    let fetch = "${mkheadnode_fetch}";
    format!(
        "set timeout=0\n\
         if linux {fetch}/{PROFILE}/vmlinuz-bad console=ttyS0,115200; then\n\
         \x20 echo \"smoke: the kernel with a broken signature was accepted\"\n\
         else\n\
         \x20 echo \"smoke: the kernel with a broken signature was refused\"\n\
         fi\n\
         linux {fetch}/{PROFILE}/vmlinuz console=ttyS0,115200 headnode=@HEADNODE@\n\
         initrd {fetch}/{PROFILE}/initrd.gz\n\
         boot\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bmc_conf::check;
    use crate::model::config::Config;
    use crate::model::machines::parse;
    use crate::model::vlan::Vlan;
    use std::path::Path;

    fn lab() -> Lab {
        Lab::new(
            Vlan::new(4093).unwrap(),
            &Config::default(),
            Path::new("/w"),
        )
    }

    #[test]
    fn networks_are_isolated_and_named_ours() {
        let lab = lab();
        let v = vlan_network(&lab);
        assert!(v.contains("<name>mkheadnode-selftest-v4093</name>"), "{v}");
        assert!(!v.contains("<ip") && !v.contains("<forward"), "{v}");
        let p = public_network(&lab);
        assert!(p.contains("<ip address='172.31.253.1' prefix='24'>"), "{p}");
        assert!(
            p.contains("start='172.31.253.100'") && !p.contains("<forward"),
            "{p}"
        );
    }

    #[test]
    fn node_domains_follow_their_firmware() {
        let lab = lab();
        let bios = node_domain(&lab, &lab.nodes[0], "qemu");
        assert!(
            bios.contains("machine='pc'") && bios.contains("useserial"),
            "{bios}"
        );
        assert!(!bios.contains("<loader"), "{bios}");
        let sb = node_domain(&lab, &lab.nodes[2], "kvm");
        assert!(sb.starts_with("<domain type='kvm'>"), "{sb}");
        assert!(
            sb.contains("secure='yes'") && sb.contains("<smm state='on'/>"),
            "{sb}"
        );
        assert!(
            sb.contains("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
            "{sb}"
        );
        assert!(sb.contains("<nvram>/w/4093/mkheadnode-selftest-sb-4093-vars.fd</nvram>"));
        assert!(sb.contains("<rom bar='off'/>"), "{sb}");
        let uefi = node_domain(&lab, &lab.nodes[1], "qemu");
        assert!(
            uefi.contains("secure='no'") && !uefi.contains("smm"),
            "{uefi}"
        );
    }

    #[test]
    fn operator_files_name_every_node() {
        let lab = lab();
        let m = machines(&lab);
        assert_eq!(m.lines().count(), 4, "{m}");
        assert!(
            m.contains("52:54:00:a2:0f:fd 10.0.0.3  # Secure Boot node"),
            "{m}"
        );
        let b = bmc_conf(&lab, 6230, "pw", true);
        assert!(b.contains("password = pw\nport = 6230\n"), "{b}");
        assert!(b.contains("[10.0.0.2]\ndriver = none\n[10.0.0.3]\ndriver = none\n"));
        assert!(!b.contains("[10.0.0.1]"), "{b}");
        let none = bmc_conf(&lab, 6230, "pw", false);
        assert!(none.contains("[10.0.0.1]\ndriver = none\n"), "{none}");
        assert!(pxelinux_cfg().contains("KERNEL selftest/vmlinuz"));
        assert!(grub_cfg().contains("linux ${mkheadnode_fetch}/selftest/vmlinuz-bad"));
        // What the operator's files must pass, these do.
        assert_eq!(parse(&m, "machines.txt").unwrap().len(), 3);
        check(&b, "bmc.conf").unwrap();
    }
}
