//! Base images pushed to another hypervisor (`image push`, `image list`, create from a pushed
//! image, `--push-image`, outdated headnodes and rebuild), over `qemu+ssh://` to a
//! [`crate::support::TestHost`]. The images here are small files of random bytes made on this
//! machine under `/var/lib/mkheadnode`, which the test host does not see (it has its own): a
//! headnode made from one is defined (`--no-start`), never booted. The VLANs are 4080-4089.

use crate::remote::{isolated_networks, HereToo, Remote};
use crate::support::{run, tool, wait_until, Paused, SYSTEM_URI};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A directory of test images on this machine that the test host cannot see, removed on drop.
struct Images(PathBuf);

impl Images {
    fn new(tag: &str) -> Images {
        let dir = PathBuf::from(format!(
            "/var/lib/mkheadnode/test-images-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Images(dir)
    }

    /// (Re)write `name` with `mib` MiB of random bytes; its path and SHA-256.
    fn random(&self, name: &str, mib: u32) -> (PathBuf, String) {
        let path = self.0.join(name);
        tool(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}", path.display()),
                "bs=1M",
                &format!("count={mib}"),
                "status=none",
            ],
        );
        let sha = sha256(&path);
        (path, sha)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sha256sum`'s verdict on a file here.
fn sha256(path: &Path) -> String {
    tool("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The name of the volume that `image push` gives `name` with checksum `sha`.
fn volume(name: &str, sha: &str) -> String {
    let (stem, ext) = name.rsplit_once('.').unwrap();
    format!("{stem}.{}.{ext}", &sha[..16])
}

/// Where the test host keeps pushed images (the default image_dir, in its own tmpfs).
const PUSHED: &str = "/var/lib/mkheadnode/pushed";

/// `image list --json` on the test host, as rows.
fn image_rows(r: &Remote, base: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = r.mk(&[
        "image",
        "list",
        "--json",
        "--base-image",
        base.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "image list: {err}");
    serde_json::from_str(&out).unwrap()
}

/// `status VLAN --json` on the test host.
fn status(r: &Remote, vlan: &str, base: &Path) -> serde_json::Value {
    let (code, out, err) = r.mk(&[
        "status",
        vlan,
        "--json",
        "--base-image",
        base.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "status: {err}");
    serde_json::from_str(&out).unwrap()
}

/// The backing file of a headnode's overlay on the test host.
fn backing(r: &Remote, vlan: &str) -> String {
    let (code, xml, err) = r.host.virsh(&[
        "vol-dumpxml",
        &format!("headnode-{vlan}.qcow2"),
        "--pool",
        "mkheadnode",
    ]);
    assert_eq!(code, 0, "{err}");
    let store = xml.split("<backingStore>").nth(1).expect("a backing store");
    store
        .split("<path>")
        .nth(1)
        .and_then(|p| p.split("</path>").next())
        .unwrap()
        .to_string()
}

#[test]
fn headnodes_are_made_from_pushed_images_and_rebuilt_onto_newer_ones() {
    let r = Remote::new("imgs");
    isolated_networks(|a| r.host.virsh(a), &["fleet-v4081", "fleet-v4082"]);
    let images = Images::new("make");
    let (base, sha_a) = images.random("base.raw", 4);
    let b = base.to_str().unwrap();

    // The host lacks the image: create fails at once, with the command that fixes it, and
    // makes nothing there (not even the config dir).
    let (code, out, err) = r.mk(&["4081", "--no-start", "--base-image", b]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains(&format!("base image {b} is not on qemu+ssh://")),
        "{err}"
    );
    assert!(
        err.contains("no image base.raw has been pushed there"),
        "{err}"
    );
    assert!(
        err.contains("`mkheadnode image push --connect 'qemu+ssh://"),
        "{err}"
    );
    let (_, pools, _) = r.host.virsh(&["pool-list", "--all", "--name"]);
    assert!(!pools.contains("config-4081"), "{pools}");
    assert_eq!(r.host.virsh(&["list", "--all", "--name"]).1.trim(), "");

