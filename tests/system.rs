//! The real thing: `qemu:///system` with libvirtd running, guests under TCG. Each test works
//! in a sandbox of its own (VLAN, isolated networks, pool, config root, AppArmor file copy),
//! and removes every trace on drop, also when it fails.

use crate::support::{mkheadnode, run, virsh, virt_xml_validate, wait_until, OpenDir, SYSTEM_URI};
use mkheadnode::render::domain_xml::live_facts;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const URI: &str = SYSTEM_URI;

/// A test's own corner of the host; the `hardening` tests use it too.
pub struct Sandbox {
    dir: OpenDir,
    tag: String,
    vlans: Vec<u16>,
    pub log_dir: PathBuf,
    pub memory_mib: u64,
    /// `--vlan-network` pattern.
    vlan_network: String,
    /// Headnodes to remove on drop besides those of `vlans` (which also get networks).
    extra_domains: Vec<u16>,
    /// Bridges instead of the networks: (`--vlan-bridge` or `--vlan-ovs-bridge`, its value,
    /// `--public-bridge`).
    bridges: Option<(&'static str, String, String)>,
}

impl Sandbox {
    pub fn new(tag: &str, vlans: &[u16]) -> Sandbox {
        let dir = OpenDir::new(tag);
        let log_dir = dir.path.join("log");
        let sb = Sandbox {
            dir,
            tag: tag.to_string(),
            vlans: vlans.to_vec(),
            log_dir,
            memory_mib: 256,
            vlan_network: "mkt-v{vlan}".into(),
            extra_domains: Vec::new(),
            bridges: None,
        };
        sb.cleanup_libvirt();
        let (code, _, err) = run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(sb.base())
            .arg("64M"));
        assert_eq!(code, 0, "qemu-img: {err}");
        std::fs::write(sb.aa(), "  /usr/share/qemu/** r,\n").unwrap();
        std::fs::create_dir_all(sb.path("log")).unwrap();
        let mut nets: Vec<String> = vlans.iter().map(|v| format!("mkt-v{v}")).collect();
        nets.push(sb.public_net());
        for net in nets {
            let xml = sb.path(&format!("{net}.xml"));
            std::fs::write(&xml, format!("<network><name>{net}</name></network>")).unwrap();
            let (code, _, err) = virsh(&["net-define", xml.to_str().unwrap()]);
            assert_eq!(code, 0, "net-define {net}: {err}");
            let (code, _, err) = virsh(&["net-start", &net]);
            assert_eq!(code, 0, "net-start {net}: {err}");
        }
        sb
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path.join(rel)
    }
    pub fn base(&self) -> PathBuf {
        self.path("base.qcow2")
    }
    pub fn aa(&self) -> PathBuf {
        self.path("libvirt-qemu")
    }
    pub fn pool(&self) -> String {
        format!("mkt-{}", self.tag)
    }
    pub fn public_net(&self) -> String {
        format!("mkt-p-{}", self.tag)
    }
    pub fn config_dir(&self, vlan: u16) -> PathBuf {
        self.path(&format!("cfg/{vlan}"))
    }

