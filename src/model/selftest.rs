/*!
`mkheadnode selftest`, planned: the isolated lab a run makes for one VLAN (its networks, its
three test nodes, their addresses and names, all ours by name), what each node's console must
show in order, and the run's result (a verdict and a time per step) with its table.

Everything here is pure; `ops::selftest` makes and removes the lab.
*/

use crate::model::addresses::Ipv4Net;
use crate::model::config::{Attachment, Config};
use crate::model::vlan::Vlan;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The VLAN a selftest uses unless `--vlan` says otherwise: the highest valid one, which
/// operators rarely give a network of machines (it is often reserved by switch vendors).
pub const DEFAULT_VLAN: u16 = 4094;

/// What every name of a selftest's libvirt objects begins with: no operator names theirs so.
pub const NAME_PREFIX: &str = "mkheadnode-selftest";

/// The install profile the test nodes are armed for.
pub const PROFILE: &str = "selftest";

/// What the installer prints once it runs (tests/smoke/installer-init).
pub const INSTALLER_RUNNING: &str = "installer: running on";

/// The files of the test installer (scripts/build-installer.sh makes them) a run needs.
pub const INSTALLER_FILES: [&str; 4] = ["vmlinuz", "vmlinuz-bad", "initrd.gz", "esp.raw"];

/// Where Debian's `ovmf` package puts the firmware files the UEFI and Secure Boot nodes boot.
pub const OVMF_DIR: &str = "/usr/share/OVMF";

/// How a test node boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS and iPXE: pxelinux.
    Bios,
    /// OVMF's own PXE stack (no option ROM): shim, then GRUB, Secure Boot off.
    Uefi,
    /// The same on q35 with SMM, OVMF's Secure Boot build and Microsoft's keys enrolled.
    SecureBoot,
}

impl Firmware {
    /// The OVMF code and variables files, for UEFI firmware.
    pub fn ovmf(self) -> Option<(&'static str, &'static str)> {
        match self {
            Firmware::Bios => None,
            Firmware::Uefi => Some(("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")),
            Firmware::SecureBoot => Some(("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")),
        }
    }

    /// The loader the headnode sees it ask for (`bios` or `uefi`).
    pub fn loader(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi | Firmware::SecureBoot => "uefi",
        }
    }
}

/// One test node on the VLAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestNode {
    /// Its domain name.
    pub name: String,
    /// Its NIC's MAC.
    pub mac: String,
    /// Its BMC address in machines.txt (on the management subnet).
    pub bmc: Ipv4Addr,
    /// How it boots.
    pub firmware: Firmware,
    /// Powered on by the headnode's link tool through a virtual BMC (IPMI), when the lab has
    /// one; else started directly. virtualbmc's `bootdev pxe` redefines the domain to boot from
    /// the network only (a real BMC's is a one-time override), which leaves OVMF no disk entry
    /// to go on to; SeaBIOS does not mind, so only the BIOS node is.
    pub ipmi: bool,
}

impl TestNode {
    /// How the table and messages name it.
    pub fn label(&self) -> &'static str {
        match self.firmware {
            Firmware::Bios => "BIOS node",
            Firmware::Uefi => "UEFI node",
            Firmware::SecureBoot => "Secure Boot node",
        }
    }

    /// Its MAC with dashes, as the TFTP links name it.
    pub fn dashed(&self) -> String {
        self.mac.replace(':', "-")
    }
}

