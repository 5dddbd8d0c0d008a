//! The headnode's firewall in force, for real: the seed's rules, and the base image's rules that
//! hold from the first boot until the seed's replace them, each loaded into a network namespace
//! standing for the headnode (`eth0` on the VLAN, `eth1` public), probed over IPv4 and IPv6 from
//! a VLAN-side and a public-side neighbour namespace. Also: no profile may take the name of a
//! boot file.

use crate::support::{guest_file, run, run_with_input, tool};
use mkheadnode::render::seed;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/net_probe.py");

fn image_rules(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/image-firewall")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// Three network namespaces: the headnode (`eth0`, `eth1`), a node on the VLAN (`v0`) and a
/// machine on the public side (`p1`); listeners in the headnode on TCP 22, 80, 8080 and UDP
/// 67, 69, 5000, and on TCP 9000 on the public machine. Removed on drop.
struct Bed {
    ns: [String; 3],
    listeners: Vec<Child>,
}

const HEADNODE: usize = 0;
const VLAN_NODE: usize = 1;
const PUBLIC: usize = 2;

impl Bed {
    fn new(tag: &str, rules_v4: &str, rules_v6: &str) -> Bed {
        let pid = std::process::id();
        let ns = ["h", "v", "p"].map(|n| format!("mkh-fw{tag}-{n}-{pid}"));
        for n in &ns {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(Stdio::null())
                .status();
            tool("ip", &["netns", "add", n]);
        }
        let mut bed = Bed {
            ns,
            listeners: Vec::new(),
        };
        let [h, v, p] = bed.ns.clone();
        for (dev, peer_ns, peer) in [("eth0", &v, "v0"), ("eth1", &p, "p1")] {
            tool(
                "ip",
                &[
                    "link", "add", "name", dev, "netns", &h, "type", "veth", "peer", "name", peer,
                    "netns", peer_ns,
                ],
            );
        }
        for (n, dev, addrs) in [
            (&h, "eth0", ["192.168.10.254/24", "fd00:10::254/64"]),
            (&v, "v0", ["192.168.10.7/24", "fd00:10::7/64"]),
            (&h, "eth1", ["172.30.0.2/24", "fd00:30::2/64"]),
            (&p, "p1", ["172.30.0.1/24", "fd00:30::1/64"]),
        ] {
            tool("ip", &["-n", n, "addr", "add", addrs[0], "dev", dev]);
            tool(
                "ip",
                &["-n", n, "addr", "add", addrs[1], "dev", dev, "nodad"],
            );
            tool("ip", &["-n", n, "link", "set", dev, "up"]);
            tool("ip", &["-n", n, "link", "set", "lo", "up"]);
        }
        for (prog, rules) in [
            ("iptables-restore", rules_v4),
            ("ip6tables-restore", rules_v6),
        ] {
            let (code, _, err) = run_with_input(&mut bed.exec(HEADNODE, prog), rules);
            assert_eq!(code, 0, "{prog}: {err}");
        }
        // An observer at the end of INPUT: what reaches it was accepted by no rule before it.
        let (code, _, err) = run(bed.exec(HEADNODE, "ip6tables").args([
            "-A",
            "INPUT",
            "-i",
            "eth1",
            "-p",
            "ipv6-icmp",
            "-m",
            "hl",
            "--hl-eq",
            "64",
        ]));
        assert_eq!(code, 0, "{err}");
        bed.listen(HEADNODE, "22,80,8080", "67,69,5000");
        bed.listen(PUBLIC, "9000", "");
        bed
    }

    fn exec(&self, at: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns[at], program]);
        cmd
    }

    fn listen(&mut self, at: usize, tcp: &str, udp: &str) {
        let mut child = self
            .exec(at, "python3")
            .args([PROBE, "listen", tcp, udp])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        self.listeners.push(child);
    }

    /// Every probe at once, from namespace `at`: {probe: outcome}.
    fn probe(&self, at: usize, specs: &[&str]) -> BTreeMap<String, String> {
        let (code, out, err) = run(self.exec(at, "python3").arg(PROBE).arg("probe").args(specs));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// ICMPv6 packets with hop limit 64 that the rules before the observer at the end of the
    /// headnode's IPv6 INPUT chain did not accept.
    fn unaccepted_icmpv6_from_afar(&self) -> u64 {
        let (_, out, _) = run(self
            .exec(HEADNODE, "ip6tables")
            .args(["-L", "INPUT", "-v", "-x", "-n"]));
        let last = out.lines().last().unwrap_or_default().to_string();
        assert!(last.contains("HL match HL == 64"), "{out}");
        last.split_whitespace().next().unwrap().parse().unwrap()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for child in &mut self.listeners {
            let _ = child.kill();
            let _ = child.wait();
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Asserts each probe's outcome, naming every one that differs.
fn expect(bed: &Bed, at: usize, want: &[(&str, &str)]) {
    let specs: Vec<&str> = want.iter().map(|(spec, _)| *spec).collect();
    let got = bed.probe(at, &specs);
    let wrong: Vec<String> = want
        .iter()
        .filter(|(spec, outcome)| got[*spec] != *outcome)
        .map(|(spec, outcome)| format!("{spec}: {} (want {outcome})", got[*spec]))
        .collect();
    assert!(
        wrong.is_empty(),
        "from {}:\n{}",
        bed.ns[at],
        wrong.join("\n")
    );
}

/// What the public side may reach: ssh, over IPv4 and IPv6 (which needs neighbour discovery),
/// and nothing else; and the headnode's own connections get their replies.
fn public_side_gets_ssh_only(bed: &Bed) {
    expect(
        bed,
        PUBLIC,
        &[
            ("tcp/172.30.0.2/22", "open"),
            ("tcp/172.30.0.2/80", "silent"),
            ("tcp/172.30.0.2/8080", "silent"),
            ("udp/172.30.0.2/67", "silent"),
            ("udp/172.30.0.2/69", "silent"),
            ("ping/172.30.0.2", "silent"),
            ("tcp/fd00:30::2/22", "open"),
            ("tcp/fd00:30::2/80", "silent"),
            ("udp/fd00:30::2/69", "silent"),
            ("ping/fd00:30::2", "silent"),
        ],
    );
    // Forgetting its neighbours, the headnode has to ask for them: their advertisements are
    // let in, and so are the replies to its own connections.
    tool(
        "ip",
        &["-n", &bed.ns[HEADNODE], "-6", "neigh", "flush", "all"],
    );
    expect(
        bed,
        HEADNODE,
        &[
            ("tcp/172.30.0.1/9000", "open"),
            ("tcp/fd00:30::1/9000", "open"),
        ],
    );
    // Neighbour discovery counts only from the link itself (hop limit 255).
    let before = bed.unaccepted_icmpv6_from_afar();
    expect(bed, PUBLIC, &[("nd/fd00:30::2/64", "sent")]);
    assert_eq!(
        bed.unaccepted_icmpv6_from_afar(),
        before + 15,
        "neighbour discovery with hop limit 64 was accepted"
    );
}

#[test]
fn the_seed_firewall_lets_in_what_each_side_needs_and_nothing_else() {
    let bed = Bed::new("s", &guest_file("rules_v4"), &guest_file("rules_v6"));
    public_side_gets_ssh_only(&bed);
    expect(
        &bed,
        VLAN_NODE,
        &[
            ("tcp/192.168.10.254/22", "open"),
            ("tcp/192.168.10.254/80", "open"),
            ("tcp/192.168.10.254/8080", "silent"),
            ("udp/192.168.10.254/67", "answered"),
            ("udp/192.168.10.254/69", "answered"),
            ("udp/192.168.10.254/5000", "silent"),
            ("ping/192.168.10.254", "answered"),
            // Nothing over IPv6 on the VLAN side.
            ("tcp/fd00:10::254/22", "silent"),
            ("tcp/fd00:10::254/80", "silent"),
            ("ping/fd00:10::254", "silent"),
        ],
    );
}

#[test]
fn the_base_images_firewall_lets_in_only_ssh_from_the_public_side() {
    let bed = Bed::new("i", &image_rules("rules.v4"), &image_rules("rules.v6"));
    public_side_gets_ssh_only(&bed);
    expect(
        &bed,
        VLAN_NODE,
        &[
            ("tcp/192.168.10.254/22", "silent"),
            ("tcp/192.168.10.254/80", "silent"),
            ("udp/192.168.10.254/67", "silent"),
            ("udp/192.168.10.254/69", "silent"),
            ("ping/192.168.10.254", "silent"),
            ("tcp/fd00:10::254/22", "silent"),
        ],
    );
}

#[test]
fn the_base_image_installs_its_firewall_and_rebuilds_when_it_changes() {
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/build-image.sh"
    ))
    .unwrap();
    for want in [
        // Over whatever iptables-persistent saved while the image was built.
        "install -m 0640 \"$HERE/image-firewall/rules.v4\" \"$ROOT/etc/iptables/rules.v4\"",
        "install -m 0640 \"$HERE/image-firewall/rules.v6\" \"$ROOT/etc/iptables/rules.v6\"",
        "chroot \"$ROOT\" systemctl enable -q netfilter-persistent",
        // The cache key covers the rules.
        "\"$HERE\"/image-firewall/rules.v4 \"$HERE\"/image-firewall/rules.v6",
    ] {
        assert!(script.contains(want), "build-image.sh lacks {want:?}");
    }
}

/// Every name reserved for a boot file or directory (RESERVED_NAMES) is refused as a profile
/// by the publish script and by the link tool, and every boot file the headnode serves is
/// among them.
#[test]
fn no_profile_may_take_the_name_of_a_boot_file() {
    for served in [
        "pxelinux.0",
        "ldlinux.c32",
        "menu.c32",
        "chain.c32",
        "mboot.c32",
        "libutil.c32",
        "libcom32.c32",
        "memdisk",
        "pxelinux.cfg",
        "efi",
        "uefi",
        "grub",
        "shimx64.efi",
        "grubx64.efi",
        "boot-default",
    ] {
        assert!(
            seed::RESERVED_NAMES.contains(&served),
            "{served} is not reserved"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (share, root) = (dir.path().join("share"), dir.path().join("tftp"));
    for sub in ["pxelinux.cfg", "uefi", "efi/profiles"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for name in seed::RESERVED_NAMES {
        let profile = share.join(name);
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(profile.join("pxelinux.cfg"), "KERNEL evil\n").unwrap();
        std::fs::write(profile.join("grub.cfg"), "linux evil\n").unwrap();
    }
    let publish = dir.path().join("publish");
    std::fs::write(&publish, guest_file("publish_profiles")).unwrap();
    let (code, out, err) = run(Command::new("sh")
        .arg(&publish)
        .env("MKHEADNODE_PROFILES", &share)
        .env("MKHEADNODE_TFTP_ROOT", &root));
    assert_eq!(code, 0, "{out}{err}");
    let link = dir.path().join("link");
    std::fs::write(&link, seed::link_tool().unwrap()).unwrap();
    for name in seed::RESERVED_NAMES {
        assert!(
            out.contains(&format!(
                "skipping profile '{name}': the name of a boot file"
            )),
            "{name} was published:\n{out}"
        );
        assert!(!root.join(name).join("pxelinux.cfg").exists(), "{name}");
        assert!(!root.join("efi/profiles").join(name).exists(), "{name}");
        // Even where a directory of that name holds a profile's files, the tool refuses it.
        let _ = std::fs::create_dir_all(root.join(name));
        let _ = std::fs::write(root.join(name).join("pxelinux.cfg"), "KERNEL evil\n");
        let (code, _, err) = run(Command::new("python3")
            .arg(&link)
            .args(["--profile", name, "--no-power", "--tftp-root"])
            .arg(&root)
            .arg("--machines")
            .arg("/dev/null"));
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains("bad profile name"), "{name}: {err}");
    }
}