    /// mkheadnode with this sandbox's settings after `args`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = mkheadnode();
        c.args(args)
            .args(["--connect", URI, "--virt-type", "qemu", "--vcpus", "1"]);
        c.args(["--memory", &self.memory_mib.to_string()]);
        c.arg("--base-image").arg(self.base());
        c.args(["--pool", &self.pool()]);
        c.arg("--pool-dir").arg(self.path("pool"));
        c.arg("--config-root").arg(self.path("cfg"));
        c.arg("--apparmor-abstraction").arg(self.aa());
        c.arg("--lock-dir").arg(self.path("lock"));
        c.arg("--state-dir").arg(self.path("state"));
        c.arg("--log-dir").arg(&self.log_dir);
        match &self.bridges {
            Some((flag, vlan, public)) => c.args([flag, vlan.as_str(), "--public-bridge", public]),
            None => c.args([
                "--vlan-network",
                &self.vlan_network,
                "--public-network",
                &self.public_net(),
            ]),
        };
        c
    }

    pub fn mk(&self, args: &[&str]) -> (i32, String, String) {
        run(&mut self.cmd(args))
    }

    pub fn volumes(&self) -> Vec<String> {
        let (_, out, _) = virsh(&["vol-list", &self.pool()]);
        out.lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// Define `headnode-<vlan>` by hand, without our metadata: somebody else's domain.
    pub fn define_foreign(&self, vlan: u16) {
        let xml = self.path(&format!("foreign-{vlan}.xml"));
        std::fs::write(
            &xml,
            format!(
                "<domain type='qemu'><name>headnode-{vlan}</name><memory unit='MiB'>64</memory>\
                 <os><type arch='x86_64'>hvm</type></os></domain>"
            ),
        )
        .unwrap();
        assert_eq!(virsh(&["define", xml.to_str().unwrap()]).0, 0);
    }

    pub fn domain_exists(&self, vlan: u16) -> bool {
        virsh(&["domstate", &format!("headnode-{vlan}")]).0 == 0
    }

    fn cleanup_libvirt(&self) {
        for v in &self.extra_domains {
            let name = format!("headnode-{v}");
            virsh(&["destroy", &name]);
            virsh(&["undefine", &name, "--nvram"]);
        }
        for v in &self.vlans {
            let name = format!("headnode-{v}");
            virsh(&["destroy", &name]);
            virsh(&["undefine", &name, "--nvram"]);
            virsh(&["net-destroy", &format!("mkt-v{v}")]);
            virsh(&["net-undefine", &format!("mkt-v{v}")]);
        }
        virsh(&["net-destroy", &self.public_net()]);
        virsh(&["net-undefine", &self.public_net()]);
        for vol in self.volumes() {
            virsh(&["vol-delete", &vol, "--pool", &self.pool()]);
        }
        virsh(&["pool-destroy", &self.pool()]);
        virsh(&["pool-undefine", &self.pool()]);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cleanup_libvirt();
    }
}

fn status_json(sb: &Sandbox, vlan: u16) -> serde_json::Value {
    let (code, out, err) = sb.mk(&["status", &vlan.to_string(), "--json"]);
    assert_eq!(code, 0, "status: {err}");
    serde_json::from_str(&out).unwrap()
}

pub fn uuid(vlan: u16) -> String {
    virsh(&["domuuid", &format!("headnode-{vlan}")])
        .1
        .trim()
        .to_string()
}

