//! The nightly smoke test (`make smoke`): a real headnode boots under TCG, then a second VM on
//! the same VLAN is powered on through a real IPMI endpoint by the headnode's link tool,
//! PXE-boots the test installer from it, calls /boot-default/, and falls to local boot.
//!
//! Everything runs on isolated libvirt networks: the VLAN network has no DHCP but the host's
//! 10.0.0.1 (where the node's virtual BMC listens); the "public" network is isolated too, with
//! libvirt's DHCP. Serial logs are kept in target/smoke-artifacts; every trace of the test is
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
const NODE_MAC: &str = "52:54:00:aa:40:42";
const NODE: &str = "smoke-node-4042";
const HEADNODE: &str = "headnode-4042";
const VLAN_NET: &str = "smoke-v4042";
const PUBLIC_NET: &str = "smoke-public";
const BMC_PORT: &str = "6230";
const BMC_PASSWORD: &str = "smoke-secret";

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
    timings: Vec<(&'static str, Duration)>,
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

    fn headnode_log(&self) -> PathBuf {
        self.path(&format!("log/{HEADNODE}-serial.log"))
    }

    fn node_log(&self) -> PathBuf {
        self.path("log/node-serial.log")
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

    fn time(&mut self, name: &'static str, since: Instant) {
        self.timings.push((name, since.elapsed()));
    }

    fn keep_artifacts(&self) {
        if self.kept.replace(true) {
            return;
        }
        for (from, to) in [
            (self.headnode_log(), "headnode-serial.log"),
            (self.node_log(), "node-serial.log"),
        ] {
            let _ = std::fs::copy(from, self.artifacts.join(to));
        }
    }

    fn networks(&self) {
        let vlan = format!(
            "<network><name>{VLAN_NET}</name><bridge stp='off'/><dns enable='no'/>\
             <ip address='10.0.0.1' prefix='24'/></network>"
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
    }

    /// The config dir the operator prepares: an install profile and the BMC credentials.
    fn operator_files(&self) -> PathBuf {
        let cfg = self.path(&format!("cfg/{VLAN}"));
        let profile = cfg.join("profiles/smoke");
        std::fs::create_dir_all(&profile).unwrap();
        for f in ["vmlinuz", "initrd.gz"] {
            std::fs::copy(self.installer.join(f), profile.join(f)).unwrap();
        }
        std::fs::write(
            profile.join("pxelinux.cfg"),
            "DEFAULT install\nLABEL install\n  KERNEL smoke/vmlinuz\n  INITRD smoke/initrd.gz\n  \
             APPEND console=ttyS0,115200 headnode=@HEADNODE@\n",
        )
        .unwrap();
        sh("chmod", &["-R", "a+rX", cfg.to_str().unwrap()]);
        let creds = cfg.join("bmc.conf");
        std::fs::write(&creds, format!("[default]\ndriver = ipmi\nusername = admin\npassword = {BMC_PASSWORD}\nport = {BMC_PORT}\n")).unwrap();
        sh("chown", &["root:libvirt-qemu", creds.to_str().unwrap()]);
        sh("chmod", &["0640", creds.to_str().unwrap()]);
        let machines = self.path("machines.txt");
        std::fs::write(
            &machines,
            format!("# the smoke test's node\n{NODE_MAC} 10.0.0.1\n"),
        )
        .unwrap();
        machines
    }

    /// The node VM (network boot first, empty disk) and its virtual BMC on 10.0.0.1.
    fn node(&self) {
        let disk = self.path("node.qcow2");
        assert_eq!(
            sh(
                "qemu-img",
                &["create", "-q", "-f", "qcow2", disk.to_str().unwrap(), "1G"]
            )
            .0,
            0
        );
        let xml = format!(
            "<domain type='qemu'><name>{NODE}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/><boot dev='hd'/>\
             <bios useserial='yes'/></os><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/>\
             <target dev='vda' bus='virtio'/></disk>\
             <interface type='network'><mac address='{NODE_MAC}'/><source network='{VLAN_NET}'/>\
             <model type='virtio'/></interface>\
             <serial type='file'><source path='{}'/><target port='0'/></serial></devices></domain>",
            disk.display(),
            self.node_log().display()
        );
        let file = self.path("node.xml");
        std::fs::write(&file, xml).unwrap();
        assert_eq!(
            virsh(&["define", file.to_str().unwrap()]).0,
            0,
            "define {NODE}"
        );
        if sh("vbmc", &["list"]).0 != 0 {
            assert_eq!(sh("vbmcd", &[]).0, 0, "vbmcd did not start");
            std::thread::sleep(Duration::from_secs(2));
        }
        let (code, _, err) = sh(
            "vbmc",
            &[
                "add",
                NODE,
                "--port",
                BMC_PORT,
                "--address",
                "10.0.0.1",
                "--username",
                "admin",
                "--password",
                BMC_PASSWORD,
                "--libvirt-uri",
                URI,
            ],
        );
        assert_eq!(code, 0, "vbmc add: {err}");
        assert_eq!(sh("vbmc", &["start", NODE]).0, 0, "vbmc start");
    }

    /// The headnode's share, services and files, checked from inside through the guest agent;
    /// `when` is added to the name of a failed step.
    fn check_headnode(&self, when: &str) {
        let checks: [(&str, &str, &str); 7] = [
            (
                "share mounted read-only",
                "findmnt -n -o FSTYPE,OPTIONS /etc/moc",
                "9p ro,",
            ),
            (
                "machines.txt readable",
                "cat /etc/moc/machines.txt",
                NODE_MAC,
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

    fn wait_for(&self, step: &str, log: &Path, needle: &str, timeout: Duration) {
        self.wait_for_nth(step, log, needle, 1, timeout);
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

    fn cleanup(&self) {
        sh("vbmc", &["stop", NODE]);
        sh("vbmc", &["delete", NODE]);
        for dom in [NODE, HEADNODE] {
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
            out.push_str(&format!("  {name:<44} {:>7.1} s\n", d.as_secs_f64()));
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
    s.node();

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

    // 2. Inside the headnode.
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
    if let Err(e) = tcp(&public_ip, 22) {
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

    // 3 + 4. The link tool links the node to the profile and powers it on through its BMC.
    let t = Instant::now();
    let (code, out) = guest("mkheadnode-link --profile smoke");
    if code != 0 || !out.contains("via ipmi") {
        s.fail(
            "mkheadnode-link",
            &format!("exit {code}:\n{out}"),
            &s.headnode_log(),
        );
    }
    let link = format!(
        "/var/lib/tftpboot/pxelinux.cfg/01-{}",
        NODE_MAC.replace(':', "-")
    );
    assert_eq!(
        guest(&format!("readlink {link}")).1.trim(),
        "../smoke/pxelinux.cfg"
    );
    let node_log = s.node_log();
    s.wait_for(
        "node DHCP lease",
        &node_log,
        "pxelinux.0",
        Duration::from_secs(180),
    );
    s.time("node power-on -> DHCP lease naming pxelinux.0", t);
    s.wait_for("pxelinux", &node_log, "PXELINUX", Duration::from_secs(180));
    s.time("node power-on -> pxelinux running", t);
    s.wait_for(
        "installer callback",
        &node_log,
        "boot-default answered: OK",
        Duration::from_secs(240),
    );
    s.time("node power-on -> /boot-default/ called", t);

    // Evidence from the headnode's side too.
    let (_, access) = guest("cat /var/log/nginx/access.log");
    assert!(
        access.contains(&format!("GET /boot-default/?mac={NODE_MAC}"))
            && access.contains("\" 200 "),
        "{access}"
    );
    let (_, leases) = guest("cat /var/lib/dhcp/dhcpd.leases");
    assert!(
        leases.contains(&format!("hardware ethernet {NODE_MAC}")),
        "{leases}"
    );
    let (code, _) = guest(&format!("test -e {link} || test -L {link}"));
    assert_ne!(code, 0, "the node's link is still there");

    // The node's next network boot gets pxelinux again and falls through to the local disk.
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(&node_log).unwrap()).into_owned();
        let after = text.split("boot-default answered: OK").nth(1).unwrap_or("");
        if after.contains("PXELINUX") && after.contains("Booting from local disk") {
            assert_eq!(
                text.matches("installer: running on").count(),
                1,
                "the installer ran again"
            );
            break;
        }
        if start.elapsed() > Duration::from_secs(180) {
            s.fail(
                "second boot goes local",
                "no `Booting from local disk` after the installer",
                &node_log,
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    s.time("node power-on -> second boot falls to local disk", t);

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
        ("domain", vec!["dominfo", NODE]),
        ("network", vec!["net-info", VLAN_NET]),
        ("network", vec!["net-info", PUBLIC_NET]),
        ("pool", vec!["pool-info", "mkheadnode-smoke"]),
    ] {
        assert_ne!(virsh(&args).0, 0, "a {what} of the test remains: {args:?}");
    }
    assert!(!Path::new("/var/lib/mkheadnode-smoke").exists());
}
