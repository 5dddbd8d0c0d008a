//! UEFI and Secure Boot on the guest side, run for real on this machine: dhcpd answering each
//! client architecture (a real DHCP exchange in a network namespace), the default GRUB config
//! through `grub-script-check`, and arming and disarming both loaders with the publish script,
//! the link tool and the boot-default CGI on a temp TFTP root.

use crate::support::{guest_file, guest_program, run, tool, Dhcpd};
use mkheadnode::render::seed;
use std::path::PathBuf;
use std::process::Command;

/// The client's MAC: every byte below 0x10 must still be written in two digits.
const CLIENT_MAC: &str = "52:54:00:0a:0b:0c";

/// dhcpd up, its client `peer0` with [`CLIENT_MAC`]; one exchange gives the boot file and the
/// vendor class the server answered with.
fn dhcp_bed() -> Dhcpd {
    let dhcp = Dhcpd::start("uefi");
    tool(
        "ip",
        &[
            "-n", &dhcp.ns.0, "link", "set", "peer0", "address", CLIENT_MAC,
        ],
    );
    dhcp
}

#[test]
fn dhcpd_gives_each_client_architecture_its_loader() {
    let bed = dhcp_bed();
    let ask = |options: &[&str]| bed.ask(&["boot_file", "vendor"], options);
    let node = "01-52-54-00-0a-0b-0c";
    // BIOS PXE (architecture 0), and a client that sends no architecture at all.
    for options in [
        &["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"][..],
        &[][..],
    ] {
        let reply = ask(options);
        assert!(
            reply.contains("boot_file=pxelinux.0\n"),
            "{options:?}:\n{reply}"
        );
    }
    // x86-64 UEFI PXE (7, and 9 that some firmware sends): the node's own chain directory, with
    // every byte of the MAC in two digits (dhcpd's binary-to-ascii drops leading zeros).
    for arch in ["0007", "0009"] {
        let vendor = format!("PXEClient:Arch:0{arch}:UNDI:003016");
        let reply = ask(&["-V", &vendor, "-x", &format!("0x5d:{arch}")]);
        assert!(
            reply.contains(&format!("boot_file=uefi/{node}/shimx64.efi\n")),
            "arch {arch}:\n{reply}"
        );
    }
    // UEFI HTTP Boot (16): a URL on the headnode's nginx, and the answer names HTTPClient.
    let reply = ask(&["-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010"]);
    assert!(
        reply.contains(&format!(
            "boot_file=http://192.168.10.254/uefi/{node}/shimx64.efi\n"
        )),
        "{reply}"
    );
    assert!(reply.contains("vendor=HTTPClient\n"), "{reply}");
}

#[test]
fn the_default_grub_config_passes_grub_script_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grub.cfg");
    let cfg = guest_file("grub_cfg");
    std::fs::write(&path, &cfg).unwrap();
    tool("grub-script-check", &[path.to_str().unwrap()]);
    // It reads the node's config through the same link that dhcpd's boot file goes through.
    assert!(
        cfg.contains("configfile /uefi/${mkheadnode_node}/grub.cfg"),
        "{cfg}"
    );
    // And grub-script-check can fail: an unclosed block is refused.
    std::fs::write(&path, format!("{cfg}\nif true; then\n")).unwrap();
    let (code, _, _) = run(Command::new("grub-script-check").arg(&path));
    assert_ne!(code, 0, "grub-script-check accepted an unclosed `if`");
}

/// A temp TFTP root laid out as the set-up script lays it out, with the share's profiles
/// published into it by the real publish script, and the link tool and CGI beside it.
struct TftpBed {
    dir: tempfile::TempDir,
}