/// Everything a selftest of one VLAN makes, by name and place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// The VLAN of the throwaway headnode.
    pub vlan: Vlan,
    /// The transient libvirt network standing in for the VLAN (no DHCP of libvirt's).
    pub vlan_network: String,
    /// Its bridge.
    pub vlan_bridge: String,
    /// The transient network standing in for the public side (libvirt's DHCP).
    pub public_network: String,
    /// The public network's host address; the network is its /24.
    pub public_gateway: Ipv4Addr,
    /// The host's address on the VLAN's bridge, where the virtual BMC listens, with the
    /// management subnet's prefix.
    pub bmc_host: (Ipv4Addr, u8),
    /// The storage pool of the headnode's volumes.
    pub pool: String,
    /// Where the OVMF firmware files are ([`Firmware::ovmf`] names them).
    pub ovmf_dir: PathBuf,
    /// Where everything of the run lives on disk (removed at its end).
    pub dir: PathBuf,
    /// The test nodes.
    pub nodes: Vec<TestNode>,
}

impl Lab {
    /// The lab of a selftest of `vlan` under `work_dir` (one directory per VLAN there), with
    /// the BMC addresses on `config`'s management subnet.
    pub fn new(vlan: Vlan, config: &Config, work_dir: &Path) -> Lab {
        let v = vlan.id();
        let a = &config.addressing;
        let net = Ipv4Net::of(a.management_address, a.management_prefix);
        // Addresses on the management subnet other than the headnode's: network + 1, 2, ...
        let mut free = (1..).map(|i| Ipv4Addr::from(u32::from(net.network).wrapping_add(i)));
        let mut next = || {
            free.find(|ip| *ip != a.management_address)
                .unwrap_or(net.network)
        };
        let host = next();
        let [hi, lo] = v.to_be_bytes();
        let node = |i: u8, kind: &str, firmware: Firmware, bmc: Ipv4Addr| TestNode {
            name: format!("{NAME_PREFIX}-{kind}-{v}"),
            mac: format!("52:54:00:a{i}:{hi:02x}:{lo:02x}"),
            bmc,
            firmware,
            ipmi: firmware == Firmware::Bios,
        };
        let nodes = vec![
            node(0, "bios", Firmware::Bios, host),
            node(1, "uefi", Firmware::Uefi, next()),
            node(2, "sb", Firmware::SecureBoot, next()),
        ];
        Lab {
            vlan,
            vlan_network: format!("{NAME_PREFIX}-v{v}"),
            vlan_bridge: format!("mkhst{v}"),
            public_network: format!("{NAME_PREFIX}-p{v}"),
            public_gateway: Ipv4Addr::new(172, 31, lo, 1),
            bmc_host: (host, a.management_prefix),
            pool: format!("{NAME_PREFIX}-{v}"),
            ovmf_dir: PathBuf::from(OVMF_DIR),
            dir: work_dir.join(v.to_string()),
            nodes,
        }
    }

    /// The public network's host address, and the others to try in turn where the host
    /// routes its /24 already (another network of the host's has it): the /24s of
    /// 172.31.0.0/16, from the lab's own on.
    pub fn public_gateways(&self) -> impl Iterator<Item = Ipv4Addr> {
        let [_, _, first, _] = self.public_gateway.octets();
        (0..=255u8).map(move |k| Ipv4Addr::new(172, 31, first.wrapping_add(k), 1))
    }

    /// A path in the run's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `config` for the throwaway headnode: the operator's base image and settings, with every
    /// place it writes moved into the run's directory, its NICs on the lab's networks, and no
    /// fleet. The AppArmor abstraction is a private file: the operator's is never edited.
    pub fn headnode_config(&self, config: &Config) -> Config {
        Config {
            pool: self.pool.clone(),
            pool_dir: self.path("pool"),
            config_root: self.path("cfg"),
            apparmor_abstraction: self.path("libvirt-qemu"),
            lock_dir: self.path("lock"),
            state_dir: self.path("state"),
            log_dir: self.path("log"),
            vlan_attachment: network(&self.vlan_network),
            public_attachment: network(&self.public_network),
            hosts: Vec::new(),
            ..config.clone()
        }
    }

    /// The serial log of a node.
    pub fn node_log(&self, node: &TestNode) -> PathBuf {
        self.path(&format!("log/{}-serial.log", node.name))
    }

