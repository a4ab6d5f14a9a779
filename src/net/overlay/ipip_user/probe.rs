//! The wire alone, measured: full-size IPIP packets sent with the data
//! plane's own sending code (`worker::Tx`: head and body apart, one
//! sendmmsg per 45 packets, as a 64 KB super-packet makes) and taken by a
//! receiver that reads and checks them as the data plane does
//! (`worker::RxBatch`, `decap_range`), with no TUN, TCP or application at
//! either end. What it moves is the ceiling of any TUN + raw-socket design
//! on the machine it runs on; hack/bench-cluster.sh reports it beside the
//! pod paths (through examples/ipip_wire.rs).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::sock::{rx_socket, tx_socket};
use super::table::{decap_range, outer_header, Table, OUTER_LEN};
use super::worker::{broken_socket, RxBatch, Tx, BATCH};
use super::Peer;
use crate::sys::rawsock::{errno, os_err};

/// Packets per sendmmsg: the segments of one 64 KB TSO super-packet.
const ROUND: usize = 45;
/// The inner packets' addresses, from the benchmarking range (RFC 2544).
const INNER_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const INNER_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// Inner IPv4 and TCP headers with timestamps: what each packet carries
/// beyond TCP payload, so that a count of packets converts to the payload
/// rate iperf3 would report for the same packets.
pub const INNER_HEADERS: usize = 20 + 32;

/// The payload bytes (as `INNER_HEADERS` counts them) of one outer packet
/// of `outer` bytes.
pub fn payload_per_packet(outer: usize) -> usize {
    outer.saturating_sub(OUTER_LEN + INNER_HEADERS)
}

/// An inner IPv4 packet's header and TCP header, for `len` bytes in all.
fn inner_headers(len: usize) -> [u8; INNER_HEADERS] {
    let mut h = [0u8; INNER_HEADERS];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    h[6] = 0x40; // DF, as TCP sends
    h[8] = 64;
    h[9] = 6;
    h[12..16].copy_from_slice(&INNER_SRC.octets());
    h[16..20].copy_from_slice(&INNER_DST.octets());
    h[32] = 8 << 4; // TCP data offset: 32 bytes
    h[33] = 0x10; // ACK
    h
}

/// Send `outer`-byte IPIP packets from `local` to `dst` for `secs`, from
/// `threads` threads each with its own socket; the packets handed to the
/// kernel.
pub fn send(local: Ipv4Addr, dst: Ipv4Addr, outer: usize, secs: f64, threads: usize) -> Result<u64> {
    if !(OUTER_LEN + INNER_HEADERS..=1 << 16).contains(&outer) || threads == 0 {
        bail!("probe: want a packet size from {} to 65536 and at least one thread", OUTER_LEN + INNER_HEADERS);
    }
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let workers: Vec<_> =
        (0..threads).map(|_| std::thread::spawn(move || send_until(local, dst, outer, until))).collect();
    let mut sent = 0;
    for w in workers {
        sent += w.join().map_err(|_| anyhow::anyhow!("probe: a sending thread panicked"))??;
    }
    Ok(sent)
}

fn send_until(local: Ipv4Addr, dst: Ipv4Addr, outer: usize, until: Instant) -> Result<u64> {
    let raw = tx_socket()?;
    let mut tx = Tx::new(ROUND)?;
    let inner = inner_headers(outer - OUTER_LEN);
    let body = vec![0u8; outer - OUTER_LEN - INNER_HEADERS];
    let (head_len, fd) = (OUTER_LEN + INNER_HEADERS, raw.as_raw_fd());
    let mut sent = 0;
    while Instant::now() < until {
        for _ in 0..ROUND {
            let head = tx.next_head(fd);
            head[..OUTER_LEN].copy_from_slice(&outer_header(&inner, local, dst));
            head[OUTER_LEN..head_len].copy_from_slice(&inner);
            tx.push(dst, head_len, &body);
        }
        tx.flush(fd);
        sent += ROUND as u64;
    }
    Ok(sent)
}

/// What `receive` took: packets that passed the data plane's checks, their
/// bytes (outer headers included), and the time from the first to the last.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    pub packets: u64,
    pub bytes: u64,
    pub secs: f64,
}

/// Receive IPIP packets from `peer` at `local` until none has come for
/// `idle` after the first (or for `first` before it).
pub fn receive(local: Ipv4Addr, peer: Ipv4Addr, first: Duration, idle: Duration) -> Result<Received> {
    let raw = rx_socket(local)?;
    let table = Table::new(vec![Peer { subnet: ipnet::Ipv4Net::new(INNER_SRC, 24)?, underlay_ip: peer }]);
    let mut rx = RxBatch::new(BATCH);
    let mut got = Received::default();
    let mut start = None;
    let mut last = Instant::now();
    set_timeout(&raw, first)?;
    loop {
        let r = rx.recv(raw.as_raw_fd());
        if r < 0 {
            match errno() {
                libc::EAGAIN => break,
                e if broken_socket(e) => return os_err("probe: receiving from the raw socket"),
                // EINTR, or an ICMP error about a packet: not ours to count.
                _ => continue,
            }
        }
        last = Instant::now();
        if start.is_none() {
            start = Some(last);
            set_timeout(&raw, idle)?;
        }
        rx.each(r as usize, |_, outer| {
            if decap_range(outer, &table).is_some() {
                got.packets += 1;
                got.bytes += outer.len() as u64;
            }
        });
    }
    got.secs = start.map_or(0.0, |s| (last - s).as_secs_f64());
    Ok(got)
}

fn set_timeout(fd: &impl AsRawFd, d: Duration) -> Result<()> {
    let tv = libc::timeval { tv_sec: d.as_secs() as libc::time_t, tv_usec: d.subsec_micros() as libc::suseconds_t };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: the kernel reads `len` bytes, one timeval, from `tv`, alive for the call.
    if unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), len)
    } < 0
    {
        return os_err("SO_RCVTIMEO on the probe's receiving socket");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_packets_pass_the_data_planes_checks() {
        let outer_len = 1500;
        let inner = inner_headers(outer_len - OUTER_LEN);
        let mut pkt = outer_header(&inner, Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)).to_vec();
        pkt[2..4].copy_from_slice(&(outer_len as u16).to_be_bytes());
        pkt.extend_from_slice(&inner);
        pkt.resize(outer_len, 0);
        let peer = Ipv4Addr::new(192, 0, 2, 1);
        let table = Table::new(vec![Peer { subnet: "198.18.1.0/24".parse().unwrap(), underlay_ip: peer }]);
        assert_eq!(decap_range(&pkt, &table), Some(OUTER_LEN..outer_len));
        // Outer DF copied from the inner packet, as for TCP.
        assert_eq!(pkt[6] & 0x40, 0x40);
        // From another underlay address they are not taken.
        let other = Table::new(vec![Peer {
            subnet: "198.18.1.0/24".parse().unwrap(),
            underlay_ip: Ipv4Addr::new(192, 0, 2, 9),
        }]);
        assert_eq!(decap_range(&pkt, &other), None);
        assert_eq!(payload_per_packet(1500), 1428);
    }
}
