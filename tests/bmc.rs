//! The link tool against real BMC endpoints on loopback: virtualbmc (IPMI) and sushy-emulator
//! (Redfish), each driving a small libvirt domain on `qemu:///system`, and a digest-auth AMT
//! form handler; and against stand-ins that misbehave on purpose (redirects to another host,
//! HTML, bad JSON, huge replies, hangs, self-signed TLS; a power state that lags, never
//! changes or is no power state), a Redfish one and an ipmitool one, which record every call
//! so that the careful power sequence is checked step by step; and bad credentials files. The
//! tool runs exactly as in the guest (`python3 mkheadnode-link`).

use crate::support::{free_port, run, virsh, wait_until, SYSTEM_URI};
use mkheadnode::render::seed;
use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const URI: &str = SYSTEM_URI;

fn wait_port(port: u16) {
    let listens = || TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(
        wait_until(Duration::from_secs(20), listens),
        "nothing listens on port {port}"
    );
}

/// A powered-off libvirt domain that a BMC emulator controls, booting from its disk, with a
/// NIC (user networking) to boot from the network; removed on drop.
struct Machine {
    name: String,
}

impl Machine {
    fn new(tag: &str) -> Machine {
        let name = format!("mkt-bmc-{tag}");
        virsh(&["destroy", &name]);
        virsh(&["undefine", &name]);
        let machine = Machine { name };
        machine.define(&format!(
            "<domain type='qemu'><name>{}</name><memory unit='MiB'>32</memory>\
             <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>\
             <devices><interface type='user'><model type='virtio'/></interface></devices></domain>",
            machine.name
        ));
        machine
    }

    fn define(&self, xml: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.xml");
        std::fs::write(&file, xml).unwrap();
        let (code, _, err) = virsh(&["define", file.to_str().unwrap()]);
        assert_eq!(code, 0, "virsh define: {err}");
    }

    fn state(&self) -> String {
        virsh(&["domstate", &self.name]).1.trim().to_string()
    }

    fn uuid(&self) -> String {
        virsh(&["domuuid", &self.name]).1.trim().to_string()
    }

    /// libvirt's id of the running domain: a new one each time it is started.
    fn id(&self) -> String {
        virsh(&["domid", &self.name]).1.trim().to_string()
    }

    /// Whether its next boot is from the network, as a BMC emulator sets it: `<boot
    /// dev='network'/>` (virtualbmc) or the NIC first in the boot order (sushy-emulator).
    fn boots_from_network(&self) -> bool {
        let xml = virsh(&["dumpxml", "--inactive", &self.name]).1;
        xml.contains("<boot dev='network'/>") || xml.contains("<boot order='1'/>")
    }

    /// Back to booting from its disk, as a firmware that rewrites the boot order would leave it.
    fn boot_from_disk(&self) {
        let xml = virsh(&["dumpxml", "--inactive", &self.name]).1;
        self.define(
            &xml.replace("<boot dev='network'/>", "<boot dev='hd'/>")
                .replace("<boot order='1'/>", ""),
        );
        assert!(!self.boots_from_network());
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        virsh(&["destroy", &self.name]);
        virsh(&["undefine", &self.name]);
    }
}

/// vbmcd refuses to start while its pid file names a live process, and a daemonized vbmcd
/// writes 0 there (the fork's return value as the daemon sees it), which always looks alive.
/// A vbmcd that ended without cleaning up (a machine restored from a snapshot) leaves it behind.
fn remove_stale_vbmcd_pid_file() {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let file = Path::new(&home).join(".vbmc/master.pid");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    let pid: u32 = text.trim().parse().unwrap_or(0);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if pid == 0 || !String::from_utf8_lossy(&cmdline).contains("vbmcd") {
        std::fs::remove_file(&file).unwrap();
    }
}

/// virtualbmc serving `machine` on 127.0.0.1:`port`; deleted on drop.
struct Vbmc {
    name: String,
}

