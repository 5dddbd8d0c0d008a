/*!
MAC addresses: parsing the forms operators write, and the canonical forms we emit.
*/

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMac(pub String);

impl fmt::Display for BadMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a MAC address (expected six hex pairs such as aa:bb:cc:dd:ee:ff)",
            self.0
        )
    }
}

impl std::error::Error for BadMac {}

impl FromStr for Mac {
    type Err = BadMac;

    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, in any case.
    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(s.to_string());
        let sep = if s.contains(':') { ':' } else { '-' };
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_cases() {
        let a: Mac = "AA:bb:0C:dd:ee:01".parse().unwrap();
        let b: Mac = "aa-BB-0c-DD-ee-01".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "aa:bb:0c:dd:ee:01");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:fg",
            "aabb.ccdd.eeff",
            "a:bb:cc:dd:ee:fff",
            "aa:bb-cc:dd:ee:ff",
        ] {
            assert!(s.parse::<Mac>().is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn every_pair_is_two_hex_digits_not_one_nor_a_sign() {
        // u8::from_str_radix alone would take `a` and `+a`: the length and digit checks are
        // both needed.
        for s in ["a:bb:cc:dd:ee:ff", "+a:bb:cc:dd:ee:ff", "aa-bb-cc-dd-ee-+f"] {
            assert_eq!(s.parse::<Mac>(), Err(BadMac(s.to_string())), "{s:?}");
        }
    }
}
