//! The node operations' libvirt side against libvirt's test driver (`test:///default`), which
//! has domains but no guest agent: a headnode that is absent, shut off, or running without an
//! agent that answers gets the error that says what to check, and `profile add` copies the
//! profile all the same and says how it will be published. (A booted headnode's agent is
//! exercised by the smoke test.)

use crate::support::{mkheadnode, run};
use mkheadnode::error::{kind_of, Kind};
use mkheadnode::host::hypervisor::Hypervisor;
use mkheadnode::model::config::Config;
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::vlan::Vlan;
use mkheadnode::ops::install::InstallRequest;
use mkheadnode::ops::nodes::NodesQuery;
use mkheadnode::ops::profile::{load_source, Publication};
use mkheadnode::ops::report::{Reporter, Verbosity};
use mkheadnode::ops::session::Session;
use mkheadnode::render::domain_xml;
use std::path::Path;
use std::time::Duration;

const URI: &str = "test:///default";

fn session(root: &Path) -> Session {
    let config = Config {
        config_root: root.join("cfg"),
        lock_dir: root.join("lock"),
        ..Config::default()
    };
    Session::new(
        config,
        Hypervisor::connect(URI).unwrap(),
        Reporter {
            verbosity: Verbosity::Quiet,
        },
    )
}

/// Our headnode of `vlan` defined on the test driver (started if `running`); undefined on drop.
struct TestHeadnode {
    hv: Hypervisor,
    name: String,
}

impl TestHeadnode {
    fn new(s: &Session, vlan: u16, running: bool) -> TestHeadnode {
        let plan = Plan::new(&s.config, Vlan::new(vlan).unwrap(), VirtType::Qemu);
        let hv = Hypervisor::connect(URI).unwrap();
        let dom = hv
            .define(&plan.domain_name, &domain_xml::domain(&plan).unwrap())
            .unwrap();
        if running {
            dom.create().unwrap();
        }
        TestHeadnode {
            hv,
            name: plan.domain_name,
        }
    }
}

impl Drop for TestHeadnode {
    fn drop(&mut self) {
        if let Ok(Some(dom)) = self.hv.find_domain(&self.name) {
            let _ = self.hv.destroy_and_undefine(&dom);
        }
    }
}

fn profile_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.join("src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pxelinux.cfg"), "KERNEL deb/linux\n").unwrap();
    std::fs::write(dir.join("linux"), "kernel").unwrap();
    dir
}

#[test]
fn an_agent_that_does_not_answer_gets_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let s = session(tmp.path());
    let vlan = Vlan::new(3101).unwrap();
    let err = s.agent(vlan).err().expect("no headnode");
    assert_eq!(kind_of(&err), Kind::NotFound, "{err:#}");

    let stopped = TestHeadnode::new(&s, 3101, false);
    let err = s.agent(vlan).err().expect("shut off");
    assert!(
        format!("{err:#}").contains("headnode-3101 is shut off: start it"),
        "{err:#}"
    );
    drop(stopped);

    let _running = TestHeadnode::new(&s, 3101, true);
    let err = s.agent(vlan).err().expect("no agent on the test driver");
    assert_eq!(kind_of(&err), Kind::Libvirt);
    let msg = format!("{err:#}");
    for want in [
        "the guest agent of headnode-3101 does not answer",
        "mkheadnode status 3101",
        "mkheadnode-setup: done",
        "qemu-guest-agent",
    ] {
        assert!(msg.contains(want), "no `{want}` in: {msg}");
    }
    // install and nodes stop there, before sending anything.
    let req = InstallRequest {
        profile: "deb".into(),
        macs: None,
        dry_run: false,
        no_power: true,
        jobs: 2,
        timeout: Duration::from_secs(10),
    };
    let err = s
        .install(vlan, &req, &|_| panic!("nothing to report"))
        .unwrap_err();
    assert_eq!(kind_of(&err), Kind::Libvirt, "{err:#}");
    let err = s.nodes(vlan, &NodesQuery::default()).unwrap_err();
    assert_eq!(kind_of(&err), Kind::Libvirt, "{err:#}");
}

#[test]
fn profile_add_copies_then_says_how_it_will_be_published() {
    let tmp = tempfile::tempdir().unwrap();
    let s = session(tmp.path());
    let source = load_source("deb", &profile_dir(tmp.path())).unwrap();
    let installed = s.config.config_root.join("3102/profiles/deb/linux");

    // No headnode yet: copied into the configured root, published when it is created.
    let vlan = Vlan::new(3102).unwrap();
    let (replaced, publication) = s.profile_add(vlan, &source, &mut |_, _| {}).unwrap();
    assert!(!replaced && installed.exists());
    assert!(
        matches!(&publication, Publication::Later(why) if why.contains("when it is created")),
        "{publication:?}"
    );

    // Shut off: at its next boot.
    let stopped = TestHeadnode::new(&s, 3102, false);
    let (replaced, publication) = s.profile_add(vlan, &source, &mut |_, _| {}).unwrap();
    assert!(replaced);
    assert!(
        matches!(&publication, Publication::Later(why) if why.contains("at its next boot")),
        "{publication:?}"
    );
    drop(stopped);

    // Running, its agent silent: the copy is in place, and the error says so.
    let _running = TestHeadnode::new(&s, 3102, true);
    let err = s.profile_add(vlan, &source, &mut |_, _| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("the config dir has the change") && msg.contains("does not answer"),
        "{msg}"
    );
    assert!(installed.exists());
    let rows = s.profile_list(vlan).unwrap();
    assert_eq!(
        (rows.len(), rows[0].name.as_str(), rows[0].files),
        (1, "deb", 2)
    );
    assert!(s.profile_vlans().unwrap().contains(&vlan));
    // Remove: gone from the config dir, and the same error about publishing.
    assert!(s.profile_remove(vlan, "deb").is_err());
    assert!(!installed.exists());
    let err = s.profile_remove(vlan, "deb").unwrap_err();
    assert_eq!(kind_of(&err), Kind::NotFound, "{err:#}");
}

#[test]
fn the_commands_say_when_there_is_no_headnode() {
    for args in [
        vec!["nodes", "3103"],
        vec!["install", "3103", "-p", "deb", "--all"],
    ] {
        let (code, _, err) = run(mkheadnode().args(["--connect", URI]).args(&args));
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(
            err.contains("there is no headnode for VLAN 3103"),
            "{args:?}: {err}"
        );
    }
}