impl Vbmc {
    fn new(machine: &Machine, port: u16, password: &str) -> Vbmc {
        if run(Command::new("vbmc").arg("list")).0 != 0 {
            remove_stale_vbmcd_pid_file();
            assert_eq!(run(&mut Command::new("vbmcd")).0, 0, "vbmcd did not start");
            let answers = || run(Command::new("vbmc").arg("list")).0 == 0;
            assert!(
                wait_until(Duration::from_secs(20), answers),
                "vbmcd does not answer"
            );
        }
        let name = machine.name.clone();
        run(Command::new("vbmc").args(["delete", &name]));
        let (code, _, err) = run(Command::new("vbmc").args([
            "add",
            &name,
            "--port",
            &port.to_string(),
            "--address",
            "127.0.0.1",
            "--username",
            "admin",
            "--password",
            password,
            "--libvirt-uri",
            URI,
        ]));
        assert_eq!(code, 0, "vbmc add: {err}");
        assert_eq!(run(Command::new("vbmc").args(["start", &name])).0, 0);
        std::thread::sleep(Duration::from_secs(1));
        Vbmc { name }
    }
}

impl Drop for Vbmc {
    fn drop(&mut self) {
        run(Command::new("vbmc").args(["delete", &self.name]));
    }
}

/// A child process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The link tool with a temp TFTP root holding profile `centos`.
struct Tool {
    dir: tempfile::TempDir,
}

impl Tool {
    fn new(machines: &str, credentials: &str) -> Tool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tftpboot/pxelinux.cfg")).unwrap();
        std::fs::create_dir_all(dir.path().join("tftpboot/centos")).unwrap();
        std::fs::write(
            dir.path().join("tftpboot/centos/pxelinux.cfg"),
            "DEFAULT install\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("machines.txt"), machines).unwrap();
        std::fs::write(dir.path().join("bmc.conf"), credentials).unwrap();
        std::fs::set_permissions(
            dir.path().join("bmc.conf"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("mkheadnode-link"),
            seed::link_tool().unwrap(),
        )
        .unwrap();
        Tool { dir }
    }

    fn run(&self) -> (i32, String) {
        let (code, out, err) = self.run_with(&["--timeout", "10"]);
        (code, format!("{out}{err}"))
    }

    /// The tool with these extra arguments: (exit code, stdout, stderr).
    fn run_with(&self, args: &[&str]) -> (i32, String, String) {
        run(&mut self.command(args))
    }

    /// The tool's command with these extra arguments. Killed after two minutes, so that a BMC
    /// call without a deadline fails the test instead of hanging it.
    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let p = |r: &str| -> PathBuf { d.join(r) };
        let mut cmd = Command::new("timeout");
        cmd.args(["120", "python3"])
            .arg(p("mkheadnode-link"))
            .args(["--profile", "centos"])
            .arg("--tftp-root")
            .arg(p("tftpboot"))
            .arg("--machines")
            .arg(p("machines.txt"))
            .arg("--credentials")
            .arg(p("bmc.conf"))
            .args(args);
        cmd
    }

    fn linked(&self, mac_dashed: &str) -> bool {
        Path::new(
            &self
                .dir
                .path()
                .join(format!("tftpboot/pxelinux.cfg/01-{mac_dashed}")),
        )
        .is_symlink()
    }
}

/// Run the tool twice against a real BMC emulator driving `m`: it powers the machine on (it was
/// off), then power-cycles it, setting the next boot to the network each time.
fn powers_on_then_cycles(m: &Machine, tool: &Tool, driver: &str) {
    let (code, out) = tool.run();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "powered on via {driver} (it was off; next boot PXE; on after "
        )),
        "{out}"
    );
    assert_eq!(m.state(), "running");
    assert!(m.boots_from_network(), "{driver}: next boot not set");
    m.boot_from_disk();
    let first = m.id();
    let (code, out) = tool.run();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "power-cycled via {driver} (next boot PXE; off after "
        )) && out.contains("; next boot PXE again; on after "),
        "{out}"
    );
    assert_eq!(m.state(), "running");
    // Off and on again, not reset: libvirt gives a started domain a new id.
    assert_ne!(m.id(), first, "{driver}: the machine was never off");
    assert!(m.boots_from_network(), "{driver}: next boot not set again");
}

#[test]
fn ipmi_powers_on_then_cycles_and_a_wrong_password_is_reported() {
    let m = Machine::new("ipmi");
    let port = free_port();
    let _bmc = Vbmc::new(&m, port, "secret");
    let creds = |pw: &str| {
        format!("[default]\ndriver = ipmi\nusername = admin\npassword = {pw}\nport = {port}\npoll_interval = 0.2\n")
    };

    let bad = Tool::new("aa:bb:cc:dd:ee:21 127.0.0.1\n", &creds("wrong"));
    let (code, out) = bad.run();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED aa:bb:cc:dd:ee:21 (127.0.0.1): ipmi"),
        "{out}"
    );
    assert_eq!(
        m.state(),
        "shut off",
        "a refused login must not power anything"
    );

    let tool = Tool::new("aa:bb:cc:dd:ee:21 127.0.0.1\n", &creds("secret"));
    powers_on_then_cycles(&m, &tool, "ipmi");
    assert!(tool.linked("aa-bb-cc-dd-ee-21"));
}

