//! Reading the seed's files as mkheadnode writes them, without a YAML parser, and declining any
//! other form.
//!
//! mkheadnode renders them one key a line, every value a JSON string as serde_json writes it
//! or a plain path. A line in any other form is something this does not understand, and the
//! seed is left to cloud-init. A JSON string is taken only where YAML's double-quoted scalar
//! reads the same text (see [`json_string`]), so what is written here is what cloud-init's
//! `write_files` would have written.

use std::fmt;

/// The set-up that the seed writes and this runs.
pub const SETUP: &str = "/usr/local/sbin/mkheadnode-setup";
/// The file that the seed writes last (mkheadnode's `SETUP_GO_FILE`).
pub const GO_FILE: &str = "/run/mkheadnode/seed-files-written";

/// Why a seed is left to cloud-init.
#[derive(Debug, PartialEq, Eq)]
pub struct Decline(pub String);

impl fmt::Display for Decline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A result that may decline the seed.
pub type Read<T> = Result<T, Decline>;

fn decline<T>(why: impl Into<String>) -> Read<T> {
    Err(Decline(why.into()))
}

/// One file of user-data's `write_files`.
#[derive(Debug, PartialEq, Eq)]
pub struct SeedFile {
    /// Its absolute path.
    pub path: String,
    /// Its permission bits.
    pub mode: u32,
    /// Its content.
    pub content: String,
}

/// eth0 as network-config gives it.
#[derive(Debug, PartialEq, Eq)]
pub struct Eth0 {
    /// Its MAC, lowercase.
    pub mac: String,
    /// Its static addresses.
    pub addresses: Vec<Ipv4Net>,
}

/// An IPv4 address with its prefix length, as `ip` takes it (`a.b.c.d/prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The address, most significant octet first.
    pub octets: [u8; 4],
    /// Its prefix length, 0 to 32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// `a.b.c.d/prefix` in decimal with no leading zeros ([`is_number`]); None otherwise.
    pub fn parse(text: &str) -> Option<Ipv4Net> {
        let (host, prefix) = text.split_once('/')?;
        let parts: Vec<&str> = host.split('.').collect();
        if parts.len() != 4 || !parts.iter().all(|o| is_number(o, 255, 3)) {
            return None;
        }
        if !is_number(prefix, 32, 2) {
            return None;
        }
        let mut octets = [0u8; 4];
        for (octet, part) in octets.iter_mut().zip(&parts) {
            *octet = part.parse().ok()?;
        }
        Some(Ipv4Net {
            octets,
            prefix: prefix.parse().ok()?,
        })
    }

    /// The broadcast address of its network, as ifupdown sets it (`broadcast +`): the host
    /// part all ones. None for /31 and /32, which have none.
    pub fn broadcast(&self) -> Option<[u8; 4]> {
        if self.prefix >= 31 {
            return None;
        }
        let host_bits = u32::MAX >> self.prefix;
        Some((u32::from_be_bytes(self.octets) | host_bits).to_be_bytes())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.octets;
        write!(f, "{a}.{b}.{c}.{d}/{}", self.prefix)
    }
}

/// Permissions as cloud-init takes them from mkheadnode (`0644` or `644`): their bits.
pub fn mode(value: &str) -> Option<u32> {
    let digits = match value.len() {
        4 if value.starts_with('0') => &value[1..],
        _ => value,
    };
    if digits.len() != 3 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

/// A MAC in lowercase hex, six colon-separated pairs.
pub fn is_mac(value: &str) -> bool {
    let pairs: Vec<&str> = value.split(':').collect();
    pairs.len() == 6
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// ASCII digits, at most `digits` of them, no leading zero (which some tools read as octal),
/// and at most `most`.
pub fn is_number(value: &str, most: u32, digits: usize) -> bool {
    !value.is_empty()
        && value.len() <= digits
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'))
        && value.parse::<u32>().is_ok_and(|n| n <= most)
}

/// A path as a plain YAML scalar: `/` and path characters only.
pub fn is_plain_path(value: &str) -> bool {
    value.starts_with('/')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b))
}

