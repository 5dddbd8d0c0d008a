//! The boot-default CGI's lease check: only the node holding a MAC's DHCP lease may disarm it.
//! Lease files with crafted client strings, comments, states and ends; a real dhcpd writing the
//! lease of a client that sends a hostile host name and vendor class; and a property test of the
//! parser (hypothesis, under Debian's python3 as in the guest).

use crate::support::{guest_program, run, Dhcpd};
use mkheadnode::render::seed;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The node whose install link an attacker wants to reset, and its address.
const VICTIM: &str = "aa:bb:cc:dd:ee:02";
const VICTIM_IP: &str = "192.168.10.2";
/// The attacker's own address.
const ATTACKER_IP: &str = "192.168.10.9";
const FUTURE: &str = "4 2099/01/01 00:00:00";
const PAST: &str = "1 2001/01/01 00:00:00";

/// A lease block as dhcpd writes it, with `extra` statements before its end.
fn lease(ip: &str, mac: &str, state: &str, ends: &str, extra: &str) -> String {
    format!(
        "lease {ip} {{\n  starts 3 2026/11/25 10:00:00;\n  ends {ends};\n  cltt 3 2026/11/25 10:00:00;\n  \
         binding state {state};\n  next binding state free;\n  rewind binding state free;\n  \
         hardware ethernet {mac};\n{extra}}}\n"
    )
}

/// The rendered CGI, run as fcgiwrap runs it against a temp TFTP root holding install links.
struct Cgi {
    dir: tempfile::TempDir,
}

