//! Internet checksums (RFC 1071) over byte buffers, in the native word
//! order the TUN header uses.

/// The one's complement sum of `data` (RFC 1071), unfolded, in native word
/// order (which gives the right bytes back once folded and stored with
/// `to_ne_bytes`). Chunks summed one after another must each start at an
/// even offset of the whole.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
        acc += (v & 0xffff_ffff) + (v >> 32);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_ne_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        acc += u64::from(u16::from_ne_bytes([*b, 0]));
    }
    acc
}

/// `acc` folded to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of the IPv4 pseudo-header of a `len`-byte TCP or UDP segment.
pub(super) fn pseudo(ip: &[u8], proto: u8, len: usize) -> u64 {
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&ip[12..20]);
    p[9] = proto;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    sum(&p, 0)
}

/// Store the IPv4 header checksum of `ip[..ihl]`.
pub fn set_ip_csum(ip: &mut [u8], ihl: usize) {
    ip[10..12].fill(0);
    let c = !fold(sum(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_ne_bytes());
}

/// Finish a partial checksum (`NEEDS_CSUM`): the field at `start + offset`
/// holds the pseudo-header sum, the rest of the packet from `start` on is
/// summed over it. False when the offsets do not fit the packet.
pub fn complete_csum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if !start.is_multiple_of(2) || at + 2 > pkt.len() {
        return false;
    }
    let c = !fold(sum(&pkt[start..], 0));
    pkt[at..at + 2].copy_from_slice(&c.to_ne_bytes());
    true
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::overlay::ipip_user::offload::testpkt::{data, ip_ok, tcp, tcp_ok};
    use crate::net::overlay::ipip_user::offload::{ACK, PSH, TCP};

    #[test]
    fn checksum_matches_rfc1071_example_and_odd_lengths() {
        // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&b, 0)).to_ne_bytes(), [0xdd, 0xf2]);
        // The long path and the word path agree, odd tail included.
        let d = data(1001);
        let slow = d.chunks(2).fold(0u64, |a, w| a + u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])));
        assert_eq!(fold(sum(&d, 0)).to_ne_bytes(), fold(slow).to_be_bytes());
        let p = tcp(1, ACK, &d);
        assert!(ip_ok(&p) && tcp_ok(&p));
    }

    #[test]
    fn completes_a_partial_checksum() {
        let mut p = tcp(9, ACK | PSH, &data(333));
        let good = p.clone();
        // What the kernel leaves: the pseudo-header sum in the field.
        let seed = fold(pseudo(&p, TCP, p.len() - 20));
        p[36..38].copy_from_slice(&seed.to_ne_bytes());
        assert!(complete_csum(&mut p, 20, 16));
        assert_eq!(p, good);
        assert!(!complete_csum(&mut p, 20, 400));
    }
}