    /// A node's disk (raw; BIOS nodes' is empty, UEFI nodes' a copy of the installer's ESP).
    pub fn node_disk(&self, node: &TestNode) -> PathBuf {
        self.path(&format!("{}.disk", node.name))
    }

    /// A UEFI node's variables (a fresh copy of OVMF's per run).
    pub fn node_vars(&self, node: &TestNode) -> PathBuf {
        self.path(&format!("{}-vars.fd", node.name))
    }

    /// Where the install profile is staged before `profile add`.
    pub fn profile_src(&self) -> PathBuf {
        self.path("profile-src")
    }
}

/// A libvirt network attachment.
fn network(name: &str) -> Attachment {
    Attachment::Network {
        name: name.to_string(),
    }
}

/// What a node's console must show, in order, each with the name of its table row.
pub fn milestones(node: &TestNode) -> Vec<(&'static str, String)> {
    let dashed = node.dashed();
    let callback = (
        "/boot-default/ called",
        "boot-default answered: OK".to_string(),
    );
    match node.firmware {
        Firmware::Bios => vec![
            ("DHCP lease naming pxelinux.0", "pxelinux.0".into()),
            ("pxelinux running", "PXELINUX".into()),
            callback,
            ("second boot: pxelinux again", "PXELINUX".into()),
            (
                "second boot falls to the local disk",
                "Booting from local disk".into(),
            ),
        ],
        Firmware::Uefi | Firmware::SecureBoot => vec![
            (
                "DHCP names its own shim",
                format!("NBP filename is uefi/01-{dashed}/shimx64.efi"),
            ),
            (
                "shim -> GRUB reads the node's config",
                format!("reading /uefi/01-{dashed}/grub.cfg"),
            ),
            ("installer kernel running", INSTALLER_RUNNING.into()),
            callback,
            // Disarmed: the boot file is gone, so the firmware goes on to the next entry.
            ("second boot: no boot file for it", "PXE-E23".into()),
            (
                "second boot falls to the local disk",
                "smoke: booted from the local disk".into(),
            ),
        ],
    }
}

/// The milestones at which the headnode is asked about a node mid-install: its loader runs,
/// and its kernel and initrd have yet to be fetched.
pub const DURING: [&str; 2] = ["pxelinux running", "shim -> GRUB reads the node's config"];

/// What an installer's console must say besides its milestones: Secure Boot as the firmware
/// had it, and whether the kernel with the broken signature was refused (only where Secure
/// Boot is on).
pub fn console_evidence(node: &TestNode) -> Vec<String> {
    let (secure_boot, broken) = match node.firmware {
        Firmware::Bios => return Vec::new(),
        Firmware::Uefi => ("off", "accepted"),
        Firmware::SecureBoot => ("on", "refused"),
    };
    vec![
        format!("installer: secure boot: {secure_boot}"),
        format!("smoke: the kernel with a broken signature was {broken}"),
    ]
}

/// A console log as text, without the terminal's escape sequences (firmware and boot loaders
/// move the cursor in the middle of words) and carriage returns.
pub fn console_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It did what it should.
    Pass,
    /// It did not: the run fails.
    Fail,
    /// It could not be checked here, and the detail says why (the run does not fail for it).
    Skip,
    /// An earlier step failed, or the run was interrupted, before it.
    NotRun,
}

impl Verdict {
    /// The word in the table.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Fail => "FAILED",
            Verdict::Skip => "skipped",
            Verdict::NotRun => "not run",
        }
    }
}

/// One row of the result: a step, or a milestone within one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// What was checked.
    pub name: String,
    /// How it ended.
    pub verdict: Verdict,
    /// How long it took, in seconds (for a milestone: since the nodes were powered on).
    pub seconds: f64,
    /// Why it failed or was skipped, and what to do about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A selftest run's result, as printed with `--json` and kept for `--last`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The VLAN it used.
    pub vlan: u16,
    /// When it started, in seconds since the epoch.
    pub started: u64,
    /// How long it took in all, in seconds.
    pub seconds: f64,
    /// Whether every step passed (or was skipped).
    pub passed: bool,
    /// Every step, in order.
    pub steps: Vec<StepResult>,
    /// Where a failed run's serial logs were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<PathBuf>,
}