impl Cgi {
    fn new() -> Cgi {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tftp/pxelinux.cfg", "tftp/uefi"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        guest_program(dir.path(), "cgi", &seed::boot_default_cgi().unwrap());
        Cgi { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn link(&self, mac: &str) -> PathBuf {
        self.path(&format!("tftp/pxelinux.cfg/01-{}", mac.replace(':', "-")))
    }

    /// The status the CGI answers a call from `remote` to disarm `mac` (armed just before),
    /// with `leases` as dhcpd.leases, and whether the link was removed.
    fn call(&self, leases: &Path, remote: &str, mac: &str) -> (u16, bool) {
        let link = self.link(mac);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("../centos/pxelinux.cfg", &link).unwrap();
        let (code, out, err) = run(Command::new(self.path("cgi"))
            .env_clear()
            .env("REQUEST_METHOD", "GET")
            .env("QUERY_STRING", format!("mac={mac}"))
            .env("REMOTE_ADDR", remote)
            .env("MKHEADNODE_LEASES", leases)
            .env("MKHEADNODE_TFTP_ROOT", self.path("tftp")));
        assert_eq!(code, 0, "the CGI failed:\n{out}\n{err}");
        let status = out
            .strip_prefix("Status: ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line:\n{out}"));
        (status, std::fs::symlink_metadata(&link).is_err())
    }

    /// [`Cgi::call`] with `text` written as the lease file.
    fn with_leases(&self, text: &str, remote: &str, mac: &str) -> (u16, bool) {
        let file = self.path("dhcpd.leases");
        std::fs::write(&file, text).unwrap();
        self.call(&file, remote, mac)
    }
}

#[test]
fn boot_default_refuses_leases_that_crafted_strings_comments_and_states_pretend() {
    let cgi = Cgi::new();
    let own = lease(ATTACKER_IP, "aa:bb:cc:dd:ee:09", "active", FUTURE, "");
    let victims = lease(VICTIM_IP, VICTIM, "active", FUTURE, "");
    // A lease for the victim's MAC at the attacker's address, as a client would smuggle it in.
    let fake = format!(
        "lease {ATTACKER_IP} {{ binding state active; hardware ethernet {VICTIM}; ends never; }}"
    );
    let with = |extra: &str| {
        let mine = lease(ATTACKER_IP, "aa:bb:cc:dd:ee:09", "active", FUTURE, extra);
        format!("{victims}{mine}")
    };
    let refused = [
        ("the victim's lease, from another address", format!("{victims}{own}")),
        (
            "braces and a lease in client-hostname",
            with(&format!("  client-hostname \"x; }} {fake} #\";\n")),
        ),
        (
            "an escaped quote in a string",
            with(&format!(
                "  set vendor-class-identifier = \"x\\\"; }} {fake} \\\"\";\n"
            )),
        ),
        (
            "an octal escape in a string",
            with(&format!("  uid \"\\042; }} {fake} \\042\";\n")),
        ),
        ("a lease in a comment", format!("{victims}{own}# {fake}\n")),
        (
            "a lease in a comment after a statement",
            format!("{victims}{own}authoring-byte-order little-endian; # {fake}\n"),
        ),
        (
            "no binding state",
            format!("{victims}lease {ATTACKER_IP} {{\n  ends never;\n  hardware ethernet {VICTIM};\n}}\n"),
        ),
        (
            "a next binding state only",
            format!("{victims}lease {ATTACKER_IP} {{\n  ends never;\n  next binding state active;\n  hardware ethernet {VICTIM};\n}}\n"),
        ),
        (
            "binding state free",
            lease(ATTACKER_IP, VICTIM, "free", FUTURE, ""),
        ),
        (
            "binding state backup",
            lease(ATTACKER_IP, VICTIM, "backup", FUTURE, ""),
        ),
        ("ended", lease(ATTACKER_IP, VICTIM, "active", PAST, "")),
        (
            "ended, in epoch form",
            lease(ATTACKER_IP, VICTIM, "active", "epoch 1000000000; # 2001", ""),
        ),
        (
            "no end at all",
            format!("lease {ATTACKER_IP} {{\n  binding state active;\n  hardware ethernet {VICTIM};\n}}\n"),
        ),
        (
            "an end that does not parse",
            lease(ATTACKER_IP, VICTIM, "active", "4 2099/13/45 99:00:00", ""),
        ),
        (
            "a later block that freed it",
            format!(
                "{}{}",
                lease(ATTACKER_IP, VICTIM, "active", FUTURE, ""),
                lease(ATTACKER_IP, VICTIM, "free", FUTURE, "")
            ),
        ),
        (
            "a lease nested in another block",
            format!("failover peer \"x\" state {{\n  {fake}\n}}\n"),
        ),
        (
            "a binding state and the victim's MAC in a block nested in the lease",
            lease(
                ATTACKER_IP,
                "aa:bb:cc:dd:ee:09",
                "free",
                FUTURE,
                &format!("  on expiry {{\n    binding state active;\n    hardware ethernet {VICTIM};\n  }}\n"),
            ),
        ),
    ];
    for (what, text) in &refused {
        assert_eq!(
            cgi.with_leases(text, ATTACKER_IP, VICTIM),
            (403, false),
            "{what}:\n{text}"
        );
    }
    // The victim itself, with the same files where its own lease stands: accepted.
    for (what, text) in &refused[..6] {
        assert_eq!(
            cgi.with_leases(text, VICTIM_IP, VICTIM),
            (200, true),
            "the victim, with {what}:\n{text}"
        );
    }
}

#[test]
fn boot_default_accepts_the_holder_of_a_lease_in_force() {
    let cgi = Cgi::new();
    let accepted = [
        ("ends in the future", lease(VICTIM_IP, VICTIM, "active", FUTURE, "")),
        ("ends never", lease(VICTIM_IP, VICTIM, "active", "never", "")),
        (
            "ends in epoch form",
            lease(VICTIM_IP, VICTIM, "active", "epoch 4102444800; # 2100", ""),
        ),
        (
            "a later block that made it active again",
            format!(
                "{}{}",
                lease(VICTIM_IP, VICTIM, "free", FUTURE, ""),
                lease(VICTIM_IP, VICTIM, "active", FUTURE, "")
            ),
        ),
        (
            "an escaped backslash ending a string before the hardware address",
            format!("lease {VICTIM_IP} {{\n  binding state active;\n  ends never;\n  uid \"\\\\\";\n  hardware ethernet {VICTIM};\n}}\n"),
        ),
        (
            "a nested block with a brace in a string",
            lease(VICTIM_IP, VICTIM, "active", FUTURE, "  on commit {\n    set x = \"}\";\n  }\n"),
        ),
        (
            "a hardware address in upper case without leading zeros",
            lease(VICTIM_IP, "AA:BB:CC:DD:EE:2", "active", FUTURE, ""),
        ),
        (
            "dhcpd's header, server-duid and a comment",
            format!(
                "# The format of this file is documented in the dhcpd.leases(5) manual page.\n\
                 authoring-byte-order little-endian;\nserver-duid \"\\000\\001}}{{\";\n\n{}",
                lease(VICTIM_IP, VICTIM, "active", FUTURE, "  client-hostname \"{ x\";\n")
            ),
        ),
    ];
    for (what, text) in &accepted {
        assert_eq!(
            cgi.with_leases(text, VICTIM_IP, VICTIM),
            (200, true),
            "{what}:\n{text}"
        );
    }
}

#[test]
fn boot_default_answers_503_when_the_leases_cannot_be_read() {
    let cgi = Cgi::new();
    let whole = lease(VICTIM_IP, VICTIM, "active", FUTURE, "");
    // dhcpd half-way through a lease, and an unterminated string: nothing is removed.
    for text in [
        &whole[..whole.len() - 3],
        &format!("{whole}lease {ATTACKER_IP} {{ client-hostname \"x; }}\n"),
    ] {
        assert_eq!(
            cgi.with_leases(text, VICTIM_IP, VICTIM),
            (503, false),
            "{text}"
        );
    }
    assert_eq!(
        cgi.call(&cgi.path("no-such-file"), VICTIM_IP, VICTIM),
        (503, false)
    );
}

/// A DHCP exchange with these client options; the address the client got.
fn leased_address(dhcp: &Dhcpd, options: &[&str]) -> String {
    let out = dhcp.ask(&["ip"], options);
    out.lines()
        .find_map(|l| l.strip_prefix("ip="))
        .unwrap_or_else(|| panic!("no address:\n{out}"))
        .to_string()
}

#[test]
fn boot_default_reads_a_real_dhcpd_lease_of_a_client_with_a_hostile_host_name() {
    let dhcp = Dhcpd::start("leases");
    let client = dhcp.ns.client_mac();
    // The host name carries braces, semicolons and `#` (dhcpd writes it as sent, in quotes);
    // the vendor class also quotes and backslashes (which dhcpd escapes). Each smuggles a
    // lease for the victim's MAC at an address nobody holds.
    let fake = |ip: &str| {
        format!("lease {ip} {{ binding state active; hardware ethernet {VICTIM}; ends never; }}")
    };
    let hostname = format!("x; }} {} # {{", fake("192.168.10.99"));
    let hex: String = hostname.bytes().map(|b| format!("{b:02x}")).collect();
    let vendor = format!("v\"; }} {} \"", fake("192.168.10.98"));
    let address = leased_address(&dhcp, &["-x", &format!("0x0c:{hex}"), "-V", &vendor]);
    let file = dhcp.dir.path().join("dhcpd.leases");
    let written = std::fs::read_to_string(&file).unwrap();
    // dhcpd really wrote the crafted strings into its lease file.
    assert!(
        written.contains(&format!("client-hostname \"{hostname}\";")),
        "{written}"
    );
    assert!(written.contains("lease 192.168.10.98 {"), "{written}");

    let cgi = Cgi::new();
    for smuggled in ["192.168.10.99", "192.168.10.98"] {
        assert_eq!(
            cgi.call(&file, smuggled, VICTIM),
            (403, false),
            "a lease smuggled in for {smuggled}:\n{written}"
        );
    }
    // The client itself, from its own address: its lease is active and in force.
    assert_eq!(cgi.call(&file, &address, &client), (200, true), "{written}");
    assert_eq!(cgi.call(&file, "192.168.10.99", &client).0, 403);
}

#[test]
fn the_lease_parser_keeps_its_properties_on_generated_files() {
    let dir = tempfile::tempdir().unwrap();
    let cgi = guest_program(
        dir.path(),
        "boot-default",
        &seed::boot_default_cgi().unwrap(),
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lease_properties.py"
    );
    // Debian's python3, as in the guest, with Debian's python3-hypothesis.
    // Run in the temp dir: hypothesis keeps a cache in `.hypothesis/` there.
    let (code, out, err) = run(Command::new("/usr/bin/python3")
        .current_dir(dir.path())
        .arg(script)
        .arg(&cgi)
        .arg("100"));
    assert_eq!(code, 0, "{out}\n{err}");
    let passed = out.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(passed, 3, "{out}");
}
