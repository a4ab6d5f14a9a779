//! The bridge shortcut: a tc program on a bridge's egress (shortcut.bpf.c)
//! that hands each GSO packet the node routes to one of the bridge's own
//! endpoints straight to that endpoint's port.
//!
//! Why it exists: a packet decapsulated by the eBPF IPIP plane keeps the
//! kernel's tunnel marks (`skb->encapsulation`, `SKB_GSO_IPXIP4`), which
//! `bpf_skb_adjust_room` cannot clear and the kernel's own tunnels do. A
//! bridge offers no offloads for tunnel packets (its `hw_enc_features`), so
//! the kernel cut each 64 KB packet into 1480-byte ones with software
//! checksums as it entered the cluster bridge: 45 packets through the
//! bridge, the veth and the pod's TCP instead of one, and a third of vxlan's
//! throughput. A veth offers every offload, so the same packet handed to
//! the port stays whole.
//!
//! What it skips, for those packets only: the bridge's FDB lookup, the
//! bridge family's output hooks and a capture on the bridge device (one on
//! the port sees them). Routing, the inet forward and postrouting hooks and
//! the neighbour lookup have run before; every other frame crosses the
//! bridge as before. The eBPF IPIP plane enables it on the cluster bridge;
//! attach and detach keep its map (address → port) in step for networks of
//! a cluster, and `cluster repair` refills it. Nothing is pinned: deleting
//! the bridge frees the program and its map. A stale entry can do no harm:
//! a frame whose neighbour MAC is not the entry's takes the bridge.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use aya::maps::{HashMap as BpfHash, MapData};
use aya::programs::TcAttachType;
use aya::EbpfLoader;

use super::links::Links;
use super::macaddr::Mac;
use super::tc_bpf;

const PROG: &str = "rcon_shortcut";
const MAP: &str = "rcon_sc_ports";

/// The program's object; empty when rcon was built without clang.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shortcut.bpf.o"));

/// An endpoint on the bridge: its address, MAC and port (the node end of its veth, by name).
pub struct Endpoint<'a> {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub port: &'a str,
}

/// A map value, as `struct port` in shortcut.bpf.c.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Port {
    ifindex: u32,
    mac: [u8; 6],
    pad: [u8; 2],
}

// SAFETY: Port is #[repr(C)] with no padding (4 + 6 + 2 bytes), made of
// integers only, so every bit pattern is a valid value, as aya::Pod requires.
unsafe impl aya::Pod for Port {}

type Ports = BpfHash<MapData, u32, Port>;

/// An address as the program compares it: its bytes in network order.
fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// Put the shortcut on `bridge`'s egress, unless it is there.
pub fn enable(node: &dyn Links, bridge: &str) -> Result<()> {
    if enabled(node, bridge)? {
        return Ok(());
    }
    if OBJECT.is_empty() {
        anyhow::bail!("this rcon was built without clang, so it has no bridge shortcut (`make deps` installs clang)");
    }
    let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| anyhow::anyhow!("{e}"))?;
    tc_bpf::attach(&mut ebpf, PROG, bridge, TcAttachType::Egress)
}

/// Whether `bridge` has the shortcut.
pub fn enabled(node: &dyn Links, bridge: &str) -> Result<bool> {
    Ok(prog_id(node, bridge)?.is_some())
}

fn prog_id(node: &dyn Links, bridge: &str) -> Result<Option<u32>> {
    let Some(idx) = node.index(bridge)? else { return Ok(None) };
    Ok(node.tc_programs(idx, false)?.into_iter().find(|(n, _)| n == PROG).map(|(_, id)| id))
}

/// The shortcut's map on `bridge`, when it has the shortcut.
fn ports(node: &dyn Links, bridge: &str) -> Result<Option<Ports>> {
    let Some(id) = prog_id(node, bridge)? else { return Ok(None) };
    let ids = crate::sys::bpf::prog_map_ids(id).context("listing the bridge shortcut's maps")?;
    Ok(Some(Ports::try_from(tc_bpf::map_named(&ids, MAP)?)?))
}

/// Send `ep`'s GSO packets straight to its port, if `bridge` has the shortcut.
pub fn add(node: &dyn Links, bridge: &str, ep: &Endpoint) -> Result<()> {
    let Some(mut map) = ports(node, bridge)? else { return Ok(()) };
    insert(node, &mut map, ep)
}

fn insert(node: &dyn Links, map: &mut Ports, ep: &Endpoint) -> Result<()> {
    let ifindex = node.require(ep.port)?;
    let value = Port { ifindex, mac: ep.mac.octets(), pad: [0; 2] };
    let ctx = || format!("adding {} to the bridge shortcut", ep.ip);
    match map.insert(key(ep.ip), value, 0) {
        // Full of entries whose ports are gone (detaches that crashed): drop those, then again.
        Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
            prune(map)?;
            map.insert(key(ep.ip), value, 0).with_context(ctx)
        }
        r => r.with_context(ctx),
    }
}

/// Entries whose port no longer exists in this namespace.
fn prune(map: &mut Ports) -> Result<()> {
    let gone: Vec<u32> = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, p)| nix::net::if_::if_indextoname(p.ifindex).is_err())
        .map(|(k, _)| k)
        .collect();
    for k in gone {
        map.remove(&k).context("removing a stale entry of the bridge shortcut")?;
    }
    Ok(())
}

/// Forget `ip`'s port, if `bridge` has the shortcut. Gone is done.
pub fn remove(node: &dyn Links, bridge: &str, ip: Ipv4Addr) -> Result<()> {
    let Some(mut map) = ports(node, bridge)? else { return Ok(()) };
    match map.remove(&key(ip)) {
        Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.with_context(|| format!("removing {ip} from the bridge shortcut")),
    }
}

/// Make the map hold `eps` (repair, after the program was loaded again), and drop the entries whose
/// port is gone. Not every entry `eps` lacks: an attach records its endpoint before it adds the entry,
/// so one that saved its record after the caller listed them has a live port and an entry this must
/// keep. Likewise an endpoint of `eps` whose port went meanwhile (a detach in flight) is skipped.
pub fn refill(node: &dyn Links, bridge: &str, eps: &[Endpoint]) -> Result<()> {
    let Some(mut map) = ports(node, bridge)? else { return Ok(()) };
    prune(&mut map)?;
    for ep in eps {
        if node.index(ep.port)?.is_some() {
            insert(node, &mut map, ep)?;
        }
    }
    Ok(())
}