    // Push it: uploaded, read back, recorded in a record sha256sum itself accepts there.
    let (code, _, err) = r.mk(&["image", "push", b]);
    assert_eq!(code, 0, "image push: {err}");
    assert!(err.contains("pushed base.raw"), "{err}");
    assert!(err.contains("read back and verified"), "{err}");
    let vol_a = volume("base.raw", &sha_a);
    assert_eq!(
        r.sh(&format!("cd {PUSHED} && sha256sum -c {vol_a}.sha256")),
        format!("{vol_a}: OK\n")
    );
    let rows = image_rows(&r, &base);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["sha256"], sha_a.as_str());
    assert_eq!(
        (
            rows[0]["state"].as_str(),
            rows[0]["matches_local"].as_bool()
        ),
        (Some("complete"), Some(true))
    );
    // A second push finds it there.
    let (code, _, err) = r.mk(&["image", "push", b]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is there already, recorded"), "{err}");

    // Create from it: the overlay's backing file is the pushed volume, and the headnode
    // records which image it was made from.
    let (code, out, err) = r.mk(&["4081", "--no-start", "--base-image", b]);
    assert_eq!(code, 0, "create: {out}{err}");
    assert_eq!(backing(&r, "4081"), format!("{PUSHED}/{vol_a}"));
    let row = status(&r, "4081", &base);
    assert_eq!(row["base_sha256"], sha_a.as_str());
    assert_eq!(row["image_current"], true);

    // A newer image of the same name, pushed: list flags the headnode as outdated.
    let (_, sha_b) = images.random("base.raw", 4);
    let (code, _, err) = r.mk(&["image", "push", b]);
    assert_eq!(code, 0, "push of the newer image: {err}");
    let (code, out, err) = r.mk(&["list", "--base-image", b]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("{} (outdated)", &sha_a[..12])),
        "{out}"
    );
    assert!(
        out.contains("OUTDATED IMAGE: headnode-4081") && out.contains("`mkheadnode rebuild 4081`"),
        "{out}"
    );
    assert_eq!(status(&r, "4081", &base)["image_current"], false);
    let rows = image_rows(&r, &base);
    let matching: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["sha256"].as_str().unwrap(),
                r["matches_local"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(matching.contains(&(sha_a.as_str(), false)), "{rows:?}");
    assert!(matching.contains(&(sha_b.as_str(), true)), "{rows:?}");

    // rebuild picks the newer one up.
    let (code, out, err) = r.mk(&["rebuild", "4081", "--no-start", "--base-image", b]);
    assert_eq!(code, 0, "rebuild: {out}{err}");
    assert_eq!(
        backing(&r, "4081"),
        format!("{PUSHED}/{}", volume("base.raw", &sha_b))
    );
    let row = status(&r, "4081", &base);
    assert_eq!(
        (row["base_sha256"].as_str(), row["image_current"].as_bool()),
        (Some(sha_b.as_str()), Some(true))
    );

    // --push-image: a host without this machine's image gets it pushed first.
    let (_, sha_c) = images.random("base.raw", 3);
    let (code, out, err) = r.mk(&["4082", "--no-start", "--push-image", "--base-image", b]);
    assert_eq!(code, 0, "create --push-image: {out}{err}");
    assert!(err.contains("pushing"), "{err}");
    assert_eq!(status(&r, "4082", &base)["base_sha256"], sha_c.as_str());
    assert_eq!(
        backing(&r, "4082"),
        format!("{PUSHED}/{}", volume("base.raw", &sha_c))
    );

    for vlan in ["4081", "4082"] {
        let (code, _, err) = r.mk(&["teardown", vlan, "--purge", "--base-image", b]);
        assert_eq!(code, 0, "teardown {vlan}: {err}");
    }
}

/// `image push` of `base` on `r`, stopped by the test hook after `step`.
fn paused_push(r: &Remote, base: &Path, step: &str) -> Paused {
    let mut cmd: Command = r.cmd(&["image", "push", base.to_str().unwrap()]);
    cmd.env("MKHEADNODE_TEST_PAUSE_AFTER", step);
    Paused::until(cmd, &format!("test hook: paused after {step}"))
}

