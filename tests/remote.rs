//! Remote operation: mkheadnode on this machine driving a second libvirtd, reached over
//! `qemu+ssh://` as an operator reaches a hypervisor from a control machine. The second host is
//! a [`TestHost`]: namespaces of its own on this machine, torn down on drop.

use crate::support::{run, virsh, TestHost};

#[test]
fn the_test_host_is_a_libvirt_of_its_own() {
    let host = TestHost::start("own");
    let (code, out, err) = host.virsh(&["uri"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("qemu+ssh://root@"), "{out}");
    let xml = "<domain type='qemu'><name>fleet-probe-4050</name><memory unit='MiB'>64</memory>\
               <os><type arch='x86_64'>hvm</type></os></domain>";
    let file = std::env::temp_dir().join(format!("fleet-probe-{}.xml", std::process::id()));
    std::fs::write(&file, xml).unwrap();
    let (code, _, err) = host.virsh(&["define", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code, 0, "{err}");
    let (_, there, _) = host.virsh(&["list", "--all", "--name"]);
    assert!(there.lines().any(|l| l == "fleet-probe-4050"), "{there}");
    let (_, here, _) = virsh(&["list", "--all", "--name"]);
    assert!(!here.lines().any(|l| l == "fleet-probe-4050"), "{here}");
    // Its own state dirs: what this machine's mkheadnode keeps is not there.
    let (code, out, err) = run(host.exec("ls").arg("-A").arg("/var/lib/headnode-config"));
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}
