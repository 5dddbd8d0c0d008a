//! mkheadnode-early: the headnode's first-boot set-up, before cloud-init, in images built by
//! build-image.sh (run by mkheadnode-early.service).
//!
//! Under emulation cloud-init's local and init stages take ~25 s before the set-up its seed
//! carries can start (Python importing cloud-init twice, the network brought up between them).
//! Everything the set-up needs is on the seed already: its files (user-data's write_files) and
//! eth0's addresses (network-config). So at local-fs time this reads the seed itself, writes
//! those files (leaving any that the image carries as they are), brings eth0 up (as ifupdown
//! would, and recorded as ifupdown records it) and runs the set-up; cloud-init runs after it as usual (hostname, users, ssh keys, eth1,
//! write_files again with the same contents) and its bootcmd sees that the set-up has run
//! (`RAN_MARKER`, kept for the boots after) and does not start it a second time. It is a
//! compiled program, not a script, because an interpreter's start was seconds of the way to
//! serving while udev's coldplug took the same two vCPUs.
//!
//! It takes over only a seed it fully understands: a NoCloud seed (an ISO9660 volume labelled
//! cidata) whose user-data writes the set-up and its go file with nothing but path, permissions
//! and plain content, for an instance cloud-init has not booted yet, and whose network-config
//! (version 1) gives eth0 static addresses and a MAC that the kernel named eth0, all written as
//! mkheadnode writes them (see `seed`). Anything else is left to cloud-init, which then does
//! everything as it would without this.
//!
//! `mkheadnode-early --check USER_DATA NETWORK_CONFIG` reads two seed files and prints, as one
//! JSON object, what it would write and bring up, or why it would decline: the tests compare
//! that with what cloud-init's YAML parser reads. `mkheadnode-early --up IFACE ADDRESS/PREFIX...`
//! brings an interface up with addresses as the set-up brings eth0 up (without ifupdown's
//! record), for the tests to run in a network namespace of their own.

mod host;
mod netlink;
mod seed;

use seed::{Decline, Eth0, Ipv4Net, Read, SeedFile};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

const RUN_DIR: &str = "/run/mkheadnode";
const SEED_DIR: &str = "/run/mkheadnode/early-seed";
/// Left for cloud-init's bootcmd: the set-up ran (and for which instance).
const RAN_MARKER: &str = "/var/lib/mkheadnode/early-set-up-ran";
/// ifupdown's records of what is up, as `ifup` keeps them: per interface (the name of the
/// stanza it brought up, which `ifup -a` looks at: networking.service then leaves eth0 as it is
/// on this boot), and all of them (`iface=stanza` lines, which `ifquery --state` and `ifdown`
/// read).
const IFSTATE_ETH0: &str = "/run/network/ifstate.eth0";
const IFSTATE: &str = "/run/network/ifstate";
const CLOUD_INSTANCE: &str = "/var/lib/cloud/data/instance-id";

fn say(msg: &str) {
    println!("mkheadnode-early: {msg}");
}

/// What a seed asks for: its instance, files and eth0.
struct Takeover {
    instance: String,
    files: Vec<SeedFile>,
    eth0: Eth0,
}

/// Read the seed from its volume, or None when this instance has booted before.
fn read_seed() -> Read<Option<Takeover>> {
    let dev = host::find_seed()?;
    fs::DirBuilder::new()
        .recursive(true)
        .create(SEED_DIR)
        .map_err(|e| Decline(format!("{SEED_DIR} cannot be made ({e})")))?;
    host::mount_seed(&dev, SEED_DIR).map_err(|e| Decline(format!("{dev} does not mount ({e})")))?;
    let read = || -> Read<Option<(String, String, String)>> {
        let instance = seed::instance_id(&host::load(&format!("{SEED_DIR}/meta-data"))?)?;
        if fs::read_to_string(CLOUD_INSTANCE).is_ok_and(|id| id.trim() == instance) {
            return Ok(None); // a later boot of this instance: nothing to set up
        }
        let user = host::load(&format!("{SEED_DIR}/user-data"))?;
        let net = host::load(&format!("{SEED_DIR}/network-config"))?;
        Ok(Some((instance, user, net)))
    };
    let texts = read();
    // Nothing is read from it after this; a busy volume stays mounted, harmlessly.
    let _ = host::unmount(SEED_DIR);
    let Some((instance, user, net)) = texts? else {
        return Ok(None);
    };
    let files = seed::files_of(&user)?;
    let eth0 = seed::eth0_of(&net)?;
    host::wait_for_eth0(&eth0.mac)?;
    Ok(Some(Takeover {
        instance,
        files,
        eth0,
    }))
}

