//! The link tool against real BMC endpoints on loopback: virtualbmc (IPMI) and sushy-emulator
//! (Redfish), each driving a small libvirt domain on `qemu:///system`, and a digest-auth AMT
//! form handler; and against stand-ins that misbehave on purpose (redirects to another host,
//! HTML, bad JSON, huge replies, hangs, self-signed TLS), and bad credentials files. The tool
//! runs exactly as in the guest (`python3 mkheadnode-link`).

use crate::support::{free_port, run, virsh, wait_until, SYSTEM_URI};
use mkheadnode::render::seed;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const URI: &str = SYSTEM_URI;

fn wait_port(port: u16) {
    wait_for(("127.0.0.1", port));
}

fn wait_for(address: (&str, u16)) {
    let listens = || TcpStream::connect(address).is_ok();
    assert!(
        wait_until(Duration::from_secs(20), listens),
        "nothing listens on {address:?}"
    );
}

/// A powered-off libvirt domain that a BMC emulator controls; removed on drop.
struct Machine {
    name: String,
}

impl Machine {
    fn new(tag: &str) -> Machine {
        let name = format!("mkt-bmc-{tag}");
        virsh(&["destroy", &name]);
        virsh(&["undefine", &name]);
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("d.xml");
        std::fs::write(
            &xml,
            format!("<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os></domain>"),
        )
        .unwrap();
        assert_eq!(virsh(&["define", xml.to_str().unwrap()]).0, 0);
        Machine { name }
    }

    fn state(&self) -> String {
        virsh(&["domstate", &self.name]).1.trim().to_string()
    }

    fn uuid(&self) -> String {
        virsh(&["domuuid", &self.name]).1.trim().to_string()
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

    /// The tool with these extra arguments: (exit code, stdout, stderr). Killed after two
    /// minutes, so that a BMC call without a deadline fails the test instead of hanging it.
    fn run_with(&self, args: &[&str]) -> (i32, String, String) {
        let d = self.dir.path();
        let p = |r: &str| -> PathBuf { d.join(r) };
        run(Command::new("timeout")
            .args(["120", "python3"])
            .arg(p("mkheadnode-link"))
            .args(["--profile", "centos"])
            .arg("--tftp-root")
            .arg(p("tftpboot"))
            .arg("--machines")
            .arg(p("machines.txt"))
            .arg("--credentials")
            .arg(p("bmc.conf"))
            .args(args))
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

#[test]
fn ipmi_powers_on_then_cycles_and_a_wrong_password_is_reported() {
    let m = Machine::new("ipmi");
    let port = free_port();
    let _bmc = Vbmc::new(&m, port, "secret");
    let creds = |pw: &str| {
        format!("[default]\ndriver = ipmi\nusername = admin\npassword = {pw}\nport = {port}\n")
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
    let (code, out) = tool.run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("powered on via ipmi"), "{out}");
    assert!(tool.linked("aa-bb-cc-dd-ee-21"));
    assert_eq!(m.state(), "running");
    let (code, out) = tool.run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("power-cycled via ipmi"), "{out}");
    assert_eq!(m.state(), "running");
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
        &format!("[default]\ndriver = redfish\nscheme = http\nport = {port}\nusername = admin\npassword = x\n"),
    );
    let (code, out) = tool.run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("powered on via redfish"), "{out}");
    assert_eq!(m.state(), "running");
    let (code, out) = tool.run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("power-cycled via redfish"), "{out}");
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
    assert!(out.contains("power-cycled via amt"), "{out}");
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
    fn start(address: &str, mode: &str, tls: Option<&Tls>) -> Standin {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests");
        std::fs::write(&log, "").unwrap();
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bmc_standin.py");
        let mut cmd = Command::new("python3");
        cmd.args([script, address, &port.to_string(), mode])
            .arg(&log)
            .stderr(Stdio::null());
        if let Some(tls) = tls {
            cmd.arg(&tls.cert).arg(&tls.key);
        }
        let server = Server(cmd.spawn().unwrap());
        wait_for((address, port));
        Standin {
            _server: server,
            log,
            port,
            _dir: dir,
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
    let standins: Vec<(String, Standin)> = modes
        .iter()
        .enumerate()
        .map(|(i, (mode, _))| {
            let ip = format!("127.0.0.{}", 41 + i);
            let standin = Standin::start(&ip, mode, None);
            (ip, standin)
        })
        .collect();
    let machines: String = standins
        .iter()
        .enumerate()
        .map(|(i, (ip, _))| format!("aa:bb:cc:dd:ee:{:02x} {ip}\n", 0x41 + i))
        .collect();
    let sections: String = standins
        .iter()
        .map(|(ip, s)| format!("[{ip}]\nport = {}\n", s.port))
        .collect();
    let tool = Tool::new(&machines, &format!("{REDFISH}{sections}"));
    let start = std::time::Instant::now();
    let (code, out, err) = tool.run_with(&["--timeout", "2"]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{out}{err}");
    assert!(!err.contains("Traceback"), "{err}");
    for (i, ((mode, reason), (ip, _))) in modes.iter().zip(&standins).enumerate() {
        let mac = format!("aa:bb:cc:dd:ee:{:02x}", 0x41 + i);
        let line = out
            .lines()
            .find(|l| l.contains(&mac))
            .unwrap_or_else(|| panic!("no line for {mode}:\n{out}"));
        if reason.is_empty() {
            assert!(line.starts_with("ok "), "{mode}: {line}");
            assert!(tool.linked(&mac.replace(':', "-")), "{mode}");
        } else {
            assert!(
                line.starts_with(&format!("FAILED {mac} ({ip}): GET http://{ip}:"))
                    && line.contains(reason)
                    && line.contains("disarmed again"),
                "{mode}: {line}"
            );
            assert!(
                !tool.linked(&mac.replace(':', "-")),
                "{mode} is still armed"
            );
        }
    }
    assert!(out.contains("1 of 7 machines done"), "{out}");
    // Two calls hang for their 2 s each; nothing else waits.
    assert!(took < Duration::from_secs(20), "took {took:?}");

    // --keep-armed: the failed machine keeps its links, and is said to.
    let (code, out, _) = tool.run_with(&["--timeout", "2", "--keep-armed", "aa:bb:cc:dd:ee:41"]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("disarmed again"), "{out}");
    assert!(tool.linked("aa-bb-cc-dd-ee-41"));
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
            out.contains("powered on via redfish") && sent > 0,
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
