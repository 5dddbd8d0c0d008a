//! Remote operation: mkheadnode on this machine driving a second libvirtd, reached over
//! `qemu+ssh://` as an operator reaches a hypervisor from a control machine. The second host is
//! a [`TestHost`]: namespaces of its own on this machine, torn down on drop.

use crate::support::{mkheadnode, run, virsh, OpenDir, TestHost};
use std::path::Path;
use std::process::Command;

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

/// Define and start isolated libvirt networks (a bridge each, no address, nothing routed) named
/// `nets`, through `virsh` (this machine's or the test host's).
pub(crate) fn isolated_networks(virsh: impl Fn(&[&str]) -> (i32, String, String), nets: &[&str]) {
    for net in nets {
        // A file of its own: tests on other hosts define networks of the same names at once.
        let xml = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(xml.path(), format!("<network><name>{net}</name></network>")).unwrap();
        for args in [
            vec!["net-define", xml.path().to_str().unwrap()],
            vec!["net-start", net],
        ] {
            let (code, _, err) = virsh(&args);
            assert_eq!(code, 0, "{args:?}: {err}");
        }
    }
}

/// The MD5 sum of `bytes` as `md5sum` prints it for its standard input.
fn tool_md5(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// The VLAN the remote headnode serves (the tests of remote operation use 4050-4069).
const VLAN: &str = "4052";

/// A test host with what a headnode there needs: a VLAN network and a public network (both
/// isolated, inside its namespace), and local lock and state dirs for this machine's side.
pub(crate) struct Remote {
    pub(crate) host: TestHost,
    pub(crate) here: OpenDir,
}

impl Remote {
    pub(crate) fn new(tag: &str) -> Remote {
        let host = TestHost::start(tag);
        isolated_networks(|a| host.virsh(a), &["fleet-v4052", "fleet-pub"]);
        Remote {
            host,
            here: OpenDir::new(&format!("fleet-here-{tag}")),
        }
    }

    /// mkheadnode on this machine, driving the test host.
    pub(crate) fn mk(&self, args: &[&str]) -> (i32, String, String) {
        run(&mut self.cmd(args))
    }

    /// The command [`Remote::mk`] runs.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = mkheadnode();
        cmd.args(args)
            .args([
                "--connect",
                &self.host.uri,
                "--virt-type",
                "qemu",
                "--vcpus",
                "1",
            ])
            .args([
                "--vlan-network",
                "fleet-v{vlan}",
                "--public-network",
                "fleet-pub",
            ])
            .arg("--lock-dir")
            .arg(self.here.path.join("lock"))
            .arg("--state-dir")
            .arg(self.here.path.join("state"));
        cmd
    }

    /// mkheadnode on this machine with the configuration file `config` (a fleet's, say: no
    /// `--connect`), and this test's lock and state dirs.
    pub(crate) fn with_config(&self, config: &Path, args: &[&str]) -> (i32, String, String) {
        let mut cmd = mkheadnode();
        cmd.arg("--config")
            .arg(config)
            .arg("--lock-dir")
            .arg(self.here.path.join("lock"))
            .arg("--state-dir")
            .arg(self.here.path.join("state"))
            .args(args);
        run(&mut cmd)
    }

    /// The exit status of shell command `cmd` run in domain `dom` on the test host, through its
    /// guest agent.
    fn guest_status(&self, dom: &str, cmd: &str) -> i64 {
        let agent = |req: serde_json::Value| {
            let (code, out, err) = self
                .host
                .virsh(&["qemu-agent-command", dom, &req.to_string()]);
            assert_eq!(code, 0, "guest agent: {err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["return"].clone()
        };
        let pid = agent(serde_json::json!({"execute": "guest-exec", "arguments": {
            "path": "/bin/sh", "arg": ["-c", cmd]}}))["pid"]
            .as_i64()
            .unwrap();
        for _ in 0..300 {
            let st = agent(
                serde_json::json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}),
            );
            if st["exited"].as_bool() == Some(true) {
                return st["exitcode"].as_i64().unwrap_or(-1);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("{cmd}: did not end in 60 s");
    }

    /// A shell command run on the test host; its standard output.
    pub(crate) fn sh(&self, script: &str) -> String {
        let (code, out, err) = run(&mut self.host.exec(script));
        assert_eq!(code, 0, "{script}: {err}");
        out
    }
}

#[test]
fn a_headnode_on_another_host_through_qemu_ssh() {
    let r = Remote::new("e2e");
    // An install profile, uploaded through libvirt before there is a headnode (it publishes
    // it at its first boot): a tree, with a file larger than one stream chunk.
    let source = r.here.path.join("fleet");
    std::fs::create_dir_all(source.join("images/x86")).unwrap();
    std::fs::write(
        source.join("pxelinux.cfg"),
        "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n",
    )
    .unwrap();
    let kernel: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(source.join("images/x86/kernel"), &kernel).unwrap();
    let (code, out, err) = r.mk(&["profile", "add", VLAN, "fleet", source.to_str().unwrap()]);
    assert_eq!(code, 0, "profile add: {out}{err}");
    assert!(err.contains("added profile fleet"), "{err}");
    assert!(err.contains("no headnode yet"), "{err}");
    let profiles = format!("/var/lib/headnode-config/{VLAN}/profiles");
    let generation = r.sh(&format!("cd {profiles} && ls -d fleet@*.ready"));
    let generation = generation.trim().trim_end_matches(".ready").to_string();
    assert_eq!(
        r.sh(&format!(
            "cd {profiles}/{generation} && find . | sort && stat -c '%a' . images images/x86 \
             pxelinux.cfg images/x86/kernel && md5sum < images/x86/kernel"
        )),
        format!(
            ".\n./images\n./images/x86\n./images/x86/kernel\n./pxelinux.cfg\n755\n755\n755\n644\n\
             644\n{}",
            tool_md5(&kernel)
        )
    );
    let machines = r.here.path.join("machines.txt");
    std::fs::write(&machines, "52:54:00:fe:40:52 10.0.0.7\n").unwrap();
    let creds = r.here.path.join("bmc.conf");
    std::fs::write(&creds, "[default]\ndriver = none\n").unwrap();

    // The base image, pushed there through libvirt (uploaded, read back, recorded): the
    // headnode boots from that copy, not from the one the test host also has at base_image.
    let t = std::time::Instant::now();
    let (code, _, err) = r.mk(&["image", "push"]);
    assert_eq!(code, 0, "image push: {err}");
    assert!(err.contains("read back and verified"), "{err}");
    eprintln!(
        "image push of the base image: {:.0} s",
        t.elapsed().as_secs_f64()
    );

    // Create, and wait for the PXE stack: the console through libvirt's stream, not a file.
    let t = std::time::Instant::now();
    let (code, out, err) = r.mk(&[
        VLAN,
        "--machines",
        machines.to_str().unwrap(),
        "--bmc-conf",
        creds.to_str().unwrap(),
        "--wait",
        "--timeout",
        "900",
    ]);
    assert_eq!(code, 0, "create --wait: {out}{err}");
    assert!(err.contains("headnode-4052 is ready"), "{err}");
    assert!(err.contains("virsh -c 'qemu+ssh://"), "{err}");
    eprintln!("remote create --wait: {:.0} s", t.elapsed().as_secs_f64());
    // Everything is on the test host, nothing here.
    let (_, here, _) = virsh(&["list", "--all", "--name"]);
    assert!(!here.lines().any(|l| l == "headnode-4052"), "{here}");
    assert_eq!(
        r.sh(&format!("cat /var/lib/headnode-config/{VLAN}/machines.txt")),
        "52:54:00:fe:40:52 10.0.0.7\n"
    );
    assert_eq!(
        r.sh(&format!("stat -c '%a %U' /var/lib/headnode-config/{VLAN} /var/lib/headnode-config/{VLAN}/machines.txt")),
        "755 root\n644 root\n"
    );
    // The credentials: qemu's group (that of libvirt's qemu dir) may read them, nobody else.
    let bmc = format!("/var/lib/headnode-config/{VLAN}/bmc.conf");
    assert_eq!(
        r.sh(&format!(
            "stat -c '%a %u' {bmc}; [ $(stat -c %g {bmc}) = $(stat -c %g /var/lib/libvirt/qemu) ] \
             && echo qemu-group; cat {bmc}"
        )),
        "640 0\nqemu-group\n[default]\ndriver = none\n"
    );
    assert!(!std::path::Path::new("/var/lib/headnode-config/4052").exists());

    // status and list over the remote URI.
    let (code, out, err) = r.mk(&["status", VLAN, "--json"]);
    assert_eq!(code, 0, "status: {err}");
    let row: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(row["state"], "running", "{row}");
    let (_, pushed, _) = r.mk(&["image", "list", "--json"]);
    let pushed: serde_json::Value = serde_json::from_str(&pushed).unwrap();
    assert_eq!(row["base_sha256"], pushed[0]["sha256"], "{row} {pushed}");
    assert_eq!(row["image_current"], true, "{row}");
    let overlay = r.sh(&format!(
        "qemu-img info -U --output=json /var/lib/mkheadnode/images/headnode-{VLAN}.qcow2"
    ));
    assert!(
        overlay.contains(&format!(
            "\"backing-filename\": \"{}\"",
            pushed[0]["path"].as_str().unwrap()
        )),
        "{overlay}"
    );
    let macs = (row["private_mac"].clone(), row["public_mac"].clone());

    // install and nodes, through the guest agent over the same URI.
    let (code, out, err) = r.mk(&["install", VLAN, "--profile", "fleet", "--all", "--no-power"]);
    assert_eq!(code, 0, "install: {out}{err}");
    assert!(
        out.contains("ok") && out.contains("52:54:00:fe:40:52"),
        "{out}"
    );
    let (code, out, err) = r.mk(&["nodes", VLAN, "--json"]);
    assert_eq!(code, 0, "nodes: {err}");
    assert!(
        out.contains("52:54:00:fe:40:52") && out.contains("armed"),
        "{out}"
    );

    // The profile replaced while the headnode runs: published at once, the old copy gone.
    std::fs::write(
        source.join("pxelinux.cfg"),
        "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n# two\n",
    )
    .unwrap();
    let (code, out, err) = r.mk(&["profile", "add", VLAN, "fleet", source.to_str().unwrap()]);
    assert_eq!(code, 0, "profile add again: {out}{err}");
    assert!(err.contains("replaced profile fleet"), "{err}");
    // What the headnode serves now is the new copy, the whole tree.
    let served = format!(
        "tail -n 1 /var/lib/tftpboot/fleet/pxelinux.cfg | grep -qx '# two' && \
         md5sum < /var/lib/tftpboot/fleet/images/x86/kernel | grep -q '^{}'",
        tool_md5(&kernel).split(' ').next().unwrap()
    );
    assert_eq!(r.guest_status("headnode-4052", &served), 0, "{err}");
    let entries = r.sh(&format!("ls -A {profiles}"));
    let entries: Vec<&str> = entries.lines().collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(!entries.contains(&generation.as_str()), "{entries:?}");
    let (code, out, err) = r.mk(&["profile", "list", VLAN, "--json"]);
    assert_eq!(code, 0, "profile list: {err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["name"], "fleet", "{rows}");
    assert_eq!(rows[0]["loaders"], serde_json::json!(["BIOS"]), "{rows}");
    assert_eq!(rows[0]["files"], 2, "{rows}");
    let cfg_len = std::fs::metadata(source.join("pxelinux.cfg"))
        .unwrap()
        .len();
    assert_eq!(rows[0]["bytes"], 600_000 + cfg_len, "{rows}");

    // check says what it can and cannot see there.
    let (_, out, err) = r.mk(&["check", VLAN]);
    assert!(
        out.contains("not reachable through libvirt") || out.contains("not used by libvirt there"),
        "{out}{err}"
    );
    assert!(
        out.contains("pool mkheadnode-config-4052, mode 0755"),
        "{out}"
    );

    // rebuild keeps the MACs and the config dir.
    let (code, out, err) = r.mk(&["rebuild", VLAN]);
    assert_eq!(code, 0, "rebuild: {out}{err}");
    let (_, out, _) = r.mk(&["status", VLAN, "--json"]);
    let row: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (row["private_mac"].clone(), row["public_mac"].clone()),
        macs
    );
    assert_eq!(
        r.sh(&format!("cat /var/lib/headnode-config/{VLAN}/machines.txt")),
        "52:54:00:fe:40:52 10.0.0.7\n"
    );

    // teardown --purge removes the domain, its volumes and the config dir with its profiles,
    // through libvirt.
    let (code, out, err) = r.mk(&["teardown", VLAN, "--purge"]);
    assert_eq!(code, 0, "teardown --purge: {out}{err}");
    assert!(err.contains("removed config dir"), "{err}");
    assert_eq!(
        r.sh("ls -A /var/lib/headnode-config; ls -A /var/lib/mkheadnode/images"),
        ""
    );
    let (_, doms, _) = r.host.virsh(&["list", "--all", "--name"]);
    assert!(doms.trim().is_empty(), "{doms}");
    let (_, pools, _) = r.host.virsh(&["pool-list", "--all", "--name"]);
    assert!(!pools.contains("config-4052"), "{pools}");
}

#[test]
fn remote_profiles_count_only_once_marked_and_leave_nothing_behind() {
    let r = Remote::new("prof");
    let profiles = format!("/var/lib/headnode-config/{VLAN}/profiles");
    let source = r.here.path.join("p");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("grub.cfg"), "menuentry local { exit }\n").unwrap();
    let add = |r: &Remote| r.mk(&["profile", "add", VLAN, "p", source.to_str().unwrap()]);
    let (code, out, err) = add(&r);
    assert_eq!(code, 0, "{out}{err}");
    // The config dir was made for it, as create makes it.
    assert_eq!(
        r.sh(&format!(
            "stat -c '%a' /var/lib/headnode-config/{VLAN}; ls /var/lib/headnode-config/{VLAN}"
        )),
        "755\nmachines.txt\nprofiles\n"
    );
    // An upload that never got its marker (a run killed midway), newer than the marked copy,
    // and one of a profile that has no marked copy at all: neither counts.
    r.sh(&format!(
        "mkdir -p {profiles}/p@99999999999999/sub {profiles}/q@5 && \
         echo x > {profiles}/p@99999999999999/sub/f && echo x > {profiles}/q@5/grub.cfg"
    ));
    let (code, out, err) = r.mk(&["profile", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(
        (&rows[0]["name"], &rows[0]["files"], &rows[0]["loaders"]),
        (
            &serde_json::json!("p"),
            &serde_json::json!(1),
            &serde_json::json!(["UEFI"])
        ),
        "{rows}"
    );

    // A pool someone else keeps at the profiles folder is refused by name, and left alone.
    let pool_at = |name: &str| {
        let (code, _, err) = r
            .host
            .virsh(&["pool-create-as", name, "dir", "--target", &profiles]);
        assert_eq!(code, 0, "{err}");
    };
    pool_at("someone-else");
    let (code, _, err) = r.mk(&["profile", "list", VLAN]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("storage pool someone-else is at"), "{err}");
    let (code, _, err) = r.host.virsh(&["pool-destroy", "someone-else"]);
    assert_eq!(code, 0, "{err}");
    // One of ours that an interrupted run left there is stopped, and the run goes on.
    pool_at("mkheadnode-tmp-left");

    // Adding it again: a generation above every one there, and what it replaced (and the
    // unfinished upload of it) gone.
    let (code, out, err) = add(&r);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("replaced profile p"), "{err}");
    let left = r.sh(&format!("ls -A {profiles}"));
    let left: Vec<&str> = left.lines().collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&"q@5"), "{left:?}");
    let generation: u64 = left
        .iter()
        .find_map(|e| e.strip_prefix("p@")?.strip_suffix(".ready"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(generation > 99_999_999_999_999, "{left:?}");
    assert_eq!(
        r.sh(&format!("cat {profiles}/p@{generation}.ready")),
        "mkheadnode-profile 1\nfile 25 grub.cfg\n"
    );

    // remove: a profile with no marked copy is not there (its unfinished upload goes).
    let (code, _, err) = r.mk(&["profile", "remove", VLAN, "q"]);
    assert_ne!(code, 0);
    assert!(err.contains("no profile q in"), "{err}");
    let (code, out, err) = r.mk(&["profile", "remove", VLAN, "p"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(r.sh(&format!("ls -A {profiles}")), "");
    let (code, out, _) = r.mk(&["profile", "list", VLAN]);
    assert_eq!(code, 0);
    assert!(!out.contains(" p "), "{out}");
    // Our transient pools are gone too.
    let (_, pools, _) = r.host.virsh(&["pool-list", "--all", "--name"]);
    assert!(!pools.contains("mkheadnode-tmp-"), "{pools}");
}

/// What a fleet test makes on this machine's libvirt, removed on drop: the headnode of `vlan`,
/// the pools named after `tag` (overlays, pushed images, the VLAN's config dir) and their
/// directories, and the networks `nets`.
pub(crate) struct HereToo {
    tag: String,
    vlan: u16,
    nets: Vec<String>,
}

impl HereToo {
    /// Define and start the isolated networks `nets` here; the rest is removed on drop.
    pub(crate) fn new(tag: String, vlan: u16, nets: &[&str]) -> HereToo {
        let here = HereToo {
            tag,
            vlan,
            nets: nets.iter().map(|n| (*n).to_string()).collect(),
        };
        isolated_networks(virsh, nets);
        here
    }
}

impl Drop for HereToo {
    fn drop(&mut self) {
        let domain = format!("headnode-{}", self.vlan);
        virsh(&["destroy", &domain]);
        virsh(&["undefine", &domain]);
        for suffix in [
            String::new(),
            "-images".into(),
            format!("-config-{}", self.vlan),
        ] {
            let pool = format!("{}{suffix}", self.tag);
            let (_, vols, _) = virsh(&["vol-list", &pool]);
            for vol in vols
                .lines()
                .skip(2)
                .filter_map(|l| l.split_whitespace().next())
            {
                virsh(&["vol-delete", vol, "--pool", &pool]);
            }
            virsh(&["pool-destroy", &pool]);
            virsh(&["pool-undefine", &pool]);
        }
        for net in &self.nets {
            virsh(&["net-destroy", net]);
            virsh(&["net-undefine", net]);
        }
        let _ = std::fs::remove_dir_all(format!("/var/lib/mkheadnode/{}", self.tag));
        let _ = std::fs::remove_dir_all(format!("/var/lib/headnode-config/{}", self.tag));
    }
}

#[test]
fn a_fleet_run_places_each_vlan_on_its_host() {
    // Three hosts: this machine (VLAN 4054), the test host (4055), and one that cannot be
    // reached (4056: nothing listens on that loopback port). Paths are per test; on the test
    // host they are in its own private dirs.
    let r = Remote::new("fleet");
    let tag = format!("fleet-test-{}", std::process::id());
    let public = format!("fleet-pub-{}", std::process::id());
    let _here = HereToo::new(tag.clone(), 4054, &["fleet-v4054", &public]);
    isolated_networks(|a| r.host.virsh(a), &["fleet-v4055", &public]);
    let config = r.here.path.join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "pool = \"{tag}\"\npool_dir = \"/var/lib/mkheadnode/{tag}/images\"\n\
             config_root = \"/var/lib/headnode-config/{tag}\"\nvirt_type = \"qemu\"\n\
             apparmor_abstraction = \"{}\"\nmemory_mib = 256\nvcpus = 1\n\
             [vlan_attachment]\nkind = \"network\"\nname = \"fleet-v{{vlan}}\"\n\
             [public_attachment]\nkind = \"network\"\nname = \"{public}\"\n\
             [[hosts]]\nname = \"here\"\nuri = \"qemu:///system\"\nvlans = \"4054\"\n\
             [[hosts]]\nname = \"there\"\nuri = \"{}\"\nvlans = \"4055\"\n\
             [[hosts]]\nname = \"gone\"\nuri = \"qemu+ssh://root@127.0.0.1:1/system?no_tty=1\"\n\
             vlans = \"4056\"\n",
            r.here.path.join("libvirt-qemu").display(),
            r.host.uri
        ),
    )
    .unwrap();
    let mk = |args: &[&str]| r.with_config(&config, args);

    // A VLAN claimed twice is a configuration error naming both hosts.
    let twice = r.here.path.join("twice.toml");
    std::fs::write(
        &twice,
        "[[hosts]]\nname = \"a\"\nuri = \"qemu:///system\"\nvlans = \"10-20\"\n\
         [[hosts]]\nname = \"b\"\nuri = \"qemu+ssh://b/system\"\nvlans = \"20\"\n",
    )
    .unwrap();
    let (code, _, err) = run(mkheadnode().arg("--config").arg(&twice).arg("list"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("VLAN 20 is claimed by two hosts, a and b"),
        "{err}"
    );

    // One run: each VLAN on its host, the unreachable one failing with the reason.
    let (code, out, err) = mk(&["4054-4056", "--no-start"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        err.contains("VLAN 4056: error: host gone cannot be reached"),
        "{err}"
    );
    assert!(err.contains("1 of 3 hosts had failures: gone"), "{err}");
    assert_eq!(virsh(&["domstate", "headnode-4054"]).1.trim(), "shut off");
    assert_eq!(
        r.host.virsh(&["domstate", "headnode-4055"]).1.trim(),
        "shut off"
    );
    assert_ne!(
        virsh(&["domstate", "headnode-4055"]).0,
        0,
        "4055 is not here"
    );
    assert_ne!(
        r.host.virsh(&["domstate", "headnode-4054"]).0,
        0,
        "4054 is not there"
    );

    // list covers every host it can reach, with a HOST column, and says which it could not.
    let (code, out, err) = mk(&["list"]);
    assert_eq!(code, 4, "{out}{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("headnode-405")).collect();
    assert!(out.starts_with("HOST"), "{out}");
    assert!(
        rows.iter()
            .any(|l| l.starts_with("here ") && l.contains("headnode-4054")),
        "{out}"
    );
    assert!(
        rows.iter()
            .any(|l| l.starts_with("there ") && l.contains("headnode-4055")),
        "{out}"
    );
    assert!(err.contains("host(s) gone could not be reached"), "{err}");
    // status finds the VLAN's host; --host narrows a run.
    let (code, out, err) = mk(&["status", "4055", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"host\": \"there\""), "{out}");
    let (code, out, _) = mk(&["list", "--host", "here"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("headnode-4054") && !out.contains("headnode-4055"),
        "{out}"
    );

    // profile goes to each VLAN's host: to this machine's files, and through libvirt there.
    let profile = r.here.path.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(
        profile.join("pxelinux.cfg"),
        "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n",
    )
    .unwrap();
    let (code, out, err) = mk(&[
        "profile",
        "add",
        "4054-4055",
        "p",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("VLAN 4054: added profile p") && err.contains("VLAN 4055: added profile p"),
        "{err}"
    );
    assert!(std::path::Path::new(&format!(
        "/var/lib/headnode-config/{tag}/4054/profiles/p/pxelinux.cfg"
    ))
    .exists());
    let there = r.sh(&format!(
        "cd /var/lib/headnode-config/{tag}/4055/profiles && ls -d p@*.ready"
    ));
    assert_eq!(there.lines().count(), 1, "{there}");
    let (code, out, err) = mk(&["profile", "list", "4054-4055", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let vlans: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["vlan"])
        .collect();
    assert_eq!(vlans, [4054, 4055], "{rows}");

    // And away again, on both hosts at once.
    let (code, out, err) = mk(&[
        "teardown",
        "4054-4055",
        "--purge",
        "--host",
        "here",
        "--host",
        "there",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_ne!(virsh(&["domstate", "headnode-4054"]).0, 0);
    assert_ne!(r.host.virsh(&["domstate", "headnode-4055"]).0, 0);
    assert!(!std::path::Path::new(&format!("/var/lib/headnode-config/{tag}/4054")).exists());
}

#[test]
fn links_planted_in_a_remote_config_dir_are_never_written_through() {
    // libvirt cannot tell a link from a file, but creates every file it writes with O_EXCL and
    // deletes a volume by unlinking its name: a link in place of machines.txt or bmc.conf is
    // replaced, and what it points at stays as it was.
    let r = Remote::new("links");
    isolated_networks(|a| r.host.virsh(a), &["fleet-v4057"]);
    r.sh(
        "mkdir -p /var/lib/headnode-config/4057 && echo 'root:x:0:0' > /root/precious && \
          ln -s /root/precious /var/lib/headnode-config/4057/machines.txt && \
          ln -s /root/precious /var/lib/headnode-config/4057/bmc.conf && \
          ln -s /root/nowhere /var/lib/headnode-config/4057/dangling",
    );
    let machines = r.here.path.join("machines.txt");
    std::fs::write(&machines, "52:54:00:fe:40:57 10.0.0.9\n").unwrap();
    let creds = r.here.path.join("bmc.conf");
    std::fs::write(&creds, "[default]\ndriver = none\n").unwrap();
    let (code, out, err) = r.mk(&[
        "4057",
        "--no-start",
        "--machines",
        machines.to_str().unwrap(),
        "--bmc-conf",
        creds.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(r.sh("cat /root/precious"), "root:x:0:0\n");
    assert_eq!(
        r.sh("cd /var/lib/headnode-config/4057 && stat -c '%F %a' machines.txt bmc.conf && cat machines.txt"),
        "regular file 644\nregular file 640\n52:54:00:fe:40:57 10.0.0.9\n"
    );
    assert!(!r.sh("ls -A /root").contains("nowhere"));
    // Purge removes the config dir's own files and nothing they point at; what libvirt does
    // not list (a dangling link) stays, and so the directory does, with an error saying so.
    let (code, _, err) = r.mk(&["teardown", "4057", "--purge"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("not what it does not list as volumes"),
        "{err}"
    );
    assert_eq!(
        r.sh("cat /root/precious; ls -A /var/lib/headnode-config/4057"),
        "root:x:0:0\ndangling\n"
    );
    r.sh("rm /var/lib/headnode-config/4057/dangling");
    let (code, out, err) = r.mk(&["teardown", "4057", "--purge"]);
    assert_eq!(code, 3, "no headnode any more, so not found: {out}{err}");
}
