//! The daemon's ICMP answers to the pods, for what the underlay reports
//! about their packets, as a router (or the kernel's ipip) answers.
//!
//! Path MTU. When a hop on the way to a peer has a smaller MTU than this
//! node's underlay, that hop answers a full-size outer packet (DF is copied
//! from the inner one) with ICMP "fragmentation needed". The kernel takes
//! it in for us: the quoted header matches the receiving raw socket, and
//! the figure is kept on the kernel's route to the peer. From then on the
//! kernel refuses bigger DF packets to that peer with EMSGSIZE. Each
//! refused packet is answered to the inner sender, from this node, with
//! "fragmentation needed" and the path MTU less the outer header, so that
//! its TCP cuts smaller segments. Without it, full-size packets with DF set
//! would vanish without a word.
//!
//! Unreachable peers. Other "destination unreachable" errors about an outer
//! packet (the peer's address does not answer ARP, a router has no route)
//! reach the receiving socket's error queue (IP_RECVERR), quoting the start
//! of the inner packet. Its sender is told "host unreachable", so that a
//! connect to a pod on a node that is down fails at once instead of timing
//! out. (The kernel's ipip, after such an error, tells the senders of the
//! next packets instead; the sender of the packet that failed is the one
//! that needs to know.)
//!
//! At most one answer per inner source and destination per `QUIET`, the
//! way the kernel rate-limits its own ICMP.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::offload::{fold, sum};
use super::table::{header_addrs, OUTER_LEN};
use crate::sys::rawsock::{icmp_socket, path_mtu, send_to};

/// RFC 1812 4.3.2.3: an ICMP error quotes as much of the packet as fits in 576 bytes.
pub const QUOTE: usize = 576 - 20 - 8;
/// The smallest MTU an IPv4 link may have (RFC 791).
const MIN_MTU: u32 = 68;
const ICMP: u8 = 1;
pub const DEST_UNREACH: u8 = 3;
/// Codes of DEST_UNREACH (RFC 792).
pub const HOST_UNREACH: u8 = 1;
pub const FRAG_NEEDED: u8 = 4;
/// How long an inner flow that was told is not told again.
const QUIET: Duration = Duration::from_millis(100);
/// How many recent flows are remembered for `QUIET`.
const RECENT: usize = 64;

/// The ICMP "destination unreachable" message with `code` (and, for
/// FRAG_NEEDED, the next hop's `mtu`, RFC 1191) telling the sender of
/// `quote` (its IPv4 header and what follows, as much as there is); None
/// where RFC 1122 3.2.2 forbids an answer: a packet that is an ICMP error
/// itself, or not the first fragment, or from an address that is not one
/// host's.
pub fn unreachable(quote: &[u8], code: u8, mtu: u16) -> Option<Vec<u8>> {
    let (src, _) = header_addrs(quote)?;
    let ihl = usize::from(quote[0] & 0x0f) * 4;
    if quote.len() < ihl + 8 || ihl < 20 {
        return None;
    }
    let offset = u16::from_be_bytes([quote[6], quote[7]]) & 0x1fff;
    let is_error = quote[9] == ICMP && !matches!(quote[ihl], 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18);
    if offset != 0 || is_error || src.is_unspecified() || src.is_broadcast() || src.is_multicast() {
        return None;
    }
    let body = &quote[..quote.len().min(QUOTE)];
    let mut m = Vec::with_capacity(8 + body.len());
    m.extend_from_slice(&[DEST_UNREACH, code, 0, 0, 0, 0]);
    m.extend_from_slice(&mtu.to_be_bytes());
    m.extend_from_slice(body);
    let c = !fold(sum(&m, 0));
    m[2..4].copy_from_slice(&c.to_ne_bytes());
    Some(m)
}

/// Answers to the pods (one per data plane thread: it keeps no lock).
pub struct Notifier {
    /// A raw ICMP socket that sends only: its filter drops every arrival.
    sock: OwnedFd,
    /// Recently told (inner source, inner destination), and when.
    recent: Vec<((Ipv4Addr, Ipv4Addr), Instant)>,
}

