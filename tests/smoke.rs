//! The nightly smoke test (`make smoke`): a real headnode boots under TCG, then three nodes on
//! the same VLAN, a BIOS one, a UEFI one and a Secure Boot one, are armed by the headnode's link
//! tool (which powers the BIOS one on through a real IPMI endpoint), network-boot the test
//! installer from it (pxelinux for BIOS; the signed shim and GRUB for UEFI, the kernel over
//! HTTP), call /boot-default/, and fall to their local disks at the next boot.
//!
//! Everything runs on isolated libvirt networks: the VLAN network has no DHCP but the host's
//! 10.0.0.1 (where the BIOS node's virtual BMC listens); the "public" network is isolated too,
//! with libvirt's DHCP. Serial logs are kept in target/smoke-artifacts; every trace of the test is
//! removed at the end, also when a step fails.

use crate::support::{mkheadnode, run, virsh};
use mkheadnode::render::seed;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const URI: &str = crate::support::SYSTEM_URI;
const VLAN: u16 = 4042;
const HEADNODE: &str = "headnode-4042";
const VLAN_NET: &str = "smoke-v4042";
const VLAN_BRIDGE: &str = "mkhsmoke4042";
/// Where the profile's GRUB side fetches kernels from: the headnode's nginx (our grub.cfg sets it).
const GRUB_FETCH: &str = "${mkheadnode_fetch}";
const PUBLIC_NET: &str = "smoke-public";
const BMC_PORT: &str = "6230";
const BMC_PASSWORD: &str = "smoke-secret";

/// How a test node boots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Firmware {
    /// SeaBIOS and iPXE: pxelinux.
    Bios,
    /// OVMF's own PXE stack (no option ROM): shim -> GRUB, Secure Boot off.
    Uefi,
    /// The same on q35 with SMM, OVMF's Secure Boot build and Microsoft's keys enrolled.
    SecureBoot,
}

/// One node on the VLAN: its VM, MAC and BMC.
struct Node {
    name: &'static str,
    mac: &'static str,
    bmc: &'static str,
    firmware: Firmware,
    /// Powered on by the link tool through a virtual BMC (IPMI), else by the test. virtualbmc's
    /// `bootdev pxe` redefines the domain to boot from the network only (a real BMC's is a
    /// one-time override), which leaves OVMF no disk entry to go on to; SeaBIOS does not mind.
    ipmi: bool,
}

const NODES: [Node; 3] = [
    Node {
        name: "smoke-node-4042",
        mac: "52:54:00:aa:40:42",
        bmc: "10.0.0.1",
        firmware: Firmware::Bios,
        ipmi: true,
    },
    Node {
        name: "smoke-uefi-4042",
        mac: "52:54:00:aa:40:0e",
        bmc: "10.0.0.2",
        firmware: Firmware::Uefi,
        ipmi: false,
    },
    Node {
        name: "smoke-sb-4042",
        mac: "52:54:00:aa:40:5b",
        bmc: "10.0.0.3",
        firmware: Firmware::SecureBoot,
        ipmi: false,
    },
];

impl Node {
    fn label(&self) -> &'static str {
        match self.firmware {
            Firmware::Bios => "BIOS node",
            Firmware::Uefi => "UEFI node",
            Firmware::SecureBoot => "Secure Boot node",
        }
    }

    fn dashed(&self) -> String {
        self.mac.replace(':', "-")
    }
}

