/*!
IPv4 networks: from an address and a prefix length to the network, netmask and broadcast
address that configuration files (dhcpd's among them) want.
*/

use std::net::Ipv4Addr;

/// An IPv4 network in the forms config files want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The network address.
    pub network: Ipv4Addr,
    /// The netmask, dotted.
    pub netmask: Ipv4Addr,
    /// The broadcast address.
    pub broadcast: Ipv4Addr,
}

impl Ipv4Net {
    /// The network that `addr`/`prefix` lies in (prefix 1..=32).
    pub fn of(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let a = u32::from(addr);
        Ipv4Net {
            network: (a & mask).into(),
            netmask: mask.into(),
            broadcast: (a | !mask).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_from_address_and_prefix() {
        let n = Ipv4Net::of("192.168.10.254".parse().unwrap(), 24);
        assert_eq!(n.network.to_string(), "192.168.10.0");
        assert_eq!(n.netmask.to_string(), "255.255.255.0");
        assert_eq!(n.broadcast.to_string(), "192.168.10.255");
        let n = Ipv4Net::of("10.1.2.3".parse().unwrap(), 20);
        assert_eq!(
            (n.network.to_string(), n.netmask.to_string()),
            ("10.1.0.0".into(), "255.255.240.0".into())
        );
    }
}