/// A character that YAML keeps as it is inside a one-line double-quoted scalar, and that
/// serde_json may write unescaped: printable for YAML's reader, no line break (YAML folds
/// those), no tab, no C1 control, no quote or backslash.
fn is_plain_char(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '"' | '\\' | '\u{2028}' | '\u{2029}')
}

/// The text of a JSON string literal as mkheadnode writes one (serde_json), or None for any
/// other value. What it reads is what YAML reads in the same double-quoted scalar: only the
/// escapes that both read alike are taken (not `\/`, nor `\u` of a surrogate, which YAML leaves
/// unpaired), and raw only what [`is_plain_char`] allows.
pub fn json_string(value: &str) -> Option<String> {
    let body = value.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if !is_plain_char(c) {
                return None;
            }
            out.push(c);
            continue;
        }
        let escaped = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                // from_u32 refuses the surrogates.
                char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
            }
            _ => return None,
        };
        out.push(escaped);
    }
    Some(out)
}

/// A JSON-quoted string, or (for paths) a plain scalar of path characters only.
fn scalar(value: &str, what: &str) -> Read<String> {
    if value.starts_with('"') {
        if let Some(text) = json_string(value) {
            return Ok(text);
        }
    } else if is_plain_path(value) {
        return Ok(value.to_string());
    }
    decline(format!("{what} {value:?} is not a value it reads"))
}

fn key_value<'a>(line: &'a str, what: &str) -> Read<(&'a str, &'a str)> {
    match line.split_once(": ") {
        Some((key, value)) if !key.is_empty() && !value.is_empty() && key.trim() == key => {
            Ok((key, value))
        }
        _ => decline(format!(
            "{what} has a line it does not read: {:?}",
            clip(line.trim())
        )),
    }
}

/// At most 60 characters of a line, for a message.
fn clip(line: &str) -> &str {
    line.char_indices()
        .nth(60)
        .map_or(line, |(i, _)| &line[..i])
}

/// The lines of a YAML file that say something (not blank, not comments); a file of more than
/// one document is not read. Only spaces count as blank: a line of other white space is kept,
/// and then not understood.
fn meaningful(text: &str) -> Read<Vec<&str>> {
    let lines: Vec<&str> = text
        .split('\n')
        .filter(|line| {
            let body = line.trim_start_matches(' ');
            !body.is_empty() && !body.starts_with('#')
        })
        .collect();
    if lines
        .iter()
        .any(|line| line.starts_with("---") || line.starts_with("..."))
    {
        return decline("a seed file holds more than one YAML document");
    }
    Ok(lines)
}

/// meta-data's instance-id.
pub fn instance_id(text: &str) -> Read<String> {
    let lines = meaningful(text)?;
    let ids: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("instance-id: "))
        .collect();
    match ids[..] {
        [id] => scalar(id, "meta-data's instance-id"),
        _ => decline("meta-data has no instance-id"),
    }
}

/// The fields of one write_files entry as read so far.
#[derive(Default)]
struct Entry {
    path: Option<String>,
    permissions: Option<String>,
    content: Option<String>,
}

impl Entry {
    fn set(&mut self, key: &str, value: String) -> Read<()> {
        let slot = match key {
            "path" => &mut self.path,
            "permissions" => &mut self.permissions,
            "content" => &mut self.content,
            _ => return decline("a write_files entry has more than path, permissions and content"),
        };
        if slot.replace(value).is_some() {
            return decline("a write_files entry has more than path, permissions and content");
        }
        Ok(())
    }

    fn file(self) -> Read<SeedFile> {
        let Some(path) = self.path else {
            return decline("a write_files entry has no path");
        };
        if !path.starts_with('/') || format!("{path}/").contains("/../") || path.contains('\0') {
            return decline(format!(
                "write_files path {path:?} is not a plain absolute path"
            ));
        }
        let permissions = self.permissions.as_deref().unwrap_or("0644");
        let Some(mode) = mode(permissions) else {
            return decline(format!(
                "write_files entry {path} has permissions or content it cannot write"
            ));
        };
        Ok(SeedFile {
            path,
            mode,
            content: self.content.unwrap_or_default(),
        })
    }
}

