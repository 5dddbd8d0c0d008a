/*!
`machines.txt`: one `<mac> <bmc-ip>` per line, the list of nodes a headnode installs.
*/

use crate::error::{failure, Kind};
use crate::model::mac::Mac;
use std::net::Ipv4Addr;
use std::path::Path;

/// One node on the VLAN: the MAC of its private NIC and its BMC's management address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// MAC address of the node's NIC on the VLAN.
    pub mac: Mac,
    /// Management (BMC) address, on the headnode's management subnet.
    pub bmc: Ipv4Addr,
}

/// Parse the text of a machines file. Blank lines and `#` comments are allowed; an error names
/// `origin` and the line number.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<Vec<Machine>> {
    let mut machines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let lineno = index + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| {
            failure(
                Kind::Usage,
                format!("{origin}, line {lineno}: {why}; each line must be `<mac> <bmc-ipv4>`"),
            )
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 2 {
            return Err(bad(format!("expected 2 fields, found {}", fields.len())));
        }
        let mac: Mac = fields[0].parse().map_err(|e| bad(format!("{e}")))?;
        let bmc: Ipv4Addr = fields[1]
            .parse()
            .map_err(|_| bad(format!("`{}` is not an IPv4 address", fields[1])))?;
        if let Some(prev) = machines.iter().position(|m: &Machine| m.mac == mac) {
            return Err(bad(format!(
                "MAC {mac} is listed twice (also entry {})",
                prev + 1
            )));
        }
        machines.push(Machine { mac, bmc });
    }
    Ok(machines)
}

/// Read and validate a machines file (`--machines FILE`). A file that cannot be read is a
/// `NotFound` error naming it; a bad line is a `Usage` error naming the file and line.
pub fn load(path: &Path) -> anyhow::Result<Vec<Machine>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        failure(
            Kind::NotFound,
            format!("cannot read machines file {}: {e}", path.display()),
        )
    })?;
    parse(&text, &path.display().to_string())
}

/// Render machines in the canonical file format.
pub fn render(machines: &[Machine]) -> String {
    machines
        .iter()
        .map(|m| format!("{} {}\n", m.mac, m.bmc))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    #[test]
    fn parses_comments_blanks_and_canonicalises() {
        let text = "# rack 3\n\nAA-BB-CC-DD-EE-01 10.0.0.1\naa:bb:cc:dd:ee:02\t10.0.0.2  # spare\n";
        let m = parse(text, "m.txt").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].bmc, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            render(&m),
            "aa:bb:cc:dd:ee:01 10.0.0.1\naa:bb:cc:dd:ee:02 10.0.0.2\n"
        );
    }

    #[test]
    fn load_reads_validates_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "# rack\nAA-BB-CC-DD-EE-01 10.0.0.1\n").unwrap();
        assert_eq!(
            render(&load(&path).unwrap()),
            "aa:bb:cc:dd:ee:01 10.0.0.1\n"
        );
        std::fs::write(&path, "aa:bb:cc:dd:ee:01 10.0.0.1\nbogus\n").unwrap();
        let msg = format!("{:#}", load(&path).unwrap_err());
        assert!(msg.contains("in.txt") && msg.contains("line 2"), "{msg}");
        let err = load(&dir.path().join("absent.txt")).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        assert!(format!("{err:#}").contains("absent.txt"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                "aa:bb:cc:dd:ee:01 10.0.0.1\nnot-a-mac 10.0.0.2\n",
                "line 2",
                "not-a-mac",
            ),
            ("\n\naa:bb:cc:dd:ee:01 10.0.0.300\n", "line 3", "10.0.0.300"),
            ("aa:bb:cc:dd:ee:01\n", "line 1", "2 fields"),
            (
                "aa:bb:cc:dd:ee:01 10.0.0.1\naa:bb:cc:dd:ee:01 10.0.0.2\n",
                "line 2",
                "twice",
            ),
        ];
        for (text, line, what) in cases {
            let msg = format!("{:#}", parse(text, "rack.txt").unwrap_err());
            assert!(
                msg.contains("rack.txt") && msg.contains(line) && msg.contains(what),
                "{msg}"
            );
        }
    }
}
