/*!
What a headnode knows of the machines on its VLAN, as its `mkheadnode-nodes` tool reports it
(JSON, version 1): each machine's boot target, lease, last loader and files fetched, its
`/boot-default/` call and power state, and the timeline of events they come from.

Many of these values come from the nodes (a DHCP client chooses its hostname and vendor class,
and the names of the files and URLs it asks for): [`printable`] is how they are shown on a
terminal. `mkheadnode nodes --json` prints this same structure.
*/

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The version of the report this mkheadnode reads.
pub const VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// The report's format version.
    pub version: u32,
    /// When the headnode made it (seconds since the epoch, its clock).
    pub time: f64,
    /// What it could not read (a bad machines line, a missing lease file).
    pub problems: Vec<String>,
    /// The profiles published in its TFTP root.
    pub profiles: Vec<Published>,
    /// One entry per machine of machines.txt, in its order.
    pub nodes: Vec<Node>,
    /// The timeline, when asked for (oldest first).
    pub events: Option<Vec<Event>>,
}

/// A profile published in the headnode's TFTP root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Published {
    /// Its name.
    pub name: String,
    /// The loaders it serves: `bios`, `uefi`.
    pub loaders: Vec<String>,
}

/// One machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    /// The MAC of its NIC on the VLAN.
    pub mac: String,
    /// Its BMC's address.
    pub bmc: String,
    /// `armed` (linked to a profile, nothing fetched since), `installing` (fetched since it was
    /// armed), `installed` (disarmed by its `/boot-default/` call) or `local`.
    pub state: Option<String>,
    /// What each loader boots.
    pub boot: Boot,
    /// Its latest DHCP lease.
    pub lease: Option<Lease>,
    /// Its latest DHCP message.
    pub last_dhcp: Option<Dhcp>,
    /// The boot loader it fetched last.
    pub last_loader: Option<LoaderSeen>,
    /// The files it fetched last (TFTP and HTTP), oldest first.
    pub fetched: Vec<Fetch>,
    /// Its latest `/boot-default/` call.
    pub boot_default: Option<Callback>,
    /// Its power state (with `--power`).
    pub power: Option<Power>,
}

/// What each loader boots: a link to a profile, or nothing (the local disk).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Boot {
    /// BIOS: `pxelinux.cfg/01-<mac>`.
    pub bios: Option<Link>,
    /// UEFI: `uefi/01-<mac>`.
    pub uefi: Option<Link>,
}

/// A node's link under the TFTP root.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Link {
    /// The profile it points at, if it points at one.
    pub profile: Option<String>,
    /// Where it points.
    pub target: Option<String>,
    /// Whether what it points at is there (a removed profile leaves it dangling).
    pub present: bool,
    /// When it was made (armed).
    pub since: Option<f64>,
}

/// A DHCP lease from `dhcpd.leases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lease {
    /// The leased address.
    pub ip: String,
    /// Its binding state (`active`, `free`, ...).
    pub state: Option<String>,
    /// When it started.
    pub starts: Option<f64>,
    /// When it ends.
    pub ends: Option<f64>,
    /// The hostname the client gave (the client's choice).
    pub hostname: Option<String>,
    /// Its vendor class, where dhcpd records it (the client's choice).
    pub vendor_class: Option<String>,
}

/// A DHCP message of the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dhcp {
    /// When.
    pub time: f64,
    /// What, e.g. `DHCPACK on 192.168.10.100`.
    pub what: String,
}

/// A boot loader fetched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoaderSeen {
    /// `bios` (pxelinux), `uefi` (shim over TFTP) or `uefi-http` (shim over HTTP).
    pub loader: String,
    /// When.
    pub time: f64,
    /// The file.
    pub path: Option<String>,
}

/// A file fetched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fetch {
    /// When.
    pub time: f64,
    /// `tftp` or `http`.
    pub via: String,
    /// The path asked for (the node's choice).
    pub path: Option<String>,
    /// The HTTP status (TFTP logs none).
    pub status: Option<u32>,
}

/// A `/boot-default/` call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Callback {
    /// When.
    pub time: f64,
    /// The answer: 200 disarmed, 404 nothing was armed, 403 refused.
    pub status: Option<u32>,
    /// The caller's address.
    pub from: Option<String>,
}

/// A power state, or why it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Power {
    /// `on`, `off`, or what the BMC said.
    pub state: Option<String>,
    /// Why there is none.
    pub error: Option<String>,
}

/// One event of the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// When.
    pub time: f64,
    /// `dhcp`, `tftp`, `http` or `callback`.
    pub kind: String,
    /// What happened, in a few words.
    pub what: String,
    /// The node's address.
    pub ip: Option<String>,
    /// The node's MAC, where known.
    pub mac: Option<String>,
    /// The file or URL asked for.
    pub path: Option<String>,
    /// The HTTP status.
    pub status: Option<u32>,
}

/// Read the nodes tool's output.
pub fn parse(json: &str) -> anyhow::Result<Report> {
    let report: Report =
        serde_json::from_str(json).context("reading the headnode's mkheadnode-nodes report")?;
    if report.version != VERSION {
        anyhow::bail!(
            "the headnode's mkheadnode-nodes reports in version {}, this mkheadnode reads \
             version {VERSION}: rebuild the headnode, or use the matching mkheadnode",
            report.version
        );
    }
    Ok(report)
}