/// The files of user-data's write_files, all of them plain; the set-up among them and the go
/// file last.
pub fn files_of(text: &str) -> Read<Vec<SeedFile>> {
    if !text.starts_with("#cloud-config\n") {
        return decline("user-data is not one #cloud-config document");
    }
    let lines = meaningful(text)?;
    let heads: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("write_files:"))
        .collect();
    let head = match heads[..] {
        [i] if lines[i] == "write_files:" => i,
        _ => return decline("user-data does not write its files as one block list"),
    };
    let mut entries: Vec<Entry> = Vec::new();
    for line in &lines[head + 1..] {
        if !line.starts_with(' ') {
            break; // the next top-level key
        }
        let rest = if let Some(rest) = line.strip_prefix("  - ") {
            entries.push(Entry::default());
            rest
        } else {
            match (line.strip_prefix("    "), entries.last()) {
                (Some(rest), Some(_)) if !rest.starts_with(' ') => rest,
                _ => {
                    return decline(format!(
                        "write_files has a line it does not read: {:?}",
                        clip(line.trim())
                    ))
                }
            }
        };
        let (key, value) = key_value(rest, "write_files")?;
        let value = scalar(value, &format!("write_files {key}"))?;
        match entries.last_mut() {
            Some(entry) => entry.set(key, value)?,
            None => return decline("write_files has a key outside an entry"),
        }
    }
    let files = entries
        .into_iter()
        .map(Entry::file)
        .collect::<Read<Vec<_>>>()?;
    if !files.iter().any(|f| f.path == SETUP) || files.last().is_none_or(|f| f.path != GO_FILE) {
        return decline("user-data does not carry mkheadnode's set-up");
    }
    Ok(files)
}

/// An IPv4 address with its prefix.
fn address(value: &str) -> Read<Ipv4Net> {
    Ipv4Net::parse(value).ok_or_else(|| {
        Decline(format!(
            "eth0's address {value:?} is not an IPv4 address/prefix"
        ))
    })
}

