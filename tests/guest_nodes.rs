//! The guest side of `nodes`, `install` and `profile`, run for real on this machine as the
//! headnode runs them: `mkheadnode-nodes` on a temp TFTP root with crafted (and hostile) lease,
//! journal and access-log files; the link tool's `--power-status` against a Redfish stand-in on
//! loopback; the publish script dropping profiles that left the share; and the guest agent's
//! protocol as mkheadnode speaks it, against a real qemu-ga on a local socket. The tools are
//! rendered from `render::seed`, exactly as the seed carries them.

use crate::support::{free_port, guest_file, guest_program, run, wait_until};
use mkheadnode::model::agent;
use mkheadnode::model::nodes::{self, Report};
use mkheadnode::render::seed;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NODE_A: &str = "52:54:00:0a:0b:0c";
const NODE_B: &str = "52:54:00:0a:0b:0d";
const NODE_C: &str = "52:54:00:0a:0b:0e";
/// 2026-11-25 14:03:12 UTC.
const T0: u64 = 1_795_615_392;

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A headnode's view laid out in a temp dir: TFTP root, machines, leases, journal export and
/// access log, and the tools.
struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let bed = Bed {
            dir: tempfile::tempdir().unwrap(),
        };
        let root = bed.root();
        for sub in [
            "pxelinux.cfg",
            "uefi",
            "efi/profiles/smoke",
            "smoke",
            "biosonly",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for f in [
            "smoke/pxelinux.cfg",
            "smoke/grub.cfg",
            "biosonly/pxelinux.cfg",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        guest_program(bed.dir.path(), "nodes", &seed::nodes_tool().unwrap());
        guest_program(bed.dir.path(), "link", &seed::link_tool().unwrap());
        std::fs::write(
            bed.path("machines.txt"),
            format!(
                "# the rack\n{NODE_A} 127.0.0.1\n{} 127.0.0.2  # upper case, dashes\n\
                 {NODE_C} 127.0.0.3\nnot a machine\n",
                NODE_B.to_uppercase().replace(':', "-")
            ),
        )
        .unwrap();
        bed
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self) -> PathBuf {
        self.path("tftp")
    }

    /// Arm `mac` for profile `smoke` on both loaders, as the link tool does.
    fn arm(&self, mac: &str) {
        let name = format!("01-{}", mac.replace(':', "-"));
        symlink(
            "../smoke/pxelinux.cfg",
            self.root().join("pxelinux.cfg").join(&name),
        )
        .unwrap();
        symlink(
            "../efi/profiles/smoke",
            self.root().join("uefi").join(&name),
        )
        .unwrap();
    }

    fn nodes(&self, extra: &[&str]) -> (Report, String) {
        let (code, out, err) = run(Command::new(self.path("nodes"))
            .arg("--machines")
            .arg(self.path("machines.txt"))
            .arg("--tftp-root")
            .arg(self.root())
            .arg("--leases")
            .arg(self.path("leases"))
            .arg("--journal")
            .arg(self.path("journal"))
            .arg("--access-log")
            .arg(self.path("access.log"))
            .arg("--link-tool")
            .arg(self.path("link"))
            .arg("--credentials")
            .arg(self.path("bmc.conf"))
            .args(["--timeout", "3"])
            .args(extra));
        assert_eq!(code, 0, "nodes {extra:?}:\n{out}\n{err}");
        (nodes::parse(&out).unwrap(), out)
    }
}

/// A journal export (`journalctl -o json`): (seconds after T0, identifier, message).
fn journal(entries: &[(u64, &str, &str)]) -> String {
    let mut out = String::new();
    for (dt, ident, message) in entries {
        let entry = serde_json::json!({
            "__REALTIME_TIMESTAMP": ((T0 + dt) * 1_000_000).to_string(),
            "SYSLOG_IDENTIFIER": ident,
            "MESSAGE": message,
        });
        out.push_str(&format!("{entry}\n"));
    }
    out
}

/// An access-log line in nginx's combined format at `dt` seconds after T0 (14:03:12 UTC).
fn access(dt: u64, ip: &str, request: &str, status: u16) -> String {
    let (m, s) = ((3 * 60 + 12 + dt) / 60, (12 + dt) % 60);
    format!("{ip} - - [25/Nov/2026:14:{m:02}:{s:02} +0000] \"{request}\" {status} 10 \"-\" \"x\"\n")
}

