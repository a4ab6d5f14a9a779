//! TCP/IPv4 packets for the offload tests.

use super::checksum::{complete_csum, fold, pseudo, set_ip_csum, sum};
use super::TCP;

/// A TCP/IPv4 packet with timestamps (12 bytes of options), checksums right.
pub fn tcp(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + 32;
    let total = hlen + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[1] = 0x02;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = TCP;
    p[12..20].copy_from_slice(&[10, 244, 1, 1, 10, 244, 2, 1]);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&77u32.to_be_bytes());
    p[32] = 8 << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&500u16.to_be_bytes());
    p[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
    p[hlen..].copy_from_slice(payload);
    fix(&mut p);
    p
}

/// Checksums right again after a change.
pub fn fix(p: &mut [u8]) {
    set_ip_csum(p, 20);
    let seed = fold(pseudo(p, TCP, p.len() - 20));
    p[36..38].copy_from_slice(&seed.to_ne_bytes());
    assert!(complete_csum(p, 20, 16));
}

pub fn ip_ok(p: &[u8]) -> bool {
    fold(sum(&p[..20], 0)) == 0xffff
}

pub fn tcp_ok(p: &[u8]) -> bool {
    fold(sum(&p[20..], pseudo(p, TCP, p.len() - 20))) == 0xffff
}

pub fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}