/// eth0's MAC and static addresses (network-config version 1, its name and MAC given).
pub fn eth0_of(text: &str) -> Read<Eth0> {
    let lines = meaningful(text)?;
    let count = |wanted: &str| lines.iter().filter(|line| **line == wanted).count();
    if count("version: 1") != 1 || count("config:") != 1 {
        return decline("network-config is not version 1");
    }
    let Some(i) = lines.iter().position(|line| *line == "    name: eth0") else {
        return decline("network-config names no eth0");
    };
    if i == 0 || lines[i - 1] != "  - type: physical" {
        return decline("network-config's eth0 is not a physical NIC");
    }
    let item: Vec<&str> = lines[i + 1..]
        .iter()
        .take_while(|line| line.starts_with("    ")) // up to the next NIC or top-level key
        .copied()
        .collect();
    let no_mac = || decline("eth0 has no MAC or no subnets in network-config");
    let mac = match item.as_slice() {
        [mac, subnets, _, _, ..] if *subnets == "    subnets:" => {
            match mac.strip_prefix("    mac_address: ") {
                Some(mac) => scalar(mac, "eth0's MAC")?.to_ascii_lowercase(),
                None => return no_mac(),
            }
        }
        _ => return no_mac(),
    };
    if !is_mac(&mac) {
        return no_mac();
    }
    let subnets = &item[2..];
    if !subnets.len().is_multiple_of(2) {
        return decline("eth0 has a subnet that is not a plain static address");
    }
    let mut addresses = Vec::new();
    for pair in subnets.chunks(2) {
        match (pair[0], pair[1].strip_prefix("        address: ")) {
            ("      - type: static", Some(addr)) => {
                addresses.push(address(&scalar(addr, "eth0's address")?)?);
            }
            _ => return decline("eth0 has a subnet that is not a plain static address"),
        }
    }
    Ok(Eth0 { mac, addresses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_three_octal_digits_with_an_optional_zero() {
        assert_eq!(mode("0644"), Some(0o644));
        assert_eq!(mode("755"), Some(0o755));
        for bad in ["0648", "1644", "64", "06444", "+644", " 644", "0x1f", ""] {
            assert_eq!(mode(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_have_no_leading_zero_and_a_bound() {
        assert!(is_number("0", 255, 3) && is_number("255", 255, 3));
        for bad in ["256", "010", "", "1a", "+1", "1000", "٣"] {
            assert!(!is_number(bad, 255, 3), "{bad}");
        }
    }

    #[test]
    fn macs_are_lowercase_hex_pairs() {
        assert!(is_mac("52:54:00:ab:cd:ef"));
        for bad in [
            "52:54:00:AB:cd:ef",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:e",
            "52-54-00-ab-cd-ef",
        ] {
            assert!(!is_mac(bad), "{bad}");
        }
    }

    #[test]
    fn json_strings_take_only_what_yaml_reads_alike() {
        assert_eq!(
            json_string(r#""a\"b\\c\n\u00e9\u0001""#).as_deref(),
            Some("a\"b\\c\né\u{1}")
        );
        assert_eq!(json_string("\"漢字 😀\"").as_deref(), Some("漢字 😀"));
        for bad in [
            r#""\/""#,           // JSON's escaped slash: YAML reads it otherwise
            r#""\ud83d\ude00""#, // a surrogate pair: YAML leaves it unpaired
            "\"\t\"",            // a raw tab
            "\"\u{2028}\"",      // a raw line separator: YAML folds it
            "\"\u{7f}\"",        // DEL: not printable for YAML
            "\"\u{85}\"",        // NEL: a line break for YAML
            r#""a"b""#,          // a raw quote
            r#""\u00g1""#,       // not hex
            r#""\u00e""#,        // too short
            r#""\x41""#,         // not a JSON escape
            r#""abc\""#,         // its closing quote escaped
            "abc",               // not quoted
            "\"",                // one quote
        ] {
            assert_eq!(json_string(bad), None, "{bad}");
        }
    }

    #[test]
    fn plain_paths_have_path_characters_only() {
        assert!(is_plain_path("/etc/dhcp/dhcpd.conf"));
        for bad in ["etc/x", "/etc/x y", "/etc/x: y", "/etc/#x", "/etc/é", ""] {
            assert!(!is_plain_path(bad), "{bad}");
        }
    }

    const USER: &str = "#cloud-config\n\
        hostname: \"h\"\n\
        write_files:\n\
        \x20 - path: /usr/local/sbin/mkheadnode-setup\n\
        \x20   permissions: \"0755\"\n\
        \x20   content: \"#!/bin/sh\\necho hi\\n\"\n\
        \x20 - path: \"/run/mkheadnode/seed-files-written\"\n\
        runcmd: []\n";

    #[test]
    fn user_data_gives_its_files_in_order() {
        let files = files_of(USER).unwrap();
        assert_eq!(
            files,
            [
                SeedFile {
                    path: SETUP.into(),
                    mode: 0o755,
                    content: "#!/bin/sh\necho hi\n".into()
                },
                SeedFile {
                    path: GO_FILE.into(),
                    mode: 0o644,
                    content: String::new()
                },
            ]
        );
    }

    #[test]
    fn user_data_in_another_form_is_declined() {
        let cases = [
            (
                "an owner",
                "    permissions: \"0755\"\n",
                "    owner: \"root\"\n",
            ),
            (
                "a key twice",
                "    permissions: \"0755\"\n",
                "    content: \"\"\n",
            ),
            ("a path with ..", "/usr/local/sbin/", "/usr/../sbin/"),
            ("a relative path", "path: /usr", "path: usr"),
            ("a deeper line", "    permissions:", "     permissions:"),
            ("a tab in the indent", "    content:", "  \tcontent:"),
            ("a second document", "runcmd", "---\nruncmd"),
            ("no set-up", "mkheadnode-setup", "other"),
            ("the go file not last", "runcmd", "  - path: /etc/x\nruncmd"),
            ("a nul in the path", "path: \"/run", "path: \"/r\\u0000un"),
            ("flow style", "write_files:\n", "write_files: []\nx:\n"),
            ("no #cloud-config", "#cloud-config", "#!/bin/sh"),
        ];
        each_declined(USER, &cases, files_of);
    }

    /// Each case (what, from, to) changes `original` once, and `read` declines the result.
    fn each_declined<T>(original: &str, cases: &[(&str, &str, &str)], read: fn(&str) -> Read<T>) {
        for (what, from, to) in cases {
            let changed = original.replacen(from, to, 1);
            assert_ne!(changed, original, "{what}: the case changes nothing");
            assert!(read(&changed).is_err(), "{what}: taken over:\n{changed}");
        }
    }

    const NET: &str = "version: 1\nconfig:\n\
        \x20 - type: physical\n\
        \x20   name: eth0\n\
        \x20   mac_address: \"52:54:00:AA:00:01\"\n\
        \x20   subnets:\n\
        \x20     - type: static\n\
        \x20       address: \"192.168.10.254/24\"\n\
        \x20     - type: static\n\
        \x20       address: \"10.0.0.254/24\"\n\
        \x20 - type: physical\n\
        \x20   name: eth1\n";

    #[test]
    fn network_config_gives_eth0s_mac_and_addresses() {
        assert_eq!(
            eth0_of(NET).unwrap(),
            Eth0 {
                mac: "52:54:00:aa:00:01".into(),
                addresses: vec![
                    Ipv4Net::parse("192.168.10.254/24").unwrap(),
                    Ipv4Net::parse("10.0.0.254/24").unwrap()
                ],
            }
        );
    }

    #[test]
    fn network_config_in_another_form_is_declined() {
        let cases = [
            ("version 2", "version: 1", "version: 2"),
            ("dhcp", "type: static", "type: dhcp"),
            ("an octet past 255", "192.168.10.254", "192.168.10.256"),
            ("a leading zero", "192.168.10.254", "192.168.010.254"),
            ("a prefix past 32", "/24\"\n    ", "/33\"\n    "),
            ("no prefix", "10.0.0.254/24", "10.0.0.254"),
            ("another key", "    subnets:", "    mtu: 9000\n    subnets:"),
            ("a bad MAC", "52:54:00:AA:00:01", "52:54:00:AA:00"),
            (
                "not physical",
                "  - type: physical\n    name: eth0",
                "  - type: bond\n    name: eth0",
            ),
            ("no eth0", "name: eth0", "name: eth9"),
            (
                "an odd subnet",
                "      - type: static\n        address: \"10",
                "      - type: static\n      - x: \"10",
            ),
        ];
        each_declined(NET, &cases, eth0_of);
    }

    #[test]
    fn addresses_are_parsed_with_their_broadcast() {
        let net = Ipv4Net::parse("192.168.10.254/24").unwrap();
        assert_eq!((net.octets, net.prefix), ([192, 168, 10, 254], 24));
        assert_eq!(net.broadcast(), Some([192, 168, 10, 255]));
        assert_eq!(net.to_string(), "192.168.10.254/24");
        let net = Ipv4Net::parse("10.1.2.3/9").unwrap();
        assert_eq!(net.broadcast(), Some([10, 127, 255, 255]));
        assert_eq!(
            Ipv4Net::parse("10.1.2.3/0").unwrap().broadcast(),
            Some([255; 4])
        );
        assert_eq!(Ipv4Net::parse("10.1.2.3/31").unwrap().broadcast(), None);
        for bad in [
            "10.1.2.3",
            "10.1.2/24",
            "10.1.2.256/24",
            "10.1.2.3/33",
            "a.b.c.d/1",
        ] {
            assert_eq!(Ipv4Net::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn meta_data_gives_one_instance_id() {
        assert_eq!(instance_id("instance-id: \"iid-42\"\n").unwrap(), "iid-42");
        assert!(instance_id("local-hostname: \"h\"\n").is_err());
        assert!(instance_id("instance-id: \"a\"\ninstance-id: \"b\"\n").is_err());
        assert!(instance_id("instance-id: iid 42\n").is_err());
    }
}
