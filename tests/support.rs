//! Helpers shared by the integration tests. Those that only the host tests use are built with
//! them, under the `host-tests` feature.

#[cfg(feature = "host-tests")]
use std::path::{Path, PathBuf};
#[cfg(feature = "host-tests")]
use std::process::Child;
use std::process::{Command, Output};
#[cfg(feature = "host-tests")]
use std::time::{Duration, Instant};

/// The mkheadnode binary, with an environment that does not leak the developer's settings.
pub fn mkheadnode() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkheadnode"));
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("LIBVIRT_DEFAULT_URI");
    cmd
}

/// Run a command, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    outcome(cmd.output().expect("command runs"))
}

/// A finished command's (exit code, stdout, stderr).
fn outcome(output: Output) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = output;
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Run a command with `input` on its stdin, returning (exit code, stdout, stderr).
#[cfg(feature = "host-tests")]
pub fn run_with_input(cmd: &mut Command, input: &str) -> (i32, String, String) {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command runs");
    child
        .stdin
        .take()
        .expect("a stdin")
        .write_all(input.as_bytes())
        .expect("stdin takes the input");
    outcome(child.wait_with_output().expect("command runs"))
}

/// A guest file as the seed of a default headnode for VLAN 42 carries it, by placeholder name.
#[cfg(feature = "host-tests")]
pub fn guest_file(name: &str) -> String {
    use mkheadnode::model::config::Config;
    use mkheadnode::model::plan::{Plan, VirtType};
    use mkheadnode::model::vlan::Vlan;
    use mkheadnode::render::seed;
    let plan = Plan::new(&Config::default(), Vlan::new(42).unwrap(), VirtType::Qemu);
    seed::guest_files(&plan)
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no guest file {name}"))
        .1
}

/// A guest program as a test runs it: `text` (rendered by `render::seed`) written to `dir/name`,
/// executable, with the lease parser it may load written beside it (`dir/leases.py`) and its
/// path to that pointed there. Returns the program's path.
#[cfg(feature = "host-tests")]
pub fn guest_program(dir: &Path, name: &str, text: &str) -> PathBuf {
    use mkheadnode::render::seed;
    use std::os::unix::fs::PermissionsExt as _;
    let module = dir.join("leases.py");
    std::fs::write(&module, seed::leases_module().unwrap()).unwrap();
    let path = dir.join(name);
    let text = text.replace(seed::LEASES_MODULE, module.to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Ask `done` every 100 ms until it says yes or `timeout` has passed; returns whether it did.
/// The one deadline loop of the tests: callers assert on the result, saying what they waited
/// for, or clean up before they fail.
#[cfg(feature = "host-tests")]
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run a shell tool and insist that it succeeds; returns stdout.
#[cfg(feature = "host-tests")]
pub fn tool(program: &str, args: &[&str]) -> String {
    let (code, out, err) = run(Command::new(program).args(args));
    assert_eq!(code, 0, "{program} {args:?} failed:\n{out}\n{err}");
    out
}

/// Run `virt-xml-validate` on `xml` as `kind`; returns its verdict and message.
#[cfg(feature = "host-tests")]
pub fn virt_xml_validate(xml: &str, kind: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.xml");
    std::fs::write(&path, xml).unwrap();
    let (code, out, err) = run(Command::new("virt-xml-validate").arg(&path).arg(kind));
    (code == 0, format!("{out}{err}"))
}

/// The libvirt URI the real-hypervisor tests use.
#[cfg(feature = "host-tests")]
pub const SYSTEM_URI: &str = "qemu:///system";

/// `virsh` on [`SYSTEM_URI`]: (exit code, stdout, stderr).
#[cfg(feature = "host-tests")]
pub fn virsh(args: &[&str]) -> (i32, String, String) {
    run(Command::new("virsh").arg("-c").arg(SYSTEM_URI).args(args))
}

/// A TCP port on 127.0.0.1 for a test server. A port the kernel picks (bind to 0) is released
/// before the server binds it, and Linux may give it to an outgoing connection or another
/// test's server meanwhile. So ports come from below the ephemeral range (32768 and up), each
/// handed out once per test run, from a block of 100 chosen by the process id.
#[cfg(feature = "host-tests")]
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 120) as u16 * 100;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 100, "test ports {base}..{} are used up", base + 100);
        if std::net::TcpListener::bind(("127.0.0.1", base + n)).is_ok() {
            return base + n;
        }
    }
}

