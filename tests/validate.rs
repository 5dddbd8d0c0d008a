//! Generated configuration checked by the tools that consume it.

use crate::support::{mkheadnode, run, tool, virt_xml_validate};
use mkheadnode::model::config::{Attachment, Config};
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::vlan::Vlan;
use mkheadnode::render::domain_xml;
use mkheadnode::render::seed;
use std::path::Path;

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config {
            vlan_attachment: Attachment::Bridge {
                name: "br-vlan{vlan}".into(),
            },
            public_attachment: Attachment::Bridge {
                name: "br-public".into(),
            },
            ..Config::default()
        },
        Config {
            vlan_attachment: Attachment::Ovs {
                name: "br-trunk".into(),
            },
            ..Config::default()
        },
    ]
}

#[test]
fn every_domain_variant_passes_virt_xml_validate() {
    for config in configs() {
        for (vlan, vt) in [(1, VirtType::Qemu), (4094, VirtType::Kvm)] {
            let plan = Plan::new(&config, Vlan::new(vlan).unwrap(), vt);
            let xml = domain_xml::domain(&plan).unwrap();
            let (ok, msg) = virt_xml_validate(&xml, "domain");
            assert!(ok, "{msg}\n{xml}");
        }
    }
}

#[test]
fn the_validator_does_reject_a_broken_domain() {
    // Guards the test above: a domain with an invalid accessmode must fail validation.
    let plan = Plan::new(&Config::default(), Vlan::new(5).unwrap(), VirtType::Qemu);
    let xml = domain_xml::domain(&plan)
        .unwrap()
        .replace("accessmode=\"mapped\"", "accessmode=\"bogus\"");
    assert!(!virt_xml_validate(&xml, "domain").0);
}

#[test]
fn pool_and_volume_documents_validate() {
    let pool =
        domain_xml::pool("mkheadnode", Path::new("/var/lib/mkheadnode/images"), 0o711).unwrap();
    assert!(virt_xml_validate(&pool, "storagepool").0, "{pool}");
    let vol =
        domain_xml::overlay_volume("headnode-1.qcow2", 10 << 30, Path::new("/b.qcow2"), "qcow2")
            .unwrap();
    assert!(virt_xml_validate(&vol, "storagevol").0, "{vol}");
    let vol = domain_xml::raw_volume("headnode-1-seed.iso", 59392).unwrap();
    assert!(virt_xml_validate(&vol, "storagevol").0, "{vol}");
}

#[test]
fn user_data_passes_cloud_init_schema() {
    let config = Config {
        ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3Nza op@desk".into()],
        ..Config::default()
    };
    let plan = Plan::new(&config, Vlan::new(42).unwrap(), VirtType::Qemu);
    let files = seed::files(&plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    std::fs::write(&path, &files.user_data).unwrap();
    let out = tool(
        "cloud-init",
        &["schema", "--config-file", path.to_str().unwrap()],
    );
    assert!(out.contains("Valid"), "{out}");
    // And the check can fail: an unknown key with a wrong type is reported.
    std::fs::write(&path, format!("{}\nssh_pwauth: [1, 2]\n", files.user_data)).unwrap();
    let (code, _, _) = run(std::process::Command::new("cloud-init").args([
        "schema",
        "--config-file",
        path.to_str().unwrap(),
    ]));
    assert_ne!(code, 0);
}

#[test]
fn seed_iso_is_read_back_by_isoinfo() {
    let plan = Plan::new(&Config::default(), Vlan::new(42).unwrap(), VirtType::Qemu);
    let files = seed::files(&plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("seed.iso");
    std::fs::write(&iso, seed::iso(&files).unwrap()).unwrap();
    let iso = iso.to_str().unwrap();
    let pvd = tool("isoinfo", &["-d", "-i", iso]);
    assert!(pvd.contains("Volume id: cidata"), "{pvd}");
    for (name, text) in files.entries() {
        let got = tool("isoinfo", &["-R", "-i", iso, "-x", &format!("/{name}")]);
        assert_eq!(got, text, "{name} differs inside the ISO");
    }
}

#[test]
fn dry_run_output_validates() {
    let (code, out, err) = run(mkheadnode().args(["--dry-run", "--virt-type", "qemu", "300"]));
    assert_eq!(code, 0, "{err}");
    let start = out.find("<domain").unwrap();
    let end = out.find("</domain>").unwrap() + "</domain>".len();
    let (ok, msg) = virt_xml_validate(&out[start..end], "domain");
    assert!(ok, "{msg}");
}
