//! IPIP (RFC 2003) through tc eBPF, for kernels without ipip.ko but with
//! clsact, `bpf_skb_adjust_room`'s L3 encap flags and `bpf_redirect_neigh`.
//! The programs are ipip_ebpf/ipip.bpf.c (compiled by build.rs); this file
//! loads them with aya and keeps their maps in step with the peer list.
//!
//! Layout, as the kernel's ipip device has it: rcon's veth `rcon-ebpf`
//! (its other end, `rcon-ebpf-p`, carries nothing) is where the routes to the
//! peers' pod subnets point, with the underlay's MTU minus 20, so the kernel
//! itself does the path MTU work (local EMSGSIZE, "fragmentation needed" for
//! forwarded packets). Its egress program encapsulates and sends the packet
//! out of the underlay; the underlay's ingress program decapsulates what its
//! peers send and hands it to `rcon-ebpf` as if that device received it.
//!
//! Decapsulated packets keep the kernel's tunnel marks, which would make
//! the cluster bridge cut every GSO packet in software: the bridge's
//! shortcut (net::shortcut) hands them to the pod's port whole instead.
//!
//! Nothing is pinned: each program is held by its tc filter and the maps by
//! the programs. Deleting `rcon-ebpf` and the underlay's filter (teardown)
//! frees it all; a later rcon finds the maps through the program that the
//! underlay's filter holds. The filters stay after rcon exits.

use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHash, MapData};
use aya::programs::TcAttachType;
use aya::EbpfLoader;

use super::{Cluster, Node};
use crate::net::link::Netlink;
use crate::net::links::{Links, Veth};
use crate::net::macaddr::Mac;
use crate::net::shortcut;
use crate::net::tc_bpf::{self, attach, map_named};

/// The device the routes to peers point at (the tunnel device's place).
pub const DEV: &str = "rcon-ebpf";
/// Its veth peer: unused, up only so that the pair has a carrier.
const DEV_PEER: &str = "rcon-ebpf-p";
const OUT_PROG: &str = "rcon_ipip_out";
const IN_PROG: &str = "rcon_ipip_in";
const CFG_MAP: &str = "rcon_ipip_cfg";
const NETS_MAP: &str = "rcon_ipip_nets";
const PEERS_MAP: &str = "rcon_ipip_peers";

/// The programs' object; empty when rcon was built without clang.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipip.bpf.o"));

/// The programs' settings, as `struct cfg` in ipip.bpf.c.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Cfg {
    /// This node's underlay address, in network byte order.
    local: u32,
    underlay: u32,
    dev: u32,
    dev_mac: [u8; 6],
    pad: [u8; 2],
}

// SAFETY: Cfg is #[repr(C)] with no padding (3 × 4 + 6 + 2 bytes), made of
// integers only, so every bit pattern is a valid value, as aya::Pod requires.
unsafe impl aya::Pod for Cfg {}

/// An address as the programs compare it: its bytes in network order.
fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// `rcon-ebpf`'s MAC: decapsulated frames are addressed to it, and the
/// peers' gateways resolve to it.
pub fn dev_mac(c: &Cluster) -> Mac {
    super::vtep_mac_for(c.underlay_ip)
}

/// Whether this rcon has the programs built in.
pub fn built_in() -> bool {
    !OBJECT.is_empty()
}

/// Make `rcon-ebpf`, load the programs and attach them, and put the
/// shortcut on the cluster network's `bridge`; returns the device's index.
/// On failure, what was made is removed again.
pub fn setup(node: &dyn Links, c: &Cluster, bridge: &str) -> Result<u32> {
    if !built_in() {
        bail!("this rcon was built without clang, so it has no eBPF IPIP data plane (`make deps` installs clang)");
    }
    let res = (|| {
        let here = std::fs::File::open("/proc/thread-self/ns/net").context("opening this network namespace")?;
        let mut peer_mac = dev_mac(c).octets();
        peer_mac[1] ^= 0x01;
        let idx = node.create_veth(&Veth {
            local: DEV,
            local_mac: Some(dev_mac(c)),
            peer: DEV_PEER,
            peer_ns: &here,
            peer_mac: Mac(peer_mac),
            mtu: c.mtu,
        })?;
        let peer = node.require(DEV_PEER)?;
        node.no_ipv6_addresses(peer)?;
        node.up(peer, None)?;
        load_and_attach(node, c, idx)?;
        shortcut::enable(node, bridge)?;
        Ok(idx)
    })();
    if res.is_err() {
        let _ = teardown(node, c);
    }
    res
}

