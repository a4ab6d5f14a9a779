//! Wire → TUN: the virtio header one packet is written with, and the
//! in-order segments of a flow merged into one GSO super-packet (as GRO
//! would).

use super::checksum::{fold, pseudo, set_ip_csum, sum};
use super::{be16, be32, VnetHdr, ACK, FIN, F_NEEDS_CSUM, GSO_TCPV4, IP_MAX, PSH, RST, SYN, TCP, URG};

/// What merging needs to know of a TCP/IPv4 data segment.
#[derive(Debug, Clone, Copy)]
struct Seg {
    /// IPv4 + TCP header length (the IPv4 header has no options).
    hlen: usize,
    seq: u32,
    payload: usize,
    psh: bool,
}

/// A segment that may merge: TCP/IPv4 no longer than `mtu`, no IP options,
/// not a fragment, ACK and maybe PSH and no other flag, some payload, and a
/// valid checksum or a partial one (see `partial`).
fn data_segment(p: &[u8], mtu: usize) -> Option<Seg> {
    if p.len() < 40 || p.len() > mtu || p[0] != 0x45 || p[9] != TCP || be16(p, 6) & 0x3fff != 0 {
        return None;
    }
    let total = be16(p, 2);
    let hlen = 20 + usize::from(p[32] >> 4) * 4;
    if total != p.len() || hlen < 40 || hlen >= total {
        return None;
    }
    let flags = p[33];
    if flags & !PSH != ACK || flags & (SYN | FIN | RST | URG) != 0 {
        return None;
    }
    if !csum_ok(p, 20) && !partial(p, 20, TCP) {
        return None;
    }
    Some(Seg { hlen, seq: be32(p, 24), payload: total - hlen, psh: flags & PSH != 0 })
}

/// Whether the TCP checksum of `p` (IPv4 header `ihl` long) is right.
fn csum_ok(p: &[u8], ihl: usize) -> bool {
    fold(sum(&p[ihl..], pseudo(p, TCP, p.len() - ihl))) == 0xffff
}

/// Whether the TCP or UDP checksum of `p` is left unfinished: the field
/// holds only the pseudo-header sum. So the kernel's own ipip sends what its
/// stack left to the NIC (CHECKSUM_PARTIAL) when the underlay is a veth or
/// virtio: the payload is as it was sent, and the stack that takes it in
/// from the TUN must be told (NEEDS_CSUM), or it drops it as corrupt.
fn partial(p: &[u8], ihl: usize, proto: u8) -> bool {
    let at = ihl + if proto == TCP { 16 } else { 6 };
    at + 2 <= p.len() && p[at..at + 2] == fold(pseudo(p, proto, p.len() - ihl)).to_ne_bytes()
}

/// The header to write `p`, one inner packet as it came off the wire, to
/// the TUN with: none (zeroes) for a whole, plain packet; for one whose TCP
/// or UDP checksum is unfinished (`partial`), NEEDS_CSUM; for a TCP packet
/// longer than `mtu` (the kernel's ipip sends GSO packets of up to 64 KB
/// whole over a veth), GSO with segments that fit `mtu`, its checksum
/// turned into a partial one once it is known to be right.
pub fn single_hdr(p: &mut [u8], mtu: usize) -> VnetHdr {
    let plain = VnetHdr::default();
    if p.len() < 20 || p[0] >> 4 != 4 || be16(p, 6) & 0x3fff != 0 || be16(p, 2) != p.len() {
        return plain;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let proto = p[9];
    let (hlen, csum_offset) = match proto {
        TCP if p.len() >= ihl + 20 => (ihl + usize::from(p[ihl + 12] >> 4) * 4, 16),
        17 if p.len() >= ihl + 8 => (ihl + 8, 6),
        _ => return plain,
    };
    let big = proto == TCP && p.len() > mtu && hlen >= ihl + 20 && hlen < p.len() && mtu > hlen;
    let part = partial(p, ihl, proto);
    if !(part || big && csum_ok(p, ihl)) {
        return plain;
    }
    let at = ihl + csum_offset;
    let seed = fold(pseudo(p, proto, p.len() - ihl));
    p[at..at + 2].copy_from_slice(&seed.to_ne_bytes());
    let mut h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: ihl as u16, csum_offset: csum_offset as u16, ..plain };
    if big {
        h.gso_type = GSO_TCPV4;
        h.hdr_len = hlen as u16;
        h.gso_size = (mtu - hlen) as u16;
    }
    h
}