impl Notifier {
    pub fn new() -> Result<Notifier> {
        Ok(Notifier { sock: icmp_socket()?, recent: Vec::with_capacity(RECENT) })
    }

    /// The kernel refused to send `quote` (the inner packet's start) to
    /// `peer` as too big: tell its sender the MTU that fits.
    pub fn too_big(&mut self, quote: &[u8], peer: Ipv4Addr) {
        let Some(mtu) = path_mtu(peer).map(|m| m.saturating_sub(OUTER_LEN as u32)) else { return };
        if mtu >= MIN_MTU {
            self.answer(quote, FRAG_NEEDED, mtu as u16);
        }
    }

    /// The underlay reported the outer packet of `quote` undeliverable:
    /// tell its sender its destination cannot be reached.
    pub fn peer_unreachable(&mut self, quote: &[u8]) {
        self.answer(quote, HOST_UNREACH, 0);
    }

    /// Send the answer, unless this flow was answered a moment ago. The
    /// kernel picks the source: this node's address towards the sender.
    fn answer(&mut self, quote: &[u8], code: u8, mtu: u16) {
        let Some(flow) = header_addrs(quote) else { return };
        let now = Instant::now();
        self.recent.retain(|(_, at)| now.duration_since(*at) < QUIET);
        if self.recent.iter().any(|(f, _)| *f == flow) || self.recent.len() >= RECENT {
            return;
        }
        let Some(msg) = unreachable(quote, code, mtu) else { return };
        self.recent.push((flow, now));
        send_to(self.sock.as_raw_fd(), &msg, flow.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1428-byte TCP/IPv4 packet's first 40 bytes, DF set.
    fn tcp_head() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&1428u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 244, 1, 2]);
        p[16..20].copy_from_slice(&[10, 244, 2, 2]);
        p[20..24].copy_from_slice(&[0x9c, 0x40, 0x1b, 0x59]);
        p
    }

    fn frag_needed(q: &[u8], mtu: u16) -> Option<Vec<u8>> {
        unreachable(q, FRAG_NEEDED, mtu)
    }

    #[test]
    fn host_unreachable_quotes_the_packet() {
        let q = tcp_head();
        let m = unreachable(&q, HOST_UNREACH, 0).unwrap();
        assert_eq!(&m[..2], &[3, 1]);
        assert_eq!(&m[4..8], &[0, 0, 0, 0]);
        assert_eq!(&m[8..], &q[..]);
        assert_eq!(fold(sum(&m, 0)), 0xffff, "the checksum must verify");
    }

    #[test]
    fn frag_needed_quotes_the_packet_and_names_the_mtu() {
        let q = tcp_head();
        let m = frag_needed(&q, 1380).unwrap();
        assert_eq!(&m[..2], &[3, 4]);
        assert_eq!(&m[4..6], &[0, 0]);
        assert_eq!(u16::from_be_bytes([m[6], m[7]]), 1380);
        assert_eq!(&m[8..], &q[..]);
        assert_eq!(fold(sum(&m, 0)), 0xffff, "the checksum must verify");
    }

    #[test]
    fn frag_needed_quotes_at_most_576_bytes_in_all() {
        let mut q = tcp_head();
        q.resize(1400, 0xab);
        let m = frag_needed(&q, 1380).unwrap();
        assert_eq!(20 + m.len(), 576);
    }

    #[test]
    fn frag_needed_stays_silent_where_rfc_1122_says_so() {
        let mut later_fragment = tcp_head();
        later_fragment[7] = 185;
        assert!(frag_needed(&later_fragment, 1380).is_none());
        let mut icmp_error = tcp_head();
        icmp_error[9] = 1;
        icmp_error[20] = 3;
        assert!(frag_needed(&icmp_error, 1380).is_none());
        let mut echo = icmp_error.clone();
        echo[20] = 8;
        assert!(frag_needed(&echo, 1380).is_some(), "an echo request is answered");
        let mut from_nobody = tcp_head();
        from_nobody[12..16].copy_from_slice(&[0, 0, 0, 0]);
        assert!(frag_needed(&from_nobody, 1380).is_none());
        assert!(frag_needed(&tcp_head()[..27], 1380).is_none(), "8 bytes past the header are needed");
    }
}