/// Leases as dhcpd writes them, with a client that chose a hostname meant to forge a lease for
/// another machine, a lease in epoch form, and a last lease still being written.
const LEASES: &str = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
authoring-byte-order little-endian;
server-duid "\000\001\000\001,\371\003\207RT\000M\000*";
lease 192.168.10.100 {
  starts 3 2026/11/25 14:03:13;
  ends 4 2026/11/26 00:03:13;
  cltt 3 2026/11/25 14:03:13;
  binding state active;
  next binding state free;
  hardware ethernet 52:54:00:0a:0b:0c;
  uid "\001RT\000\012\013\014";
  client-hostname "evil\"; } lease 192.168.10.99 { hardware ethernet 52:54:00:0a:0b:0e; binding state active; client-hostname \"\033[2J";
}
failover peer "x" state { my state normal; }
lease 192.168.10.101 {
  starts epoch 1795615400; # Wed Nov 25 14:03:20 2026
  ends never;
  binding state active;
  hardware ethernet 52:54:00:0a:0b:0d;
  set vendor-class-identifier = "PXEClient:Arch:00007:UNDI:003016";
  on expiry { set x = "}"; }
}
lease 192.168.10.102 {
  starts 3 2026/11/25 14:03:12;
  hardware ethernet 52:54:00:0a:0b:0e;
  client-hostname "never ends
"#;

fn lay_out_logs(bed: &Bed) {
    std::fs::write(bed.path("leases"), LEASES).unwrap();
    let j = journal(&[
        (0, "dhcpd", &format!("DHCPDISCOVER from {NODE_A} via eth0")),
        (
            1,
            "dhcpd",
            &format!("DHCPACK on 192.168.10.100 to {NODE_A} (evil) via eth0"),
        ),
        (2, "in.tftpd", "RRQ from 192.168.10.100 filename pxelinux.0"),
        (
            3,
            "in.tftpd",
            "RRQ from 192.168.10.100 filename pxelinux.cfg/C0A80A64",
        ),
        (
            4,
            "in.tftpd",
            &format!(
                "RRQ from 192.168.10.100 filename pxelinux.cfg/01-{}",
                NODE_A.replace(':', "-")
            ),
        ),
        (
            5,
            "in.tftpd",
            "RRQ from 192.168.10.100 filename smoke/vmlinuz\u{1b}[2J",
        ),
        // A hostname that reads like another message must not become one.
        (
            6,
            "dhcpd",
            &format!(
                "DHCPDISCOVER from {NODE_B} (x) via eth0 DHCPACK on 192.168.10.100 to {NODE_C}"
            ),
        ),
        (7, "sshd", "RRQ from 192.168.10.100 filename forged"),
        (
            8,
            "dhcpd",
            &format!("DHCPACK on 192.168.10.101 to {NODE_B} via eth0"),
        ),
        (
            9,
            "in.tftpd",
            &format!(
                "RRQ from 192.168.10.101 filename uefi/01-{}/shimx64.efi",
                NODE_B.replace(':', "-")
            ),
        ),
    ]);
    // A message that is not UTF-8 comes as a list of bytes; a line that is not JSON is skipped.
    let raw = serde_json::json!({"__REALTIME_TIMESTAMP": ((T0 + 10) * 1_000_000).to_string(),
        "SYSLOG_IDENTIFIER": "in.tftpd", "MESSAGE": b"RRQ from 192.168.10.100 filename bin\xff".to_vec()});
    std::fs::write(bed.path("journal"), format!("{j}{raw}\nnot json\n")).unwrap();
    let log = [
        access(20, "192.168.10.100", "GET /smoke/initrd.gz HTTP/1.1", 200),
        access(21, "192.168.10.101", "GET /smoke/linux HTTP/1.1", 200),
        access(
            30,
            "192.168.10.100",
            &format!("GET /boot-default/?mac={} HTTP/1.1", NODE_A.to_uppercase()),
            200,
        ),
        access(
            31,
            "192.168.10.66",
            &format!("GET /boot-default/?mac={NODE_C}&mac=x HTTP/1.1"),
            400,
        ),
        access(32, "192.168.10.66", "\\x16\\x03\\x01", 400),
        access(33, "192.168.10.100", "GET /a\\x22b\\x1B[31m HTTP/1.1", 404),
        // The installer calls back twice: the second finds nothing armed.
        access(
            34,
            "192.168.10.100",
            &format!(
                "GET /boot-default/?mac={} HTTP/1.1",
                NODE_A.replace(':', "-")
            ),
            404,
        ),
        "garbage line\n".to_string(),
    ]
    .concat();
    std::fs::write(bed.path("access.log"), log).unwrap();
}

#[test]
fn the_nodes_tool_reports_each_machine_from_crafted_logs() {
    let bed = Bed::new();
    lay_out_logs(&bed);
    let (report, raw) = bed.nodes(&[]);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("line 5"),
        "{:?}",
        report.problems
    );
    assert_eq!(report.profiles.len(), 2);
    assert_eq!(
        (
            report.profiles[0].name.as_str(),
            &report.profiles[0].loaders[..]
        ),
        ("biosonly", &["bios".to_string()][..])
    );
    assert_eq!(report.profiles[1].loaders, vec!["bios", "uefi"]);
    let macs: Vec<&str> = report.nodes.iter().map(|n| n.mac.as_str()).collect();
    assert_eq!(macs, vec![NODE_A, NODE_B, NODE_C]);
    let (a, b, c) = (&report.nodes[0], &report.nodes[1], &report.nodes[2]);

    // A: leased, BIOS, fetched its kernel (the escape kept as a value), called back.
    let lease = a.lease.as_ref().unwrap();
    assert_eq!(
        (lease.ip.as_str(), lease.state.as_deref()),
        ("192.168.10.100", Some("active"))
    );
    assert_eq!(lease.starts, Some((T0 + 1) as f64));
    assert!(lease
        .hostname
        .as_deref()
        .unwrap()
        .starts_with("evil\"; } lease 192.168.10.99"));
    assert_eq!(a.last_loader.as_ref().unwrap().loader, "bios");
    let fetched: Vec<&str> = a.fetched.iter().filter_map(|f| f.path.as_deref()).collect();
    assert_eq!(
        fetched,
        vec![
            "pxelinux.0",
            "pxelinux.cfg/01-52-54-00-0a-0b-0c",
            "smoke/vmlinuz\u{1b}[2J",
            "bin\u{fffd}",
            "/smoke/initrd.gz",
            "/a\\x22b\\x1B[31m",
        ],
        "pxelinux's probes are left out, the rest kept as asked"
    );
    let call = a.boot_default.as_ref().unwrap();
    assert_eq!(
        (call.status, call.from.as_deref(), call.time),
        (Some(404), Some("192.168.10.100"), (T0 + 34) as f64)
    );
    assert_eq!(a.state.as_deref(), Some("installed"), "a call disarmed it");
    assert_eq!(a.boot_summary(), "local");

    // B: UEFI, its lease in epoch form with the vendor class, its request attributed by its ACK.
    let lease = b.lease.as_ref().unwrap();
    assert_eq!((lease.ip.as_str(), lease.ends), ("192.168.10.101", None));
    assert_eq!(
        lease.vendor_class.as_deref(),
        Some("PXEClient:Arch:00007:UNDI:003016")
    );
    assert_eq!(b.last_loader.as_ref().unwrap().loader, "uefi");
    assert_eq!(
        b.fetched.last().unwrap().path.as_deref(),
        Some("/smoke/linux")
    );
    assert_eq!(b.state.as_deref(), Some("local"));

    // C: the forged lease, ACK and callback gave it nothing; its real lease is still being
    // written, so it has none.
    assert!(c.lease.is_none(), "{:?}", c.lease);
    assert!(
        c.fetched.is_empty() && c.last_loader.is_none() && c.boot_default.is_none(),
        "{c:?}"
    );
    assert_eq!(c.last_dhcp, None);
    // Hostile bytes reach the JSON escaped.
    assert!(!raw.contains('\u{1b}'), "{raw}");
}

