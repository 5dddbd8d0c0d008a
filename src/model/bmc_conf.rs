/*!
`bmc.conf`, the BMC credentials the headnode's link tool reads from its config dir: checked
before `--bmc-conf` installs one, so that a typo is said here rather than at the first install.
The link tool (`cloud-init/files/mkheadnode-link.py`) checks it again, with the same rules:
sections `[default]` or a BMC's IPv4 address, and only the keys it knows.
*/

use crate::error::{failure, Kind};
use std::net::Ipv4Addr;
use std::path::Path;

/// The keys a section may set.
pub const KEYS: [&str; 11] = [
    "driver",
    "username",
    "password",
    "port",
    "scheme",
    "verify_tls",
    "ca_file",
    "tls_fingerprint",
    "off_timeout",
    "on_timeout",
    "poll_interval",
];

/// The waits of the power sequence, and the most seconds each may be.
const WAITS: [(&str, f64); 3] = [
    ("off_timeout", 600.0),
    ("on_timeout", 600.0),
    ("poll_interval", 60.0),
];

/// The power drivers.
const DRIVERS: [&str; 4] = ["ipmi", "redfish", "amt", "none"];

/// What is wrong with `key = value`, if anything.
fn value_problem(key: &str, value: &str) -> Option<String> {
    match key {
        _ if !KEYS.contains(&key) => Some(format!("unknown key (known: {})", KEYS.join(", "))),
        "driver" if !DRIVERS.contains(&value) => {
            Some(format!("{value:?} is not one of {}", DRIVERS.join(", ")))
        }
        "port" if !value.parse::<u16>().is_ok_and(|p| p > 0) => {
            Some(format!("{value:?} is not a port number"))
        }
        "scheme" if !["http", "https"].contains(&value) => {
            Some(format!("{value:?} is not http or https"))
        }
        wait if WAITS.iter().any(|(k, _)| *k == wait) => {
            let most = WAITS
                .iter()
                .find(|(k, _)| *k == wait)
                .map_or(0.0, |(_, m)| *m);
            // As the link tool reads them: up to three digits, and up to three decimals.
            let (whole, decimals) = value.split_once('.').unwrap_or((value, "0"));
            let digits = |s: &str, most: usize| {
                (1..=most).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
            };
            let seconds = (digits(whole, 3) && digits(decimals, 3))
                .then(|| value.parse::<f64>().ok())
                .flatten();
            match seconds {
                Some(s) if s > 0.0 && s <= most => None,
                _ => Some(format!(
                    "{value:?} is not a number of seconds (more than 0, at most {most})"
                )),
            }
        }
        "verify_tls"
            if !["yes", "no", "true", "false", "on", "off", "1", "0"]
                .contains(&value.to_ascii_lowercase().as_str()) =>
        {
            Some(format!("{value:?} is not yes or no"))
        }
        _ => None,
    }
}

/// Check `text`, read from `source`; every problem is listed, each with its line (a `Usage`
/// error).
pub fn check(text: &str, source: &str) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut in_section = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = format!("{source}:{}", n + 1);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = true;
            if name != "default" && name.parse::<Ipv4Addr>().is_err() {
                problems.push(format!(
                    "{at}: [{name}]: a section is [default] or a BMC's IPv4 address"
                ));
            }
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            problems.push(format!("{at}: expected `key = value` or a [section]"));
            continue;
        };
        if !in_section {
            problems.push(format!("{at}: a key before any [section]"));
        }
        let key = key.trim().to_ascii_lowercase();
        if let Some(why) = value_problem(&key, value.trim()) {
            problems.push(format!("{at}: {key}: {why}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(failure(Kind::Usage, problems.join("\n")))
    }
}

/// Read and check the file at `path`; its bytes.
pub fn load(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        failure(
            Kind::NotFound,
            format!("cannot read BMC credentials {}: {e}", path.display()),
        )
    })?;
    check(&text, &path.display().to_string())?;
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    #[test]
    fn a_good_file_passes() {
        let text = "# lab\n[default]\ndriver = ipmi\nusername = admin\npassword = s3cret\n\n\
                    [10.0.0.7]\ndriver = redfish\nport: 8443\nverify_tls = no\n\
                    off_timeout = 120\npoll_interval = 0.5\n";
        check(text, "bmc.conf").unwrap();
    }

    #[test]
    fn every_problem_is_named_with_its_line() {
        let text =
            "user = x\n[rack1]\ndriver = telnet\nport = 0\nscheme = ftp\ncolour = red\nnonsense\n\
             on_timeout = 601\n";
        let err = format!("{:#}", check(text, "b.conf").unwrap_err());
        for want in [
            "b.conf:1: a key before any [section]",
            "b.conf:2: [rack1]",
            "b.conf:3: driver",
            "b.conf:4: port",
            "b.conf:5: scheme",
            "b.conf:6: colour: unknown key",
            "b.conf:7: expected `key = value`",
            "b.conf:8: on_timeout",
        ] {
            assert!(err.contains(want), "{want} not in {err}");
        }
    }

    #[test]
    fn values_at_their_limits_pass_and_one_beyond_fails() {
        for (line, good) in [
            ("scheme = https", true),
            ("scheme = HTTP", false),
            ("verify_tls = Off", true),
            ("verify_tls = maybe", false),
            ("port = 65535", true),
            ("off_timeout = 600", true),
            ("off_timeout = 600.001", false),
            ("poll_interval = 60", true),
            ("poll_interval = 61", false),
            ("poll_interval = 0.001", true),
            ("poll_interval = 0", false),
            ("poll_interval = 0.0", false),
            // As the link tool reads them: a digit before the point, at most three after it.
            ("poll_interval = .5", false),
            ("poll_interval = 1.234", true),
            ("poll_interval = 1.2345", false),
            ("on_timeout = 0600", false),
        ] {
            let text = format!("[default]\n{line}\n");
            assert_eq!(check(&text, "b.conf").is_ok(), good, "{line}");
        }
    }

    #[test]
    fn load_gives_the_checked_bytes_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bmc.conf");
        std::fs::write(&path, "[default]\ndriver = amt\n").unwrap();
        assert_eq!(load(&path).unwrap(), b"[default]\ndriver = amt\n");
        std::fs::write(&path, "[default]\ndriver = telnet\n").unwrap();
        let err = load(&path).unwrap_err();
        assert_eq!(kind_of(&err), Kind::Usage);
        assert!(format!("{err:#}").contains("bmc.conf:2: driver"), "{err:#}");
        let err = load(&dir.path().join("absent.conf")).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        assert!(format!("{err:#}").contains("absent.conf"), "{err:#}");
    }
}