/// Whether `b` belongs right after `a` in one flow: the same IPv4 header
/// apart from length, id and checksum; the same TCP header apart from the
/// sequence number, PSH and checksum.
fn same_flow(a: &[u8], b: &[u8], hlen: usize) -> bool {
    a[..2] == b[..2]
        && a[6..10] == b[6..10]
        && a[12..20] == b[12..20]
        && a[20..24] == b[20..24]
        && a[28..33] == b[28..33]
        && (a[33] | PSH) == (b[33] | PSH)
        && a[34..36] == b[34..36]
        && a[38..hlen] == b[38..hlen]
}

/// One write to the TUN: packet `first` of the batch, then the payloads of
/// `rest` (in order). With `rest` empty it goes as it is; otherwise its
/// head is made the super-packet's by `merge_head`.
#[derive(Debug, Clone, Default)]
pub struct Out {
    pub first: usize,
    pub rest: Vec<usize>,
    flow: Option<[u8; 12]>,
    /// `first`'s segment, the next sequence number, the payload so far.
    open: Option<(Seg, u32, usize)>,
    /// Takes no more segments (always so when `open` is None).
    closed: bool,
}

/// Groups the packets of one batch into TUN writes.
#[derive(Debug)]
pub struct Coalescer {
    outs: Vec<Out>,
    used: usize,
    pub mtu: usize,
}

impl Coalescer {
    /// For a TUN with this MTU: longer packets are never merged.
    pub fn new(mtu: usize) -> Coalescer {
        Coalescer { outs: Vec::new(), used: 0, mtu }
    }

    /// Group `pkts` (inner IPv4 packets, in the order received); the writes
    /// come out in the order of their first packets, and each flow has at
    /// most one write open at a time, so each flow keeps its order.
    pub fn run<'a>(&'a mut self, pkts: &[&[u8]]) -> &'a [Out] {
        self.used = 0;
        for (i, p) in pkts.iter().enumerate() {
            let flow = tcp_flow(p);
            let seg = data_segment(p, self.mtu);
            let mut merged = false;
            if flow.is_some() {
                if let Some(o) = self.outs[..self.used].iter_mut().rev().find(|o| !o.closed && o.flow == flow) {
                    let (f, next, so_far) = o.open.expect("an open write has a segment");
                    match seg {
                        Some(s)
                            if s.hlen == f.hlen
                                && s.seq == next
                                && s.payload <= f.payload
                                && f.hlen + so_far + s.payload <= IP_MAX
                                && same_flow(pkts[o.first], p, s.hlen) =>
                        {
                            o.rest.push(i);
                            o.open = Some((f, next.wrapping_add(s.payload as u32), so_far + s.payload));
                            o.closed = s.psh || s.payload < f.payload;
                            merged = true;
                        }
                        // Anything else of this flow ends its open write.
                        _ => o.closed = true,
                    }
                }
            }
            if !merged {
                if self.used == self.outs.len() {
                    self.outs.push(Out::default());
                }
                let o = &mut self.outs[self.used];
                self.used += 1;
                o.first = i;
                o.rest.clear();
                o.flow = flow;
                o.open = seg.map(|s| (s, s.seq.wrapping_add(s.payload as u32), s.payload));
                o.closed = seg.is_none_or(|s| s.psh);
            }
        }
        &self.outs[..self.used]
    }
}

/// Addresses and ports of a TCP/IPv4 packet.
fn tcp_flow(p: &[u8]) -> Option<[u8; 12]> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != TCP {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let ports = p.get(ihl..ihl + 4)?;
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&p[12..20]);
    k[8..].copy_from_slice(ports);
    Some(k)
}

/// Make `first` (the head of a merged write, `payload` bytes of payload in
/// all, PSH if the last one had it) the head of the super-packet, and the
/// GSO header it is written with; `first`'s own payload is the segment
/// size. `first` must be one that `Coalescer` took as a head.
pub fn merge_head(first: &mut [u8], payload: usize, psh: bool) -> VnetHdr {
    let hlen = 20 + usize::from(first[32] >> 4) * 4;
    let seg_payload = first.len() - hlen;
    first[2..4].copy_from_slice(&((hlen + payload) as u16).to_be_bytes());
    set_ip_csum(first, 20);
    if psh {
        first[33] |= PSH;
    }
    // A partial checksum: the pseudo-header sum, which the kernel
    // completes if it ever sends this on.
    let seed = fold(pseudo(first, TCP, hlen - 20 + payload));
    first[36..38].copy_from_slice(&seed.to_ne_bytes());
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: hlen as u16,
        gso_size: seg_payload as u16,
        csum_start: 20,
        csum_offset: 16,
    }
}