#[test]
fn a_lease_file_read_from_inside_a_block_or_broken_midway_keeps_the_leases_before_the_break() {
    let bed = Bed::new();
    std::fs::write(bed.path("access.log"), "").unwrap();
    std::fs::write(bed.path("journal"), "").unwrap();
    let block = |ip: &str, mac: &str, extra: &str| {
        format!(
            "lease {ip} {{\n  starts epoch 1795615400;\n  ends never;\n  binding state active;\n  \
             hardware ethernet {mac};\n{extra}}}\n"
        )
    };
    // The tail of a large file begins inside a block (whose MAC it must not take); a backslash
    // outside any string breaks the file before C's lease.
    let leases = format!(
        "  binding state active;\n  hardware ethernet {NODE_C};\n}}\n{}{}{}",
        block("192.168.10.100", NODE_A, ""),
        block("192.168.10.101", NODE_B, "  uid \\\"x\";\n"),
        block("192.168.10.102", NODE_C, "")
    );
    std::fs::write(bed.path("leases"), &leases).unwrap();
    let (report, _) = bed.nodes(&[]);
    let ips: Vec<Option<&str>> = report
        .nodes
        .iter()
        .map(|n| n.lease.as_ref().map(|l| l.ip.as_str()))
        .collect();
    assert_eq!(ips, [Some("192.168.10.100"), None, None], "{leases}");
    assert_eq!(
        report.problems[1..],
        ["dhcpd.leases: unexpected '\\\\' at line 15; the leases from there on are left out"],
        "{leases}"
    );
    // A lease still being written at the end is no problem.
    std::fs::write(bed.path("leases"), &leases[..leases.find("  uid").unwrap()]).unwrap();
    let (report, _) = bed.nodes(&[]);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.nodes[0].lease.is_some() && report.nodes[1].lease.is_none());
}