fn sh(program: &str, args: &[&str]) -> (i32, String, String) {
    run(Command::new(program).args(args))
}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Run a shell command inside the headnode through the guest agent; Err while the agent does
/// not answer (the guest still booting).
fn try_guest(cmd: &str) -> Result<(i64, String), String> {
    let agent = |req: serde_json::Value| -> Result<serde_json::Value, String> {
        let (code, out, err) = virsh(&["qemu-agent-command", HEADNODE, &req.to_string()]);
        if code != 0 {
            return Err(format!("guest agent: {err}"));
        }
        Ok(serde_json::from_str::<serde_json::Value>(&out).unwrap()["return"].clone())
    };
    let pid = agent(serde_json::json!({"execute": "guest-exec", "arguments": {
        "path": "/bin/sh", "arg": ["-c", cmd], "capture-output": true}}))?["pid"]
        .as_i64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st =
            agent(serde_json::json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}))?;
        if st["exited"].as_bool() == Some(true) {
            let mut out = b64decode(st["out-data"].as_str().unwrap_or(""));
            out.extend(b64decode(st["err-data"].as_str().unwrap_or("")));
            return Ok((
                st["exitcode"].as_i64().unwrap_or(-1),
                String::from_utf8_lossy(&out).into_owned(),
            ));
        }
        assert!(
            Instant::now() < deadline,
            "guest command did not finish: {cmd}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Run a shell command inside the running headnode through the guest agent.
fn guest(cmd: &str) -> (i64, String) {
    try_guest(cmd).unwrap_or_else(|e| panic!("{e}"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Everything the smoke test makes, undone on drop in reverse order.
struct Smoke {
    dir: PathBuf,
    artifacts: PathBuf,
    image: PathBuf,
    installer: PathBuf,
    timings: Vec<(String, Duration)>,
    /// Artefacts are copied once: after the PXE phase, or at the first failure.
    kept: std::cell::Cell<bool>,
}

impl Smoke {
    fn new() -> Smoke {
        let image = PathBuf::from(
            std::env::var("MKHEADNODE_IMAGE")
                .unwrap_or_else(|_| "/var/lib/mkheadnode/base/debian-12-headnode.qcow2".into()),
        );
        assert!(
            image.exists(),
            "no test image at {}: run `make image` first",
            image.display()
        );
        let installer = image.parent().unwrap().join("installer");
        let dir = PathBuf::from("/var/lib/mkheadnode-smoke");
        let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/smoke-artifacts");
        let smoke = Smoke {
            dir,
            artifacts,
            image,
            installer,
            timings: Vec::new(),
            kept: std::cell::Cell::new(false),
        };
        smoke.cleanup();
        for d in ["", "cfg", "log"] {
            std::fs::create_dir_all(smoke.dir.join(d)).unwrap();
            sh("chmod", &["0755", smoke.dir.join(d).to_str().unwrap()]);
        }
        std::fs::create_dir_all(&smoke.artifacts).unwrap();
        std::fs::write(smoke.dir.join("libvirt-qemu"), "  /usr/share/qemu/** r,\n").unwrap();
        smoke
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn flags(&self) -> Vec<String> {
        let p = |r: &str| self.path(r).display().to_string();
        [
            "--connect",
            URI,
            "--virt-type",
            "qemu",
            "--base-image",
            &self.image.display().to_string(),
            "--pool",
            "mkheadnode-smoke",
            "--pool-dir",
            &p("pool"),
            "--config-root",
            &p("cfg"),
            "--apparmor-abstraction",
            &p("libvirt-qemu"),
            "--lock-dir",
            &p("lock"),
            "--log-dir",
            &p("log"),
            "--vlan-network",
            "smoke-v{vlan}",
            "--public-network",
            PUBLIC_NET,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn mk(&self, args: &[&str]) -> (i32, String, String) {
        run(mkheadnode().args(args).args(self.flags()))
    }

    /// Where the operator keeps the install profile before `profile add`.
    fn profile_src(&self) -> PathBuf {
        self.path("profile-src")
    }

    /// `mkheadnode nodes --json`'s rows, by MAC.
    fn nodes(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let (code, out, err) = self.mk(&["nodes", &VLAN.to_string(), "--json"]);
        assert_eq!(code, 0, "nodes: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["mac"].as_str().unwrap().to_string(), n.clone()))
            .collect()
    }

    fn headnode_log(&self) -> PathBuf {
        self.path(&format!("log/{HEADNODE}-serial.log"))
    }

    fn node_log(&self, node: &Node) -> PathBuf {
        self.path(&format!("log/{}-serial.log", node.name))
    }

    /// Fail with the step's name and the tail of the console log that shows why.
    fn fail(&self, step: &str, what: &str, log: &Path) -> ! {
        self.keep_artifacts();
        panic!(
            "smoke step `{step}` failed: {what}\n--- last lines of {} ---\n{}",
            log.display(),
            tail(log, 40)
        );
    }

    fn time(&mut self, name: impl Into<String>, since: Instant) {
        self.timings.push((name.into(), since.elapsed()));
    }

    fn keep_artifacts(&self) {
        if self.kept.replace(true) {
            return;
        }
        let _ = std::fs::copy(
            self.headnode_log(),
            self.artifacts.join("headnode-serial.log"),
        );
        for node in &NODES {
            let _ = std::fs::copy(
                self.node_log(node),
                self.artifacts.join(format!("{}-serial.log", node.name)),
            );
        }
    }

    fn networks(&self) {
        let vlan = format!(
            "<network><name>{VLAN_NET}</name><bridge name='{VLAN_BRIDGE}' stp='off'/>\
             <dns enable='no'/><ip address='10.0.0.1' prefix='24'/></network>"
        );
        let public = format!(
            "<network><name>{PUBLIC_NET}</name><bridge stp='off'/><ip address='172.31.254.1' prefix='24'>\
             <dhcp><range start='172.31.254.100' end='172.31.254.200'/></dhcp></ip></network>"
        );
        for (name, xml) in [(VLAN_NET, vlan), (PUBLIC_NET, public)] {
            let file = self.path(&format!("{name}.xml"));
            std::fs::write(&file, xml).unwrap();
            assert_eq!(
                virsh(&["net-define", file.to_str().unwrap()]).0,
                0,
                "net-define {name}"
            );
            assert_eq!(virsh(&["net-start", name]).0, 0, "net-start {name}");
        }
        // Each node's virtual BMC listens on an address of its own on the VLAN's bridge.
        for node in NODES.iter().filter(|n| n.ipmi && n.bmc != "10.0.0.1") {
            let addr = format!("{}/24", node.bmc);
            let (code, _, err) = sh("ip", &["addr", "add", &addr, "dev", VLAN_BRIDGE]);
            assert_eq!(code, 0, "ip addr add {addr}: {err}");
        }
    }

    /// The config dir the operator prepares: an install profile for both loaders and the BMC
    /// credentials. The profile's GRUB side first tries a kernel whose signature is broken, and
    /// says whether it was refused, then boots the signed one; both over HTTP from nginx.
    fn operator_files(&self) -> PathBuf {
        let cfg = self.path(&format!("cfg/{VLAN}"));
        std::fs::create_dir_all(&cfg).unwrap();
        // The profile is staged elsewhere: `mkheadnode profile add` puts it in the config dir.
        let profile = self.profile_src();
        std::fs::create_dir_all(&profile).unwrap();
        for f in ["vmlinuz", "vmlinuz-bad", "initrd.gz"] {
            std::fs::copy(self.installer.join(f), profile.join(f)).unwrap();
        }
        std::fs::write(
            profile.join("pxelinux.cfg"),
            "DEFAULT install\nLABEL install\n  KERNEL smoke/vmlinuz\n  INITRD smoke/initrd.gz\n  \
             APPEND console=ttyS0,115200 headnode=@HEADNODE@\n",
        )
        .unwrap();
        std::fs::write(
            profile.join("grub.cfg"),
            "set timeout=0\n\
             if linux @GRUB_FETCH@/smoke/vmlinuz-bad console=ttyS0,115200; then\n\
             \x20 echo \"smoke: the kernel with a broken signature was accepted\"\n\
             else\n\
             \x20 echo \"smoke: the kernel with a broken signature was refused\"\n\
             fi\n\
             linux @GRUB_FETCH@/smoke/vmlinuz console=ttyS0,115200 headnode=@HEADNODE@\n\
             initrd @GRUB_FETCH@/smoke/initrd.gz\n\
             boot\n",
        )
        .unwrap();
        sh("chmod", &["-R", "a+rX", cfg.to_str().unwrap()]);
        sh("chmod", &["-R", "a+rX", profile.to_str().unwrap()]);
        let grub = profile.join("grub.cfg");
        let text = std::fs::read_to_string(&grub).unwrap();
        std::fs::write(&grub, text.replace("@GRUB_FETCH@", GRUB_FETCH)).unwrap();
        let creds = cfg.join("bmc.conf");
        let mut text = format!("[default]\ndriver = ipmi\nusername = admin\npassword = {BMC_PASSWORD}\nport = {BMC_PORT}\n");
        for node in NODES.iter().filter(|n| !n.ipmi) {
            text.push_str(&format!("[{}]\ndriver = none\n", node.bmc));
        }
        std::fs::write(&creds, text).unwrap();
        sh("chown", &["root:libvirt-qemu", creds.to_str().unwrap()]);
        sh("chmod", &["0640", creds.to_str().unwrap()]);
        let machines = self.path("machines.txt");
        let lines: String = NODES
            .iter()
            .map(|n| format!("{} {}  # {}\n", n.mac, n.bmc, n.label()))
            .collect();
        std::fs::write(&machines, format!("# the smoke test's nodes\n{lines}")).unwrap();
        machines
    }

    /// A node's VM (network boot first, then its disk), shut off, and its virtual BMC. BIOS nodes
    /// get an empty disk; UEFI nodes a copy of the installer's ESP, which says when it boots.
    fn node(&self, node: &Node) {
        let disk = self.path(&format!("{}.disk", node.name));
        let disk_str = disk.to_str().unwrap();
        let (code, _, err) = match node.firmware {
            Firmware::Bios => sh("qemu-img", &["create", "-q", "-f", "qcow2", disk_str, "1G"]),
            Firmware::Uefi | Firmware::SecureBoot => sh(
                "cp",
                &[self.installer.join("esp.raw").to_str().unwrap(), disk_str],
            ),
        };
        assert_eq!(code, 0, "{}'s disk: {err}", node.name);
        // UEFI: OVMF with a fresh copy of its variables; Secure Boot: q35 with SMM and the
        // variables with Microsoft's keys, which trust Debian's shim. The NIC has no option ROM,
        // so OVMF's own PXE stack runs, as a server's firmware would.
        let (machine, format, firmware, features, rom) = match node.firmware {
            Firmware::Bios => ("pc", "qcow2", "<bios useserial='yes'/>".to_string(), "", ""),
            Firmware::Uefi | Firmware::SecureBoot => {
                let sb = node.firmware == Firmware::SecureBoot;
                let (code, vars) = if sb {
                    ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")
                } else {
                    ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")
                };
                let nvram = self.path(&format!("{}-vars.fd", node.name));
                std::fs::copy(Path::new("/usr/share/OVMF").join(vars), &nvram).unwrap();
                let loader = format!(
                    "<loader readonly='yes' secure='{}' type='pflash'>/usr/share/OVMF/{code}</loader>\
                     <nvram>{}</nvram>",
                    if sb { "yes" } else { "no" },
                    nvram.display()
                );
                let smm = if sb { "<smm state='on'/>" } else { "" };
                ("q35", "raw", loader, smm, "<rom bar='off'/>")
            }
        };
        let xml = format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='{machine}'>hvm</type>{firmware}\
             <boot dev='network'/><boot dev='hd'/></os><features><acpi/>{features}</features>\
             <devices><disk type='file' device='disk'><driver name='qemu' type='{format}'/>\
             <source file='{disk_str}'/><target dev='vda' bus='virtio'/></disk>\
             <interface type='network'><mac address='{mac}'/><source network='{VLAN_NET}'/>\
             <model type='virtio'/>{rom}</interface>\
             <serial type='file'><source path='{log}' append='on'/><target port='0'/></serial>\
             </devices></domain>",
            name = node.name,
            mac = node.mac,
            log = self.node_log(node).display(),
        );
        let file = self.path(&format!("{}.xml", node.name));
        std::fs::write(&file, xml).unwrap();
        let (code, _, err) = virsh(&["define", file.to_str().unwrap()]);
        assert_eq!(code, 0, "define {}: {err}", node.name);
        if !node.ipmi {
            return;
        }
        if sh("vbmc", &["list"]).0 != 0 {
            assert_eq!(sh("vbmcd", &[]).0, 0, "vbmcd did not start");
            std::thread::sleep(Duration::from_secs(2));
        }
        let (code, _, err) = sh(
            "vbmc",
            &[
                "add",
                node.name,
                "--port",
                BMC_PORT,
                "--address",
                node.bmc,
                "--username",
                "admin",
                "--password",
                BMC_PASSWORD,
                "--libvirt-uri",
                URI,
            ],
        );
        assert_eq!(code, 0, "vbmc add {}: {err}", node.name);
        assert_eq!(sh("vbmc", &["start", node.name]).0, 0, "vbmc start");
    }

    /// The headnode's share, services and files, checked from inside through the guest agent;
    /// `when` is added to the name of a failed step.
    fn check_headnode(&self, when: &str) {
        let checks: [(&str, &str, &str); 10] = [
            (
                "share mounted read-only",
                "findmnt -n -o FSTYPE,OPTIONS /etc/moc",
                "9p ro,",
            ),
            (
                "machines.txt readable",
                "cat /etc/moc/machines.txt",
                NODES[2].mac,
            ),
            (
                "dhcpd's packet socket on eth0",
                "ss -0p | grep dhcpd",
                "*:eth0",
            ),
            (
                "services up",
                "systemctl is-active isc-dhcp-server tftpd-hpa nginx fcgiwrap.socket | sort -u",
                "active",
            ),
            (
                "nginx on the private address",
                "ss -ltnp | grep nginx",
                "192.168.10.254:80",
            ),
            ("profile published", "ls /var/lib/tftpboot/smoke", "vmlinuz"),
            (
                "default boots the disk",
                "cat /var/lib/tftpboot/pxelinux.cfg/default",
                "LOCALBOOT 0",
            ),
            (
                "UEFI chain published",
                "ls /var/lib/tftpboot/efi/profiles/smoke",
                "grub.cfg grubx64.efi shimx64.efi",
            ),
            (
                "GRUB's config at its signed prefix",
                "grep configfile /var/lib/tftpboot/grub/grub.cfg",
                "/uefi/",
            ),
            (
                "shim is Microsoft-signed",
                "grep -q 'Microsoft Corporation UEFI CA' /var/lib/tftpboot/efi/shimx64.efi && echo signed",
                "signed",
            ),
        ];
        for (step, cmd, want) in checks {
            let (code, out) = guest(cmd);
            let squashed = out.split_whitespace().collect::<Vec<_>>().join(" ");
            if code != 0 || !squashed.contains(want) {
                self.fail(
                    &format!("{step}{when}"),
                    &format!("`{cmd}` gave exit {code}:\n{out}"),
                    &self.headnode_log(),
                );
            }
        }
    }

    /// Wait until `needle` appears `n` times in `log`.
    fn wait_for_nth(&self, step: &str, log: &Path, needle: &str, n: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            let text =
                String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
            if text.matches(needle).count() >= n {
                return;
            }
            if start.elapsed() > timeout {
                self.fail(
                    step,
                    &format!(
                        "`{needle}` did not appear {n} time(s) within {} s",
                        timeout.as_secs()
                    ),
                    log,
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `nodes --json` while `node` installs: its boot loader fetched since it was armed (its
    /// installer has yet to load, so it cannot have called back), with a lease.
    fn check_installing(&self, node: &Node) {
        let nodes = self.nodes();
        let row = &nodes[node.mac];
        let loader = if node.firmware == Firmware::Bios {
            "bios"
        } else {
            "uefi"
        };
        let last = row["last_loader"]["loader"].as_str().unwrap_or_default();
        if row["state"] != "installing" || !last.starts_with(loader) || row["lease"].is_null() {
            self.fail(
                &format!("{}: nodes while it installs", node.label()),
                &format!("want state installing, a {loader} loader and a lease: {row}"),
                &self.node_log(node),
            );
        }
    }

    /// Follow every node's console until each has shown all its [`milestones`] in order; each
    /// gets a timing row, from `since` to when it was first seen.
    fn follow_nodes(&mut self, since: Instant, timeout: Duration) {
        let plans: Vec<Vec<(&str, String)>> = NODES.iter().map(milestones).collect();
        let mut reached = vec![0usize; NODES.len()];
        let mut offset = vec![0usize; NODES.len()];
        let mut asked_during = 0;
        loop {
            let mut pending = None;
            for (i, node) in NODES.iter().enumerate() {
                let text = console_text(&self.node_log(node));
                while let Some((name, needle)) = plans[i].get(reached[i]) {
                    let Some(at) = text.get(offset[i]..).and_then(|t| t.find(needle.as_str()))
                    else {
                        pending.get_or_insert((node, *name, needle.clone()));
                        break;
                    };
                    offset[i] += at + needle.len();
                    reached[i] += 1;
                    self.time(format!("{}: power-on -> {name}", node.label()), since);
                    // Asked only if the node's next milestone is not on its console yet: a node
                    // noticed late (while another was being asked) may be done installing.
                    let next = plans[i].get(reached[i]).map(|(_, n)| n.as_str());
                    let rest = text.get(offset[i]..).unwrap_or_default();
                    if DURING.contains(name) && next.is_some_and(|n| !rest.contains(n)) {
                        self.check_installing(node);
                        asked_during += 1;
                    }
                }
            }
            let Some((node, name, needle)) = pending else {
                assert!(asked_during > 0, "no node was caught installing by `nodes`");
                return;
            };
            if since.elapsed() > timeout {
                self.fail(
                    &format!("{}: {name}", node.label()),
                    &format!("`{needle}` did not appear within {} s", timeout.as_secs()),
                    &self.node_log(node),
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn cleanup(&self) {
        for node in &NODES {
            sh("vbmc", &["stop", node.name]);
            sh("vbmc", &["delete", node.name]);
        }
        for dom in NODES.iter().map(|n| n.name).chain([HEADNODE]) {
            virsh(&["destroy", dom]);
            virsh(&["undefine", dom, "--nvram"]);
        }
        let (_, vols, _) = virsh(&["vol-list", "mkheadnode-smoke"]);
        for vol in vols
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
        {
            virsh(&["vol-delete", vol, "--pool", "mkheadnode-smoke"]);
        }
        virsh(&["pool-destroy", "mkheadnode-smoke"]);
        virsh(&["pool-undefine", "mkheadnode-smoke"]);
        for net in [VLAN_NET, PUBLIC_NET] {
            virsh(&["net-destroy", net]);
            virsh(&["net-undefine", net]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn timing_table(&self) -> String {
        let mut out = String::from("\nsmoke timings (TCG)\n");
        for (name, d) in &self.timings {
            out.push_str(&format!("  {name:<66} {:>7.1} s\n", d.as_secs_f64()));
        }
        out
    }
}

impl Drop for Smoke {
    fn drop(&mut self) {
        self.keep_artifacts();
        self.cleanup();
    }
}

/// A console log as text, without the terminal's escape sequences (firmware and boot loaders
/// move the cursor in the middle of words).
fn console_text(log: &Path) -> String {
    let raw = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
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

/// What a node's console must show, in order, each with the name of its timing row.
/// The milestones at which `nodes` is asked about a node mid-install: its loader is running,
/// and its kernel and initrd have yet to be fetched.
const DURING: [&str; 2] = ["pxelinux running", "shim -> GRUB reads the node's config"];

fn milestones(node: &Node) -> Vec<(&'static str, String)> {
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
            ("installer kernel running", "installer: running on".into()),
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

fn tcp(addr: &str, port: u16) -> std::io::Result<TcpStream> {
    let sa: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&sa, Duration::from_secs(4))
}

#[test]
#[ignore = "boots real VMs for minutes: run it with `make smoke`"]
fn a_headnode_boots_and_installs_a_node_over_pxe() {
    let mut s = Smoke::new();
    s.networks();
    let machines = s.operator_files();
    for node in &NODES {
        s.node(node);
    }

    // 1. Create the headnode exactly as an operator would, and wait for its PXE stack.
    let t = Instant::now();
    let (code, _, err) = s.mk(&[
        &VLAN.to_string(),
        "--wait",
        "--timeout",
        "600",
        "--machines",
        machines.to_str().unwrap(),
    ]);
    if code != 0 {
        s.fail(
            "create --wait",
            &format!("exit {code}: {err}"),
            &s.headnode_log(),
        );
    }
    s.time("create + boot to ready (mkheadnode --wait)", t);

    // 2. The operator adds the install profile from the host; the running headnode publishes it.
    let t = Instant::now();
    let src = s.profile_src();
    let (code, _, err) = s.mk(&[
        "profile",
        "add",
        &VLAN.to_string(),
        "smoke",
        src.to_str().unwrap(),
    ]);
    if code != 0 || !err.contains("published profile smoke for BIOS (pxelinux.cfg) UEFI (grub.cfg)")
    {
        s.fail(
            "profile add",
            &format!("exit {code}: {err}"),
            &s.headnode_log(),
        );
    }
    s.time("profile add (copy, publish in the headnode)", t);

    // Inside the headnode.
    s.check_headnode("");
    let (_, sockets) = guest("ss -0p | grep dhcpd");
    assert!(
        !sockets.contains("eth1"),
        "dhcpd listens on eth1:\n{sockets}"
    );
    let (_, listeners) = guest("ss -ltnp | grep nginx");
    assert!(
        listeners.lines().all(|l| l.contains("192.168.10.254:80")),
        "nginx listens elsewhere:\n{listeners}"
    );

    // The public side: ssh answers, everything else is dropped (a timeout, not a refusal).
    let (_, leases, _) = virsh(&["net-dhcp-leases", PUBLIC_NET]);
    let public_ip = leases
        .lines()
        .find(|l| l.contains("52:54:00:4d:1f:ca"))
        .and_then(|l| l.split_whitespace().find(|w| w.contains('/')))
        .map(|w| w.split('/').next().unwrap().to_string())
        .unwrap_or_else(|| {
            s.fail(
                "public address",
                &format!("no lease for eth1:\n{leases}"),
                &s.headnode_log(),
            )
        });
    // The set-up makes the RSA host key after `done` and then reloads sshd, which re-executes
    // itself: for a moment under emulation nothing listens. ssh must answer within a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ssh = tcp(&public_ip, 22);
    while ssh.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        ssh = tcp(&public_ip, 22);
    }
    if let Err(e) = ssh {
        s.fail(
            "ssh on the public side",
            &format!("{public_ip}:22: {e}"),
            &s.headnode_log(),
        );
    }
    for port in [80, 8080] {
        match tcp(&public_ip, port) {
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => s.fail(
                "public side drops",
                &format!("{public_ip}:{port} answered: {other:?}"),
                &s.headnode_log(),
            ),
        }
    }

    // 3 + 4. The link tool arms every node for the profile, both loaders, and powers each on
    // through its BMC; each boots its own way and calls /boot-default/ from the installer.
    // First armed only (--no-power): `nodes` shows every node armed for both loaders.
    let vlan = VLAN.to_string();
    let (code, out, err) = s.mk(&[
        "install",
        &vlan,
        "--profile",
        "smoke",
        "--all",
        "--no-power",
    ]);
    if code != 0 || out.matches("power left alone").count() != NODES.len() {
        s.fail(
            "install --no-power",
            &format!("exit {code}:\n{out}\n{err}"),
            &s.headnode_log(),
        );
    }
    let nodes = s.nodes();
    for node in &NODES {
        let row = &nodes[node.mac];
        assert_eq!(row["state"], "armed", "{}: {row}", node.label());
        for loader in ["bios", "uefi"] {
            assert_eq!(
                row["boot"][loader]["profile"],
                "smoke",
                "{}: {row}",
                node.label()
            );
        }
    }
    for node in &NODES {
        let dashed = node.dashed();
        for (link, target) in [
            (format!("pxelinux.cfg/01-{dashed}"), "../smoke/pxelinux.cfg"),
            (format!("uefi/01-{dashed}"), "../efi/profiles/smoke"),
        ] {
            let got = guest(&format!("readlink /var/lib/tftpboot/{link}")).1;
            assert_eq!(got.trim(), target, "{link}");
        }
    }
    // Then installed for real: the link tool powers the BIOS node on through its BMC.
    let t = Instant::now();
    let (code, out, err) = s.mk(&["install", &vlan, "--profile", "smoke", "--all"]);
    let ipmi = NODES.iter().filter(|n| n.ipmi).count();
    if code != 0 || out.matches("via ipmi").count() != ipmi {
        s.fail(
            "install",
            &format!("exit {code}:\n{out}\n{err}"),
            &s.headnode_log(),
        );
    }
    for node in NODES.iter().filter(|n| !n.ipmi) {
        let (code, _, err) = virsh(&["start", node.name]);
        assert_eq!(code, 0, "start {}: {err}", node.name);
    }
    s.follow_nodes(t, Duration::from_secs(900));
    // `nodes` from the host: each one installed, disarmed by its own callback, holding a lease,
    // and its last loader the one of its firmware.
    let nodes = s.nodes();
    for node in &NODES {
        let row = &nodes[node.mac];
        let loader = if node.firmware == Firmware::Bios {
            "bios"
        } else {
            "uefi"
        };
        let want = [
            (&row["state"], serde_json::json!("installed")),
            (&row["boot"]["bios"], serde_json::Value::Null),
            (&row["boot"]["uefi"], serde_json::Value::Null),
            (&row["boot_default"]["status"], serde_json::json!(200)),
            (&row["lease"]["state"], serde_json::json!("active")),
        ];
        for (got, want) in want {
            assert_eq!(*got, want, "{}: {row}", node.label());
        }
        // The last loader it asked for: its firmware's kind (a UEFI node's second boot may end
        // on the HTTP Boot attempt, `uefi-http`).
        let last = row["last_loader"]["loader"].as_str().unwrap_or_default();
        assert!(last.starts_with(loader), "{}: {row}", node.label());
    }

    // Evidence from the nodes' side: one install each, Secure Boot as each firmware had it, and
    // a kernel with a broken signature refused only where Secure Boot is on.
    for node in &NODES {
        let log = s.node_log(node);
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
        if text.matches("installer: running on").count() != 1 {
            s.fail(node.label(), "the installer did not run exactly once", &log);
        }
        let (secure_boot, broken_kernel) = match node.firmware {
            Firmware::Bios => continue,
            Firmware::Uefi => ("secure boot: off", "was accepted"),
            Firmware::SecureBoot => ("secure boot: on", "was refused"),
        };
        for want in [
            format!("installer: {secure_boot}"),
            format!("smoke: the kernel with a broken signature {broken_kernel}"),
        ] {
            if !text.contains(&want) {
                s.fail(node.label(), &format!("no `{want}` on its console"), &log);
            }
        }
    }
    // And from the headnode's side: each node called back, held a lease, and is disarmed for
    // both loaders.
    let (_, access) = guest("cat /var/log/nginx/access.log");
    let (_, leases) = guest("cat /var/lib/dhcp/dhcpd.leases");
    // GRUB fetched the kernels from nginx (pxelinux fetches over TFTP).
    for file in ["vmlinuz-bad", "vmlinuz", "initrd.gz"] {
        let fetch = format!("GET /smoke/{file} HTTP/1.1\" 200 ");
        assert!(access.contains(&fetch), "no {fetch}: {access}");
    }
    for node in &NODES {
        let callback = format!("GET /boot-default/?mac={} HTTP/1.1\" 200 ", node.mac);
        assert!(access.contains(&callback), "{}: {access}", node.label());
        let lease = format!("hardware ethernet {}", node.mac);
        assert!(leases.contains(&lease), "{}: {leases}", node.label());
        for dir in ["pxelinux.cfg", "uefi"] {
            let link = format!("/var/lib/tftpboot/{dir}/01-{}", node.dashed());
            let (code, _) = guest(&format!("test -e {link} || test -L {link}"));
            assert_ne!(code, 0, "{}: {link} is still there", node.label());
        }
    }

    // 5. A reboot sets nothing up again: the share mounts and the stack serves by itself.
    let t = Instant::now();
    let (code, _, err) = virsh(&["reboot", HEADNODE, "--mode", "agent"]);
    assert_eq!(code, 0, "reboot: {err}");
    // One qemu across the guest's reboot, so one console log: wait for the second kernel.
    let log = s.headnode_log();
    s.wait_for_nth(
        "reboot",
        &log,
        mkheadnode::model::console::BOOT_SIGN,
        2,
        Duration::from_secs(120),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // Blocks until the boot is over: "running", or "degraded" if a unit failed.
        match try_guest("systemctl is-system-running --wait") {
            Ok((_, state)) if state.trim() == "running" => break,
            Ok((_, state)) => s.fail("reboot", &format!("the system is {}", state.trim()), &log),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(1)),
            Err(e) => s.fail("reboot", &format!("no guest agent after 300 s: {e}"), &log),
        }
    }
    s.time("headnode reboot -> booted again", t);
    s.check_headnode(" (after a reboot)");
    let console = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert_eq!(
        console.matches(seed::SETUP_DONE).count(),
        1,
        "the set-up ran again at the reboot"
    );

    // The consoles as they are now; the rebuild below starts a fresh headnode log.
    s.keep_artifacts();

    // 6. Rebuild (same MACs), then tear down with --purge.
    let before: serde_json::Value =
        serde_json::from_str(&s.mk(&["status", &VLAN.to_string(), "--json"]).1).unwrap();
    let t = Instant::now();
    let (code, _, err) = s.mk(&["rebuild", &VLAN.to_string()]);
    assert_eq!(code, 0, "rebuild: {err}");
    s.time("rebuild (without waiting)", t);
    let after: serde_json::Value =
        serde_json::from_str(&s.mk(&["status", &VLAN.to_string(), "--json"]).1).unwrap();
    assert_eq!(
        (&before["private_mac"], &before["public_mac"]),
        (&after["private_mac"], &after["public_mac"])
    );
    let t = Instant::now();
    let (code, _, err) = s.mk(&["teardown", &VLAN.to_string(), "--purge"]);
    assert_eq!(code, 0, "teardown: {err}");
    s.time("teardown --purge", t);
    assert_ne!(
        virsh(&["domstate", HEADNODE]).0,
        0,
        "headnode still defined"
    );
    assert!(
        !s.path(&format!("cfg/{VLAN}")).exists(),
        "config dir not purged"
    );
    let (_, vols, _) = virsh(&["vol-list", "mkheadnode-smoke"]);
    assert_eq!(
        vols.lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .count(),
        0,
        "{vols}"
    );

    s.keep_artifacts();
    let table = s.timing_table();
    let _ = std::io::stderr().write_all(table.as_bytes());
    drop(s);
    // 6. Nothing of the test remains.
    for (what, args) in [
        ("domain", vec!["dominfo", NODES[0].name]),
        ("domain", vec!["dominfo", NODES[1].name]),
        ("domain", vec!["dominfo", NODES[2].name]),
        ("network", vec!["net-info", VLAN_NET]),
        ("network", vec!["net-info", PUBLIC_NET]),
        ("pool", vec!["pool-info", "mkheadnode-smoke"]),
    ] {
        assert_ne!(virsh(&args).0, 0, "a {what} of the test remains: {args:?}");
    }
    assert!(!Path::new("/var/lib/mkheadnode-smoke").exists());
}
