//! The nftables check's listing, read straight from the kernel: the chains,
//! sets and rules of `table ip rcon` over one netfilter netlink socket, with
//! each rule reduced to its comment. No set element is read, so the cost
//! does not grow with the published ports: `nft -t list table` still pulls
//! every element into its cache (283 ms at 10,000 mappings here, against
//! well under a millisecond for these three dumps).

use anyhow::{bail, Context as _, Result};
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

use super::nftables::Live;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETSET: u16 = 10;
/// The table attribute has number 1 and the name number 2 (set) or 3 (chain); a rule's chain is 2 and
/// its user data (libnftnl's comment TLV) 7.
const ATTR_TABLE: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
/// libnftnl's user-data TLV type of a rule's comment.
const UDATA_COMMENT: u8 = 0;

/// One object's netlink attributes: (type, payload).
type Attrs = Vec<(u16, Vec<u8>)>;

/// The nfgenmsg family of `table ip …`.
pub(crate) const FAMILY_IP: u8 = libc::AF_INET as u8;
/// … and of `table bridge …` (NFPROTO_BRIDGE).
pub(crate) const FAMILY_BRIDGE: u8 = 7;

/// Chains, sets and rule comments of `table FAMILY NAME` in the calling thread's network namespace.
pub(crate) fn glance(family: u8, table: &str) -> Result<Live> {
    let fd =
        socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .context("opening a netfilter netlink socket")?;
    let mut live = Live::default();
    for (seq, msg) in [NFT_MSG_GETCHAIN, NFT_MSG_GETSET, NFT_MSG_GETRULE].into_iter().enumerate() {
        for attrs in dump(&fd, msg, seq as u32 + 1, family, table)? {
            let get = |n: u16| attrs.iter().find(|(t, _)| *t == n).map(|(_, v)| v.as_slice());
            if get(ATTR_TABLE).map(cstr) != Some(table) {
                continue;
            }
            live.exists = true;
            match msg {
                NFT_MSG_GETCHAIN => {
                    live.chains.insert(get(3).map(cstr).unwrap_or_default().to_string());
                }
                NFT_MSG_GETSET => {
                    live.sets.insert(get(2).map(cstr).unwrap_or_default().to_string());
                }
                _ => {
                    let chain = get(2).map(cstr).unwrap_or_default().to_string();
                    live.rules.entry(chain).or_default().push(get(7).and_then(comment));
                }
            }
        }
    }
    Ok(live)
}

/// One dump request for `table`'s objects of kind `msg`; every reply's attributes.
fn dump(fd: &std::os::fd::OwnedFd, msg: u16, seq: u32, family: u8, table: &str) -> Result<Vec<Attrs>> {
    use std::os::fd::AsRawFd;
    let mut name = table.as_bytes().to_vec();
    name.push(0);
    let attr_len = 4 + name.len();
    let len = 16 + 4 + attr_len.next_multiple_of(4);
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id 0.
    req.extend_from_slice(&[family, 0, 0, 0]);
    req.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    req.extend_from_slice(&ATTR_TABLE.to_ne_bytes());
    req.extend_from_slice(&name);
    req.resize(len, 0);
    socket::sendto(fd.as_raw_fd(), &req, &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .context("asking the kernel for rcon's nftables objects")?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).context("reading nftables objects")?;
        let mut at = 0;
        while at + 16 <= n {
            let mlen = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let mtype = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            if mlen < 16 || at + mlen > n {
                bail!("nftables listing: a truncated netlink message");
            }
            match mtype {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                    // The table (and so what it holds) does not exist.
                    if errno == -libc::ENOENT {
                        return Ok(out);
                    }
                    if errno != 0 {
                        bail!("nftables listing: {}", std::io::Error::from_raw_os_error(-errno));
                    }
                }
                _ if mlen >= 20 => out.push(attrs(&buf[at + 20..at + mlen])),
                _ => {}
            }
            at += mlen.next_multiple_of(4);
        }
    }
}

/// The netlink attributes (type, payload) of one message body.
fn attrs(mut b: &[u8]) -> Attrs {
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

/// A NUL-terminated string attribute.
fn cstr(b: &[u8]) -> &str {
    std::str::from_utf8(b.split(|c| *c == 0).next().unwrap_or_default()).unwrap_or_default()
}

/// The comment in a rule's user data (type, length, value TLVs).
fn comment(mut b: &[u8]) -> Option<String> {
    while b.len() >= 2 {
        let (typ, len) = (b[0], b[1] as usize);
        let value = b.get(2..2 + len)?;
        if typ == UDATA_COMMENT {
            return Some(cstr(value).to_string());
        }
        b = &b[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_comments() {
        // NFTA_RULE_TABLE "rcon", NFTA_RULE_CHAIN "out-a" (padded), and user data holding a comment.
        let mut b = Vec::new();
        for (typ, val) in [(1u16, &b"rcon\0"[..]), (2, b"out-a\0"), (7, b"\x00\x0crcon base 3\x00")] {
            b.extend_from_slice(&((4 + val.len()) as u16).to_ne_bytes());
            b.extend_from_slice(&(typ | 0x8000).to_ne_bytes());
            b.extend_from_slice(val);
            b.resize(b.len().next_multiple_of(4), 0);
        }
        let a = attrs(&b);
        assert_eq!(a.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [1, 2, 7], "the nested flag is masked");
        assert_eq!(cstr(&a[1].1), "out-a");
        assert_eq!(comment(&a[2].1).as_deref(), Some("rcon base 3"));
        assert_eq!(comment(b"\x01\x02ab"), None, "another TLV type is no comment");
        assert_eq!(comment(b"\x00\x09short"), None, "a TLV longer than its data");
        // A truncated attribute ends the list.
        assert_eq!(attrs(&[8, 0, 1, 0, b'x']).len(), 0);
    }
}