#[test]
fn states_follow_arming_fetching_and_the_callback() {
    let bed = Bed::new();
    std::fs::write(bed.path("leases"), "").unwrap();
    std::fs::write(bed.path("access.log"), "").unwrap();
    std::fs::write(bed.path("journal"), "").unwrap();
    bed.arm(NODE_A);
    let (report, _) = bed.nodes(&[]);
    let a = &report.nodes[0];
    assert_eq!(a.state.as_deref(), Some("armed"));
    assert_eq!(a.boot_summary(), "smoke");
    let bios = a.boot.bios.as_ref().unwrap();
    assert_eq!(
        (bios.profile.as_deref(), bios.present),
        (Some("smoke"), true)
    );
    // A fetch after the links were made: installing.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let entry = serde_json::json!({"__REALTIME_TIMESTAMP": ((now + 5) * 1_000_000).to_string(),
        "SYSLOG_IDENTIFIER": "dhcpd", "MESSAGE": format!("DHCPACK on 192.168.10.100 to {NODE_A} via eth0")});
    let rrq = serde_json::json!({"__REALTIME_TIMESTAMP": ((now + 6) * 1_000_000).to_string(),
        "SYSLOG_IDENTIFIER": "in.tftpd", "MESSAGE": "RRQ from 192.168.10.100 filename pxelinux.0"});
    std::fs::write(bed.path("journal"), format!("{entry}\n{rrq}\n")).unwrap();
    assert_eq!(
        bed.nodes(&[]).0.nodes[0].state.as_deref(),
        Some("installing")
    );
    // The profile removed: the links dangle, and say so.
    std::fs::remove_dir_all(bed.root().join("smoke")).unwrap();
    std::fs::remove_dir_all(bed.root().join("efi/profiles/smoke")).unwrap();
    let (report, _) = bed.nodes(&[]);
    assert_eq!(report.nodes[0].boot_summary(), "smoke(missing)");
    assert_eq!(report.profiles.len(), 1);
}

