//! Our libvirt calls against libvirt's in-memory test driver (`test:///default`): fast, and
//! no daemon needed. The real driver is exercised in `system`.

use mkheadnode::error::{kind_of, Kind};
use mkheadnode::host::hypervisor::Hypervisor;
use mkheadnode::model::config::Config;
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::vlan::Vlan;
use mkheadnode::ops::session::owned_domain;
use mkheadnode::render::domain_xml;
use std::path::Path;

const URI: &str = "test:///default";

fn config(vlan: u16) -> Config {
    Config {
        pool: format!("tdpool{vlan}"),
        pool_dir: format!("/tdpool{vlan}").into(),
        ..Config::default()
    }
}

fn plan(vlan: u16) -> Plan {
    Plan::new(&config(vlan), Vlan::new(vlan).unwrap(), VirtType::Qemu)
}

#[test]
fn define_read_metadata_and_undefine() {
    let hv = Hypervisor::connect(URI).unwrap();
    assert!(!hv.is_qemu_driver());
    let p = plan(3001);
    let dom = hv
        .define(&p.domain_name, &domain_xml::domain(&p).unwrap())
        .unwrap();
    let (_, meta) = owned_domain(&hv, &config(3001), p.vlan)
        .unwrap()
        .expect("ours");
    assert_eq!(meta.vlan, p.vlan);
    assert_eq!(meta.private_mac, p.private_nic.mac);
    assert_eq!(meta.public_mac, p.public_nic.mac);
    assert_eq!(meta.disk_volume, p.disk_volume);
    assert!(hv
        .headnodes()
        .unwrap()
        .iter()
        .any(|(_, m)| m.vlan == p.vlan));
    dom.create().unwrap();
    hv.destroy_and_undefine(&dom).unwrap();
    assert!(hv.find_domain(&p.domain_name).unwrap().is_none());
    assert!(owned_domain(&hv, &config(3001), p.vlan).unwrap().is_none());
}

#[test]
fn a_domain_without_our_metadata_is_refused() {
    let hv = Hypervisor::connect(URI).unwrap();
    let vlan = Vlan::new(3002).unwrap();
    let xml = "<domain type='test'><name>headnode-3002</name><memory>65536</memory>\
               <os><type>hvm</type></os></domain>";
    let foreign = hv.define("headnode-3002", xml).unwrap();
    let err = owned_domain(&hv, &config(3002), vlan).unwrap_err();
    assert_eq!(kind_of(&err), Kind::Refused);
    assert!(format!("{err:#}").contains("not made by mkheadnode"));
    assert!(!hv.headnodes().unwrap().iter().any(|(_, m)| m.vlan == vlan));
    foreign.undefine().unwrap();
}

#[test]
fn pool_and_overlay_volume() {
    let hv = Hypervisor::connect(URI).unwrap();
    let p = plan(3003);
    let (pool, _) = hv.ensure_pool(&p.pool, &p.pool_dir, 0o711).unwrap();
    // A second call finds the same pool instead of failing.
    hv.ensure_pool(&p.pool, &p.pool_dir, 0o711).unwrap();
    let xml =
        domain_xml::overlay_volume(&p.disk_volume, 1 << 30, Path::new("/base.qcow2"), "qcow2")
            .unwrap();
    hv.create_volume(&pool, &p.disk_volume, &xml).unwrap();
    assert!(hv.find_volume(&pool, &p.disk_volume).unwrap().is_some());
    // A volume is deleted only where the plan puts it.
    let err = hv
        .delete_volume_at(&p.pool, &p.disk_volume, Path::new("/elsewhere/x.qcow2"))
        .unwrap_err();
    assert_eq!(kind_of(&err), Kind::Refused, "{err:#}");
    assert!(hv.find_volume(&pool, &p.disk_volume).unwrap().is_some());
    assert!(hv
        .delete_volume_at(&p.pool, &p.disk_volume, &p.disk_path())
        .unwrap());
    assert!(
        !hv.delete_volume_at(&p.pool, &p.disk_volume, &p.disk_path())
            .unwrap(),
        "second delete finds nothing"
    );
    assert!(!hv
        .delete_volume_at("no-such-pool", &p.disk_volume, &p.disk_path())
        .unwrap());
}

#[test]
fn missing_networks_are_reported() {
    let hv = Hypervisor::connect(URI).unwrap();
    assert_eq!(hv.network_active("default").unwrap(), Some(true));
    assert_eq!(hv.network_active("no-such-net").unwrap(), None);
}

#[test]
fn bad_uri_is_a_libvirt_error_with_advice() {
    let err = Hypervisor::connect("bogus:///nowhere")
        .err()
        .expect("must fail");
    assert_eq!(kind_of(&err), Kind::Libvirt);
    assert!(format!("{err:#}").contains("libvirtd"), "{err:#}");
}
