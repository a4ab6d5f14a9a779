//! `ipip_wire`: the raw-socket wire of rcon's userspace IPIP alone (no TUN,
//! no TCP), for hack/bench-cluster.sh; see src/net/overlay/ipip_user/probe.rs.
//!
//!     ipip_wire send LOCAL DST SECS THREADS [PACKET_BYTES]
//!     ipip_wire receive LOCAL PEER
//!
//! `receive` waits up to 10 s for the first packet, stops 1 s after the
//! last, and prints `packets N bytes B secs S payload_gbps G` (G: the TCP
//! payload those packets would have carried, per second); `send` prints
//! `sent N`.

// Every `unsafe` says why it is sound, as in the crate.
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rcon::net::overlay::ipip_user::probe;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T> {
    let v = args.get(i).with_context(|| format!("ipip_wire: missing {what}"))?;
    v.parse().map_err(|_| anyhow::anyhow!("ipip_wire: {what}: cannot read {v:?}"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("send") => {
            let local: Ipv4Addr = arg(&args, 1, "LOCAL")?;
            let dst: Ipv4Addr = arg(&args, 2, "DST")?;
            let secs: f64 = arg(&args, 3, "SECS")?;
            let threads: usize = arg(&args, 4, "THREADS")?;
            let size: usize = if args.len() > 5 { arg(&args, 5, "PACKET_BYTES")? } else { 1500 };
            println!("sent {}", probe::send(local, dst, size, secs, threads)?);
        }
        Some("receive") => {
            let local: Ipv4Addr = arg(&args, 1, "LOCAL")?;
            let peer: Ipv4Addr = arg(&args, 2, "PEER")?;
            let got = probe::receive(local, peer, Duration::from_secs(10), Duration::from_secs(1))?;
            let size = got.bytes.checked_div(got.packets).unwrap_or(0) as usize;
            let payload = got.packets as f64 * probe::payload_per_packet(size) as f64;
            let gbps = if got.secs > 0.0 { payload * 8.0 / got.secs / 1e9 } else { 0.0 };
            println!("packets {} bytes {} secs {:.3} payload_gbps {gbps:.3}", got.packets, got.bytes, got.secs);
        }
        _ => bail!("usage: ipip_wire send LOCAL DST SECS THREADS [PACKET_BYTES] | ipip_wire receive LOCAL PEER"),
    }
    Ok(())
}