#[test]
fn redfish_resets_the_system_through_sushy() {
    let m = Machine::new("redfish");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sushy.conf");
    std::fs::write(
        &conf,
        format!("SUSHY_EMULATOR_ALLOWED_INSTANCES = ['{}']\n", m.uuid()),
    )
    .unwrap();
    let port = free_port();
    let _server = Server(
        Command::new("sushy-emulator")
            .arg("--config")
            .arg(&conf)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--libvirt-uri",
                URI,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sushy-emulator runs"),
    );
    wait_port(port);
    let tool = Tool::new(
        "aa:bb:cc:dd:ee:31 127.0.0.1\n",
        &format!("[default]\ndriver = redfish\nscheme = http\nport = {port}\nusername = admin\npassword = x\npoll_interval = 0.2\n"),
    );
    powers_on_then_cycles(&m, &tool, "redfish");
}

#[test]
fn amt_posts_the_2013_form_with_digest_auth() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("posted");
    let port = free_port();
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/amt_server.py");
    let _server = Server(
        Command::new("python3")
            .args([server, &port.to_string(), "admin", "amt-secret"])
            .arg(&record)
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let creds = |pw: &str| {
        format!("[default]\ndriver = amt\nport = {port}\nusername = admin\npassword = {pw}\n")
    };
    let (code, out) = Tool::new("aa:bb:cc:dd:ee:41 127.0.0.1\n", &creds("wrong")).run();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 401"), "{out}");
    assert!(!record.exists(), "a refused login posted the form");
    let (code, out) = Tool::new("aa:bb:cc:dd:ee:41 127.0.0.1\n", &creds("amt-secret")).run();
    assert_eq!(code, 0, "{out}");
    // The form can do no more than the 2013 cycle, and the report says so.
    assert!(
        out.contains("power cycle sent via amt (its web form can neither set the next boot nor report the power state: not verified)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "amt_html_rc_boot_special=1&amt_html_rc_radio_group=3\n"
    );
}

/// A stand-in BMC (tests/fixtures/bmc_standin.py) on `address`, logging every request it gets.
struct Standin {
    _server: Server,
    log: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Standin {
    /// The stand-in up and listening, on a port no other test (of this run or another) holds.
    fn start(address: &str, mode: &str, tls: Option<&Tls>) -> Standin {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests");
        std::fs::write(&log, "").unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bmc_standin.py");
        let mut tries = 0;
        loop {
            let port = free_port();
            let mut cmd = Command::new("python3");
            cmd.args([script, address, &port.to_string(), mode])
                .arg(&log)
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
            if let Some(tls) = tls {
                cmd.arg(&tls.cert).arg(&tls.key);
            }
            let mut server = Server(cmd.spawn().unwrap());
            // It says `listening` once its socket is bound, or ends saying why not.
            let mut said = String::new();
            BufReader::new(server.0.stdout.take().unwrap())
                .read_line(&mut said)
                .unwrap();
            if said == "listening\n" {
                return Standin {
                    _server: server,
                    log,
                    port,
                    _dir: dir,
                };
            }
            let _ = server.0.wait();
            let why = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
            tries += 1;
            assert!(
                why.contains("Address already in use") && tries < 5,
                "the stand-in did not start on {address}:{port}: {why}"
            );
        }
    }

    /// The requests it got, one JSON line each.
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A self-signed certificate for one IP address, made by openssl.
struct Tls {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    /// `sha256:AB:CD:...`, as bmc.conf takes it.
    fingerprint: String,
}

impl Tls {
    fn new(ip: &str) -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (code, _, err) = run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=bmc"])
            .arg("-addext")
            .arg(format!("subjectAltName=IP:{ip}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        assert_eq!(code, 0, "openssl req: {err}");
        let (_, out, _) = run(Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&cert));
        let hex = out.trim().rsplit('=').next().unwrap().to_string();
        Tls {
            _dir: dir,
            cert,
            key,
            fingerprint: format!("sha256:{hex}"),
        }
    }
}

const REDFISH: &str =
    "[default]\ndriver = redfish\nscheme = http\nusername = admin\npassword = s3cret\n";

#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    // Another host on loopback, the way a BMC's redirect would name one: it records whatever
    // comes its way.
    let elsewhere = Standin::start("127.0.0.22", "redfish", None);
    let away = Standin::start(
        "127.0.0.21",
        &format!(
            "redirect-to:http://127.0.0.22:{}/redfish/v1/Systems",
            elsewhere.port
        ),
        None,
    );
    // A redirect on the BMC's own address and port is followed, credentials and all.
    let here = Standin::start("127.0.0.23", "redirect-here", None);
    let tool = Tool::new(
        "aa:bb:cc:dd:ee:21 127.0.0.21\naa:bb:cc:dd:ee:23 127.0.0.23\n",
        &format!(
            "{REDFISH}[127.0.0.21]\nport = {}\n[127.0.0.23]\nport = {}\n",
            away.port, here.port
        ),
    );
    let (code, out, err) = tool.run_with(&["--timeout", "10"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED aa:bb:cc:dd:ee:21 (127.0.0.21): GET http://127.0.0.21:")
            && out.contains("not followed"),
        "{out}"
    );
    assert_eq!(elsewhere.requests(), Vec::<serde_json::Value>::new());
    assert_eq!(away.requests().len(), 1);
    assert!(out.contains("ok     aa:bb:cc:dd:ee:23"), "{out}");
    let basic = format!("Basic {}", "YWRtaW46czNjcmV0"); // admin:s3cret
    let followed = here.requests();
    assert!(
        followed
            .iter()
            .all(|r| r["authorization"] == basic.as_str())
            && followed
                .iter()
                .any(|r| r["path"] == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"),
        "{followed:?}"
    );
    // The machine whose power-cycle failed is disarmed again; the other stays armed.
    assert!(!tool.linked("aa-bb-cc-dd-ee-21"), "{out}");
    assert!(tool.linked("aa-bb-cc-dd-ee-23"));
}

/// Redfish stand-ins, one a machine, in these modes: the i-th on 127.0.0.<first + i> for
/// aa:bb:cc:dd:ee:<first + i>; and the tool for them all, with `settings` in bmc.conf's
/// [default] besides the driver and credentials.
struct Fleet {
    /// (MAC, BMC address, stand-in) of each machine.
    bmcs: Vec<(String, String, Standin)>,
    tool: Tool,
}

impl Fleet {
    fn new(first: u8, modes: &[&str], settings: &str) -> Fleet {
        let bmcs: Vec<(String, String, Standin)> = modes
            .iter()
            .zip(first..)
            .map(|(mode, n)| {
                let ip = format!("127.0.0.{n}");
                let standin = Standin::start(&ip, mode, None);
                (format!("aa:bb:cc:dd:ee:{n:02x}"), ip, standin)
            })
            .collect();
        let machines: String = bmcs
            .iter()
            .map(|(mac, ip, _)| format!("{mac} {ip}\n"))
            .collect();
        let sections: String = bmcs
            .iter()
            .map(|(_, ip, s)| format!("[{ip}]\nport = {}\n", s.port))
            .collect();
        let tool = Tool::new(&machines, &format!("{REDFISH}{settings}{sections}"));
        Fleet { bmcs, tool }
    }

    /// The tool's report line for the i-th machine.
    fn line<'a>(&self, out: &'a str, i: usize) -> &'a str {
        let mac = &self.bmcs[i].0;
        out.lines()
            .find(|l| l.contains(mac.as_str()))
            .unwrap_or_else(|| panic!("no line for {mac}:\n{out}"))
    }

    /// Whether the i-th machine is armed.
    fn armed(&self, i: usize) -> bool {
        self.tool.linked(&self.bmcs[i].0.replace(':', "-"))
    }
}

#[test]
fn a_bmc_that_answers_garbage_or_hangs_fails_its_machine_only() {
    let modes = [
        ("html", "the reply is not JSON"),
        ("bad-json", "the reply is not JSON"),
        ("deep-json", "the reply is not JSON"),
        ("huge", "the reply is larger than 1024 KiB"),
        ("hang", "no complete answer within 2 s"),
        ("drip", "no complete answer within 2 s"),
        ("redfish", ""),
    ];
    let fleet = Fleet::new(41, &modes.map(|(mode, _)| mode), "");
    let start = std::time::Instant::now();
    let (code, out, err) = fleet.tool.run_with(&["--timeout", "2"]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{out}{err}");
    assert!(!err.contains("Traceback"), "{err}");
    for (i, ((mode, reason), (mac, ip, _))) in modes.iter().zip(&fleet.bmcs).enumerate() {
        let line = fleet.line(&out, i);
        if reason.is_empty() {
            assert!(line.starts_with("ok "), "{mode}: {line}");
            assert!(fleet.armed(i), "{mode}");
        } else {
            assert!(
                line.starts_with(&format!("FAILED {mac} ({ip}): GET http://{ip}:"))
                    && line.contains(reason)
                    && line.contains("disarmed again"),
                "{mode}: {line}"
            );
            assert!(!fleet.armed(i), "{mode} is still armed");
        }
    }
    assert!(out.contains("1 of 7 machines done"), "{out}");
    // Two calls hang for their 2 s each; nothing else waits.
    assert!(took < Duration::from_secs(20), "took {took:?}");

    // --keep-armed: the failed machine keeps its links, and is said to.
    let first = fleet.bmcs[0].0.as_str();
    let (code, out, _) = fleet
        .tool
        .run_with(&["--timeout", "2", "--keep-armed", first]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("disarmed again"), "{out}");
    assert!(fleet.armed(0));
}

/// `line` with the seconds of each `after <seconds> s` as N, which vary with the machine's load.
fn untimed(line: &str) -> String {
    let mut parts = line.split("after ");
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        out.push_str("after ");
        if part.starts_with(|c: char| c.is_ascii_digit()) {
            out.push('N');
            out.push_str(part.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.'));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The calls a Redfish stand-in got, each as `GET /Systems`, `GET /Systems/1`, `PATCH
/// /Systems/1` (the boot override, which must be the one-time PXE override) or a reset's type.
fn redfish_calls(standin: &Standin) -> Vec<String> {
    standin
        .requests()
        .iter()
        .map(|r| {
            let body = r["body"].as_str().unwrap();
            let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            if r["method"] == "PATCH" {
                assert_eq!(
                    json,
                    serde_json::json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}})
                );
            }
            json["ResetType"].as_str().map_or_else(
                || {
                    let path = r["path"].as_str().unwrap().replace("/redfish/v1", "");
                    format!("{} {path}", r["method"].as_str().unwrap())
                },
                str::to_string,
            )
        })
        .collect()
}

#[test]
fn the_careful_power_sequence_in_order_with_a_bmc_slow_to_report_or_refusing_the_boot_override() {
    let fleet = Fleet::new(
        61,
        &["redfish-on", "redfish", "lagging", "no-override"],
        "poll_interval = 0.1\noff_timeout = 5\n",
    );
    let (code, out, err) = fleet.tool.run_with(&["--timeout", "5"]);
    assert_eq!(code, 0, "{out}{err}");
    let (list, get, patch) = ("GET /Systems", "GET /Systems/1", "PATCH /Systems/1");
    // On: boot override, off, wait until it reports off, boot override again, on, verify on.
    let cycled = [list, get, patch, "ForceOff", get, patch, "On", get];
    assert_eq!(redfish_calls(&fleet.bmcs[0].2), cycled);
    assert!(
        untimed(fleet.line(&out, 0)).ends_with(
            "power-cycled via redfish (next boot PXE; off after N s; next boot PXE again; on after N s)"
        ),
        "{out}"
    );
    // Off already: no power off.
    assert_eq!(
        redfish_calls(&fleet.bmcs[1].2),
        [list, get, patch, "On", get]
    );
    assert!(
        untimed(fleet.line(&out, 1))
            .ends_with("powered on via redfish (it was off; next boot PXE; on after N s)"),
        "{out}"
    );
    // Slow to report: asked again until it does.
    assert_eq!(
        redfish_calls(&fleet.bmcs[2].2),
        [list, get, patch, "ForceOff", get, get, get, patch, "On", get, get, get]
    );
    assert!(
        untimed(fleet.line(&out, 2))
            .ends_with("(next boot PXE; off after N s; next boot PXE again; on after N s)"),
        "{out}"
    );
    // A BMC that refuses the boot override is still power-cycled, with a warning each time.
    assert_eq!(redfish_calls(&fleet.bmcs[3].2), cycled);
    assert!(
        fleet.line(&out, 3).contains(
            "power-cycled via redfish (warning: next boot not set to PXE (PATCH http://127.0.0.64:"
        ) && fleet.line(&out, 3).matches("HTTP 400 Bad Request").count() == 2,
        "{out}"
    );
    assert!((0..4).all(|i| fleet.armed(i)));
}

#[test]
fn a_bmc_that_never_reports_off_stays_off_or_reports_no_power_state_fails_its_machine_only() {
    let fleet = Fleet::new(
        71,
        &[
            "stuck-on",
            "stays-off",
            r#"state:"On\u001b[2J""#,
            r#"state:["On"]"#,
            "state:null",
            "redfish",
        ],
        "poll_interval = 0.2\noff_timeout = 1\non_timeout = 1.5\n",
    );
    let start = std::time::Instant::now();
    let (code, out, err) = fleet.tool.run_with(&["--timeout", "5"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(start.elapsed() < Duration::from_secs(20), "{out}");
    assert!(out.contains("1 of 6 machines done"), "{out}");
    // Never off: asked until the deadline, and not powered on again.
    let calls = redfish_calls(&fleet.bmcs[0].2);
    let after_off = &calls[calls.iter().position(|c| c == "ForceOff").unwrap() + 1..];
    assert!(
        after_off.len() >= 2 && after_off.iter().all(|c| c == "GET /Systems/1"),
        "{calls:?}"
    );
    assert!(
        fleet.line(&out, 0).contains(
            "redfish: next boot PXE; power off sent (it was on); did not power off within 1 s \
             (the BMC still reports on); not powered on again; disarmed again"
        ),
        "{out}"
    );
    // Off, but never on after power on.
    assert!(
        untimed(fleet.line(&out, 1)).contains(
            "off after N s; next boot PXE again; power on sent; not verified on: the BMC \
             reported off after power on, for 1.5 s; disarmed again"
        ),
        "{out}"
    );
    // No power state it knows: nothing is done.
    for i in 2..5 {
        let line = fleet.line(&out, i);
        assert!(
            line.contains("is not a Redfish power state (On, Off, PoweringOn, PoweringOff, Paused); disarmed again")
                && !line.contains('\u{1b}'),
            "{line:?}"
        );
        assert_eq!(
            redfish_calls(&fleet.bmcs[i].2),
            ["GET /Systems", "GET /Systems/1"]
        );
    }
    assert!(fleet.line(&out, 5).starts_with("ok "), "{out}");
    assert_eq!(
        (0..6).map(|i| fleet.armed(i)).collect::<Vec<_>>(),
        [false, false, false, false, false, true]
    );
}

/// The ipmitool stand-in (tests/fixtures/ipmitool_standin.py) on PATH as `ipmitool`, one BMC
/// per address in the mode given.
struct IpmitoolStandin {
    dir: tempfile::TempDir,
    modes: String,
}

impl IpmitoolStandin {
    fn new(bmcs: &[(&str, &str)]) -> IpmitoolStandin {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ipmitool_standin.py"
        );
        let program = dir.path().join("ipmitool");
        std::fs::write(
            &program,
            format!("#!/bin/sh\nexec python3 {script} \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let modes: Vec<String> = bmcs
            .iter()
            .map(|(ip, mode)| format!("{ip}={mode}"))
            .collect();
        IpmitoolStandin {
            dir,
            modes: modes.join(","),
        }
    }

    /// The tool with these arguments, finding the stand-in as its ipmitool.
    fn run(&self, tool: &Tool, args: &[&str]) -> (i32, String, String) {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        run(tool
            .command(args)
            .env("PATH", path)
            .env("IPMITOOL_STANDIN_DIR", self.dir.path())
            .env("IPMITOOL_STANDIN_MODES", &self.modes))
    }

    /// The commands BMC `ip` got, each as one string (`chassis power status`), after checking
    /// that the password came through the environment and never on the command line.
    fn commands(&self, ip: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["host"] == ip)
            .map(|r| {
                assert_eq!(r["password"], "s3cret");
                let argv: Vec<&str> = r["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert!(!argv.contains(&"s3cret"), "{argv:?}");
                let retries = argv.iter().position(|a| *a == "-R").unwrap();
                argv[retries + 2..].join(" ")
            })
            .collect()
    }
}

#[test]
fn the_careful_power_sequence_through_ipmi_and_bmcs_that_misbehave() {
    let bmcs = [
        ("127.0.0.81", "on"),
        ("127.0.0.82", "off"),
        ("127.0.0.83", "stuck-on"),
        ("127.0.0.84", "stays-off"),
        ("127.0.0.85", "garbage"),
    ];
    let ipmitool = IpmitoolStandin::new(&bmcs);
    let machines: String = bmcs
        .iter()
        .enumerate()
        .map(|(i, (ip, _))| format!("aa:bb:cc:dd:ee:8{} {ip}\n", i + 1))
        .collect();
    let tool = Tool::new(
        &machines,
        "[default]\ndriver = ipmi\nusername = admin\npassword = s3cret\n\
         poll_interval = 0.2\noff_timeout = 1\non_timeout = 1\n",
    );
    let (code, out, err) = ipmitool.run(&tool, &["--timeout", "5"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("2 of 5 machines done"), "{out}");
    let (status, pxe, off, on) = (
        "chassis power status",
        "chassis bootdev pxe",
        "chassis power off",
        "chassis power on",
    );
    let line = |i: usize| {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("aa:bb:cc:dd:ee:8{} ", i + 1)))
            .unwrap_or_else(|| panic!("no line for {}:\n{out}", bmcs[i].1));
        untimed(line)
    };
    assert_eq!(
        ipmitool.commands("127.0.0.81"),
        [status, pxe, off, status, pxe, on, status]
    );
    assert!(
        line(0).ends_with(
            "power-cycled via ipmi (next boot PXE; off after N s; next boot PXE again; on after N s)"
        ),
        "{out}"
    );
    assert_eq!(ipmitool.commands("127.0.0.82"), [status, pxe, on, status]);
    assert!(
        line(1).ends_with("powered on via ipmi (it was off; next boot PXE; on after N s)"),
        "{out}"
    );
    // Never off: asked until the deadline, and never powered on.
    let stuck = ipmitool.commands("127.0.0.83");
    assert!(
        stuck[..3] == [status, pxe, off]
            && stuck.len() >= 5
            && stuck[3..].iter().all(|c| c == status),
        "{stuck:?}"
    );
    assert!(
        line(2).contains(
            "FAILED aa:bb:cc:dd:ee:83 (127.0.0.83): ipmi: next boot PXE; power off sent (it was \
             on); did not power off within 1 s (the BMC still reports on); not powered on again; \
             disarmed again"
        ),
        "{out}"
    );
    assert!(
        line(3).contains("; power on sent; not verified on: the BMC reported off after power on, for 1 s; disarmed again"),
        "{out}"
    );
    // An answer that is no power state: nothing else is asked, and its bytes are not printed.
    assert_eq!(ipmitool.commands("127.0.0.85"), [status]);
    assert!(
        line(4).contains(
            r"FAILED aa:bb:cc:dd:ee:85 (127.0.0.85): ipmi chassis power status: not an answer it knows ('Chassis Power is \x1b[2Jbanana\n'); disarmed again"
        ),
        "{out}"
    );
}

#[test]
fn a_self_signed_bmc_is_trusted_by_its_fingerprint_or_ca_file_only() {
    let ip = "127.0.0.31";
    let tls = Tls::new(ip);
    let bmc = Standin::start(ip, "redfish", Some(&tls));
    let other = Tls::new(ip);
    let https = |extra: &str| {
        format!(
            "[default]\ndriver = redfish\nusername = admin\npassword = s3cret\n[{ip}]\nport = {}\n{extra}",
            bmc.port
        )
    };
    let machine = format!("aa:bb:cc:dd:ee:31 {ip}\n");
    let attempt = |extra: &str| {
        let tool = Tool::new(&machine, &https(extra));
        std::fs::copy(&tls.cert, tool.dir.path().join("bmc-ca.pem")).unwrap();
        let before = bmc.requests().len();
        let (code, out, err) = tool.run_with(&["--timeout", "10"]);
        (code, format!("{out}{err}"), bmc.requests().len() - before)
    };
    // Not trusted by the system's CAs, nor pinned to another certificate: nothing is sent.
    let (code, out, sent) = attempt("");
    assert_eq!((code, sent), (1, 0), "{out}");
    assert!(out.contains("TLS certificate not trusted"), "{out}");
    let (code, out, sent) = attempt(&format!("tls_fingerprint = {}\n", other.fingerprint));
    assert_eq!((code, sent), (1, 0), "{out}");
    assert!(out.contains("not the tls_fingerprint in bmc.conf"), "{out}");
    // Its own fingerprint, in either case, with or without colons; or itself as the CA.
    let lower = tls
        .fingerprint
        .to_lowercase()
        .replace(':', "")
        .replacen("sha256", "sha256:", 1);
    for extra in [
        format!("tls_fingerprint = {}\n", tls.fingerprint),
        format!("tls_fingerprint = {lower}\n"),
        "ca_file = bmc-ca.pem\n".to_string(),
        "verify_tls = no\n".to_string(),
    ] {
        let (code, out, sent) = attempt(&extra);
        assert_eq!(code, 0, "{extra}: {out}");
        assert!(
            out.contains("ok     aa:bb:cc:dd:ee:31 (127.0.0.31): ") && sent > 0,
            "{extra}: {out}"
        );
    }
}

#[test]
fn a_credentials_file_that_cannot_be_read_or_understood_is_a_set_up_error() {
    let machine = "aa:bb:cc:dd:ee:51 127.0.0.51\n";
    for (what, conf, says) in [
        ("no section", "driver = ipmi\n", "no section headers"),
        (
            "unknown key",
            "[default]\npasword = x\n",
            "[default] pasword: unknown key",
        ),
        (
            "bad driver",
            "[default]\ndriver = ilo\n",
            "'ilo' is not one of",
        ),
        (
            "bad port",
            "[127.0.0.51]\nport = 99999\n",
            "is not a port number",
        ),
        ("bad section", "[bmc7]\nport = 1\n", "[bmc7]: a section is"),
        (
            "bad fingerprint",
            "[default]\ntls_fingerprint = ab:cd\n",
            "expected sha256:",
        ),
        ("missing CA", "[default]\nca_file = nosuch.pem\n", "no file"),
        (
            "not a number",
            "[default]\noff_timeout = nan\n",
            "[default] off_timeout: 'nan' is not a number of seconds (more than 0, at most 600)",
        ),
        (
            "no wait",
            "[127.0.0.51]\non_timeout = 0\n",
            "[127.0.0.51] on_timeout: '0' is not a number of seconds",
        ),
        (
            "too long",
            "[default]\npoll_interval = 61\n",
            "poll_interval: '61' is not a number of seconds (more than 0, at most 60)",
        ),
        (
            "an exponent",
            "[default]\noff_timeout = 1e2\n",
            "off_timeout: '1e2' is not a number",
        ),
        ("not UTF-8", "", "not UTF-8"),
    ] {
        let tool = Tool::new(machine, conf);
        if what == "not UTF-8" {
            std::fs::write(
                tool.dir.path().join("bmc.conf"),
                b"[default]\npassword = \xff\n",
            )
            .unwrap();
        }
        let (code, out, err) = tool.run_with(&[]);
        assert_eq!(code, 2, "{what}: {out}{err}");
        assert!(err.contains(says), "{what}: {err}");
        assert!(!tool.linked("aa-bb-cc-dd-ee-51"), "{what}");
    }
    // Unreadable: a directory in its place, and (as another user) a file only root may read.
    let tool = Tool::new(machine, "[default]\ndriver = ipmi\n");
    let conf = tool.dir.path().join("bmc.conf");
    std::fs::remove_file(&conf).unwrap();
    std::fs::create_dir(&conf).unwrap();
    let (code, out, err) = tool.run_with(&[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("cannot read the credentials file"), "{err}");
    let tool = Tool::new(machine, "[default]\ndriver = ipmi\n");
    for path in [tool.dir.path(), &tool.dir.path().join("mkheadnode-link")] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let d = tool.dir.path();
    let (code, out, err) = run(Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        .arg("/usr/bin/python3")
        .arg(d.join("mkheadnode-link"))
        .args(["--profile", "centos", "--dry-run"])
        .arg("--tftp-root")
        .arg(d.join("tftpboot"))
        .arg("--machines")
        .arg(d.join("machines.txt"))
        .arg("--credentials")
        .arg(d.join("bmc.conf")));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cannot read the credentials file") && err.contains("Permission denied"),
        "{err}"
    );
}
