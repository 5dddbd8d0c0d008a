/*!
The host side of a selftest's lab: transient libvirt networks, an address on a bridge, the
virtual BMC (virtualbmc's `vbmc`, an external program), and the run's directory and lock.

Each making function has its removing one, which does nothing where there is nothing to remove,
so a clean-up can run whatever was made.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use anyhow::Context;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use virt::error::ErrorNumber;

/// Start a transient network from `xml` (it disappears when stopped); its bridge's name.
pub fn start_network(hv: &Hypervisor, name: &str, xml: &str) -> anyhow::Result<String> {
    let net = hv.connection().create_network_xml(xml).map_err(|e| {
        failure(
            Kind::Libvirt,
            format!(
                "starting the selftest's network {name}: {}. If it names an address already in \
                 use, the host routes the lab's subnet elsewhere: run with another --vlan",
                e.message()
            ),
        )
    })?;
    net.bridge_name()
        .with_context(|| format!("reading the bridge of network {name}"))
}

/// Stop (and, were it persistent, undefine) the network `name`; whether there was one.
pub fn remove_network(hv: &Hypervisor, name: &str) -> anyhow::Result<bool> {
    let net = match hv.connection().lookup_network_by_name(name) {
        Ok(net) => net,
        Err(e) if e.code().is(ErrorNumber::NoNetwork) => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("looking up network {name}")),
    };
    if net.is_active().unwrap_or(false) {
        net.destroy()
            .with_context(|| format!("stopping network {name}"))?;
    }
    if net.is_persistent().unwrap_or(false) {
        net.undefine()
            .with_context(|| format!("undefining network {name}"))?;
    }
    Ok(true)
}

/// Whether a network named `name` exists.
pub fn network_exists(hv: &Hypervisor, name: &str) -> anyhow::Result<bool> {
    Ok(hv.network_active(name)?.is_some())
}

/// What routes the host has into the subnet of `addr`/`prefix` (`ip -4 route show to match`),
/// one line each; empty where the subnet is free.
pub fn routes_into(addr: Ipv4Addr, prefix: u8) -> anyhow::Result<Vec<String>> {
    let out = program(
        "ip",
        &["-4", "route", "show", "root", &format!("{addr}/{prefix}")],
    )?;
    let exact = program("ip", &["-4", "route", "show", "match", &addr.to_string()])?;
    Ok(out
        .lines()
        .chain(exact.lines().filter(|l| !l.starts_with("default")))
        .map(str::to_string)
        .collect())
}

/// Give `bridge` the address `addr`/`prefix`.
pub fn add_address(bridge: &str, addr: Ipv4Addr, prefix: u8) -> anyhow::Result<()> {
    program(
        "ip",
        &["addr", "add", &format!("{addr}/{prefix}"), "dev", bridge],
    )
    .map(drop)
}

/// Whether `name` is a program on `PATH`.
pub fn has_program(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A virtual BMC (IPMI over LAN) for domain `name` at `addr`:`port`, started; virtualbmc's
/// daemon is started first if it does not answer (it stays, as it does for every user of it).
pub fn add_vbmc(
    name: &str,
    addr: Ipv4Addr,
    port: u16,
    password: &str,
    uri: &str,
) -> anyhow::Result<()> {
    if program("vbmc", &["list"]).is_err() {
        clear_stale_vbmcd_pid();
        program("vbmcd", &[])?;
        std::thread::sleep(Duration::from_secs(2));
    }
    program(
        "vbmc",
        &[
            "add",
            name,
            "--port",
            &port.to_string(),
            "--address",
            &addr.to_string(),
            "--username",
            "admin",
            "--password",
            password,
            "--libvirt-uri",
            uri,
        ],
    )?;
    program("vbmc", &["start", name]).map(drop)
}

/// virtualbmc's own directory, `~/.vbmc`.
fn vbmc_dir() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".vbmc")
}

/// Remove vbmcd's pid file where it names no running process: vbmcd refuses to start while
/// its file names one it takes for alive, and it takes pid 0 (a file left by a daemon that
/// never ran) for alive.
fn clear_stale_vbmcd_pid() {
    let file = vbmc_dir().join("master.pid");
    let Ok(text) = fs::read_to_string(&file) else {
        return;
    };
    let alive = text.trim().parse::<u32>().is_ok_and(|pid| {
        pid > 0
            && fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("vbmcd"))
    });
    if !alive {
        let _ = fs::remove_file(&file);
    }
}

/// Stop and delete the virtual BMCs of those domains of `names` that virtualbmc has (it keeps
/// each in `~/.vbmc/<domain>`; the daemon is asked only about those).
pub fn remove_vbmcs(names: &[&str]) {
    let dir = vbmc_dir();
    for name in names.iter().filter(|n| dir.join(n).exists()) {
        let _ = program("vbmc", &["stop", name]);
        let _ = program("vbmc", &["delete", name]);
    }
}

/// Run `name` with `args`; its standard output, or an error with its standard error.
fn program(name: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(name)
        .args(args)
        .output()
        .with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        return Err(failure(
            Kind::Other,
            format!(
                "`{name} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Make `dir` and the subdirectories `subs` of it, each mode 0755 (qemu reads disks and logs
/// there).
pub fn make_dirs(dir: &Path, subs: &[&str]) -> anyhow::Result<()> {
    for d in std::iter::once(dir.to_path_buf()).chain(subs.iter().map(|s| dir.join(s))) {
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", d.display()))?;
    }
    Ok(())
}

/// Write `text` to `path`, readable by everyone (qemu's user among them).
pub fn write_readable(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Copy `from` to `to`, readable by everyone.
pub fn copy_readable(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", to.display()))
}

/// An empty (sparse) raw disk of `bytes` at `path`.
pub fn empty_disk(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(bytes)
        .with_context(|| format!("sizing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Remove `dir` and everything in it, if it exists (a symbolic link is unlinked, not followed).
pub fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
        }
        Ok(_) => fs::remove_file(dir).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Hold the lock `path` for this process, or fail at once if another process holds it.
pub fn try_lock(path: &Path, what: &str) -> anyhow::Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(failure(
            Kind::Refused,
            format!(
                "{what} is already running (it holds {}): wait for it, or use another --vlan",
                path.display()
            ),
        )),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}
