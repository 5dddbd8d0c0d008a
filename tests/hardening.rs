//! Issue 10 on the real `qemu:///system`: what a planted link, a copied domain or an
//! interrupted run must not make mkheadnode do. VLANs 4020-4039, each test in a `Sandbox`.

use crate::support::virsh;
use crate::system::Sandbox;

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