#[test]
fn create_makes_the_planned_headnode_and_recreate_changes_nothing() {
    let sb = Sandbox::new("create", &[4001]);
    let (code, _, err) = sb.mk(&["4001"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("started headnode-4001"), "{err}");

    assert_eq!(virsh(&["domstate", "headnode-4001"]).1.trim(), "running");
    let (_, xml, _) = virsh(&["dumpxml", "headnode-4001"]);
    let facts = live_facts(&xml).unwrap();
    assert_eq!(facts.virt_type, "qemu");
    assert_eq!(
        facts.interfaces,
        vec![
            ("52:54:00:4d:0f:a1".to_string(), "mkt-v4001".to_string()),
            ("52:54:00:4d:1f:a1".to_string(), sb.public_net())
        ]
    );
    let cfg = sb.config_dir(4001).display().to_string();
    assert_eq!(
        facts.filesystems,
        vec![("mapped".to_string(), cfg, "/etc/moc".to_string(), true)]
    );
    assert!(
        xml.contains("urn:x-mkheadnode:headnode:1"),
        "metadata missing:\n{xml}"
    );
    let (ok, msg) = virt_xml_validate(&xml, "domain");
    assert!(ok, "live XML does not validate: {msg}");

    let st = status_json(&sb, 4001);
    assert_eq!(st["state"], "running");
    assert_eq!(st["private_mac"], "52:54:00:4d:0f:a1");
    assert_eq!(st["autostart"], true);

    assert_eq!(
        std::fs::read_to_string(sb.config_dir(4001).join("machines.txt")).unwrap(),
        ""
    );
    let aa = std::fs::read_to_string(sb.aa()).unwrap();
    let rule = format!("{}/** r,", sb.path("cfg").display());
    assert_eq!(aa.lines().filter(|l| l.trim() == rule).count(), 1, "{aa}");
    let seed = sb.path("pool/headnode-4001-seed.iso");
    let (_, label, _) = run(Command::new("blkid")
        .args(["-s", "LABEL", "-o", "value"])
        .arg(&seed));
    assert_eq!(label.trim(), "cidata");
    let mut vols = sb.volumes();
    vols.sort();
    assert_eq!(vols, vec!["headnode-4001-seed.iso", "headnode-4001.qcow2"]);

    let before = (uuid(4001), std::fs::read(&seed).unwrap());
    let (code, _, err) = sb.mk(&["4001"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("already exists (running); nothing changed"),
        "{err}"
    );
    assert_eq!((uuid(4001), std::fs::read(&seed).unwrap()), before);
    assert_eq!(
        std::fs::read_to_string(sb.aa()).unwrap(),
        aa,
        "AppArmor file rewritten"
    );
}

#[test]
fn bmc_credentials_are_installed_for_qemus_group_only() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new("bmc", &[4053]);
    let creds = sb.path("bmc.conf");
    std::fs::write(
        &creds,
        "[default]\ndriver = ipmi\nusername = admin\npassword = x\n",
    )
    .unwrap();
    // A bad file is refused before anything is made.
    let bad = sb.path("bad.conf");
    std::fs::write(&bad, "[default]\ndriver = telnet\n").unwrap();
    let (code, _, err) = sb.mk(&["4053", "--no-start", "--bmc-conf", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.conf:2: driver"), "{err}");
    assert!(!sb.config_dir(4053).exists());
    let (code, _, err) = sb.mk(&["4053", "--no-start", "--bmc-conf", creds.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let installed = sb.config_dir(4053).join("bmc.conf");
    let meta = std::fs::symlink_metadata(&installed).unwrap();
    let qemu_gid = std::fs::metadata("/var/lib/libvirt/qemu").unwrap().gid();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 0, qemu_gid),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&creds).unwrap()
    );
}

#[test]
fn teardown_removes_domain_and_volumes_and_purge_the_config_dir() {
    let sb = Sandbox::new("teardown", &[4002]);
    assert_eq!(sb.mk(&["4002"]).0, 0);
    std::fs::write(
        sb.config_dir(4002).join("machines.txt"),
        "aa:bb:cc:dd:ee:01 10.0.0.1\n",
    )
    .unwrap();
    let (code, _, err) = sb.mk(&["teardown", "4002"]);
    assert_eq!(code, 0, "{err}");
    assert!(!sb.domain_exists(4002));
    assert!(sb.volumes().is_empty(), "{:?}", sb.volumes());
    assert_eq!(
        std::fs::read_to_string(sb.config_dir(4002).join("machines.txt")).unwrap(),
        "aa:bb:cc:dd:ee:01 10.0.0.1\n"
    );
    let (code, _, err) = sb.mk(&["teardown", "4002"]);
    assert_eq!(code, 3, "second teardown: {err}");

    assert_eq!(sb.mk(&["4002", "--no-start"]).0, 0);
    assert_eq!(virsh(&["domstate", "headnode-4002"]).1.trim(), "shut off");
    let (code, _, err) = sb.mk(&["teardown", "4002", "--purge"]);
    assert_eq!(code, 0, "{err}");
    assert!(!sb.config_dir(4002).exists());
    assert!(
        sb.path("cfg").exists(),
        "purge removed more than the VLAN's dir"
    );
}

#[test]
fn rebuild_keeps_macs_and_config_dir() {
    let sb = Sandbox::new("rebuild", &[4003]);
    let machines = sb.path("m.txt");
    std::fs::write(&machines, "AA-BB-CC-DD-EE-02 10.0.0.2\n").unwrap();
    let (code, _, err) = sb.mk(&["4003", "--machines", machines.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (before_uuid, before) = (uuid(4003), status_json(&sb, 4003));
    let (code, _, err) = sb.mk(&["rebuild", "4003"]);
    assert_eq!(code, 0, "{err}");
    let after = status_json(&sb, 4003);
    assert_ne!(uuid(4003), before_uuid, "rebuild did not make a new domain");
    assert_eq!(after["private_mac"], before["private_mac"]);
    assert_eq!(after["public_mac"], before["public_mac"]);
    assert_eq!(after["state"], "running");
    assert_eq!(
        std::fs::read_to_string(sb.config_dir(4003).join("machines.txt")).unwrap(),
        "aa:bb:cc:dd:ee:02 10.0.0.2\n"
    );
}

#[test]
fn a_missing_base_image_leaves_nothing_behind() {
    let sb = Sandbox::new("nobase", &[4004]);
    std::fs::remove_file(sb.base()).unwrap();
    let (code, _, err) = sb.mk(&["4004"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("base image") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!sb.domain_exists(4004));
    assert!(sb.volumes().is_empty());
}

#[test]
fn a_failed_start_rolls_back_volumes_and_domain() {
    let mut sb = Sandbox::new("rollback", &[4005]);
    // libvirt defines a domain with 64 TiB of memory, but qemu cannot start it: the start
    // fails after the volumes and the domain were made.
    sb.memory_mib = 64 << 20;
    let (code, _, err) = sb.mk(&["4005"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("starting headnode-4005"), "{err}");
    assert!(
        err.contains("rolled back: removed domain headnode-4005"),
        "{err}"
    );
    assert!(
        err.contains("rolled back: removed volume headnode-4005.qcow2"),
        "{err}"
    );
    assert!(!sb.domain_exists(4005));
    assert!(sb.volumes().is_empty(), "{:?}", sb.volumes());
    assert!(
        sb.config_dir(4005).join("machines.txt").exists(),
        "config dir must be kept"
    );
}

#[test]
fn no_apparmor_abstraction_means_a_note_and_no_file() {
    let sb = Sandbox::new("noaa", &[4015]);
    std::fs::remove_file(sb.aa()).unwrap();
    let (code, _, err) = sb.mk(&["4015", "--no-start"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("AppArmor is not in use"), "{err}");
    assert!(!sb.aa().exists(), "the abstraction file was created");
}

#[test]
fn a_missing_log_dir_is_created() {
    let mut sb = Sandbox::new("logdir", &[4013]);
    sb.log_dir = sb.path("new/log/dir");
    let (code, _, err) = sb.mk(&["4013", "--no-start"]);
    assert_eq!(code, 0, "{err}");
    assert!(sb.path("new/log/dir").is_dir());
}

#[test]
fn a_foreign_headnode_domain_is_never_touched() {
    let sb = Sandbox::new("foreign", &[4006]);
    sb.define_foreign(4006);
    let before = uuid(4006);
    for args in [
        &["4006"][..],
        &["teardown", "4006"],
        &["rebuild", "4006"],
        &["status", "4006"],
    ] {
        let (code, _, err) = sb.mk(args);
        assert_eq!(code, 6, "{args:?}: {err}");
        assert!(err.contains("not made by mkheadnode"), "{err}");
    }
    assert_eq!(uuid(4006), before);
    assert!(sb.volumes().is_empty());
}

#[test]
fn bad_input_changes_nothing() {
    let sb = Sandbox::new("badinput", &[4007]);
    let bad = sb.path("bad.txt");
    std::fs::write(&bad, "zz:bb:cc:dd:ee:01 10.0.0.1\n").unwrap();
    for args in [
        &["4007x"][..],
        &["0"],
        &["4007", "--machines", bad.to_str().unwrap()],
    ] {
        let (code, _, err) = sb.mk(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let mut sb = sb;
    sb.memory_mib = 1;
    let (code, _, err) = sb.mk(&["4007"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("memory_mib = 1 is too small"), "{err}");
    assert!(!sb.path("cfg").exists(), "config root was created");
    assert!(!sb.domain_exists(4007));
    assert_eq!(
        std::fs::read_to_string(sb.aa()).unwrap(),
        "  /usr/share/qemu/** r,\n"
    );
}

#[test]
fn waiting_on_an_existing_headnode_that_is_not_running_fails_at_once() {
    let sb = Sandbox::new("waitoff", &[4014]);
    assert_eq!(sb.mk(&["4014", "--no-start"]).0, 0);
    let start = Instant::now();
    let (code, _, err) = sb.mk(&["4014", "--wait", "--timeout", "60"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("exists but is shut off") && err.contains("mkheadnode rebuild 4014"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(20), "it waited");
}

#[test]
fn wait_fails_cleanly_at_the_timeout() {
    let sb = Sandbox::new("timeout", &[4008]);
    // The base image is empty, so the guest never prints the ready line.
    let (code, _, err) = sb.mk(&["4008", "--wait", "--timeout", "2"]);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("not ready after 2 s") && err.contains("headnode-4008-serial.log"),
        "{err}"
    );
    assert_eq!(
        virsh(&["domstate", "headnode-4008"]).1.trim(),
        "running",
        "left for inspection"
    );
}

#[test]
fn concurrent_creates_of_one_vlan_take_turns() {
    let sb = Sandbox::new("lock", &[4009]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            sb.cmd(&["4009"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert!(outputs.iter().all(|o| o.status.success()), "{outputs:?}");
    let text: String = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert_eq!(text.matches("started headnode-4009").count(), 1, "{text}");
    assert_eq!(text.matches("nothing changed").count(), 1, "{text}");
}

#[test]
fn bulk_create_goes_on_past_a_failure_and_sums_up() {
    let sb = Sandbox::new("bulk", &[4010, 4011, 4012]);
    sb.define_foreign(4011);
    let (code, _, err) = sb.mk(&["4010-4012", "--no-start"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("3 VLANs: 2 created, 1 failed"), "{err}");
    assert!(err.contains("1 of 3 VLANs failed: 4011"), "{err}");
    for v in [4010, 4012] {
        assert_eq!(
            virsh(&["domstate", &format!("headnode-{v}")]).1.trim(),
            "shut off"
        );
    }
    let (code, out, _) = sb.mk(&["list", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let ours: Vec<u64> = rows
        .iter()
        .filter_map(|r| r["vlan"].as_u64())
        .filter(|v| (4010..=4012).contains(v))
        .collect();
    assert_eq!(ours, vec![4010, 4012], "list shows only our headnodes");
    let (code, _, err) = sb.mk(&["teardown", "4010,4012"]);
    assert_eq!(code, 0, "{err}");
    assert!(sb.volumes().is_empty());
}

#[test]
fn a_dry_run_never_boots_a_kvm_test_guest() {
    let dir = OpenDir::new("dryrun");
    let (code, out, err) = run(mkheadnode()
        .args(["--dry-run", "--connect", URI, "--virt-type", "auto", "4016"])
        .arg("--lock-dir")
        .arg(dir.path.join("lock")));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("<name>headnode-4016</name>"));
    // With no cached verdict, only libvirt's offer and the hlt probe can speak.
    assert!(!err.contains("boots under KVM here"), "{err}");
    assert!(
        err.contains("not probed in a dry run")
            || err.contains("offers no kvm")
            || err.contains("did not run"),
        "{err}"
    );
    assert!(
        !dir.path.join("lock/kvm-boot-probe").exists(),
        "a boot probe ran"
    );
}

#[test]
fn a_hundred_vlans_round_trip_in_parallel_without_hanging() {
    // Regression: parallel seed uploads through libvirt streams over one connection now and then
    // hung (in virStreamSend, later virStreamFinish); seeds are now written to the volume file.
    let mut sb = Sandbox::new("hundred", &[]);
    let net = "mkt-v-hundred";
    sb.vlan_network = net.into();
    sb.extra_domains = (3101..=3200).collect();
    let xml = sb.path("net.xml");
    std::fs::write(&xml, format!("<network><name>{net}</name></network>")).unwrap();
    virsh(&["net-destroy", net]); // left by an earlier, failed run
    virsh(&["net-undefine", net]);
    assert_eq!(virsh(&["net-define", xml.to_str().unwrap()]).0, 0);
    assert_eq!(virsh(&["net-start", net]).0, 0);
    let run_bounded = |args: &[&str]| {
        let mut child = sb
            .cmd(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_until(Duration::from_secs(90), || {
            child.try_wait().unwrap().is_some()
        });
        if !exited {
            let _ = child.kill();
            panic!("`mkheadnode {args:?}` hung");
        }
        child.wait_with_output().unwrap()
    };
    for _ in 0..2 {
        let out = run_bounded(&["3101-3200", "--no-start", "-q"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sb.volumes().len(), 200);
        let out = run_bounded(&["teardown", "3101-3200", "-q"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(sb.volumes().is_empty());
    }
    drop(sb);
    virsh(&["net-destroy", net]);
    virsh(&["net-undefine", net]);
}

/// A Linux bridge made for a test; deleted on drop.
struct Bridge(String);

impl Bridge {
    fn new(name: &str) -> Bridge {
        let _ = run(Command::new("ip").args(["link", "del", name]));
        let (code, _, err) = run(Command::new("ip").args(["link", "add", name, "type", "bridge"]));
        assert_eq!(code, 0, "ip link add {name}: {err}");
        let (code, _, err) = run(Command::new("ip").args(["link", "set", name, "up"]));
        assert_eq!(code, 0, "ip link set {name} up: {err}");
        Bridge(name.to_string())
    }

    /// The interfaces enslaved to this bridge.
    fn ports(&self) -> Vec<String> {
        let (_, out, _) = run(Command::new("ip").args(["-o", "link", "show", "master", &self.0]));
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    fn exists(&self) -> bool {
        run(Command::new("ip").args(["link", "show", &self.0])).0 == 0
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["link", "del", &self.0]));
    }
}

#[test]
fn linux_bridges_are_attached_for_real_and_left_alone_at_teardown() {
    // An operator whose VLANs are already bridged on the host (br<vlan> over a VLAN
    // sub-interface) points mkheadnode at the bridges instead of libvirt networks.
    let mut sb = Sandbox::new("bridge", &[4016]);
    let (vlan_br, public_br) = (Bridge::new("mkt-br4016"), Bridge::new("mkt-brpub"));
    sb.bridges = Some(("--vlan-bridge", "mkt-br{vlan}".into(), public_br.0.clone()));
    let (code, _, err) = sb.mk(&["4016"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(virsh(&["domstate", "headnode-4016"]).1.trim(), "running");

    // virsh domiflist: Interface Type Source Model MAC, one row per NIC.
    let (_, list, _) = virsh(&["domiflist", "headnode-4016"]);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.len() == 5)
        .collect();
    let nic = |bridge: &str| {
        rows.iter()
            .find(|r| r[1] == "bridge" && r[2] == bridge)
            .unwrap_or_else(|| panic!("no NIC on {bridge}:\n{list}"))
            .clone()
    };
    let (private, public) = (nic(&vlan_br.0), nic(&public_br.0));
    assert_eq!(private[4], "52:54:00:4d:0f:b0");
    assert_eq!(public[4], "52:54:00:4d:1f:b0");
    // The taps really are ports of those bridges.
    assert_eq!(vlan_br.ports(), vec![private[0].to_string()]);
    assert_eq!(public_br.ports(), vec![public[0].to_string()]);

    let (code, _, err) = sb.mk(&["teardown", "4016"]);
    assert_eq!(code, 0, "{err}");
    assert!(vlan_br.ports().is_empty() && public_br.ports().is_empty());
    assert!(
        vlan_br.exists() && public_br.exists(),
        "teardown removed a bridge it did not make"
    );
}

fn ovs_vsctl(args: &[&str]) -> (i32, String, String) {
    run(Command::new("ovs-vsctl").arg("--timeout=10").args(args))
}

/// An Open vSwitch bridge made for a test (userspace datapath: it needs no kernel module);
/// deleted on drop.
struct OvsBridge(String);

impl OvsBridge {
    fn new(name: &str) -> OvsBridge {
        let (code, _, err) = ovs_vsctl(&["show"]);
        assert_eq!(
            code, 0,
            "Open vSwitch is not running ({err}): scripts/setup-host.sh starts it"
        );
        let (code, _, err) = ovs_vsctl(&[
            "--may-exist",
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ]);
        assert_eq!(code, 0, "add-br {name}: {err}");
        OvsBridge(name.to_string())
    }

    /// (port, VLAN tag) of every port but the bridge's own.
    fn ports(&self) -> Vec<(String, String)> {
        let (_, out, _) = ovs_vsctl(&["list-ports", &self.0]);
        out.lines()
            .map(|p| {
                (
                    p.to_string(),
                    ovs_vsctl(&["get", "Port", p, "tag"]).1.trim().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for OvsBridge {
    fn drop(&mut self) {
        let _ = ovs_vsctl(&["--if-exists", "del-br", &self.0]);
    }
}

#[test]
fn open_vswitch_ports_carry_the_vlan_tag() {
    // The usual bare-metal layout: one OVS bridge on the trunk, each headnode's VLAN-side NIC an
    // access port tagged with its VLAN.
    let mut sb = Sandbox::new("ovs", &[4017]);
    let (trunk, public_br) = (OvsBridge::new("mkt-ovs"), Bridge::new("mkt-brpub2"));
    sb.bridges = Some(("--vlan-ovs-bridge", trunk.0.clone(), public_br.0.clone()));
    let (code, _, err) = sb.mk(&["4017"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(virsh(&["domstate", "headnode-4017"]).1.trim(), "running");

    let ports = trunk.ports();
    assert_eq!(ports.len(), 1, "{ports:?}");
    let (tap, tag) = &ports[0];
    assert_eq!(tag, "4017", "port {tap} is not tagged with the VLAN");
    let (_, mac, _) = ovs_vsctl(&["get", "Interface", tap, "external_ids:attached-mac"]);
    assert_eq!(mac.trim().trim_matches('"'), "52:54:00:4d:0f:b1");
    assert_eq!(public_br.ports().len(), 1);

    let (code, _, err) = sb.mk(&["teardown", "4017"]);
    assert_eq!(code, 0, "{err}");
    assert!(trunk.ports().is_empty(), "the port outlived its headnode");
    assert_eq!(
        ovs_vsctl(&["br-exists", &trunk.0]).0,
        0,
        "teardown removed the bridge"
    );
}
