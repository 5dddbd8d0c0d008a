//! The base image's early set-up (`scripts/image-early/mkheadnode-early`) against the seed that
//! mkheadnode renders: it must take the real seed over, writing every file with its mode and
//! eth0's addresses, and leave to cloud-init any seed it does not fully understand. (The smoke
//! test proves it at boot; this runs its parsing on the host's Python, as the guest's.)

use crate::support::run;
use mkheadnode::model::config::Config;
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::vlan::Vlan;
use mkheadnode::render::seed;
use std::process::Command;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/image-early/mkheadnode-early"
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
    let (code, out, err) = run(Command::new("/usr/bin/python3")
        .args([DRIVER, SCRIPT])
        .arg(&user)
        .arg(&net));
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
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
    let cases: Vec<(&str, String, String)> = vec![
        (
            "a write_files key it does not handle",
            user.replacen(
                "    permissions: \"0644\"\n",
                "    owner: \"www-data\"\n",
                1,
            ),
            net.to_string(),
        ),
        (
            "not #cloud-config",
            user.replacen("#cloud-config", "#!/bin/sh", 1),
            net.to_string(),
        ),
        (
            "the go not last",
            format!("{user}\nwrite_files:\n{go}  - path: /etc/x\n"),
            net.to_string(),
        ),
        (
            "a relative path",
            user.replacen(
                "  - path: /etc/dhcp/dhcpd.conf",
                "  - path: etc/dhcp/dhcpd.conf",
                1,
            ),
            net.to_string(),
        ),
        (
            "network-config version 2",
            user.to_string(),
            net.replacen("version: 1", "version: 2", 1),
        ),
        (
            "eth0 by DHCP",
            user.to_string(),
            net.replacen("      - type: static\n", "      - type: dhcp\n", 1),
        ),
        ("not YAML", user.to_string(), "config: [".to_string()),
    ];
    for (what, u, n) in cases {
        let v = verdict(&u, &n);
        assert!(
            v["declined"].is_string(),
            "{what}: taken over: {v}\n{u}\n{n}"
        );
    }
}
