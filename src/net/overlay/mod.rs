//! Cross-host pod networks. Several nodes each own a subnet of one cluster
//! range; pods on different nodes reach each other by their own addresses,
//! with no NAT, over one of four backends:
//!
//! - `host-gw`: a route to each peer's subnet via the peer's underlay address
//!   (all nodes on one L2 segment);
//! - `vxlan` (flannel-style L3): one VXLAN device without learning; per peer a
//!   permanent neighbour entry (the peer's gateway address to its VTEP MAC),
//!   a permanent FDB entry (that MAC to the peer's underlay address) and an
//!   onlink route to its subnet;
//! - `vxlan-l2`: the VXLAN device is a port of the node's bridge, so that all
//!   nodes share one L2 subnet; per peer a head-end replication FDB entry;
//! - `ipip`: the kernel's ipip device with onlink routes via each peer's
//!   underlay address, or, on a kernel without ipip, rcon's tc eBPF IPIP
//!   data plane (`ipip_ebpf`), or its userspace one (a TUN device and a raw
//!   socket: `ipip_user`).
//!
//! This node's settings are `<data-root>/cluster/cluster.json`. The peers
//! come from one of two sources behind the `Peers` trait: files under
//! `cluster/nodes/` declared by hand (`node add`, `cluster apply`), or, in
//! the etcd mode, flannel's subnet leases in etcd, which the node agent
//! watches (`member`, `agent`) and mirrors in `cluster/leases.json`.

pub mod agent;
pub mod apply;
pub mod backend;
pub mod flannel;
pub mod ipip_ebpf;
pub mod ipip_user;
mod manage;
pub mod member;
pub mod reconcile;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::net::macaddr::Mac;
use crate::store::{Broken, Named, Read, Records};

// The record and the etcd face live below `manage` (net/cluster.rs, net/etcd.rs), where the resolver
// can read them too; they are the overlay's still.
pub(crate) use crate::net::cluster::{broken_config, config_path, read, save};
pub use crate::net::cluster::{
    dir, key_name, load, require, Backend, Cluster, IpipMode, Membership, DEFAULT_NETWORK, DEFAULT_PORT, DEFAULT_VNI,
    MAX_VNI,
};
pub use crate::net::etcd;
pub use manage::{
    add_node, add_node_with, init, init_with, remove_node, remove_node_with, repair, repair_with, reset, InitRequest,
};

use std::collections::BTreeMap;

/// A peer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<Mac>,
}

impl Named for Node {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Where the peer list comes from. Files today; a distributed store later
/// implements the same three calls.
pub trait Peers {
    fn list(&self) -> Result<Vec<Node>>;
    fn put(&self, node: &Node) -> Result<()>;
    fn remove(&self, name: &str) -> Result<()>;
}

impl Peers for Records<Node> {
    fn list(&self) -> Result<Vec<Node>> {
        Records::list(self)
    }
    fn put(&self, node: &Node) -> Result<()> {
        self.save(node)
    }
    fn remove(&self, name: &str) -> Result<()> {
        Records::remove(self, name)
    }
}

/// The cluster records that cannot be read: this node's settings and peers (gc).
pub fn broken(data_root: &Path) -> Vec<Broken> {
    let mut out: Vec<Broken> = match read(data_root) {
        Read::Bad(cause) => vec![broken_config(data_root, cause)],
        _ => Vec::new(),
    };
    out.extend(peers(data_root).scan().map(|l| l.broken).unwrap_or_default());
    out
}

pub fn peers(data_root: &Path) -> Records<Node> {
    Records::new(dir(data_root).join("nodes"), "node")
}

/// The peers this node has programmed from the etcd store, in one file
/// that the agent writes once per batch (a file per peer would cost a
/// millisecond each with a thousand nodes).
pub struct LeasePeers {
    path: PathBuf,
}

impl LeasePeers {
    pub fn new(data_root: &Path) -> LeasePeers {
        LeasePeers { path: dir(data_root).join("leases.json") }
    }

    pub fn load(&self) -> Result<BTreeMap<String, Node>> {
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            _ => crate::store::read_json(&self.path),
        }
    }

    pub fn save(&self, all: &BTreeMap<String, Node>) -> Result<()> {
        crate::store::write_json(&self.path, all)
    }

    pub fn remove_file(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing the leases record"),
            _ => Ok(()),
        }
    }
}

impl Peers for LeasePeers {
    fn list(&self) -> Result<Vec<Node>> {
        Ok(self.load()?.into_values().collect())
    }
    fn put(&self, node: &Node) -> Result<()> {
        let mut all = self.load()?;
        all.insert(node.name.clone(), node.clone());
        self.save(&all)
    }
    fn remove(&self, name: &str) -> Result<()> {
        let mut all = self.load()?;
        all.remove(name);
        self.save(&all)
    }
}

/// Where this node's peers are recorded: by hand, or mirrored from etcd.
pub fn peer_store(data_root: &Path, c: &Cluster) -> Box<dyn Peers> {
    match c.store {
        Some(_) => Box::new(LeasePeers::new(data_root)),
        None => Box::new(peers(data_root)),
    }
}

/// The VTEP MAC of the node at `underlay_ip`: locally administered, unicast.
pub fn vtep_mac_for(underlay_ip: Ipv4Addr) -> Mac {
    let o = underlay_ip.octets();
    Mac([0x0e, 0x52, o[0], o[1], o[2], o[3]])
}

/// A peer's VTEP MAC: given, else derived.
pub fn vtep_mac_of(node: &Node) -> Mac {
    node.vtep_mac.unwrap_or_else(|| vtep_mac_for(node.underlay_ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_mac_is_stable_and_local() {
        let m = vtep_mac_for("192.168.50.2".parse().unwrap()).octets();
        assert_eq!(m, [0x0e, 0x52, 192, 168, 50, 2]);
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        assert_eq!(m[0] & 0x01, 0, "unicast");
    }
}
