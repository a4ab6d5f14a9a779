//! TUN offloads (IFF_VNET_HDR), as wireguard-go does them: pure code on
//! byte buffers, unit-tested without root.
//!
//! TUN → wire: with TSO on, a read from the TUN is a `virtio_net_hdr` and a
//! TCP/IPv4 super-packet of up to 64 KB. `tso_plan` and `tso_segment` cut
//! it into the MTU-sized packets the kernel's own TSO would make (IP total
//! length, id + 1 per segment, IP checksum; sequence number; FIN and PSH on
//! the last segment only, CWR on the first only; TCP checksum over the
//! pseudo-header), each of which becomes one IPIP packet on the wire.
//! A packet that is not GSO but left with a partial checksum
//! (`NEEDS_CSUM`) gets it completed by `complete_csum`.
//!
//! Wire → TUN: `Coalescer` merges the in-order segments of one TCP flow
//! that a recvmmsg batch holds into one super-packet, which is written to
//! the TUN with a GSO header: the kernel takes it as it takes a GRO'd one.
//! Only plain data segments merge (ACK, perhaps PSH, nothing else; same
//! addresses, ports, IP header fields, ACK number, window and options;
//! contiguous sequence numbers; a valid TCP checksum, which the kernel will
//! not check again), so what the stack sees is what GRO would have made.
//!
//! The parts: `checksum` (RFC 1071 sums, the IPv4 header checksum, a
//! partial checksum completed), `segment` (TUN → wire: a super-packet cut),
//! `coalesce` (wire → TUN: the header a packet is written with, segments
//! merged).

mod checksum;
mod coalesce;
mod segment;
#[cfg(test)]
mod testpkt;

pub use checksum::{complete_csum, fold, set_ip_csum, sum};
pub use coalesce::{has_psh, merge_head, payload_of, single_hdr, Coalescer};
pub use segment::{tso_plan, tso_segment};

/// `struct virtio_net_hdr`, the header each TUN read and write starts with.
pub const VNET_HDR_LEN: usize = 10;
pub const F_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
/// The biggest IPv4 packet.
const IP_MAX: usize = 65535;

const TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const CWR: u8 = 0x80;

/// The fields of a `virtio_net_hdr` (native byte order: a legacy TUN header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [(2, self.hdr_len), (4, self.gso_size), (6, self.csum_start), (8, self.csum_offset)] {
            b[i..i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

fn be16(b: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([b[i], b[i + 1]]))
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_round_trips() {
        let h = VnetHdr { flags: 1, gso_type: 1, hdr_len: 52, gso_size: 1428, csum_start: 20, csum_offset: 16 };
        assert_eq!(VnetHdr::parse(&h.bytes()), Some(h));
        assert_eq!(VnetHdr::parse(&[0; 9]), None);
    }
}