/// eth0 up with its addresses, as `ifup` brings its static stanzas up (through rtnetlink,
/// without `ifup`'s processes), and recorded as ifupdown records it, so that networking.service
/// later finds it configured. Without the if-up.d hooks, as before with `ifup --no-scripts`:
/// they are for interfaces with services that follow them; cloud-init's own configuration of
/// eth0 on the boots after runs them.
fn bring_up_eth0(addresses: &[Ipv4Net]) -> io::Result<()> {
    netlink::bring_up("eth0", addresses)
        .map_err(|e| io::Error::new(e.kind(), format!("eth0 up: {e}")))?;
    host::write(IFSTATE_ETH0, 0o644, "eth0\n")?;
    let mut all: String = fs::read_to_string(IFSTATE)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with("eth0="))
        .map(|line| format!("{line}\n"))
        .collect();
    all.push_str("eth0=eth0\n");
    host::write(IFSTATE, 0o644, &all)
}

/// Write the seed's files, load the share's modules and bring eth0 up.
fn set_up(takeover: &Takeover) -> io::Result<()> {
    for file in &takeover.files {
        host::write(&file.path, file.mode, &file.content)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.path)))?;
    }
    host::modprobe(&["9p", "9pnet_virtio"]);
    bring_up_eth0(&takeover.eth0.addresses)
}

fn boot() -> ExitCode {
    let _ = fs::create_dir_all(RUN_DIR);
    let takeover = match read_seed() {
        Ok(Some(takeover)) => takeover,
        Ok(None) => return ExitCode::SUCCESS,
        Err(why) => {
            // A marker of an earlier instance on this disk must not keep cloud-init from
            // setting up.
            if Path::new(RAN_MARKER).exists() {
                let _ = fs::remove_file(RAN_MARKER);
            }
            say(&format!("left to cloud-init: {why}"));
            return ExitCode::SUCCESS;
        }
    };
    // From here on the set-up is this unit's: cloud-init must not start it again, and a
    // failure is said as the set-up's own, which the host's `mkheadnode --wait` watches for.
    let started = host::write(RAN_MARKER, 0o644, &format!("{}\n", takeover.instance));
    say(&format!(
        "writing the seed's {} files and bringing eth0 up ({})",
        takeover.files.len(),
        takeover
            .eth0
            .addresses
            .iter()
            .map(Ipv4Net::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Err(e) = started.and_then(|()| set_up(&takeover)) {
        println!("mkheadnode-setup: FAILED (early set-up: {e})");
        return ExitCode::FAILURE;
    }
    // The set-up takes this process over (its exit status is the unit's).
    let e = Command::new("/bin/sh").arg(seed::SETUP).exec();
    println!(
        "mkheadnode-setup: FAILED (early set-up: /bin/sh {}: {e})",
        seed::SETUP
    );
    ExitCode::FAILURE
}

/// `text` as a JSON string.
fn json(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `--check` verdict on two seed files, as JSON.
fn check(user_data: &str, network_config: &str) -> String {
    let read = || -> Read<(Vec<SeedFile>, Eth0)> {
        let files = seed::files_of(&host::load(user_data)?)?;
        let eth0 = seed::eth0_of(&host::load(network_config)?)?;
        Ok((files, eth0))
    };
    match read() {
        Err(why) => format!("{{\"declined\": {}}}", json(&why.0)),
        Ok((files, eth0)) => {
            let files: Vec<String> = files
                .iter()
                .map(|f| format!("[{}, {}, {}]", json(&f.path), f.mode, json(&f.content)))
                .collect();
            let addresses: Vec<String> = eth0
                .addresses
                .iter()
                .map(|a| json(&a.to_string()))
                .collect();
            format!(
                "{{\"files\": [{}], \"eth0\": [{}, [{}]]}}",
                files.join(", "),
                json(&eth0.mac),
                addresses.join(", ")
            )
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => boot(),
        [flag, user, net] if flag == "--check" => {
            println!("{}", check(user, net));
            ExitCode::SUCCESS
        }
        [flag, iface, addresses @ ..] if flag == "--up" && !addresses.is_empty() => {
            let nets: Option<Vec<_>> = addresses.iter().map(|a| Ipv4Net::parse(a)).collect();
            let Some(nets) = nets else {
                eprintln!("mkheadnode-early: --up takes IPv4 addresses with a prefix, a.b.c.d/n");
                return ExitCode::from(2);
            };
            match netlink::bring_up(iface, &nets) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mkheadnode-early: {iface} up: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: mkheadnode-early [--check USER_DATA NETWORK_CONFIG | --up IFACE ADDRESS/PREFIX...]"
            );
            ExitCode::from(2)
        }
    }
}