/// Change one byte of the pushed volume `vol` on the test host, at `offset`.
fn corrupt(r: &Remote, vol: &str, offset: u64) {
    r.sh(&format!(
        "printf 'X' | dd of={PUSHED}/{vol} bs=1 seek={offset} conv=notrunc status=none"
    ));
}

/// `image list --verify` on the test host.
fn verified_list(r: &Remote, base: &Path) -> (i32, String, String) {
    r.mk(&[
        "image",
        "list",
        "--verify",
        "--base-image",
        base.to_str().unwrap(),
    ])
}

#[test]
fn a_corrupted_upload_is_detected_and_never_recorded() {
    let r = Remote::new("imgbad");
    let images = Images::new("bad");
    let (base, sha) = images.random("bad.raw", 4);
    let vol = volume("bad.raw", &sha);

    // The volume is altered on the host between the upload and the read-back.
    let push = paused_push(&r, &base, "image-uploaded");
    corrupt(&r, &vol, 100_000);
    let (code, err) = push.signal("INT");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the upload of bad.raw is corrupt"), "{err}");
    assert!(
        err.contains("Deleted it, unrecorded; push it again"),
        "{err}"
    );
    assert_eq!(
        r.sh(&format!("ls -A {PUSHED}")),
        "",
        "neither volume nor record"
    );
    assert!(image_rows(&r, &base).is_empty());

    // Pushed again, it is complete; altered afterwards, `image list --verify` says so.
    let (code, _, err) = r.mk(&["image", "push", base.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = verified_list(&r, &base);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("complete"), "{out}");
    corrupt(&r, &vol, 7);
    let (code, out, err) = verified_list(&r, &base);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("corrupt"), "{out}");
    assert!(
        err.contains("read back with another checksum than its record's"),
        "{err}"
    );
}

#[test]
fn an_interrupted_push_resumes_when_run_again() {
    let r = Remote::new("imgcut");
    let images = Images::new("cut");
    let (base, sha) = images.random("cut.raw", 24);
    let vol = volume("cut.raw", &sha);

    // Ctrl-C half-way through the upload: it stops after the piece in progress, and says how
    // to go on.
    let (code, err) = paused_push(&r, &base, "image-upload-half").signal("INT");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("interrupted by SIGINT (Ctrl-C) after")
            && err.contains("run the same push again to resume"),
        "{err}"
    );

    // Run again, and kill -9 it half-way, once the host holds a few MiB of the image.
    let push = paused_push(&r, &base, "image-upload-half");
    let held = || {
        r.sh(&format!("stat -c %s {PUSHED}/{vol} 2>/dev/null || echo 0"))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(60), || held() >= 2 << 20),
        "the host never held 2 MiB of the upload"
    );
    let err = push.kill();
    assert!(err.contains("an earlier push left"), "{err}");
    let rows = image_rows(&r, &base);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "incomplete", "{rows:?}");
    assert!(rows[0]["sha256"].is_null());
    let (code, _, err) = r.mk(&["4083", "--no-start", "--base-image", base.to_str().unwrap()]);
    assert_eq!(code, 3, "an incomplete image is never used: {err}");

    // Run again: it resumes where the host's copy ends, then verifies the whole.
    let (code, _, err) = r.mk(&["image", "push", base.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("an earlier push left"), "{err}");
    let resumed: u64 = err
        .split("resumed at byte ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume offset in {err}"));
    assert!((1 << 20..24 << 20).contains(&resumed), "{resumed}");
    assert!(err.contains("read back and verified"), "{err}");
    assert_eq!(
        r.sh(&format!("cd {PUSHED} && sha256sum -c {vol}.sha256")),
        format!("{vol}: OK\n")
    );
    let rows = image_rows(&r, &base);
    assert_eq!(
        (
            rows.len(),
            rows[0]["state"].as_str(),
            rows[0]["matches_local"].as_bool()
        ),
        (1, Some("complete"), Some(true)),
        "{rows:?}"
    );
}

/// The VLAN the fleet test puts on this machine.
const VLAN_HERE: &str = "4084";