/// The payload of a segment `Coalescer` took (after its headers).
pub fn payload_of(p: &[u8]) -> &[u8] {
    &p[20 + usize::from(p[32] >> 4) * 4..]
}

/// Whether the last packet of a merged write had PSH.
pub fn has_psh(p: &[u8]) -> bool {
    p[33] & PSH != 0
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::overlay::ipip_user::offload::testpkt::{data, fix, ip_ok, tcp, tcp_ok};
    use crate::net::overlay::ipip_user::offload::{complete_csum, tso_plan, GSO_TCPV4};

    /// Split `payload` into segments of `mss` starting at `seq`.
    fn stream(seq: u32, payload: &[u8], mss: usize, psh_last: bool) -> Vec<Vec<u8>> {
        let n = payload.len().div_ceil(mss);
        payload
            .chunks(mss)
            .enumerate()
            .map(|(i, c)| {
                let psh = if psh_last && i + 1 == n { PSH } else { 0 };
                tcp(seq.wrapping_add((i * mss) as u32), ACK | psh, c)
            })
            .collect()
    }

    /// What the TUN would get for each write: the super-packet and its header.
    fn writes(pkts: &[Vec<u8>]) -> Vec<(Option<VnetHdr>, Vec<u8>)> {
        let refs: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
        let mut c = Coalescer::new(1480);
        let outs = c.run(&refs).to_vec();
        outs.iter()
            .map(|o| {
                let mut head = pkts[o.first].clone();
                if o.rest.is_empty() {
                    return (None, head);
                }
                let payload: usize =
                    payload_of(&head).len() + o.rest.iter().map(|&j| payload_of(&pkts[j]).len()).sum::<usize>();
                let h = merge_head(&mut head, payload, has_psh(&pkts[*o.rest.last().unwrap()]));
                for &j in &o.rest {
                    head.extend_from_slice(payload_of(&pkts[j]));
                }
                (Some(h), head)
            })
            .collect()
    }

    #[test]
    fn coalesces_in_order_segments_of_a_flow() {
        let payload = data(1428 * 5 + 100);
        let w = writes(&stream(1000, &payload, 1428, true));
        assert_eq!(w.len(), 1);
        let (h, p) = &w[0];
        let h = h.unwrap();
        assert_eq!(h, VnetHdr { flags: 1, gso_type: 1, hdr_len: 52, gso_size: 1428, csum_start: 20, csum_offset: 16 });
        assert_eq!(be16(p, 2), p.len());
        assert!(ip_ok(p));
        assert_eq!(be32(p, 24), 1000);
        assert!(p[33] & PSH != 0);
        assert_eq!(&p[52..], &payload[..]);
        // The seed completes to the checksum of the whole super-packet.
        let mut full = p.clone();
        assert!(complete_csum(&mut full, 20, 16));
        assert!(tcp_ok(&full));
        // And cut again, it gives the segments back.
        let plan = tso_plan(p, h.gso_size).unwrap();
        assert_eq!(plan.segments(), 6);
    }

    /// `p` as the kernel's ipip sends it over a veth: the checksum unfinished.
    fn unfinished(mut p: Vec<u8>) -> Vec<u8> {
        let seed = fold(pseudo(&p, TCP, p.len() - 20));
        p[36..38].copy_from_slice(&seed.to_ne_bytes());
        p
    }

    #[test]
    fn single_packets_get_the_header_their_checksum_needs() {
        // Whole and right, or not TCP/UDP: as it is, the kernel checks.
        let mut ok = tcp(1, ACK, &data(100));
        assert_eq!(single_hdr(&mut ok, 1480), VnetHdr::default());
        let mut bad = ok.clone();
        bad[60] ^= 1;
        assert_eq!(single_hdr(&mut bad, 1480), VnetHdr::default());
        // Unfinished: NEEDS_CSUM, and the kernel's completion is the right checksum.
        let mut part = unfinished(ok.clone());
        let h = single_hdr(&mut part, 1480);
        assert_eq!(h, VnetHdr { flags: F_NEEDS_CSUM, csum_start: 20, csum_offset: 16, ..VnetHdr::default() });
        assert!(complete_csum(&mut part, 20, 16));
        assert_eq!(part, ok);
        // UDP too.
        let mut udp = vec![0u8; 28 + 50];
        udp[..20].copy_from_slice(&ok[..20]);
        udp[2..4].copy_from_slice(&78u16.to_be_bytes());
        udp[9] = 17;
        udp[24..26].copy_from_slice(&58u16.to_be_bytes());
        let seed = fold(pseudo(&udp, 17, 58));
        udp[26..28].copy_from_slice(&seed.to_ne_bytes());
        assert_eq!(single_hdr(&mut udp, 1480).csum_offset, 6);
        // A 64 KB GSO packet, unfinished or right: cut to fit the MTU by the kernel.
        let big = tcp(7, ACK | PSH, &data(60_000));
        for mut p in [big.clone(), unfinished(big.clone())] {
            let h = single_hdr(&mut p, 1480);
            assert_eq!((h.flags, h.gso_type, h.hdr_len, h.gso_size), (F_NEEDS_CSUM, GSO_TCPV4, 52, 1428));
            assert!(complete_csum(&mut p, 20, 16));
            assert_eq!(p, big);
        }
        let mut bad_big = big.clone();
        bad_big[900] ^= 1;
        assert_eq!(single_hdr(&mut bad_big, 1480), VnetHdr::default());
    }

    #[test]
    fn coalesces_unfinished_segments_too() {
        let payload = data(1428 * 3);
        let pkts: Vec<Vec<u8>> = stream(5, &payload, 1428, false).into_iter().map(unfinished).collect();
        let w = writes(&pkts);
        assert_eq!(w.len(), 1);
        let mut p = w[0].1.clone();
        assert!(complete_csum(&mut p, 20, 16));
        assert!(tcp_ok(&p));
        assert_eq!(&p[52..], &payload[..]);
    }

    #[test]
    fn keeps_apart_what_must_not_merge() {
        let mut pkts = stream(0, &data(1428 * 3), 1428, false);
        // A gap: seq jumps.
        pkts.push(tcp(1428 * 4, ACK, &data(1428)));
        // Another flow in between.
        let mut other = tcp(0, ACK, &data(1428));
        other[21] ^= 1;
        fix(&mut other);
        pkts.insert(1, other);
        // A bad checksum: not merged (the kernel drops it).
        let mut bad = tcp(1428 * 5, ACK, &data(1428));
        bad[60] ^= 0xff;
        pkts.push(bad);
        let w = writes(&pkts);
        let shape: Vec<(bool, usize)> = w.iter().map(|(h, p)| (h.is_some(), p.len())).collect();
        assert_eq!(shape, vec![(true, 52 + 1428 * 3), (false, 52 + 1428), (false, 52 + 1428), (false, 52 + 1428)]);

        // PSH ends a write; a short segment ends it too; SYN, FIN never merge.
        let mut pkts = stream(0, &data(1428 * 2), 1428, true);
        pkts.extend(stream(1428 * 2, &data(1000), 1428, false));
        pkts.push(tcp(1428 * 2 + 1000, ACK, &data(1428)));
        pkts.push(tcp(1428 * 3 + 1000, ACK, &data(1428)));
        pkts.push(tcp(1428 * 4 + 1000, ACK | FIN, &data(10)));
        pkts.push(tcp(1428 * 4 + 1010, ACK, &data(1428)));
        let w = writes(&pkts);
        let lens: Vec<usize> = w.iter().map(|(_, p)| p.len() - 52).collect();
        assert_eq!(lens, vec![1428 * 2, 1000, 1428 * 2, 10, 1428]);
        // A pure ACK, an ICMP packet and a different window pass on their own.
        let mut icmp = tcp(0, ACK, &[]);
        icmp[9] = 1;
        let ack = tcp(0, ACK, &[]);
        let mut win = tcp(1428, ACK, &data(1428));
        win[35] = 1;
        fix(&mut win);
        let pkts = vec![tcp(0, ACK, &data(1428)), ack, icmp, win];
        assert!(writes(&pkts).iter().all(|(h, _)| h.is_none()));
        assert_eq!(writes(&pkts).len(), 4);
    }
}