fn load_and_attach(node: &dyn Links, c: &Cluster, dev: u32) -> Result<()> {
    let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = Cfg {
        local: be(c.underlay_ip),
        underlay: node.require(&c.underlay)?,
        dev,
        dev_mac: dev_mac(c).octets(),
        pad: [0; 2],
    };
    let mut cfg_map: Array<_, Cfg> = Array::try_from(ebpf.map_mut(CFG_MAP).context("the object has no config map")?)?;
    cfg_map.set(0, cfg, 0).context("writing the eBPF IPIP config")?;
    attach(&mut ebpf, OUT_PROG, DEV, TcAttachType::Egress)?;
    attach(&mut ebpf, IN_PROG, &c.underlay, TcAttachType::Ingress)
}

/// Remove `rcon-ebpf` (its filter and program go with it) and the
/// underlay's filter. Gone is done.
pub fn teardown(node: &dyn Links, c: &Cluster) -> Result<()> {
    node.delete_by_name(DEV)?;
    if node.index(&c.underlay)?.is_none() || in_prog_id(node, c)?.is_none() {
        return Ok(());
    }
    tc_bpf::detach(&c.underlay, TcAttachType::Ingress, IN_PROG)
}

/// Whether the underlay's ingress program and the bridge's shortcut are
/// attached (repair re-attaches them when someone removed one).
pub fn attached(node: &dyn Links, c: &Cluster, bridge: &str) -> Result<bool> {
    Ok(in_prog_id(node, c)?.is_some() && shortcut::enabled(node, bridge)?)
}

fn in_prog_id(node: &dyn Links, c: &Cluster) -> Result<Option<u32>> {
    let idx = node.require(&c.underlay)?;
    let filters = Netlink::current()?.bpf_filters(idx, true)?;
    Ok(filters.into_iter().find(|(name, _)| name == IN_PROG).map(|(_, id)| id))
}

/// Make the programs' maps say exactly `peers`: each peer's pod subnet to
/// its underlay address, and its underlay address as one to take IPIP from.
pub fn sync(node: &dyn Links, c: &Cluster, peers: &[Node]) -> Result<()> {
    let repair =
        || format!("the eBPF IPIP programs are not attached to {} and {DEV}: run `rcon cluster repair`", c.underlay);
    let inbound = in_prog_id(node, c)?.with_context(repair)?;
    // The kernel lists a program's maps only if it uses them: the
    // subnets are the egress program's, the peers the ingress one's.
    let dev = node.require(DEV)?;
    let outbound = Netlink::current()?
        .bpf_filters(dev, false)?
        .into_iter()
        .find(|(name, _)| name == OUT_PROG)
        .map(|(_, id)| id)
        .with_context(repair)?;
    let mut ids = crate::sys::bpf::prog_map_ids(inbound).context("listing the eBPF IPIP maps")?;
    ids.extend(crate::sys::bpf::prog_map_ids(outbound).context("listing the eBPF IPIP maps")?);

    let mut nets: LpmTrie<MapData, u32, u32> = LpmTrie::try_from(map_named(&ids, NETS_MAP)?)?;
    let want: Vec<(Key<u32>, u32)> = peers
        .iter()
        .map(|p| (Key::new(p.subnet.prefix_len().into(), be(p.subnet.network())), be(p.underlay_ip)))
        .collect();
    let stale: Vec<Key<u32>> =
        nets.keys().filter_map(Result::ok).filter(|k| !want.iter().any(|(w, _)| same_key(w, k))).collect();
    for k in stale {
        nets.remove(&k).context("removing a peer subnet from the eBPF IPIP map")?;
    }
    for (k, v) in &want {
        nets.insert(k, v, 0).context("adding a peer subnet to the eBPF IPIP map")?;
    }

    let mut known: BpfHash<MapData, u32, u32> = BpfHash::try_from(map_named(&ids, PEERS_MAP)?)?;
    let want: Vec<u32> = peers.iter().map(|p| be(p.underlay_ip)).collect();
    let stale: Vec<u32> = known.keys().filter_map(Result::ok).filter(|k| !want.contains(k)).collect();
    for k in stale {
        known.remove(&k).context("removing a peer from the eBPF IPIP map")?;
    }
    for k in &want {
        known.insert(k, 1, 0).context("adding a peer to the eBPF IPIP map")?;
    }
    Ok(())
}

fn same_key(a: &Key<u32>, b: &Key<u32>) -> bool {
    a.prefix_len() == b.prefix_len() && a.data() == b.data()
}
