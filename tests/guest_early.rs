//! The base image's early set-up (`scripts/image-early`, a program of its own) against the seed
//! that mkheadnode renders: it must take the real seed over, writing every file with its mode
//! and eth0's addresses, as cloud-init's YAML parser reads them, and leave to cloud-init any seed
//! it does not fully understand. (The smoke test proves it at boot; this runs its `--check`
//! mode on the host. Its own unit tests, `make early-test`, cover its parts.)

use crate::support::run;
use mkheadnode::model::config::Config;
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::vlan::Vlan;
use mkheadnode::render::seed;
use std::process::Command;

/// The early set-up as `make early` builds it.
const PROGRAM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/image-early/target/x86_64-unknown-linux-gnu/release/mkheadnode-early"
);
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/early_check.py");

/// What the early set-up makes of these seed files (the driver's JSON).
fn verdict(user_data: &str, network_config: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let (user, net) = (
        dir.path().join("user-data"),
        dir.path().join("network-config"),
    );
    std::fs::write(&user, user_data).unwrap();
    std::fs::write(&net, network_config).unwrap();
    program();
    let (code, out, err) = run(Command::new("/usr/bin/python3")
        .args([DRIVER, PROGRAM])
        .arg(&user)
        .arg(&net));
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The early set-up is there to test.
fn program() {
    assert!(
        std::path::Path::new(PROGRAM).is_file(),
        "{PROGRAM} is missing: `make early` builds it"
    );
}

fn plan() -> Plan {
    Plan::new(&Config::default(), Vlan::new(42).unwrap(), VirtType::Qemu)
}

fn files() -> seed::SeedFiles {
    seed::files(&plan()).unwrap()
}

#[test]
fn the_real_seed_is_taken_over_with_every_file_and_eth0() {
    let f = files();
    let v = verdict(&f.user_data, &f.network_config);
    let written = v["files"].as_array().unwrap_or_else(|| panic!("{v}"));
    let mode_of = |path: &str| {
        written
            .iter()
            .find(|e| e[0] == path)
            .map(|e| e[1].as_str().unwrap().to_string())
    };
    assert_eq!(written.len(), f.user_data.matches("\n  - path: ").count());
    assert_eq!(
        mode_of("/usr/local/sbin/mkheadnode-setup").as_deref(),
        Some("0o755")
    );
    assert_eq!(
        mode_of("/etc/sudoers.d/mkheadnode").as_deref(),
        Some("0o440")
    );
    assert_eq!(written.last().unwrap()[0], seed::SETUP_GO_FILE);
    // It reads the seed without a YAML parser: what it read must be what YAML says.
    assert_eq!(v["yaml_agrees"], true, "PyYAML reads the seed otherwise");
    assert_eq!(v["eth0"][0], plan().private_nic.mac.to_string());
    assert_eq!(
        v["eth0"][1],
        serde_json::json!(["192.168.10.254/24", "10.0.0.254/24"])
    );
}

#[test]
fn a_seed_it_does_not_fully_understand_is_left_to_cloud_init() {
    let f = files();
    let (user, net) = (f.user_data.as_str(), f.network_config.as_str());
    let go = format!("  - path: {}\n", seed::SETUP_GO_FILE);
    // Each case changes one of the two files (the user-data or the network-config).
    let in_user = |what, from: &str, to: &str| (what, user.replacen(from, to, 1), net.to_string());
    let in_net = |what, from: &str, to: &str| (what, user.to_string(), net.replacen(from, to, 1));
    let cases: Vec<(&str, String, String)> = vec![
        in_user(
            "a write_files key it does not handle",
            "    permissions: \"0644\"\n",
            "    owner: \"www-data\"\n",
        ),
        in_user("not #cloud-config", "#cloud-config", "#!/bin/sh"),
        (
            "the go not last",
            format!("{user}\nwrite_files:\n{go}  - path: /etc/x\n"),
            net.to_string(),
        ),
        in_user(
            "a relative path",
            "  - path: /etc/dhcp/dhcpd.conf",
            "  - path: etc/dhcp/dhcpd.conf",
        ),
        in_net("network-config version 2", "version: 1", "version: 2"),
        in_net(
            "eth0 by DHCP",
            "      - type: static\n",
            "      - type: dhcp\n",
        ),
        ("not YAML", user.to_string(), "config: [".to_string()),
        in_user(
            "a block scalar",
            "    content: \"",
            "    content: |\n      \"",
        ),
        in_user(
            "write_files in flow style",
            "write_files:\n",
            "write_files: []\nx:\n",
        ),
        (
            "two YAML documents",
            format!("{user}---\nwrite_files: []\n"),
            net.to_string(),
        ),
        in_net(
            "an IPv4 address past 255",
            "192.168.10.254/24",
            "192.168.10.256/24",
        ),
        in_net(
            "an address with a leading zero",
            "192.168.10.254/24",
            "192.168.010.254/24",
        ),
        in_user(
            "an escape YAML reads otherwise (JSON's \\/)",
            "    content: \"",
            "    content: \"\\/",
        ),
        in_user(
            "an escaped surrogate (JSON pairs them, YAML does not)",
            "    content: \"",
            "    content: \"\\ud83d\\ude00",
        ),
        in_user(
            "a raw tab in a quoted value",
            "    content: \"",
            "    content: \"\t",
        ),
        in_user(
            "a raw line separator (YAML folds it)",
            "    content: \"",
            "    content: \"\u{2028}",
        ),
        in_user(
            "a quoted value whose closing quote is escaped",
            "\"\n  - path: ",
            "\\\"\n  - path: ",
        ),
        in_net(
            "eth0 with another key",
            "    subnets:\n",
            "    mtu: 9000\n    subnets:\n",
        ),
    ];
    for (what, u, n) in cases {
        let v = verdict(&u, &n);
        assert!(
            v["declined"].is_string(),
            "{what}: taken over: {v}\n{u}\n{n}"
        );
    }
}

/// Content with every escape serde_json writes (quotes, backslashes, control characters, `\u`
/// escapes) and non-ASCII text is read as PyYAML reads it, so the early set-up writes what
/// cloud-init would have written.
#[test]
fn escapes_are_read_as_yaml_reads_them() {
    let f = files();
    let tricky = "a \"quoted\" \\path\\ é ü 漢字 😀\u{1}\u{7}\u{1f}\t\r\u{8}\u{c}end\n";
    let json = serde_json::to_string(tricky).unwrap();
    assert!(json.contains("\\u0001") && json.contains("\\\""), "{json}");
    let body = &json[1..json.len() - 1];
    let user = f
        .user_data
        .replacen("    content: \"", &format!("    content: \"{body}"), 1);
    let v = verdict(&user, &f.network_config);
    assert_eq!(v["yaml_agrees"], true, "{v}");
    let written = v["files"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(written.len(), user.matches("\n  - path: ").count());
}

/// The early set-up brings eth0 up through rtnetlink, without `ifup` and its `ip` processes:
/// in a network namespace of its own, an interface it brings up has the addresses, broadcast
/// addresses and scope that ifupdown's `ip addr add ... broadcast +` gives its peer, and is up;
/// asked again, it leaves the addresses as they are; an interface that is not there fails.
#[test]
fn eth0_is_brought_up_as_ifupdown_brings_it_up() {
    program();
    let script = format!(
        "set -e
         ip link add eth0 type veth peer name peer0
         {PROGRAM} --up eth0 192.0.2.1/24 198.51.100.7/25 10.9.8.7/31
         {PROGRAM} --up eth0 192.0.2.1/24
         for a in 192.0.2.1/24 198.51.100.7/25 10.9.8.7/31; do
           ip addr add $a broadcast + dev peer0
         done
         ip link set peer0 up
         ip -o -4 addr show dev eth0
         echo --
         ip -o -4 addr show dev peer0
         echo --
         ip -o link show dev eth0
         echo --
         {PROGRAM} --up eth9 192.0.2.1/24 || echo refused"
    );
    let (code, out, err) = run(Command::new("unshare").args(["-n", "sh", "-c", &script]));
    assert_eq!(code, 0, "{out}\n{err}");
    let parts: Vec<&str> = out.split("--\n").collect();
    let [ours, ifupdowns, link, missing] = parts[..] else {
        panic!("{out}")
    };
    let addresses = |lines: &str, dev: &str| -> Vec<String> {
        lines
            .lines()
            .map(|l| {
                let l = l.split("valid_lft").next().unwrap_or(l);
                l.split_whitespace()
                    .skip(2)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace(dev, "DEV")
            })
            .collect()
    };
    assert_eq!(addresses(ours, "eth0").len(), 3, "{ours}");
    assert_eq!(addresses(ours, "eth0"), addresses(ifupdowns, "peer0"));
    assert!(
        ours.contains("inet 192.0.2.1/24 brd 192.0.2.255 scope global eth0"),
        "{ours}"
    );
    let flags = link.split(['<', '>']).nth(1).unwrap_or_default();
    assert!(flags.split(',').any(|f| f == "UP"), "{link}");
    assert!(
        missing.contains("refused") && err.contains("eth9"),
        "{missing}\n{err}"
    );
}