impl Node {
    /// What the node boots, in a few words: `local`, `smoke` (both loaders), or per loader
    /// (`bios=a uefi=b`); a link whose profile is gone is marked `(missing)`.
    pub fn boot_summary(&self) -> String {
        let word = |link: &Link| {
            let name = link
                .profile
                .clone()
                .or_else(|| link.target.clone())
                .unwrap_or_else(|| "?".into());
            if link.present {
                name
            } else {
                format!("{name}(missing)")
            }
        };
        match (&self.boot.bios, &self.boot.uefi) {
            (None, None) => "local".into(),
            (Some(b), Some(u)) if word(b) == word(u) => word(b),
            (b, u) => [("bios", b), ("uefi", u)]
                .iter()
                .filter_map(|(loader, link)| link.as_ref().map(|l| format!("{loader}={}", word(l))))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Characters that change how a terminal shows the rest of a line: bidirectional overrides
/// and invisible joiners.
fn is_format_control(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `text` safe to print on a terminal: control and direction-changing characters escaped
/// (`\u{1b}`), and cut to `max` characters with `...`.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count >= max {
            out.push_str("...");
            break;
        }
        if c.is_control() || is_format_control(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(epoch: f64) -> String {
    let secs = epoch.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil: the proleptic Gregorian calendar from 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How long before `now` `then` was: `45s ago`, `12m ago`, `3h ago`, `2d ago`.
pub fn ago(now: f64, then: f64) -> String {
    let secs = (now - then).max(0.0) as u64;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
 "version": 1, "time": 1764079400.0, "problems": ["machines.txt line 3: expected `<mac> <bmc-ipv4>`"],
 "profiles": [{"name": "smoke", "loaders": ["bios", "uefi"]}],
 "nodes": [{
  "mac": "52:54:00:0a:0b:0c", "bmc": "10.0.0.7", "state": "armed",
  "boot": {"bios": {"profile": "smoke", "target": "../smoke/pxelinux.cfg", "present": true, "since": 1764079000.5},
           "uefi": {"profile": "smoke", "target": "../efi/profiles/smoke", "present": true, "since": 1764079000.5}},
  "lease": {"ip": "192.168.10.100", "state": "active", "starts": 1764078000, "ends": 1764114000,
            "hostname": "evil\u001b[2J\u202e", "vendor_class": null, "mac": "52:54:00:0a:0b:0c"},
  "last_dhcp": {"time": 1764078000, "what": "DHCPACK on 192.168.10.100"},
  "last_loader": {"loader": "bios", "time": 1764078010, "path": "pxelinux.0"},
  "fetched": [{"time": 1764078010, "via": "tftp", "path": "pxelinux.0", "status": null}],
  "boot_default": null, "power": {"state": "on", "error": null}, "added_later": 1
 }],
 "events": null
}"#;

    #[test]
    fn the_tools_report_parses() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.profiles[0].loaders, vec!["bios", "uefi"]);
        let n = &r.nodes[0];
        assert_eq!(n.state.as_deref(), Some("armed"));
        assert_eq!(n.boot_summary(), "smoke");
        assert_eq!(n.lease.as_ref().unwrap().ip, "192.168.10.100");
        assert_eq!(n.power.as_ref().unwrap().state.as_deref(), Some("on"));
        assert!(r.events.is_none());
        // A brief report (machines only) parses too.
        let brief =
            parse(r#"{"version":1,"nodes":[{"mac":"aa:bb:cc:dd:ee:ff","bmc":"10.0.0.1"}]}"#)
                .unwrap();
        assert_eq!(brief.nodes[0].boot_summary(), "local");
    }

    #[test]
    fn another_version_or_garbage_is_refused() {
        let err = parse(r#"{"version":2}"#).unwrap_err();
        assert!(format!("{err:#}").contains("version 2"), "{err:#}");
        assert!(parse("mkheadnode-nodes: Traceback").is_err());
    }

    #[test]
    fn boot_summary_per_loader() {
        let link = |p: &str, present| Link {
            profile: Some(p.into()),
            target: None,
            present,
            since: None,
        };
        let mut n = Node::default();
        n.boot.bios = Some(link("a", true));
        assert_eq!(n.boot_summary(), "bios=a");
        n.boot.uefi = Some(link("b", false));
        assert_eq!(n.boot_summary(), "bios=a uefi=b(missing)");
    }

    #[test]
    fn hostile_text_cannot_drive_the_terminal() {
        let shown = printable("evil\u{1b}[2J\u{202e}x\u{7}\nend", 100);
        assert_eq!(shown, "evil\\u{1b}[2J\\u{202e}x\\u{7}\\u{a}end");
        assert_eq!(printable("abcdef", 3), "abc...");
        assert_eq!(printable("héllo", 10), "héllo");
    }

    #[test]
    fn times() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_764_079_392.9), "2025-11-25 14:03:12");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(ago(100.0, 55.0), "45s ago");
        assert_eq!(ago(1000.0, 100.0), "15m ago");
        assert_eq!(ago(100_000.0, 0.0), "27h ago");
        assert_eq!(ago(0.0, 10.0), "0s ago");
    }

    #[test]
    fn utc_counts_every_day_from_1970_past_2400() {
        // A plain calendar as the oracle: the next day of each day, with the Gregorian leap
        // years (2000 and 2400 are leap years, 2100, 2200 and 2300 are not).
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in = |y: i64, m: i64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for day in 0..157_500_i64 {
            let want = format!("{y:04}-{m:02}-{d:02} 00:00:00");
            assert_eq!(utc((day * 86_400) as f64), want, "day {day}");
            d += 1;
            if d > days_in(y, m) {
                (m, d) = (m % 12 + 1, 1);
                y += i64::from(m == 1);
            }
        }
        assert_eq!((y, m), (2401, 3), "the walk passed 2400-02-29");
        assert_eq!(utc(-1.0), "1969-12-31 23:59:59");
    }
}
