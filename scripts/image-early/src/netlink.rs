//! eth0's addresses and link, set through the kernel's rtnetlink as `ip addr add` and `ip link
//! set up` set them, without a process: `ifup` and the `ip` commands it runs through a shell
//! took 2-5 s under emulation while udev's coldplug shared the two vCPUs.
//!
//! The messages are built by [`address_message`] and [`link_up_message`] (pure, tested here);
//! [`Rtnetlink`] sends each and reads the kernel's answer.

use crate::seed::Ipv4Net;
use std::io;
use std::mem::size_of;

const NLMSG_HEADER: usize = 16;
const IFADDRMSG: usize = 8;
const IFINFOMSG: usize = 16;

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A netlink message: its header (length filled in), then `body`.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(NLMSG_HEADER + body.len()).unwrap_or(u32::MAX);
    let mut msg = Vec::with_capacity(NLMSG_HEADER + body.len());
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    msg.extend_from_slice(body);
    msg
}

/// A route attribute of four bytes (an IPv4 address).
fn attribute(kind: u16, value: [u8; 4]) -> [u8; 8] {
    let mut attr = [0u8; 8];
    attr[..2].copy_from_slice(&8u16.to_ne_bytes());
    attr[2..4].copy_from_slice(&kind.to_ne_bytes());
    attr[4..].copy_from_slice(&value);
    attr
}

fn flags(bits: libc::c_int) -> u16 {
    u16::try_from(bits).unwrap_or(0)
}

/// RTM_NEWADDR: `net` on the interface with index `index`, global scope, with its broadcast
/// address; refused by the kernel if there already (NLM_F_EXCL).
pub fn address_message(index: u32, net: Ipv4Net, seq: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(IFADDRMSG + 24);
    body.push(u8::try_from(libc::AF_INET).unwrap_or(2));
    body.push(net.prefix);
    body.push(0); // flags
    body.push(libc::RT_SCOPE_UNIVERSE);
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&attribute(libc::IFA_LOCAL, net.octets));
    body.extend_from_slice(&attribute(libc::IFA_ADDRESS, net.octets));
    if let Some(broadcast) = net.broadcast() {
        body.extend_from_slice(&attribute(libc::IFA_BROADCAST, broadcast));
    }
    let f = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
    message(libc::RTM_NEWADDR, flags(f), seq, &body)
}

/// RTM_NEWLINK: the interface with index `index` up (IFF_UP set, nothing else changed).
pub fn link_up_message(index: u32, seq: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(IFINFOMSG);
    body.push(u8::try_from(libc::AF_UNSPEC).unwrap_or(0));
    body.push(0); // padding
    body.extend_from_slice(&0u16.to_ne_bytes()); // device type: any
    body.extend_from_slice(&index.to_ne_bytes());
    let up = u32::try_from(libc::IFF_UP).unwrap_or(1);
    body.extend_from_slice(&up.to_ne_bytes()); // flags
    body.extend_from_slice(&up.to_ne_bytes()); // which flags change
    message(
        libc::RTM_NEWLINK,
        flags(libc::NLM_F_REQUEST | libc::NLM_F_ACK),
        seq,
        &body,
    )
}

/// The kernel's answer to request `seq`, from the messages in `reply`: Ok, or the error it
/// gives. Anything that is not an acknowledgement of `seq` is an error too.
pub fn acknowledgement(reply: &[u8], seq: u32) -> io::Result<()> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(reply.get(at..at + 4)?.try_into().ok()?))
    };
    let short = || io::Error::new(io::ErrorKind::InvalidData, "a short netlink answer");
    let mut at = 0;
    while at + NLMSG_HEADER <= reply.len() {
        let len = word(at).ok_or_else(short)? as usize;
        let kind = u16::from_ne_bytes([reply[at + 4], reply[at + 5]]);
        if len < NLMSG_HEADER || at + len > reply.len() {
            return Err(short());
        }
        if kind == u16::try_from(libc::NLMSG_ERROR).unwrap_or(2) && word(at + 8) == Some(seq) {
            let code = word(at + NLMSG_HEADER).ok_or_else(short)? as i32;
            return match code {
                0 => Ok(()),
                _ => Err(io::Error::from_raw_os_error(-code)),
            };
        }
        at += align4(len);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("no netlink acknowledgement of request {seq}"),
    ))
}

/// A route netlink socket.
pub struct Rtnetlink {
    fd: libc::c_int,
    seq: u32,
}

impl Rtnetlink {
    /// Open one.
    pub fn open() -> io::Result<Rtnetlink> {
        // SAFETY: a plain system call with constant arguments; the descriptor it returns is
        // owned by the value made here, which closes it.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rtnetlink { fd, seq: 0 })
    }