#[test]
fn events_are_a_timeline_of_one_machine_or_all() {
    let bed = Bed::new();
    lay_out_logs(&bed);
    let (report, _) = bed.nodes(&["--events"]);
    let events = report.events.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["dhcp", "tftp", "http", "callback"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    assert!(
        events.windows(2).all(|w| w[0].time <= w[1].time),
        "not in order"
    );
    assert!(
        !events.iter().any(|e| e.what.contains("forged")),
        "{events:?}"
    );
    let (report, _) = bed.nodes(&[&format!("--events={}", NODE_B.to_uppercase())]);
    let mine = report.events.unwrap();
    assert!(
        !mine.is_empty() && mine.iter().all(|e| e.mac.as_deref() == Some(NODE_B)),
        "{mine:?}"
    );
    let (report, _) = bed.nodes(&["--events", "--limit", "2"]);
    assert_eq!(report.events.unwrap().len(), 2);
    // --brief: the machines and profiles only, for install.
    let (brief, _) = bed.nodes(&["--brief"]);
    assert_eq!(brief.nodes.len(), 3);
    assert!(brief.nodes[0].lease.is_none() && brief.nodes[0].state.is_none());
}

/// A Redfish stand-in on loopback: one system, powered on, behind HTTP basic auth.
struct Redfish {
    child: Child,
    port: u16,
}

impl Redfish {
    fn start() -> Redfish {
        let port = free_port();
        let script = r#"
import base64, http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        want = "Basic " + base64.b64encode(b"admin:secret").decode()
        if self.headers.get("Authorization") != want:
            self.send_response(401); self.end_headers(); return
        body = {"/redfish/v1/Systems": {"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]},
                "/redfish/v1/Systems/1": {"PowerState": "On"}}.get(self.path)
        if body is None:
            self.send_response(404); self.end_headers(); return
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
        let child = Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        assert!(
            wait_until(Duration::from_secs(10), up),
            "the Redfish stand-in did not start"
        );
        Redfish { child, port }
    }
}

impl Drop for Redfish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn power_status_reads_each_bmc_through_its_driver() {
    let bed = Bed::new();
    lay_out_logs(&bed);
    let redfish = Redfish::start();
    let closed = free_port();
    // A: Redfish that answers; B: Redfish where nothing listens; C: a driver that cannot read.
    std::fs::write(
        bed.path("bmc.conf"),
        format!(
            "[default]\ndriver = none\n[127.0.0.1]\ndriver = redfish\nscheme = http\nport = {}\n\
             username = admin\npassword = secret\n[127.0.0.2]\ndriver = redfish\nscheme = http\n\
             port = {closed}\n",
            redfish.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(bed.path("bmc.conf"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out, err) = run(Command::new(bed.path("link"))
        .args(["--power-status", "--timeout", "3", "--machines"])
        .arg(bed.path("machines.txt"))
        .arg("--credentials")
        .arg(bed.path("bmc.conf")));
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("FAILED") && lines[0].contains("line 5"),
        "{out}"
    );
    assert_eq!(lines[1], format!("ok     {NODE_A} (127.0.0.1): power on"));
    assert!(
        lines[2].starts_with(&format!(
            "FAILED {NODE_B} (127.0.0.2): GET http://127.0.0.2:{closed}/"
        )),
        "{out}"
    );
    assert_eq!(
        lines[3],
        format!("ok     {NODE_C} (127.0.0.3): power unknown (the none driver cannot read it)")
    );
    // Only the MACs given (the bad line of the file is still reported).
    let (_, out, _) = run(Command::new(bed.path("link"))
        .args(["--power-status", NODE_A, "--machines"])
        .arg(bed.path("machines.txt"))
        .arg("--credentials")
        .arg(bed.path("bmc.conf")));
    assert!(
        out.contains(NODE_A) && !out.contains(NODE_B) && !out.contains(NODE_C),
        "{out}"
    );

    // The nodes tool merges them into its report.
    let (report, _) = bed.nodes(&["--power"]);
    let power: Vec<(Option<&str>, bool)> = report
        .nodes
        .iter()
        .map(|n| {
            let p = n.power.as_ref().unwrap();
            (p.state.as_deref(), p.error.is_some())
        })
        .collect();
    assert_eq!(
        power,
        vec![
            (Some("on"), false),
            (None, true),
            (Some("unknown (the none driver cannot read it)"), false)
        ]
    );
}

/// The publish script between a share and a TFTP root, both in `dir`.
fn publish(dir: &Path) -> String {
    let script = dir.join("publish");
    if !script.exists() {
        executable(&script, &guest_file("publish_profiles"));
    }
    let (code, out, err) = run(Command::new(&script)
        .env("MKHEADNODE_PROFILES", dir.join("share"))
        .env("MKHEADNODE_TFTP_ROOT", dir.join("tftp")));
    assert_eq!(code, 0, "publish:\n{out}\n{err}");
    out
}

#[test]
fn publishing_drops_profiles_that_left_the_share_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (share, root) = (tmp.path().join("share"), tmp.path().join("tftp"));
    for (profile, file) in [
        ("a", "grub.cfg"),
        ("b", "pxelinux.cfg"),
        ("c", "pxelinux.cfg"),
    ] {
        std::fs::create_dir_all(share.join(profile)).unwrap();
        std::fs::write(share.join(profile).join(file), "x").unwrap();
    }
    std::fs::create_dir_all(root.join("efi/profiles")).unwrap();
    // Not published by the script: never removed.
    std::fs::create_dir_all(root.join("mine")).unwrap();
    let out = publish(tmp.path());
    assert_eq!(out.matches("published profile").count(), 3, "{out}");
    assert!(root.join("efi/profiles/a/grub.cfg").exists());

    // a and b leave the share; c's copy there turns invalid (it is kept as it was published).
    std::fs::remove_dir_all(share.join("a")).unwrap();
    std::fs::remove_dir_all(share.join("b")).unwrap();
    std::fs::remove_file(share.join("c/pxelinux.cfg")).unwrap();
    let out = publish(tmp.path());
    assert!(
        out.contains("removed profile a (no longer on the share)"),
        "{out}"
    );
    assert!(
        out.contains("removed profile b (no longer on the share)"),
        "{out}"
    );
    assert!(out.contains("skipping profile 'c'"), "{out}");
    for gone in ["a", "b", "efi/profiles/a"] {
        assert!(!root.join(gone).exists(), "{gone} is still there");
    }
    assert!(root.join("c/pxelinux.cfg").exists() && root.join("mine").exists());

    // A tampered manifest cannot make it remove anything else.
    std::fs::write(
        root.join(".mkheadnode-published"),
        "c\n../share\npxelinux.cfg\nmine/..\n\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
    publish(tmp.path());
    assert!(share.exists() && root.join("pxelinux.cfg").exists() && root.join("mine").exists());
    // c leaves the share for good: removed, and the manifest is empty.
    std::fs::remove_dir_all(share.join("c")).unwrap();
    let out = publish(tmp.path());
    assert!(out.contains("removed profile c"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join(".mkheadnode-published")).unwrap(),
        ""
    );
}

#[test]
fn the_newest_generation_with_a_marker_is_published_else_the_plain_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (share, root) = (tmp.path().join("share"), tmp.path().join("tftp"));
    let copy = |dir: &str, text: &str| {
        std::fs::create_dir_all(share.join(dir).join("sub")).unwrap();
        std::fs::write(share.join(dir).join("pxelinux.cfg"), text).unwrap();
        std::fs::write(share.join(dir).join("sub/kernel"), text).unwrap();
    };
    let mark = |entry: &str| std::fs::write(share.join(format!("{entry}.ready")), "").unwrap();
    let published = || std::fs::read_to_string(root.join("a/pxelinux.cfg")).ok();
    copy("a", "plain");
    copy("a@5", "five");
    mark("a@5");
    copy("a@9", "nine");
    copy("b@3", "three");
    std::fs::create_dir_all(root.join("efi/profiles")).unwrap();
    let out = publish(tmp.path());
    // The newest generation with a marker: not the plain folder, not the one still uploading.
    assert_eq!(published().as_deref(), Some("five"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("a/sub/kernel")).unwrap(),
        "five"
    );
    assert_eq!(out.matches("published profile a ").count(), 1, "{out}");
    assert!(
        out.contains("skipping profile 'b': its upload is not complete"),
        "{out}"
    );
    assert!(!root.join("b").exists() && !root.join("a@5").exists());

    // Its marker is written: generation 9 counts.
    mark("a@9");
    publish(tmp.path());
    assert_eq!(published().as_deref(), Some("nine"));
    // Generations are numbers, not names: 10 is newer than 9.
    copy("a@10", "ten");
    mark("a@10");
    publish(tmp.path());
    assert_eq!(published().as_deref(), Some("ten"));
    // A marker without its folder, one that is a link, or one whose generation is no number,
    // counts for nothing.
    mark("a@11");
    copy("a@12", "twelve");
    std::os::unix::fs::symlink(share.join("a@9.ready"), share.join("a@12.ready")).unwrap();
    copy("a@013", "thirteen");
    mark("a@013");
    let out = publish(tmp.path());
    assert_eq!(published().as_deref(), Some("ten"));
    assert!(out.contains("published profile a "), "{out}");
    // No generation has a marker any more: the plain folder counts.
    for gen in ["5", "9", "10", "11", "12", "013"] {
        std::fs::remove_file(share.join(format!("a@{gen}.ready"))).unwrap();
    }
    publish(tmp.path());
    assert_eq!(published().as_deref(), Some("plain"));
    // Only unmarked generations left: it is no longer on the share.
    std::fs::remove_dir_all(share.join("a")).unwrap();
    let out = publish(tmp.path());
    assert!(
        out.contains("removed profile a (no longer on the share)"),
        "{out}"
    );
    assert!(!root.join("a").exists());
}

#[test]
fn tftpd_logs_its_requests() {
    assert!(guest_file("tftpd_hpa").contains("TFTP_OPTIONS=\"--secure --verbose\""));
    assert!(guest_file("nodes_tool").starts_with("#!/usr/bin/python3\n"));
}

/// qemu-ga itself, listening on a socket in a temp dir instead of a virtio port; killed on drop.
struct Qga {
    child: Child,
    dir: tempfile::TempDir,
}

impl Qga {
    fn start() -> Qga {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let child = Command::new("qemu-ga")
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-ga (package qemu-guest-agent; scripts/setup-host.sh installs it)");
        assert!(
            wait_until(Duration::from_secs(10), || sock.exists()),
            "qemu-ga did not listen"
        );
        Qga { child, dir }
    }

    /// Send one request, read its one-line reply.
    fn call(&self, conn: &mut (UnixStream, BufReader<UnixStream>), request: &str) -> String {
        writeln!(conn.0, "{request}").unwrap();
        let mut reply = String::new();
        conn.1.read_line(&mut reply).unwrap();
        reply
    }

    fn connect(&self) -> (UnixStream, BufReader<UnixStream>) {
        let stream = UnixStream::connect(self.dir.path().join("sock")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    }
}

impl Drop for Qga {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_agent_protocol_against_a_real_qemu_ga() {
    let qga = Qga::start();
    let mut conn = qga.connect();
    assert_eq!(
        qga.call(&mut conn, &agent::ping_request()).trim(),
        r#"{"return": {}}"#
    );
    // Arguments are argv entries: nothing a shell would read is read.
    let args = vec![
        "a b; $(touch /tmp/mkh-owned)".to_string(),
        "`x`".to_string(),
    ];
    let reply = qga.call(&mut conn, &agent::exec_request("/bin/echo", &args));
    let pid = agent::parse_exec_reply(&reply).unwrap();
    let mut status = agent::ExecStatus::default();
    let done = wait_until(Duration::from_secs(10), || {
        status =
            agent::parse_status_reply(&qga.call(&mut conn, &agent::status_request(pid))).unwrap();
        status.exited
    });
    assert!(done, "echo did not end");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "a b; $(touch /tmp/mkh-owned) `x`\n"
    );
    assert!(!Path::new("/tmp/mkh-owned").exists());
    // A program that is not there: the agent's own error, which `install` and `nodes` turn into
    // advice to rebuild an older headnode.
    let reply = qga.call(
        &mut conn,
        &agent::exec_request("/nonexistent/mkheadnode-nodes", &[]),
    );
    let err = agent::parse_exec_reply(&reply).unwrap_err();
    assert!(format!("{err:#}").contains("No such file"), "{err:#}");
    // Output that is not UTF-8 comes back whole.
    let reply = qga.call(
        &mut conn,
        &agent::exec_request("/usr/bin/printf", &["\\377\\n".into()]),
    );
    let pid = agent::parse_exec_reply(&reply).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        status =
            agent::parse_status_reply(&qga.call(&mut conn, &agent::status_request(pid))).unwrap();
        status.exited
    }));
    assert_eq!(status.stdout, b"\xff\n");
}
