/*!
VLAN numbers and the VLAN lists an operator types (`42`, `100-110`, `7,9,12`).
*/

use crate::error::{failure, Kind};
use std::fmt;
use std::str::FromStr;

/// An 802.1Q VLAN ID that can carry traffic: 1 through 4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vlan(u16);

impl Vlan {
    /// The lowest usable VLAN ID.
    pub const MIN: u16 = 1;
    /// The highest usable VLAN ID (4095 is reserved).
    pub const MAX: u16 = 4094;

    /// The VLAN ID, or an error naming the bad value.
    pub fn new(id: u16) -> anyhow::Result<Vlan> {
        if (Self::MIN..=Self::MAX).contains(&id) {
            Ok(Vlan(id))
        } else {
            Err(failure(
                Kind::Usage,
                format!("VLAN `{id}` is out of range: use a number from 1 to 4094"),
            ))
        }
    }

    /// The numeric ID.
    pub fn id(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Vlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Vlan {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Vlan> {
        let bad = |why: &str| failure(Kind::Usage, format!("invalid VLAN `{s}`: {why}"));
        if s.is_empty() {
            return Err(bad("it is empty; use a number from 1 to 4094"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("use a decimal number from 1 to 4094"));
        }
        if s.len() > 1 && s.starts_with('0') {
            return Err(bad("write it without leading zeros"));
        }
        let id: u16 = s.parse().map_err(|_| bad("use a number from 1 to 4094"))?;
        Vlan::new(id)
    }
}

/// Parse a VLAN list: numbers and inclusive ranges separated by commas, e.g. `7,9,100-110`.
/// The result is sorted and free of duplicates.
pub fn parse_list(spec: &str) -> anyhow::Result<Vec<Vlan>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(failure(
                Kind::Usage,
                format!("invalid VLAN list `{spec}`: it has an empty item"),
            ));
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b' ')
        {
            return Err(failure(
                Kind::Usage,
                format!("invalid VLAN `{part}`: use numbers from 1 to 4094, ranges like 100-110, commas between"),
            ));
        }
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (Vlan, Vlan) = (lo.trim().parse()?, hi.trim().parse()?);
                if lo > hi {
                    return Err(failure(
                        Kind::Usage,
                        format!("invalid VLAN range `{part}`: its start is above its end"),
                    ));
                }
                out.extend((lo.0..=hi.0).map(Vlan));
            }
            None => out.push(part.parse()?),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        format!("{:#}", s.parse::<Vlan>().unwrap_err())
    }

    #[test]
    fn accepts_the_usable_range() {
        assert_eq!("1".parse::<Vlan>().unwrap().id(), 1);
        assert_eq!("42".parse::<Vlan>().unwrap().id(), 42);
        assert_eq!("4094".parse::<Vlan>().unwrap().id(), 4094);
    }

    #[test]
    fn rejects_bad_input_and_names_it() {
        for bad in [
            "0",
            "4095",
            "65536",
            "abc",
            "1;rm -rf /",
            "01x",
            "-1",
            "",
            " 4",
            "007",
        ] {
            let msg = err(bad);
            assert!(msg.contains(&format!("`{bad}`")), "{bad:?} -> {msg}");
        }
        assert!(err("4095").contains("1 to 4094"));
    }

    #[test]
    fn a_lone_zero_is_out_of_range_not_a_leading_zero() {
        let msg = err("0");
        assert!(msg.contains("out of range"), "{msg}");
        assert!(err("00").contains("leading zeros"));
    }

    #[test]
    fn lists_and_ranges() {
        let ids = |s: &str| {
            parse_list(s)
                .unwrap()
                .iter()
                .map(|v| v.id())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("42"), vec![42]);
        assert_eq!(ids("7,9,12"), vec![7, 9, 12]);
        assert_eq!(ids("100-103"), vec![100, 101, 102, 103]);
        assert_eq!(ids("12,7,9-10,7"), vec![7, 9, 10, 12]);
    }

    #[test]
    fn a_range_may_start_and_end_on_the_same_vlan() {
        let ids: Vec<u16> = parse_list("5-5").unwrap().iter().map(|v| v.id()).collect();
        assert_eq!(ids, vec![5]);
    }

    #[test]
    fn a_range_may_have_spaces_around_its_dash() {
        let ids: Vec<u16> = parse_list("100 - 102, 7")
            .unwrap()
            .iter()
            .map(|v| v.id())
            .collect();
        assert_eq!(ids, vec![7, 100, 101, 102]);
    }

    #[test]
    fn bad_lists_name_the_part() {
        for (spec, part) in [
            ("5-3", "5-3"),
            ("1,,2", "1,,2"),
            ("1-4095", "4095"),
            ("x-3", "x-3"),
            ("1;rm -rf /", "1;rm -rf /"),
        ] {
            let msg = format!("{:#}", parse_list(spec).unwrap_err());
            assert!(msg.contains(&format!("`{part}`")), "{spec:?} -> {msg}");
        }
    }
}