impl TftpBed {
    fn new() -> TftpBed {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tftp");
        for sub in ["pxelinux.cfg", "uefi", "efi/profiles", "grub"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for f in ["efi/shimx64.efi", "efi/grubx64.efi"] {
            std::fs::write(root.join(f), f).unwrap();
        }
        let share = dir.path().join("share");
        let both = share.join("both");
        std::fs::create_dir_all(&both).unwrap();
        std::fs::write(both.join("pxelinux.cfg"), "KERNEL both/vmlinuz\n").unwrap();
        std::fs::write(
            both.join("grub.cfg"),
            "linux (http,@HEADNODE@)/both/vmlinuz\n",
        )
        .unwrap();
        std::fs::write(both.join("vmlinuz"), "kernel").unwrap();
        let bios = share.join("biosonly");
        std::fs::create_dir_all(&bios).unwrap();
        std::fs::write(bios.join("pxelinux.cfg"), "KERNEL biosonly/vmlinuz\n").unwrap();
        for reserved in ["grub", "efi", "pxelinux.0"] {
            std::fs::create_dir_all(share.join(reserved)).unwrap();
            std::fs::write(share.join(reserved).join("grub.cfg"), "x").unwrap();
        }
        for (name, text) in [
            ("publish", guest_file("publish_profiles")),
            ("link", seed::link_tool().unwrap()),
            ("cgi", seed::boot_default_cgi().unwrap()),
        ] {
            guest_program(dir.path(), name, &text);
        }
        std::fs::write(
            dir.path().join("machines.txt"),
            "52:54:00:0a:0b:0c 10.0.0.7\n",
        )
        .unwrap();
        let bed = TftpBed { dir };
        let (code, out, err) = run(Command::new(bed.path("publish"))
            .env("MKHEADNODE_PROFILES", bed.path("share"))
            .env("MKHEADNODE_TFTP_ROOT", bed.root()));
        assert_eq!(code, 0, "publish:\n{out}\n{err}");
        bed
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self) -> PathBuf {
        self.path("tftp")
    }

    fn link(&self, args: &[&str]) -> (i32, String, String) {
        run(Command::new(self.path("link"))
            .args(args)
            .arg("--no-power")
            .arg("--machines")
            .arg(self.path("machines.txt"))
            .arg("--tftp-root")
            .arg(self.root()))
    }

    fn target(&self, rel: &str) -> Option<String> {
        std::fs::read_link(self.root().join(rel))
            .ok()
            .map(|t| t.display().to_string())
    }

    /// The CGI run as fcgiwrap runs it: (status line, body).
    fn boot_default(&self, mac: &str) -> String {
        let (code, out, err) = run(Command::new(self.path("cgi"))
            .env("REQUEST_METHOD", "GET")
            .env("QUERY_STRING", format!("mac={mac}"))
            .env("REMOTE_ADDR", "192.168.10.7")
            .env("MKHEADNODE_REQUIRE_LEASE", "0")
            .env("MKHEADNODE_TFTP_ROOT", self.root()));
        assert_eq!(code, 0, "cgi:\n{out}\n{err}");
        out
    }
}

const NODE: &str = "01-52-54-00-0a-0b-0c";

#[test]
fn publishing_makes_a_uefi_chain_for_profiles_with_grub_cfg_only() {
    let bed = TftpBed::new();
    let root = bed.root();
    let chain = root.join("efi/profiles/both");
    // Through the chain, TFTP and nginx serve shim, GRUB and the profile's grub.cfg, with the
    // headnode's address filled in.
    assert_eq!(
        std::fs::read_to_string(chain.join("shimx64.efi")).unwrap(),
        "efi/shimx64.efi"
    );
    assert_eq!(
        std::fs::read_to_string(chain.join("grubx64.efi")).unwrap(),
        "efi/grubx64.efi"
    );
    assert_eq!(
        std::fs::read_to_string(chain.join("grub.cfg")).unwrap(),
        "linux (http,192.168.10.254)/both/vmlinuz\n"
    );
    assert!(!root.join("efi/profiles/biosonly").exists());
    assert!(root.join("biosonly/pxelinux.cfg").exists());
    // Profiles named like boot files and directories are refused, and nothing of theirs lands.
    for reserved in ["grub", "efi", "pxelinux.0"] {
        assert!(
            !root.join(reserved).join("grub.cfg").exists(),
            "profile {reserved} was published over a boot file"
        );
    }
}

#[test]
fn the_link_tool_arms_both_loaders_and_boot_default_disarms_both() {
    let bed = TftpBed::new();
    let pxe = format!("pxelinux.cfg/{NODE}");
    let uefi = format!("uefi/{NODE}");

    // --dry-run says what it would do for both loaders and changes nothing.
    let (code, out, err) = bed.link(&["--profile", "both", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("would link {pxe} -> ../both/pxelinux.cfg"))
            && out.contains(&format!("would link {uefi} -> ../efi/profiles/both")),
        "{out}"
    );
    assert_eq!((bed.target(&pxe), bed.target(&uefi)), (None, None));

    let (code, out, err) = bed.link(&["--profile", "both"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bed.target(&pxe).as_deref(), Some("../both/pxelinux.cfg"));
    assert_eq!(bed.target(&uefi).as_deref(), Some("../efi/profiles/both"));
    // What the firmware and GRUB then fetch, through the node's link.
    let root = bed.root();
    assert_eq!(
        std::fs::read_to_string(root.join(&uefi).join("shimx64.efi")).unwrap(),
        "efi/shimx64.efi"
    );
    assert!(std::fs::read_to_string(root.join(&uefi).join("grub.cfg"))
        .unwrap()
        .contains("both/vmlinuz"));

    // A BIOS-only profile arms pxelinux and disarms UEFI, so no older profile installs there.
    let (code, out, _) = bed.link(&["--profile", "biosonly"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        bed.target(&pxe).as_deref(),
        Some("../biosonly/pxelinux.cfg")
    );
    assert_eq!(bed.target(&uefi), None, "{out}");

    // boot-default disarms both loaders at once.
    bed.link(&["--profile", "both"]);
    let reply = bed.boot_default("52:54:00:0A:0B:0C");
    assert!(reply.starts_with("Status: 200"), "{reply}");
    assert_eq!((bed.target(&pxe), bed.target(&uefi)), (None, None));
    assert!(bed
        .boot_default("52-54-00-0a-0b-0c")
        .starts_with("Status: 404"));

    // Only links are ever removed: a file in the UEFI directory is left alone, and said so.
    std::fs::write(root.join(&uefi), "not a link").unwrap();
    assert!(bed
        .boot_default("52:54:00:0a:0b:0c")
        .starts_with("Status: 403"));
    assert!(root.join(&uefi).exists());
}

#[test]
fn the_link_tool_refuses_profiles_named_like_boot_files() {
    let bed = TftpBed::new();
    for name in [
        "grub",
        "efi",
        "uefi",
        "pxelinux.cfg",
        "shimx64.efi",
        ".hidden",
    ] {
        let (code, out, err) = bed.link(&["--profile", name]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains("bad profile name"), "{name}: {err}");
    }
    // A profile that the share does not hold at all is named in the error.
    let (code, _, err) = bed.link(&["--profile", "absent"]);
    assert_eq!(code, 2);
    assert!(err.contains("'absent'"), "{err}");
}

#[test]
fn the_example_profiles_grub_configs_pass_grub_script_check() {
    let profiles = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cloud-init/profiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(&profiles).unwrap() {
        let cfg = entry.unwrap().path().join("grub.cfg");
        tool("grub-script-check", &[cfg.to_str().unwrap()]);
        assert!(
            std::fs::read_to_string(&cfg)
                .unwrap()
                .contains("${mkheadnode_fetch}/"),
            "{} does not fetch over HTTP",
            cfg.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "every example profile has a GRUB side");
}