/// A directory that qemu's user can reach (unlike a 0700 tempdir), removed on drop.
#[cfg(feature = "host-tests")]
pub struct OpenDir {
    pub path: PathBuf,
}

#[cfg(feature = "host-tests")]
impl OpenDir {
    pub fn new(tag: &str) -> OpenDir {
        let base = Path::new("/var/lib/mkheadnode-tests");
        std::fs::create_dir_all(base).unwrap();
        let path = base.join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        for p in [base, path.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        OpenDir { path }
    }
}

#[cfg(feature = "host-tests")]
impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A network namespace with an `eth0` that carries both headnode addresses, as the guest's does,
/// and `peer0`, the other end of its veth pair, for a client; removed on drop.
#[cfg(feature = "host-tests")]
pub struct Netns(pub String);

#[cfg(feature = "host-tests")]
impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("mkh-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ns = Netns(name.clone());
        tool("ip", &["netns", "add", &name]);
        let ip = |args: &[&str]| tool("ip", &[&["-n", &name][..], args].concat());
        ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ]);
        for addr in ["192.168.10.254/24", "10.0.0.254/24"] {
            ip(&["addr", "add", addr, "dev", "eth0"]);
        }
        for dev in ["lo", "eth0", "peer0"] {
            ip(&["link", "set", dev, "up"]);
        }
        ns
    }

    /// `program` run inside the namespace.
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, program]);
        cmd
    }

    /// dhcpd in the foreground on `eth0` with `dir`'s `dhcpd.conf`, its lease file
    /// `dhcpd.leases` (made empty if absent) and pid file there.
    pub fn dhcpd(&self, dir: &Path) -> Command {
        let leases = dir.join("dhcpd.leases");
        if !leases.exists() {
            std::fs::write(&leases, "").unwrap();
        }
        let mut cmd = self.exec("dhcpd");
        cmd.args(["-f", "-4", "-cf"])
            .arg(dir.join("dhcpd.conf"))
            .arg("-lf")
            .arg(leases)
            .arg("-pf")
            .arg(dir.join("dhcpd.pid"))
            .arg("eth0");
        cmd
    }

    /// The MAC address of `peer0`, the client's interface.
    pub fn client_mac(&self) -> String {
        let (code, out, err) = run(self.exec("cat").arg("/sys/class/net/peer0/address"));
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    }

    /// One DHCP exchange from `peer0` (busybox udhcpc) with these client options; `script` is
    /// called with each event, as udhcpc's `-s` script. (exit code, stdout, stderr)
    pub fn udhcpc(&self, script: &Path, options: &[&str]) -> (i32, String, String) {
        run(self
            .exec("busybox")
            .args([
                "udhcpc", "-i", "peer0", "-q", "-n", "-t", "5", "-T", "1", "-s",
            ])
            .arg(script)
            .args(options))
    }
}

#[cfg(feature = "host-tests")]
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// dhcpd serving the seed's `dhcpd.conf` (a default headnode for VLAN 42) in a namespace of its
/// own, for real DHCP exchanges from its `peer0`; dhcpd is stopped on drop, before the
/// namespace goes.
#[cfg(feature = "host-tests")]
pub struct Dhcpd {
    /// dhcpd's own files: `dhcpd.conf`, `dhcpd.leases`, its pid file.
    pub dir: tempfile::TempDir,
    child: Child,
    /// The namespace; its `peer0` is the client's interface.
    pub ns: Netns,
}

#[cfg(feature = "host-tests")]
impl Dhcpd {
    /// dhcpd up in a new namespace named after `tag`.
    pub fn start(tag: &str) -> Dhcpd {
        use mkheadnode::model::config::Config;
        use mkheadnode::model::plan::{Plan, VirtType};
        use mkheadnode::model::vlan::Vlan;
        use mkheadnode::render::seed;
        use std::process::Stdio;
        let ns = Netns::new(tag);
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan::new(&Config::default(), Vlan::new(42).unwrap(), VirtType::Qemu);
        std::fs::write(
            dir.path().join("dhcpd.conf"),
            seed::dhcpd_conf(&plan).unwrap(),
        )
        .unwrap();
        let child = ns
            .dhcpd(dir.path())
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        Dhcpd { dir, child, ns }
    }

