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
pub mod etcd;
pub mod flannel;
pub mod ipip_ebpf;
pub mod ipip_user;
mod manage;
pub mod member;
pub mod reconcile;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::net::macaddr::Mac;
use crate::store::{Broken, Named, Read, Records};
use crate::sys::proc::Creator;

pub use manage::{
    add_node, add_node_with, init, init_with, remove_node, remove_node_with, repair, repair_with, reset, InitRequest,
};

use std::collections::BTreeMap;

/// How pods on different nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    HostGw,
    Vxlan,
    VxlanL2,
    Ipip,
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "host-gw" => Backend::HostGw,
            "vxlan" => Backend::Vxlan,
            "vxlan-l2" => Backend::VxlanL2,
            "ipip" => Backend::Ipip,
            _ => bail!("unknown cluster backend {s:?}: use host-gw, vxlan, vxlan-l2 or ipip"),
        })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::HostGw => "host-gw",
            Backend::Vxlan => "vxlan",
            Backend::VxlanL2 => "vxlan-l2",
            Backend::Ipip => "ipip",
        })
    }
}

impl Backend {
    /// Bytes of encapsulation: the pod MTU is the underlay's minus these.
    pub fn overhead(self) -> u32 {
        match self {
            Backend::HostGw => 0,
            // outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)
            Backend::Vxlan | Backend::VxlanL2 => 50,
            Backend::Ipip => 20,
        }
    }
}

/// Which IPIP data plane: the kernel's, rcon's userspace one, or the
/// kernel's when it has one and userspace otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpipMode {
    #[default]
    Auto,
    Kernel,
    /// tc eBPF programs (ipip_ebpf): kernel speed without ipip.ko.
    Ebpf,
    Userspace,
}

impl std::str::FromStr for IpipMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => IpipMode::Auto,
            "kernel" => IpipMode::Kernel,
            "ebpf" => IpipMode::Ebpf,
            "userspace" => IpipMode::Userspace,
            _ => bail!("unknown --ipip-mode {s:?}: use auto, kernel, ebpf or userspace"),
        })
    }
}

pub const DEFAULT_VNI: u32 = 1;
pub const DEFAULT_PORT: u16 = 4789;
pub const DEFAULT_NETWORK: &str = "cluster";
/// VNIs are 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// This node's side of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub cidr: Ipv4Net,
    pub node_subnet: Ipv4Net,
    pub backend: Backend,
    pub vni: u32,
    pub port: u16,
    pub underlay: String,
    pub underlay_ip: Ipv4Addr,
    /// The pods' MTU: the underlay's minus the backend's overhead.
    pub mtu: u32,
    pub network: String,
    /// This node's VTEP MAC (vxlan backends): derived from the underlay
    /// address, so it is the same after a restart and peers can work it out.
    pub vtep_mac: Mac,
    #[serde(default)]
    pub ipip_mode: IpipMode,
    /// The IPIP data plane in use (`kernel`, `ebpf` or `userspace`), ipip only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_plane: Option<IpipMode>,
    /// The userspace IPIP supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<Creator>,
    /// The etcd mode: where the leases are and which one is this node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Membership>,
    pub created: String,
}

/// This node's lease in the etcd store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    #[serde(flatten)]
    pub at: etcd::Endpoint,
    /// The etcd lease this node's key is attached to.
    pub lease: i64,
    pub lease_ttl_secs: u64,
    /// flannel's subnet.env, written for tools built for flannel.
    pub subnet_file: PathBuf,
}

impl Cluster {
    /// This node's lease key name (`10.244.1.0-24`).
    pub fn lease_name(&self) -> String {
        flannel::key_name(self.node_subnet)
    }
}

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

pub fn dir(data_root: &Path) -> PathBuf {
    data_root.join("cluster")
}

fn config_path(data_root: &Path) -> PathBuf {
    dir(data_root).join("cluster.json")
}

/// This node's cluster settings, if it has joined one.
pub fn load(data_root: &Path) -> Result<Option<Cluster>> {
    match read(data_root) {
        Read::Good(c) => Ok(Some(c)),
        Read::Gone => Ok(None),
        Read::Bad(cause) => Err(broken_config(data_root, cause).error()),
    }
}

fn read(data_root: &Path) -> Read<Cluster> {
    crate::store::read_record(&config_path(data_root))
}

fn broken_config(data_root: &Path, cause: String) -> Broken {
    Broken::new("cluster", "settings", &config_path(data_root), cause)
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

/// This node's cluster, or the error every cluster command gives without one.
pub fn require(data_root: &Path) -> Result<Cluster> {
    load(data_root)?.ok_or_else(|| anyhow::anyhow!("this node is in no cluster: run `rcon cluster init` first"))
}

fn save(data_root: &Path, c: &Cluster) -> Result<()> {
    crate::store::write_json(&config_path(data_root), c)
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
    fn backends_round_trip() {
        for b in ["host-gw", "vxlan", "vxlan-l2", "ipip"] {
            assert_eq!(b.parse::<Backend>().unwrap().to_string(), b);
        }
        assert!("gre".parse::<Backend>().is_err());
        assert_eq!(Backend::Vxlan.overhead(), 50);
        assert_eq!(Backend::Ipip.overhead(), 20);
    }

    #[test]
    fn ipip_modes_parse_and_name_the_choices() {
        for (s, m) in [("auto", IpipMode::Auto), ("kernel", IpipMode::Kernel), ("ebpf", IpipMode::Ebpf)] {
            assert_eq!(s.parse::<IpipMode>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{s}\""));
        }
        let err = "bpf".parse::<IpipMode>().unwrap_err().to_string();
        assert!(err.contains("auto, kernel, ebpf or userspace"), "{err}");
    }

    #[test]
    fn vtep_mac_is_stable_and_local() {
        let m = vtep_mac_for("192.168.50.2".parse().unwrap()).octets();
        assert_eq!(m, [0x0e, 0x52, 192, 168, 50, 2]);
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        assert_eq!(m[0] & 0x01, 0, "unicast");
    }
}