    /// Send the request that `build` makes for the next sequence number and wait for the
    /// kernel's answer to it.
    pub fn request(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        self.seq += 1;
        let msg = build(self.seq);
        // SAFETY: an all-zero sockaddr_nl is valid; it is then the kernel's address (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = u16::try_from(libc::AF_NETLINK).unwrap_or(16);
        let addr_len = u32::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(12);
        // SAFETY: msg and kernel outlive the call, and the lengths given are theirs.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                std::ptr::from_ref(&kernel).cast(),
                addr_len,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = vec![0u8; 8192];
        // SAFETY: reply outlives the call and is as long as the length given.
        let got = unsafe { libc::recv(self.fd, reply.as_mut_ptr().cast(), reply.len(), 0) };
        let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
        acknowledgement(&reply[..got], self.seq)
    }
}

impl Drop for Rtnetlink {
    fn drop(&mut self) {
        // SAFETY: the descriptor is this value's own, and closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Add `addresses` to the interface `name` and set it up, as `ifup` does for static stanzas:
/// each address, then the link. An address that is there already is left as it is.
pub fn bring_up(name: &str, addresses: &[Ipv4Net]) -> io::Result<()> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a nul byte in a name"))?;
    // SAFETY: a nul-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut socket = Rtnetlink::open()?;
    for &net in addresses {
        match socket.request(|seq| address_message(index, net, seq)) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            other => other?,
        }
    }
    socket.request(|seq| link_up_message(index, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(msg: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([msg[at], msg[at + 1]])
    }

    fn u32_at(msg: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(msg[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn an_address_message_carries_the_address_its_prefix_and_broadcast() {
        let net = Ipv4Net::parse("192.168.10.254/24").unwrap();
        let msg = address_message(7, net, 3);
        assert_eq!(u32_at(&msg, 0) as usize, msg.len());
        assert_eq!(msg.len(), NLMSG_HEADER + IFADDRMSG + 3 * 8);
        assert_eq!(u16_at(&msg, 4), libc::RTM_NEWADDR);
        let f = u16_at(&msg, 6);
        for bit in [libc::NLM_F_REQUEST, libc::NLM_F_ACK, libc::NLM_F_CREATE] {
            assert_ne!(f & flags(bit), 0, "flag {bit:#x}");
        }
        assert_eq!(u32_at(&msg, 8), 3);
        let body = &msg[NLMSG_HEADER..];
        assert_eq!(body[..4], [2, 24, 0, libc::RT_SCOPE_UNIVERSE]);
        assert_eq!(u32_at(body, 4), 7);
        let attrs: Vec<(u16, u16, &[u8])> = body[IFADDRMSG..]
            .chunks(8)
            .map(|a| (u16_at(a, 0), u16_at(a, 2), &a[4..]))
            .collect();
        assert_eq!(
            attrs,
            [
                (8, libc::IFA_LOCAL, &[192, 168, 10, 254][..]),
                (8, libc::IFA_ADDRESS, &[192, 168, 10, 254][..]),
                (8, libc::IFA_BROADCAST, &[192, 168, 10, 255][..]),
            ]
        );
    }

    #[test]
    fn a_link_message_sets_only_the_up_flag() {
        let msg = link_up_message(7, 4);
        assert_eq!(u32_at(&msg, 0) as usize, msg.len());
        assert_eq!(msg.len(), NLMSG_HEADER + IFINFOMSG);
        assert_eq!(u16_at(&msg, 4), libc::RTM_NEWLINK);
        assert_eq!(u32_at(&msg, 8), 4);
        let body = &msg[NLMSG_HEADER..];
        assert_eq!(u32_at(body, 4), 7);
        assert_eq!((u32_at(body, 8), u32_at(body, 12)), (1, 1));
    }

    /// An acknowledgement as the kernel writes one: an NLMSG_ERROR carrying `code` for `seq`.
    fn ack(seq: u32, code: i32) -> Vec<u8> {
        let mut body = code.to_ne_bytes().to_vec();
        body.extend_from_slice(&link_up_message(7, seq)[..NLMSG_HEADER]);
        message(u16::try_from(libc::NLMSG_ERROR).unwrap(), 0, seq, &body)
    }

    #[test]
    fn only_an_acknowledgement_of_the_request_is_success() {
        assert!(acknowledgement(&ack(5, 0), 5).is_ok());
        let refused = acknowledgement(&ack(5, -libc::EEXIST), 5).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EEXIST));
        assert!(acknowledgement(&ack(4, 0), 5).is_err(), "another request's");
        assert!(acknowledgement(&ack(5, 0)[..20], 5).is_err(), "cut short");
        assert!(acknowledgement(&[], 5).is_err(), "nothing");
        let mut two = link_up_message(7, 5); // not an acknowledgement, then one
        two.extend(ack(5, 0));
        assert!(acknowledgement(&two, 5).is_ok());
    }
}
