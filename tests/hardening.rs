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
