//! Netfilter netlink (nfnetlink), the few bytes of it rcon needs: one request
//! (a dump or an acknowledged change) on a socket of the calling thread's
//! network namespace, and the attributes of the replies. Used to read
//! nftables objects without `nft` and to find and delete conntrack entries
//! without `conntrack`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
/// Set on the type of an attribute that holds attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// nlmsghdr, then nfgenmsg.
const HDR: usize = 16;
const NFGEN: usize = 4;

/// One object's netlink attributes: (type without flags, payload).
pub type Attrs = Vec<(u16, Vec<u8>)>;

/// A netfilter netlink socket, bound to the network namespace the calling thread was in when it was opened.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

/// A socket that sent something is bound, and its release may wait for nf_tables (sys::linger).
impl Drop for Socket {
    fn drop(&mut self) {
        if self.seq > 0 {
            super::linger::hand_off(&[self.fd.as_raw_fd()]);
        }
    }
}

impl Socket {
    pub fn open() -> io::Result<Socket> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        Ok(Socket { fd, seq: 0 })
    }

    /// Send message `msg` of subsystem `subsys` for `family` with the attributes `body` (see [`put`])
    /// and `flags` (with NLM_F_DUMP: a dump; with NLM_F_ACK: a change). Returns the attribute bytes of
    /// every object the kernel sent back; a kernel error comes back as its errno.
    pub fn request(&mut self, subsys: u8, msg: u8, flags: u16, family: u8, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        self.seq += 1;
        let len = HDR + NFGEN + body.len();
        let mut req = Vec::with_capacity(len);
        req.extend_from_slice(&(len as u32).to_ne_bytes());
        req.extend_from_slice(&((u16::from(subsys) << 8) | u16::from(msg)).to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, resource id 0.
        req.extend_from_slice(&[family, 0, 0, 0]);
        req.extend_from_slice(body);
        socket::sendto(self.fd.as_raw_fd(), &req, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut at = 0;
            while at + HDR <= n {
                let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                let mlen = word(0) as usize;
                let mtype = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                if mlen < HDR || at + mlen > n {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a truncated netlink message"));
                }
                if word(8) == self.seq {
                    match mtype {
                        NLMSG_DONE => return Ok(out),
                        NLMSG_ERROR if mlen >= HDR + 4 => {
                            let errno = word(HDR) as i32;
                            return if errno == 0 { Ok(out) } else { Err(io::Error::from_raw_os_error(-errno)) };
                        }
                        _ if mlen >= HDR + NFGEN => out.push(buf[at + HDR + NFGEN..at + mlen].to_vec()),
                        _ => {}
                    }
                }
                at += mlen.next_multiple_of(4);
            }
        }
    }
}

/// nfnetlink's batch delimiters (NFNL_MSG_BATCH_BEGIN and _END).
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;

impl Socket {
    /// One change to subsystem `subsys` (nftables: 10) as a batch of its own, committed atomically,
    /// and its acknowledgement; a kernel error comes back as its errno (the batch is then undone).
    pub fn commit(&mut self, subsys: u8, msg: u8, family: u8, body: &[u8]) -> io::Result<()> {
        let mut req = Vec::with_capacity(3 * (HDR + NFGEN) + body.len());
        let mut push = |req: &mut Vec<u8>, typ: u16, flags: u16, family: u8, res: u16, body: &[u8]| {
            self.seq += 1;
            req.extend_from_slice(&((HDR + NFGEN + body.len()) as u32).to_ne_bytes());
            req.extend_from_slice(&typ.to_ne_bytes());
            req.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
            req.extend_from_slice(&self.seq.to_ne_bytes());
            req.extend_from_slice(&0u32.to_ne_bytes());
            req.extend_from_slice(&[family, 0]);
            req.extend_from_slice(&res.to_be_bytes());
            req.extend_from_slice(body);
            self.seq
        };
        push(&mut req, BATCH_BEGIN, 0, 0, u16::from(subsys), &[]);
        let seq = push(&mut req, (u16::from(subsys) << 8) | u16::from(msg), NLM_F_ACK, family, 0, body);
        push(&mut req, BATCH_END, 0, 0, u16::from(subsys), &[]);
        socket::sendto(self.fd.as_raw_fd(), &req, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut at = 0;
            while at + HDR + 4 <= n {
                let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                let (mlen, mtype) = (word(0) as usize, u16::from_ne_bytes([buf[at + 4], buf[at + 5]]));
                if mlen < HDR || at + mlen > n {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a truncated netlink message"));
                }
                if mtype == NLMSG_ERROR && word(8) == seq {
                    let errno = word(HDR) as i32;
                    return if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-errno)) };
                }
                at += mlen.next_multiple_of(4);
            }
        }
    }
}

/// Append attribute `typ` holding `payload`, padded to 4 bytes.
pub fn put(buf: &mut Vec<u8>, typ: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// The attributes (type without flags, payload) in `b`; a truncated one ends the list.
pub fn attrs(mut b: &[u8]) -> Attrs {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let typ = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((typ, b[4..len].to_vec()));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

/// The payload of attribute `typ` in `a`.
pub fn get(a: &Attrs, typ: u16) -> Option<&[u8]> {
    a.iter().find(|(t, _)| *t == typ).map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut b = Vec::new();
        put(&mut b, 1, b"rcon\0");
        put(&mut b, 2 | NLA_F_NESTED, &[7, 0]);
        assert_eq!(b.len(), 12 + 8, "each attribute padded to 4 bytes");
        let a = attrs(&b);
        assert_eq!(a.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [1, 2], "the nested flag is masked");
        assert_eq!(get(&a, 1), Some(&b"rcon\0"[..]));
        assert_eq!(get(&a, 2), Some(&[7u8, 0][..]));
        assert_eq!(get(&a, 3), None);
        // A truncated attribute ends the list.
        assert_eq!(attrs(&[8, 0, 1, 0, b'x']).len(), 0);
    }
}
