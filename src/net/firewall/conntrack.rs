//! Stale UDP conntrack entries found and deleted over ctnetlink (the netlink
//! interface `conntrack -L/-D` uses), in-process: one dump of the IPv4 table,
//! then one delete per stale flow, each naming the flow by its original tuple
//! exactly as the dump gave it. The dump walks the kernel's whole conntrack
//! hash, shared by every namespace (262,144 buckets here: about 10 ms of
//! system time, as it was for `conntrack -L`); asking the namespace's entry
//! count first would not spare it, as a fresh node already tracks its
//! bridge's IGMP reports.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};

use crate::net::ports::{Mapping, Proto};
use crate::sys::nfnl::{self, NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP};

const NFNL_SUBSYS_CTNETLINK: u8 = 1;
const IPCTNL_MSG_CT_GET: u8 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;
/// Top level: the original direction's tuple, and the zone.
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
/// In a tuple: the addresses (CTA_IP_V4_DST inside) and the protocol (number, ports inside).
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_UDP: u8 = 17;

/// Delete the tracked UDP flows whose original destination is one of the UDP `mappings`' host ports
/// (and host address, when the mapping has one).
pub(crate) fn flush_udp(mappings: &[Mapping]) -> Result<()> {
    let stale = |dst: Ipv4Addr, port: u16| {
        mappings.iter().any(|m| m.proto == Proto::Udp && m.host_port == port && m.host_ip.is_none_or(|h| h == dst))
    };
    let mut sock = match nfnl::Socket::open() {
        Ok(s) => s,
        Err(_) => return Ok(()), // no netlink: no conntrack either
    };
    let entries = match sock.request(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET, NLM_F_DUMP, libc::AF_INET as u8, &[]) {
        Ok(e) => e,
        // No conntrack in this kernel or namespace, so nothing tracked.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EPROTONOSUPPORT)) => {
            return Ok(())
        }
        Err(e) => return Err(e).context("listing the conntrack table"),
    };
    for entry in entries {
        let top = nfnl::attrs(&entry);
        let Some(orig) = nfnl::get(&top, CTA_TUPLE_ORIG) else { continue };
        match original_udp_dst(orig) {
            Some((dst, port)) if stale(dst, port) => {}
            _ => continue,
        }
        let mut body = Vec::new();
        nfnl::put(&mut body, CTA_TUPLE_ORIG | NLA_F_NESTED, orig);
        if let Some(zone) = nfnl::get(&top, CTA_ZONE) {
            nfnl::put(&mut body, CTA_ZONE, zone);
        }
        // Gone meanwhile (expired, or deleted by another rcon) is not a failure.
        match sock.request(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, libc::AF_INET as u8, &body) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                return Err(e).context("deleting a stale UDP conntrack entry")
            }
            _ => {}
        }
    }
    Ok(())
}

/// The destination address and port of a UDP tuple (CTA_TUPLE_ORIG's payload); None for another protocol.
fn original_udp_dst(tuple: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let t = nfnl::attrs(tuple);
    let ip = nfnl::attrs(nfnl::get(&t, CTA_TUPLE_IP)?);
    let proto = nfnl::attrs(nfnl::get(&t, CTA_TUPLE_PROTO)?);
    if nfnl::get(&proto, CTA_PROTO_NUM)? != [IPPROTO_UDP] {
        return None;
    }
    let dst: [u8; 4] = nfnl::get(&ip, CTA_IP_V4_DST)?.try_into().ok()?;
    let port: [u8; 2] = nfnl::get(&proto, CTA_PROTO_DST_PORT)?.try_into().ok()?;
    Some((Ipv4Addr::from(dst), u16::from_be_bytes(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CTA_TUPLE_ORIG payload as the kernel sends it.
    fn tuple(proto: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let (mut ip, mut pr, mut t) = (Vec::new(), Vec::new(), Vec::new());
        nfnl::put(&mut ip, 1, &[203, 0, 113, 1]);
        nfnl::put(&mut ip, CTA_IP_V4_DST, &dst);
        nfnl::put(&mut pr, CTA_PROTO_NUM, &[proto]);
        nfnl::put(&mut pr, 2, &41001u16.to_be_bytes());
        nfnl::put(&mut pr, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
        nfnl::put(&mut t, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
        nfnl::put(&mut t, CTA_TUPLE_PROTO | NLA_F_NESTED, &pr);
        t
    }

    #[test]
    fn the_original_destination_of_udp_tuples() {
        assert_eq!(original_udp_dst(&tuple(17, [203, 0, 113, 2], 9090)), Some(("203.0.113.2".parse().unwrap(), 9090)));
        assert_eq!(original_udp_dst(&tuple(6, [203, 0, 113, 2], 9090)), None, "TCP is left alone");
        assert_eq!(original_udp_dst(&[]), None);
    }
}
