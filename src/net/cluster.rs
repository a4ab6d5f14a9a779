//! This node's cluster record (`<data-root>/cluster/cluster.json`): the
//! settings the overlay made this node with and, in the etcd mode, where the
//! store is and which lease is this node's. Below both the overlay, which
//! writes it, and the resolver, which reads it to publish this node's names
//! to the other nodes (docs/DNS.md "Across nodes"): the overlay sits above
//! `manage`, which tells the resolver of changes, so the resolver cannot
//! import the overlay itself.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::net::etcd;
use crate::net::macaddr::Mac;
use crate::store::{Broken, Read};
use crate::sys::proc::Creator;

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
        key_name(self.node_subnet)
    }
}

/// A subnet's lease key name, as flannel spells it (`10.244.52.0-24`).
pub fn key_name(s: Ipv4Net) -> String {
    format!("{}-{}", s.network(), s.prefix_len())
}

pub fn dir(data_root: &Path) -> PathBuf {
    data_root.join("cluster")
}

pub(crate) fn config_path(data_root: &Path) -> PathBuf {
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

pub(crate) fn read(data_root: &Path) -> Read<Cluster> {
    crate::store::read_record(&config_path(data_root))
}

pub(crate) fn broken_config(data_root: &Path, cause: String) -> Broken {
    Broken::new("cluster", "settings", &config_path(data_root), cause)
}

/// This node's cluster, or the error every cluster command gives without one.
pub fn require(data_root: &Path) -> Result<Cluster> {
    load(data_root)?.ok_or_else(|| anyhow::anyhow!("this node is in no cluster: run `rcon cluster init` first"))
}

pub(crate) fn save(data_root: &Path, c: &Cluster) -> Result<()> {
    crate::store::write_json(&config_path(data_root), c)
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
}
