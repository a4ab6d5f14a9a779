//! The peer table and the per-packet decisions of the data plane: where an
//! inner packet goes, the outer header it gets, and whether a packet from
//! the wire may enter this node. Pure code, unit-tested without root.

use std::net::Ipv4Addr;

use super::Peer;

/// The IP protocol number of IP-in-IP (RFC 2003).
pub const IPPROTO_IPIP: u8 = 4;
/// An IPv4 header without options, as the outer header always is.
pub const OUTER_LEN: usize = 20;
const DF: u8 = 0x40;

/// The peers, longest prefix first so that the first match is the best one.
#[derive(Debug, Clone, Default)]
pub struct Table {
    peers: Vec<Peer>,
}

impl Table {
    pub fn new(mut peers: Vec<Peer>) -> Table {
        peers.sort_by_key(|p| std::cmp::Reverse(p.subnet.prefix_len()));
        Table { peers }
    }

    /// The underlay address of the peer that owns `dst` (longest prefix).
    pub fn route(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.peers.iter().find(|p| p.subnet.contains(&dst)).map(|p| p.underlay_ip)
    }

    fn is_peer(&self, underlay: Ipv4Addr) -> bool {
        self.peers.iter().any(|p| p.underlay_ip == underlay)
    }
}

/// Source and destination of a well-formed IPv4 packet (version 4, a header
/// length that fits, a total length that fits the buffer).
fn ipv4_addrs(pkt: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let addrs = header_addrs(pkt)?;
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if ihl < 20 || total < ihl || total > pkt.len() {
        return None;
    }
    Some(addrs)
}

/// Source and destination of the IPv4 header `pkt` starts with, which may
/// be only the start of a packet (an ICMP error's quote).
pub fn header_addrs(pkt: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let a = |i: usize| Ipv4Addr::new(pkt[i], pkt[i + 1], pkt[i + 2], pkt[i + 3]);
    Some((a(12), a(16)))
}

/// TUN → wire: the underlay address to send `inner` to, or None to drop it
/// (not IPv4, or no peer owns its destination, or the peer is this node).
pub fn encap_target(inner: &[u8], table: &Table, local: Ipv4Addr) -> Option<Ipv4Addr> {
    let (_, dst) = ipv4_addrs(inner)?;
    table.route(dst).filter(|&u| u != local)
}

/// The outer header for `inner`, as the kernel's ipip builds it with its
/// defaults (`ttl inherit`, `tos 0`): TTL copied from the inner packet, ECN
/// copied (CE sent as ECT(0), RFC 6040), and DF copied from the inner
/// packet. Total length, id and checksum are left to the kernel (IP_HDRINCL
/// fills them in).
pub fn outer_header(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> [u8; OUTER_LEN] {
    let mut h = [0u8; OUTER_LEN];
    h[0] = 0x45;
    h[1] = match inner[1] & 0x03 {
        0x03 => 0x02,
        ecn => ecn,
    };
    h[6] = inner[6] & DF;
    h[8] = inner[8];
    h[9] = IPPROTO_IPIP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h
}

/// Wire → TUN: the inner packet of `outer` (as a raw socket hands it over,
/// outer header included), or None to drop it. Taken only from a known
/// peer, only IPv4-in-IPv4, and never when the inner destination is another
/// peer's subnet: that would bounce the packet straight back out (a loop,
/// or a relay for spoofed traffic).
#[cfg(test)]
pub fn decap<'a>(outer: &'a [u8], table: &Table) -> Option<&'a [u8]> {
    decap_range(outer, table).map(|r| &outer[r])
}