impl Outcome {
    /// The first failed step, if any.
    pub fn first_failure(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.verdict == Verdict::Fail)
    }

    /// Whether no step failed.
    pub fn judged_passed(&self) -> bool {
        self.first_failure().is_none() && self.steps.iter().any(|s| s.verdict == Verdict::Pass)
    }
}

/// The timing table with a verdict per row, then the overall verdict (and the failed step's
/// detail and where its logs are).
pub fn table(outcome: &Outcome) -> String {
    let width = outcome
        .steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "selftest of VLAN {} ({:.0} s)\n  {:<width$}  {:>8}  verdict\n",
        outcome.vlan, outcome.seconds, "step", "seconds"
    );
    for s in &outcome.steps {
        out.push_str(&format!(
            "  {:<width$}  {:>8.1}  {}\n",
            s.name,
            s.seconds,
            s.verdict.word()
        ));
        if !s.detail.is_empty() && s.verdict != Verdict::Pass {
            for line in s.detail.lines() {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    match (outcome.passed, outcome.first_failure()) {
        (true, _) => out.push_str("verdict: PASSED\n"),
        (false, Some(f)) => out.push_str(&format!("verdict: FAILED at `{}`\n", f.name)),
        (false, None) => out.push_str("verdict: FAILED\n"),
    }
    if let Some(logs) = &outcome.logs {
        out.push_str(&format!("serial logs kept in {}\n", logs.display()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Lab {
        Lab::new(
            Vlan::new(4042).unwrap(),
            &Config::default(),
            Path::new("/w"),
        )
    }

    #[test]
    fn the_lab_is_named_ours_and_placed_apart() {
        let lab = lab();
        assert_eq!(lab.vlan_network, "mkheadnode-selftest-v4042");
        assert_eq!(lab.public_network, "mkheadnode-selftest-p4042");
        assert_eq!(lab.vlan_bridge, "mkhst4042");
        assert!(lab.vlan_bridge.len() <= 15, "a bridge name has 15 bytes");
        assert_eq!(lab.pool, "mkheadnode-selftest-4042");
        assert_eq!(lab.dir, Path::new("/w/4042"));
        assert_eq!(lab.public_gateway, Ipv4Addr::new(172, 31, 0xca, 1));
        let gateways: Vec<Ipv4Addr> = lab.public_gateways().collect();
        assert_eq!(gateways.len(), 256);
        assert_eq!(gateways[0], lab.public_gateway);
        assert_eq!(gateways[54], Ipv4Addr::new(172, 31, 0, 1));
        let distinct: std::collections::BTreeSet<_> = gateways.iter().collect();
        assert_eq!(distinct.len(), 256);
        let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mkheadnode-selftest-bios-4042",
                "mkheadnode-selftest-uefi-4042",
                "mkheadnode-selftest-sb-4042"
            ]
        );
        let macs: Vec<&str> = lab.nodes.iter().map(|n| n.mac.as_str()).collect();
        assert_eq!(
            macs,
            [
                "52:54:00:a0:0f:ca",
                "52:54:00:a1:0f:ca",
                "52:54:00:a2:0f:ca"
            ]
        );
        assert_eq!(lab.nodes.iter().filter(|n| n.ipmi).count(), 1);
    }

    #[test]
    fn bmc_addresses_avoid_the_headnode_on_its_management_subnet() {
        let lab = lab();
        let bmcs: Vec<String> = lab.nodes.iter().map(|n| n.bmc.to_string()).collect();
        assert_eq!(bmcs, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(lab.bmc_host, (Ipv4Addr::new(10, 0, 0, 1), 24));
        let mut config = Config::default();
        config.addressing.management_address = Ipv4Addr::new(10, 9, 0, 2);
        config.addressing.management_prefix = 16;
        let lab = Lab::new(Vlan::new(7).unwrap(), &config, Path::new("/w"));
        let bmcs: Vec<String> = lab.nodes.iter().map(|n| n.bmc.to_string()).collect();
        assert_eq!(bmcs, ["10.9.0.1", "10.9.0.3", "10.9.0.4"]);
        assert_eq!(lab.bmc_host.1, 16);
    }

    #[test]
    fn the_headnode_config_writes_only_into_the_run_dir() {
        let lab = lab();
        let operator = Config {
            memory_mib: 777,
            ..Config::default()
        };
        let c = lab.headnode_config(&operator);
        for p in [
            &c.pool_dir,
            &c.config_root,
            &c.apparmor_abstraction,
            &c.lock_dir,
            &c.state_dir,
            &c.log_dir,
        ] {
            assert!(p.starts_with("/w/4042"), "{}", p.display());
        }
        assert_eq!(c.memory_mib, 777);
        assert_eq!(c.base_image, operator.base_image);
        assert_eq!(c.pool, lab.pool);
        assert_eq!(c.vlan_attachment, network(&lab.vlan_network));
        assert_eq!(c.public_attachment, network(&lab.public_network));
    }

    #[test]
    fn milestones_and_evidence_follow_the_firmware() {
        let lab = lab();
        let bios = milestones(&lab.nodes[0]);
        assert_eq!(bios.len(), 5);
        assert_eq!(bios.last().unwrap().1, "Booting from local disk");
        let uefi = milestones(&lab.nodes[1]);
        assert_eq!(
            uefi[0].1,
            "NBP filename is uefi/01-52-54-00-a1-0f-ca/shimx64.efi"
        );
        assert!(console_evidence(&lab.nodes[0]).is_empty());
        assert_eq!(
            console_evidence(&lab.nodes[2]),
            [
                "installer: secure boot: on",
                "smoke: the kernel with a broken signature was refused"
            ]
        );
        assert_eq!(
            console_evidence(&lab.nodes[1])[1],
            "smoke: the kernel with a broken signature was accepted"
        );
    }

    #[test]
    fn console_text_drops_escapes_and_returns() {
        assert_eq!(console_text("PXE\x1b[1;1HLINUX\r\n"), "PXELINUX\n");
        assert_eq!(console_text("a\x1bb"), "a\x1bb");
    }

    #[test]
    fn the_table_has_a_row_per_step_and_the_verdict() {
        let step = |name: &str, verdict, detail: &str| StepResult {
            name: name.into(),
            verdict,
            seconds: 1.25,
            detail: detail.into(),
        };
        let mut outcome = Outcome {
            vlan: 4094,
            started: 0,
            seconds: 61.0,
            passed: false,
            steps: vec![
                step("networks", Verdict::Pass, "hidden"),
                step("headnode ready", Verdict::Fail, "it did not boot\nfix it"),
                step("clean up", Verdict::Pass, ""),
                step("nodes", Verdict::NotRun, ""),
            ],
            logs: Some(PathBuf::from("/var/log/x")),
        };
        assert!(!outcome.judged_passed());
        let t = table(&outcome);
        assert!(
            t.contains("  networks        1.2  ok\n") || t.contains("1.2  ok"),
            "{t}"
        );
        assert!(!t.contains("hidden"), "{t}");
        assert!(
            t.contains("FAILED\n      it did not boot\n      fix it\n"),
            "{t}"
        );
        assert!(t.contains("verdict: FAILED at `headnode ready`"), "{t}");
        assert!(t.contains("serial logs kept in /var/log/x"), "{t}");
        outcome.steps.remove(1);
        outcome.steps.pop();
        outcome.passed = outcome.judged_passed();
        assert!(outcome.passed);
        assert!(table(&outcome).contains("verdict: PASSED"));
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
    }
}
