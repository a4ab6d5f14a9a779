//! TUN → wire: a TCP/IPv4 super-packet (TSO) cut into the segments the
//! kernel's own TSO would make.

use std::ops::Range;

use super::checksum::{fold, pseudo, set_ip_csum, sum};
use super::{be16, be32, CWR, FIN, PSH, TCP};

/// How a TCP/IPv4 super-packet is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tso {
    /// IPv4 header length.
    pub ihl: usize,
    /// IPv4 + TCP header length: the head of every segment.
    pub hlen: usize,
    /// Payload bytes per segment (the last may have fewer).
    pub mss: usize,
    /// Payload bytes in all.
    pub payload: usize,
}

impl Tso {
    pub fn segments(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }
}

/// The plan for a GSO TCPv4 packet `pkt` (IP header first) with segment
/// payload `gso_size`; None if it is not a well-formed TCP/IPv4 packet.
pub fn tso_plan(pkt: &[u8], gso_size: u16) -> Option<Tso> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != TCP || gso_size == 0 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = be16(pkt, 2);
    if ihl < 20 || total > pkt.len() || total < ihl + 20 {
        return None;
    }
    let hlen = ihl + usize::from(pkt[ihl + 12] >> 4) * 4;
    if hlen < ihl + 20 || hlen > total {
        return None;
    }
    Some(Tso { ihl, hlen, mss: gso_size.into(), payload: total - hlen })
}

/// Segment `i` of `pkt` cut by `plan`: its IPv4 and TCP headers, checksums
/// and all, go to `head[..plan.hlen]`; its payload is `pkt[range]`.
pub fn tso_segment(pkt: &[u8], plan: &Tso, i: usize, head: &mut [u8]) -> Range<usize> {
    let Tso { ihl, hlen, mss, payload } = *plan;
    let n = plan.segments();
    let off = i * mss;
    let len = mss.min(payload - off);
    let h = &mut head[..hlen];
    h.copy_from_slice(&pkt[..hlen]);
    h[2..4].copy_from_slice(&((hlen + len) as u16).to_be_bytes());
    let id = u16::from_be_bytes([pkt[4], pkt[5]]).wrapping_add(i as u16);
    h[4..6].copy_from_slice(&id.to_be_bytes());
    set_ip_csum(h, ihl);
    let seq = be32(pkt, ihl + 4).wrapping_add(off as u32);
    h[ihl + 4..ihl + 8].copy_from_slice(&seq.to_be_bytes());
    if i + 1 < n {
        h[ihl + 13] &= !(FIN | PSH);
    }
    if i > 0 {
        h[ihl + 13] &= !CWR;
    }
    h[ihl + 16..ihl + 18].fill(0);
    let body = hlen + off..hlen + off + len;
    let acc = sum(&pkt[body.clone()], sum(&h[ihl..], pseudo(h, TCP, hlen - ihl + len)));
    let c = !fold(acc);
    h[ihl + 16..ihl + 18].copy_from_slice(&c.to_ne_bytes());
    body
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::overlay::ipip_user::offload::testpkt::{data, ip_ok, tcp, tcp_ok};
    use crate::net::overlay::ipip_user::offload::ACK;

    #[test]
    fn segments_a_super_packet_like_tso() {
        let payload = data(10_000);
        let mut sup = tcp(0xffff_f000, ACK | PSH | FIN | CWR, &payload);
        sup[36..38].fill(0xaa); // whatever the field holds is not used
        let plan = tso_plan(&sup, 1428).unwrap();
        assert_eq!(plan, Tso { ihl: 20, hlen: 52, mss: 1428, payload: 10_000 });
        assert_eq!(plan.segments(), 8);
        let mut got = Vec::new();
        for i in 0..plan.segments() {
            let mut head = [0u8; 120];
            let body = tso_segment(&sup, &plan, i, &mut head);
            let mut seg = head[..plan.hlen].to_vec();
            seg.extend_from_slice(&sup[body]);
            assert!(ip_ok(&seg) && tcp_ok(&seg), "segment {i}: checksums");
            assert_eq!(be16(&seg, 2), seg.len(), "segment {i}: total length");
            assert!(seg.len() <= 1480);
            assert_eq!(u16::from_be_bytes([seg[4], seg[5]]), 0x1234 + i as u16, "ids count up");
            assert_eq!(be32(&seg, 24), 0xffff_f000u32.wrapping_add(1428 * i as u32), "seq (wrapping)");
            let f = seg[33];
            let last = i == 7;
            assert_eq!(f & (PSH | FIN) != 0, last, "segment {i}: PSH, FIN only at the end");
            assert_eq!(f & CWR != 0, i == 0, "segment {i}: CWR only first");
            assert!(f & ACK != 0);
            assert_eq!(&seg[6..10], &sup[6..10], "DF, TTL, protocol kept");
            got.extend_from_slice(&seg[52..]);
        }
        assert_eq!(got, payload);
        // Exactly one segment's worth, and garbage.
        let one = tcp(5, ACK, &data(1428));
        let plan = tso_plan(&one, 1428).unwrap();
        assert_eq!(plan.segments(), 1);
        let mut head = [0u8; 120];
        let body = tso_segment(&one, &plan, 0, &mut head);
        assert_eq!([&head[..52], &one[body]].concat(), one);
        assert_eq!(tso_plan(&one[..30], 1428), None);
        assert_eq!(tso_plan(&one, 0), None);
    }
}