/// `decap`, as where in `outer` the inner packet is.
pub fn decap_range(outer: &[u8], table: &Table) -> Option<std::ops::Range<usize>> {
    let (src, _) = ipv4_addrs(outer)?;
    if outer[9] != IPPROTO_IPIP || !table.is_peer(src) {
        return None;
    }
    let ihl = usize::from(outer[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([outer[2], outer[3]]));
    let inner = &outer[ihl..total];
    let (_, dst) = ipv4_addrs(inner)?;
    if table.route(dst).is_some() {
        return None;
    }
    Some(ihl..ihl + usize::from(u16::from_be_bytes([inner[2], inner[3]])))
}

/// RFC 6040 on the way in, as the kernel's ipip decapsulates: a CE mark on
/// the outer header (`outer_tos`) is copied to an ECN-capable inner packet
/// (its header checksum redone); an inner packet that is not ECN-capable
/// cannot carry it and is dropped (false). Other marks change nothing.
pub fn ecn_decap(outer_tos: u8, inner: &mut [u8]) -> bool {
    if outer_tos & 0x03 != 0x03 || inner.len() < 20 {
        return true;
    }
    match inner[1] & 0x03 {
        0x00 => false,
        0x03 => true,
        _ => {
            inner[1] |= 0x03;
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            if ihl >= 20 && ihl <= inner.len() {
                super::offload::set_ip_csum(inner, ihl);
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(subnet: &str, ip: &str) -> Peer {
        Peer { subnet: subnet.parse().unwrap(), underlay_ip: ip.parse().unwrap() }
    }

    fn table() -> Table {
        Table::new(vec![
            peer("10.244.0.0/16", "192.168.77.9"),
            peer("10.244.2.0/24", "192.168.77.2"),
            peer("10.244.3.0/24", "192.168.77.3"),
        ])
    }

    /// A minimal IPv4 packet: 20-byte header and `payload` bytes.
    fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
        let total = 20 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[1] = 0xbb; // DSCP 46, ECN CE
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 63;
        p[9] = 6;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn routes_by_longest_prefix_and_never_to_itself() {
        let t = table();
        let local: Ipv4Addr = "192.168.77.1".parse().unwrap();
        let to = |d| encap_target(&ipv4([10, 244, 1, 5], d, 8), &t, local);
        assert_eq!(to([10, 244, 2, 7]), Some("192.168.77.2".parse().unwrap()));
        assert_eq!(to([10, 244, 9, 7]), Some("192.168.77.9".parse().unwrap()));
        assert_eq!(to([10, 9, 9, 9]), None);
        let own = Table::new(vec![peer("10.244.1.0/24", "192.168.77.1")]);
        assert_eq!(encap_target(&ipv4([1, 1, 1, 1], [10, 244, 1, 2], 0), &own, local), None);
    }

    #[test]
    fn drops_what_is_not_ipv4() {
        let t = table();
        let local = Ipv4Addr::LOCALHOST;
        let mut v6 = ipv4([0; 4], [10, 244, 2, 1], 40);
        v6[0] = 0x60;
        assert_eq!(encap_target(&v6, &t, local), None);
        assert_eq!(encap_target(&[0x45, 0, 0], &t, local), None);
        let mut long = ipv4([0; 4], [10, 244, 2, 1], 4);
        long[3] += 1; // claims one byte more than there is
        assert_eq!(encap_target(&long, &t, local), None);
    }

    #[test]
    fn outer_header_inherits_ttl_df_and_ecn() {
        let inner = ipv4([10, 244, 1, 5], [10, 244, 2, 7], 8);
        let h = outer_header(&inner, "192.168.77.1".parse().unwrap(), "192.168.77.2".parse().unwrap());
        assert_eq!(h[0], 0x45);
        assert_eq!(h[1], 0x02, "DSCP not copied, CE sent as ECT(0)");
        assert_eq!(h[6], 0x40, "DF copied");
        assert_eq!(h[8], 63, "TTL inherited");
        assert_eq!(h[9], IPPROTO_IPIP);
        assert_eq!(&h[12..20], &[192, 168, 77, 1, 192, 168, 77, 2]);
        let mut no_df = inner.clone();
        no_df[6] = 0;
        no_df[1] = 0x01;
        let h = outer_header(&no_df, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
        assert_eq!((h[1], h[6]), (0x01, 0));
    }

    fn wrap(from: [u8; 4], inner: &[u8]) -> Vec<u8> {
        let mut o = ipv4(from, [192, 168, 77, 1], inner.len());
        o[9] = IPPROTO_IPIP;
        o[20..].copy_from_slice(inner);
        o
    }

    #[test]
    fn decap_takes_only_known_peers_and_no_loops() {
        let t = Table::new(vec![peer("10.244.2.0/24", "192.168.77.2"), peer("10.244.3.0/24", "192.168.77.3")]);
        let inner = ipv4([10, 244, 2, 7], [10, 244, 1, 5], 8);
        let mut padded = wrap([192, 168, 77, 2], &inner);
        assert_eq!(decap(&padded, &t), Some(&inner[..]));
        padded.extend_from_slice(&[0xee; 6]); // bytes past the outer total length are not the packet's
        assert_eq!(decap(&padded, &t), Some(&inner[..]));
        assert_eq!(decap(&wrap([192, 168, 77, 66], &inner), &t), None, "unknown peer");
        let to_peer = ipv4([10, 244, 2, 7], [10, 244, 3, 1], 8);
        assert_eq!(decap(&wrap([192, 168, 77, 2], &to_peer), &t), None, "would loop");
        let mut gre = wrap([192, 168, 77, 2], &inner);
        gre[9] = 47;
        assert_eq!(decap(&gre, &t), None);
        let mut cut = wrap([192, 168, 77, 2], &inner);
        cut[23] = 200; // inner total length past the end
        assert_eq!(decap(&cut, &t), None);
    }

    #[test]
    fn ce_outside_marks_an_ecn_capable_packet_inside() {
        use super::super::offload::{fold, set_ip_csum, sum};
        let with_tos = |tos: u8| {
            let mut p = ipv4([10, 244, 2, 5], [10, 244, 1, 5], 8);
            p[1] = tos;
            set_ip_csum(&mut p, 20);
            p
        };
        let mut ect0 = with_tos(0xb8 | 0x02);
        assert!(ecn_decap(0x03, &mut ect0));
        assert_eq!(ect0[1], 0xbb, "DSCP kept, CE set");
        assert_eq!(fold(sum(&ect0[..20], 0)), 0xffff, "the inner header checksum was not redone");
        // Not ECN-capable inside, CE outside: dropped, as the kernel does.
        assert!(!ecn_decap(0x03, &mut with_tos(0xb8)));
        // No CE outside: nothing changes.
        for outer in [0x00, 0x01, 0x02] {
            let mut p = with_tos(0xb8 | 0x01);
            assert!(ecn_decap(outer, &mut p));
            assert_eq!(p, with_tos(0xb8 | 0x01));
        }
    }
}
