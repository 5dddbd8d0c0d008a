//! The link tool against real BMC endpoints on loopback: virtualbmc (IPMI) and sushy-emulator
//! (Redfish), each driving a small libvirt domain on `qemu:///system`, and a digest-auth AMT
//! form handler. The tool runs exactly as in the guest (`python3 mkheadnode-link`).

use crate::support::{free_port, run, virsh, wait_until, SYSTEM_URI};
use mkheadnode::render::seed;
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
        "nothing listens on {port}"
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
        let d = self.dir.path();
        let p = |r: &str| -> PathBuf { d.join(r) };
        let (code, out, err) = run(Command::new("python3")
            .arg(p("mkheadnode-link"))
            .args(["--profile", "centos", "--timeout", "10"])
            .arg("--tftp-root")
            .arg(p("tftpboot"))
            .arg("--machines")
            .arg(p("machines.txt"))
            .arg("--credentials")
            .arg(p("bmc.conf")));
        (code, format!("{out}{err}"))
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