    /// One DHCP exchange from `peer0` with these client options, which must get a lease; the
    /// reply's `vars` (udhcpc's names, e.g. `ip`, `boot_file`, `vendor`) as `name=value` lines.
    pub fn ask(&self, vars: &[&str], options: &[&str]) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let script = self.dir.path().join("bound.sh");
        let echoes: String = vars
            .iter()
            .map(|v| format!("echo \"{v}=${v}\"\n"))
            .collect();
        std::fs::write(
            &script,
            format!("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\n{echoes}exit 0\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (code, out, err) = self.ns.udhcpc(&script, options);
        assert_eq!(code, 0, "udhcpc {options:?} got no lease:\n{out}\n{err}");
        out
    }
}

#[cfg(feature = "host-tests")]
impl Drop for Dhcpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A second libvirt host on this machine, reached over `qemu+ssh://` as an operator reaches a
/// hypervisor from a control machine: `scripts/test-host.sh` starts it in a network namespace
/// (with `fleet` in its name) and a mount namespace of its own (its own `/run`,
/// `/var/lib/libvirt`, `/etc/libvirt`, config root, ...), running libvirtd and an sshd that
/// takes the test's key. Everything it started is stopped, and its namespace removed, on drop.
#[cfg(feature = "host-tests")]
pub struct TestHost {
    dir: OpenDir,
    /// Its address on the private /30 between it and this machine.
    pub addr: String,
    /// `qemu+ssh://root@<addr>/system`, through an ssh that knows its host key.
    pub uri: String,
}

#[cfg(feature = "host-tests")]
impl TestHost {
    /// Start one; `tag` (letters and digits) names its namespace and directory.
    pub fn start(tag: &str) -> TestHost {
        use std::sync::atomic::{AtomicU8, Ordering};
        static STARTED: AtomicU8 = AtomicU8::new(0);
        let n = (std::process::id() % 50) * 5 + u32::from(STARTED.fetch_add(1, Ordering::Relaxed));
        let dir = OpenDir::new(&format!("fleet-{tag}"));
        let mut host = TestHost {
            dir,
            addr: String::new(),
            uri: String::new(),
        };
        let name = format!("fleet-{tag}-{}", std::process::id());
        let (code, _, err) = run(Command::new(host.script())
            .arg("up")
            .arg(&host.dir.path)
            .args([name.as_str(), &n.to_string()]));
        assert_eq!(code, 0, "test host did not start: {err}");
        let env = std::fs::read_to_string(host.dir.path.join("env")).unwrap();
        let get = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key} in the test host's env"))
                .to_string()
        };
        host.addr = get("ADDR");
        host.uri = get("URI");
        host
    }

    fn script(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-host.sh")
    }

    /// `virsh` on this host: (exit code, stdout, stderr).
    pub fn virsh(&self, args: &[&str]) -> (i32, String, String) {
        run(Command::new("virsh").arg("-c").arg(&self.uri).args(args))
    }

    /// `program` run on this host, inside its namespaces, as its sshd would run it.
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.dir.path.join("ssh"));
        cmd.arg(format!("root@{}", self.addr)).arg(program);
        cmd
    }
}

#[cfg(feature = "host-tests")]
impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new(self.script())
            .arg("down")
            .arg(&self.dir.path)
            .status();
    }
}

#[cfg(feature = "host-tests")]
/// A run of mkheadnode paused by a test hook (or at any line it prints), its standard error
/// collected.
pub struct Paused {
    /// The run.
    pub child: Child,
    stderr: std::thread::JoinHandle<String>,
}

#[cfg(feature = "host-tests")]
impl Paused {
    /// Start `cmd` and wait until a line of its standard error contains `marker`.
    pub fn until(mut cmd: Command, marker: &str) -> Paused {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)) {
                let line = line.unwrap_or_default();
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(marker) => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{args:?} never said {marker:?}:\n{}",
                        stderr.join().unwrap()
                    );
                }
            }
        }
        Paused { child, stderr }
    }

    /// kill -9 it there; its standard error.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.stderr.join().unwrap()
    }

    /// Send it `signal` (`TERM`, `INT`); its exit code and standard error.
    pub fn signal(mut self, signal: &str) -> (i32, String) {
        let pid = self.child.id().to_string();
        assert_eq!(run(Command::new("kill").args(["-s", signal, &pid])).0, 0);
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), self.stderr.join().unwrap())
    }
}