#[test]
fn a_fleet_push_goes_to_the_host_named_or_to_every_host() {
    // Two hosts: this machine (qemu:///system) and the test host. Paths are per test; on the
    // test host they are in its own private dirs.
    let r = Remote::new("imgfleet");
    let images = Images::new("fleet");
    let (base, sha) = images.random("fleet.raw", 3);
    let tag = format!("imgfleet-{}", std::process::id());
    let public = format!("imgpub-{}", std::process::id());
    let here_net = format!("fleet-v{VLAN_HERE}");
    let _here = HereToo::new(tag.clone(), 4084, &[&here_net, &public]);
    isolated_networks(|a| r.host.virsh(a), &["fleet-v4085", &public]);
    let config = r.here.path.join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "pool = \"{tag}\"\npool_dir = \"/var/lib/mkheadnode/{tag}/images\"\n\
             image_dir = \"/var/lib/mkheadnode/{tag}/pushed\"\nbase_image = \"{}\"\n\
             config_root = \"/var/lib/headnode-config/{tag}\"\nvirt_type = \"qemu\"\n\
             apparmor_abstraction = \"{}\"\nmemory_mib = 256\nvcpus = 1\n\
             [vlan_attachment]\nkind = \"network\"\nname = \"fleet-v{{vlan}}\"\n\
             [public_attachment]\nkind = \"network\"\nname = \"{public}\"\n\
             [[hosts]]\nname = \"here\"\nuri = \"{SYSTEM_URI}\"\nvlans = \"{VLAN_HERE}\"\n\
             [[hosts]]\nname = \"there\"\nuri = \"{}\"\nvlans = \"4085\"\n",
            base.display(),
            r.here.path.join("libvirt-qemu").display(),
            r.host.uri
        ),
    )
    .unwrap();
    let mk = |args: &[&str]| r.with_config(&config, args);
    let rows = || {
        let (code, out, err) = mk(&["image", "list", "--json"]);
        assert_eq!(code, 0, "{err}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        rows.iter()
            .map(|r| {
                (
                    r["host"].as_str().unwrap().to_string(),
                    r["sha256"].as_str().unwrap().to_string(),
                    r["matches_local"].as_bool().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };

    // --host NAME: that host only.
    let (code, _, err) = mk(&["image", "push", "--host", "there"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("there: pushed fleet.raw"), "{err}");
    assert_eq!(rows(), vec![("there".to_string(), sha.clone(), true)]);

    // Every host: this machine gets it too, the test host has it already.
    let (code, _, err) = mk(&["image", "push"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("here: pushed fleet.raw"), "{err}");
    assert!(err.contains("there: fleet.raw"), "{err}");
    assert!(err.contains("is there already"), "{err}");
    assert_eq!(
        rows(),
        vec![
            ("here".to_string(), sha.clone(), true),
            ("there".to_string(), sha.clone(), true)
        ]
    );
    let (code, out, _) = mk(&["image", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HOST"), "{out}");

    // A headnode on each host, each on its host's pushed copy.
    let (code, out, err) = mk(&[&format!("{VLAN_HERE},4085"), "--no-start"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = mk(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    // (Other headnodes of this machine's libvirt are listed too: only ours count.)
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let listed: Vec<&serde_json::Value> = listed
        .iter()
        .filter(|r| r["vlan"] == 4084 || r["vlan"] == 4085)
        .collect();
    assert_eq!(listed.len(), 2, "{out}");
    for row in listed {
        assert_eq!(row["base_sha256"], sha.as_str(), "{row}");
        assert_eq!(row["image_current"], true, "{row}");
    }
    let pushed_here = format!(
        "/var/lib/mkheadnode/{tag}/pushed/{}",
        volume("fleet.raw", &sha)
    );
    let (_, xml, _) = run(Command::new("virsh").args([
        "-c",
        SYSTEM_URI,
        "vol-dumpxml",
        &format!("headnode-{VLAN_HERE}.qcow2"),
        "--pool",
        &tag,
    ]));
    assert!(
        xml.contains(&format!("<path>{pushed_here}</path>")),
        "{xml}"
    );
    let (code, out, err) = mk(&["teardown", &format!("{VLAN_HERE},4085"), "--purge"]);
    assert_eq!(code, 0, "{out}{err}");
}
