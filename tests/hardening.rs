//! Issue 10 on the real `qemu:///system`: what a planted link, a copied domain or an
//! interrupted run must not make mkheadnode do. VLANs 4020-4039, each test in a `Sandbox`.

use crate::support::{virsh, Paused};
use crate::system::Sandbox;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[test]
fn links_planted_in_the_config_dir_or_the_lock_dir_redirect_nothing() {
    let sb = Sandbox::new("links", &[4020]);
    let precious = sb.path("precious");
    std::fs::write(&precious, "keep\n").unwrap();
    std::fs::create_dir_all(sb.config_dir(4020)).unwrap();
    std::os::unix::fs::symlink(&precious, sb.config_dir(4020).join("machines.txt")).unwrap();
    let machines = sb.path("m.txt");
    std::fs::write(&machines, "aa:bb:cc:dd:ee:01 10.0.0.1\n").unwrap();
    for args in [
        &["4020", "--no-start"][..],
        &["4020", "--machines", machines.to_str().unwrap()],
    ] {
        let (code, _, err) = sb.mk(args);
        assert_eq!(code, 6, "{args:?}: {err}");
        assert!(
            err.contains("machines.txt") && err.contains("symbolic link"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep\n");
    assert!(!sb.domain_exists(4020));
    assert!(sb.volumes().is_empty(), "{:?}", sb.volumes());

    std::fs::remove_file(sb.config_dir(4020).join("machines.txt")).unwrap();
    // The runs above made the lock file: put a link in its place.
    std::fs::remove_file(sb.path("lock/vlan-4020.lock")).unwrap();
    let elsewhere = sb.path("made-through-the-lock-link");
    std::os::unix::fs::symlink(&elsewhere, sb.path("lock/vlan-4020.lock")).unwrap();
    let (code, _, err) = sb.mk(&["4020", "--no-start"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("vlan-4020.lock"), "{err}");
    assert!(!elsewhere.exists(), "a lock was created through a link");
    assert!(!sb.domain_exists(4020));

    std::fs::remove_file(sb.path("lock/vlan-4020.lock")).unwrap();
    let (code, _, err) = sb.mk(&["4020", "--no-start"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(virsh(&["domstate", "headnode-4020"]).1.trim(), "shut off");
}

/// `headnode-<from>`'s XML defined as `headnode-<to>`, edited by `edit`: what an operator who
/// copies a headnode's XML by hand makes.
fn define_copy(sb: &Sandbox, from: u16, to: u16, edit: impl Fn(String) -> String) {
    let (code, xml, err) = virsh(&["dumpxml", "--inactive", &format!("headnode-{from}")]);
    assert_eq!(code, 0, "{err}");
    let xml: String = xml
        .lines()
        .filter(|l| !l.trim_start().starts_with("<uuid>"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            &format!("<name>headnode-{from}</name>"),
            &format!("<name>headnode-{to}</name>"),
        );
    let path = sb.path(&format!("copy-{to}.xml"));
    std::fs::write(&path, edit(xml)).unwrap();
    let (code, _, err) = virsh(&["define", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_copied_domain_deletes_nothing_of_the_headnode_it_was_copied_from() {
    let sb = Sandbox::new("copied", &[4021, 4022]);
    let (code, _, err) = sb.mk(&["4021", "--no-start"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        sb.config_dir(4021).join("machines.txt"),
        "aa:bb:cc:dd:ee:01 10.0.0.1\n",
    )
    .unwrap();
    let vols = sb.volumes();
    let intact = |when: &str| {
        assert_eq!(sb.volumes(), vols, "{when}: VLAN 4021's volumes");
        assert_eq!(
            std::fs::read_to_string(sb.config_dir(4021).join("machines.txt")).unwrap(),
            "aa:bb:cc:dd:ee:01 10.0.0.1\n",
            "{when}: VLAN 4021's config dir"
        );
        assert!(sb.domain_exists(4021) && sb.domain_exists(4022), "{when}");
    };
    // As seen: a plain copy, metadata and all.
    define_copy(&sb, 4021, 4022, |x| x);
    for args in [
        &["teardown", "4022", "--purge"][..],
        &["teardown", "4022"],
        &["rebuild", "4022"],
        &["4022"],
    ] {
        let (code, _, err) = sb.mk(args);
        assert_eq!(code, 6, "{args:?}: {err}");
        assert!(
            err.contains("says VLAN 4021") && err.contains("virsh undefine headnode-4022"),
            "{args:?}: {err}"
        );
        intact(&format!("{args:?}"));
    }
    let (code, out, err) = sb.mk(&["status", "4022", "--json"]);
    assert_eq!(code, 6, "{err}");
    assert!(json(&out)["problem"]
        .as_str()
        .unwrap()
        .contains("says VLAN 4021"));
    let (code, out, err) = sb.mk(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows = json(&out);
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["domain"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {out}"))
            .clone()
    };
    assert!(row("headnode-4021")["problem"].is_null());
    assert!(!row("headnode-4022")["problem"].is_null());
    let (_, table, _) = sb.mk(&["list"]);
    assert!(
        table.contains("NOT OURS AS NAMED: headnode-4022"),
        "{table}"
    );

    // A careful copy: the metadata says 4022 throughout, but the disks are still 4021's.
    virsh(&["undefine", "headnode-4022"]);
    define_copy(&sb, 4021, 4022, |x| {
        x.replace("<mkheadnode:vlan>4021<", "<mkheadnode:vlan>4022<")
            .replace("<vlan>4021</vlan>", "<vlan>4022</vlan>")
            .replace(">headnode-4021.qcow2<", ">headnode-4022.qcow2<")
            .replace(">headnode-4021-seed.iso<", ">headnode-4022-seed.iso<")
            .replace("52:54:00:4d:0f:b5", "52:54:00:4d:0f:b6")
            .replace("52:54:00:4d:1f:b5", "52:54:00:4d:1f:b6")
            .replace("cfg/4021<", "cfg/4022<")
    });
    let (code, _, err) = sb.mk(&["teardown", "4022", "--purge"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("its disks are"), "{err}");
    intact("careful copy");

    // The real one still goes, and only it.
    virsh(&["undefine", "headnode-4022"]);
    let (code, _, err) = sb.mk(&["teardown", "4021", "--purge"]);
    assert_eq!(code, 0, "{err}");
    assert!(sb.volumes().is_empty() && !sb.config_dir(4021).exists());
}

/// The steps of a create, in order (see `ops::create`), after each of which a test can stop it.
const CREATE_STEPS: [&str; 12] = [
    "config-dir",
    "apparmor",
    "pool",
    "overlay-record",
    "overlay",
    "seed-record",
    "seed-volume",
    "seed",
    "domain-record",
    "define",
    "start",
    "done",
];

/// `sb`'s mkheadnode with `args`, once it says it paused after `step`.
fn paused(sb: &Sandbox, args: &[&str], step: &str) -> Paused {
    let mut cmd = sb.cmd(args);
    cmd.env("MKHEADNODE_TEST_PAUSE_AFTER", step);
    Paused::until(cmd, &format!("test hook: paused after {step}"))
}

/// The VLAN's state records and temporary files, if any are left.
fn records(sb: &Sandbox, vlan: u16) -> Vec<String> {
    match std::fs::read_dir(sb.path(&format!("state/vlan-{vlan}"))) {
        Err(_) => Vec::new(),
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
    }
}

/// `vlan`'s volumes in the sandbox's pool.
fn volumes_of(sb: &Sandbox, vlan: u16) -> Vec<String> {
    let mut v: Vec<String> = sb
        .volumes()
        .into_iter()
        .filter(|n| n.starts_with(&format!("headnode-{vlan}")))
        .collect();
    v.sort();
    v
}

/// Nothing of `vlan`'s headnode is left: no domain, no volume, no state record.
fn assert_nothing_left(sb: &Sandbox, vlan: u16, when: &str) {
    assert!(!sb.domain_exists(vlan), "{when}: the domain is left");
    assert_eq!(
        volumes_of(sb, vlan),
        Vec::<String>::new(),
        "{when}: volumes left"
    );
    assert_eq!(
        records(sb, vlan),
        Vec::<String>::new(),
        "{when}: records left"
    );
}

/// `vlan`'s headnode is complete and running, with no state record left.
fn assert_complete(sb: &Sandbox, vlan: u16, when: &str) {
    let name = format!("headnode-{vlan}");
    assert_eq!(virsh(&["domstate", &name]).1.trim(), "running", "{when}");
    assert_eq!(
        volumes_of(sb, vlan),
        vec![format!("{name}-seed.iso"), format!("{name}.qcow2")],
        "{when}"
    );
    assert_eq!(
        records(sb, vlan),
        Vec::<String>::new(),
        "{when}: records left"
    );
}

/// kill -9 a create after `step`; then a plain create must complete (`create_next`) or a plain
/// teardown remove everything, with no manual step.
fn kill_create_at(sb: &Sandbox, vlan: u16, step: &str, create_next: bool) {
    let v = vlan.to_string();
    let when = format!("killed after {step}");
    paused(sb, &[&v], step).kill();
    if create_next {
        let (code, _, err) = sb.mk(&[&v]);
        assert_eq!(code, 0, "{when}, then create: {err}");
        assert_complete(sb, vlan, &when);
    }
    let (code, _, err) = sb.mk(&["teardown", &v]);
    let nothing_made = CREATE_STEPS[..3].contains(&step) && !create_next;
    assert_eq!(
        code,
        if nothing_made { 3 } else { 0 },
        "{when}, then teardown: {err}"
    );
    assert_nothing_left(sb, vlan, &format!("{when}, then teardown"));
}

#[test]
fn a_create_killed_after_any_step_is_finished_or_removed_by_the_next_plain_run() {
    let sb = Sandbox::new("killed", &[4023, 4024]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for step in CREATE_STEPS {
                kill_create_at(&sb, 4023, step, true);
            }
        });
        scope.spawn(|| {
            for step in CREATE_STEPS {
                kill_create_at(&sb, 4024, step, false);
            }
        });
    });
}

#[test]
fn sigterm_and_ctrl_c_roll_a_create_back() {
    let sb = Sandbox::new("signals", &[4025]);
    for (signal, name, step) in [
        ("TERM", "SIGTERM", "overlay"),
        ("INT", "SIGINT", "seed"),
        ("TERM", "SIGTERM", "define"),
        ("INT", "SIGINT", "start"),
    ] {
        let (code, err) = paused(&sb, &["4025"], step).signal(signal);
        assert_eq!(code, 1, "{signal} after {step}: {err}");
        assert!(
            err.contains(&format!("interrupted by {name}")) && err.contains("rolled back"),
            "{signal} after {step}: {err}"
        );
        assert_nothing_left(&sb, 4025, &format!("{signal} after {step}"));
    }
    // The config dir and what the operator put in it stay, as after any failure.
    assert!(sb.config_dir(4025).join("machines.txt").exists());
}

#[test]
fn ctrl_c_stops_a_wait_and_leaves_the_headnode() {
    let sb = Sandbox::new("waitint", &[4029]);
    // The base image is empty: the guest never gets ready, so only the signal ends the wait.
    let cmd = sb.cmd(&["4029", "--wait", "--timeout", "120"]);
    // Once it says it waits: a signal right after "started" still interrupts the create, which
    // rolls back (sigterm_and_ctrl_c_roll_a_create_back).
    let (code, err) = Paused::until(cmd, "waiting for 1 headnode(s) to serve").signal("INT");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("interrupted by SIGINT (Ctrl-C) while waiting"),
        "{err}"
    );
    assert_complete(&sb, 4029, "after the wait was interrupted");
}

#[test]
fn a_teardown_killed_half_way_is_finished_by_the_next_plain_run() {
    let sb = Sandbox::new("killedtd", &[4026]);
    for (i, step) in ["teardown-records", "undefine", "volume-deleted"]
        .iter()
        .enumerate()
    {
        let when = format!("teardown killed after {step}");
        let (code, _, err) = sb.mk(&["4026", "--no-start"]);
        assert_eq!(code, 0, "{err}");
        paused(&sb, &["teardown", "4026"], step).kill();
        if i % 2 == 0 {
            // Killed before the domain went, the headnode is still whole (and shut off, as it
            // was made): the create leaves it so. After, the create makes it anew.
            let (code, _, err) = sb.mk(&["4026"]);
            assert_eq!(code, 0, "{when}, then create: {err}");
            if *step == "teardown-records" {
                assert!(err.contains("already exists (shut off)"), "{when}: {err}");
                assert_eq!(volumes_of(&sb, 4026).len(), 2, "{when}");
                assert_eq!(records(&sb, 4026), Vec::<String>::new(), "{when}");
            } else {
                assert_complete(&sb, 4026, &when);
            }
        }
        let (code, _, err) = sb.mk(&["teardown", "4026"]);
        assert_eq!(code, 0, "{when}, then teardown: {err}");
        assert_nothing_left(&sb, 4026, &when);
    }
}

#[test]
fn creates_killed_at_random_moments_leave_nothing_a_plain_run_cannot_clear() {
    let sb = Sandbox::new("random", &[4027]);
    for round in 0..8u32 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let delay = Duration::from_millis(u64::from(nanos % 1200));
        let mut child = sb.cmd(&["4027"]).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        let when = format!("round {round}, killed after {delay:?}");
        let (code, _, err) = sb.mk(&["4027"]);
        assert_eq!(code, 0, "{when}, then create: {err}");
        assert_complete(&sb, 4027, &when);
        let (code, _, err) = sb.mk(&["teardown", "4027"]);
        assert_eq!(code, 0, "{when}, then teardown: {err}");
        assert_nothing_left(&sb, 4027, &when);
    }
}

#[test]
fn volumes_no_matching_record_names_are_left_alone() {
    let sb = Sandbox::new("notours", &[4028]);
    assert_eq!(sb.mk(&["4028", "--no-start"]).0, 0);
    assert_eq!(sb.mk(&["teardown", "4028"]).0, 0);
    // Somebody's volume with our name, and no record of ours: refused, and kept.
    let pool = sb.pool();
    let (code, _, err) = virsh(&["vol-create-as", &pool, "headnode-4028.qcow2", "1M"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sb.mk(&["4028"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("no state record"), "{err}");
    let (code, _, err) = sb.mk(&["teardown", "4028"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        volumes_of(&sb, 4028),
        vec!["headnode-4028.qcow2".to_string()]
    );

    // A record that names a volume elsewhere than the plan puts it (another pool): what it
    // names is not ours to remove, whatever the record says.
    let other = format!("mkt-other-{}", std::process::id());
    let other_dir = sb.path("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let target = format!("--target={}", other_dir.display());
    let (code, _, err) = virsh(&["pool-create-as", &other, "dir", &target]);
    assert_eq!(code, 0, "{err}");
    let _other_goes = TransientPool(other.clone());
    let (code, _, err) = virsh(&["vol-create-as", &other, "headnode-4028.qcow2", "1M"]);
    assert_eq!(code, 0, "{err}");
    let dir = sb.path("state/vlan-4028");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let record = serde_json::json!({
        "kind": "volume",
        "vlan": 4028,
        "pool": other,
        "volume": "headnode-4028.qcow2",
        "path": other_dir.join("headnode-4028.qcow2"),
    });
    std::fs::write(
        dir.join("volume-headnode-4028.qcow2.json"),
        record.to_string(),
    )
    .unwrap();
    for args in [&["4028"][..], &["teardown", "4028"]] {
        let (code, _, err) = sb.mk(args);
        assert!(code == 6 || code == 3, "{args:?}: {err}");
        assert!(err.contains("left alone"), "{args:?}: {err}");
    }
    let (_, listed, _) = virsh(&["vol-list", &other]);
    assert!(
        listed.contains("headnode-4028.qcow2"),
        "the other pool's volume was removed"
    );
    assert_eq!(
        volumes_of(&sb, 4028),
        vec!["headnode-4028.qcow2".to_string()]
    );
}

/// A transient pool a test made, destroyed (and so gone) on drop, also when the test fails.
struct TransientPool(String);

impl Drop for TransientPool {
    fn drop(&mut self) {
        virsh(&["pool-destroy", &self.0]);
    }
}
