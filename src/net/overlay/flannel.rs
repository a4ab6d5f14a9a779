//! flannel's formats in the store: the network config at `<prefix>/config`,
//! the subnet lease keys `<prefix>/subnets/10.244.52.0-24` and their JSON
//! values, and how a free subnet of the range is chosen. Pure: no store,
//! no kernel.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{Backend, Node};
use crate::net::macaddr::Mac;

/// flannel's default VXLAN port (the kernel's historical one), used when
/// the config gives none, so that a flannel node and an rcon node agree.
pub const FLANNEL_VXLAN_PORT: u16 = 8472;

/// `<prefix>/config`, as flannel writes and reads it. Fields rcon does not
/// use are kept (`rest`) so that `config get` prints what is there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    #[serde(rename = "Network")]
    pub network: Ipv4Net,
    #[serde(rename = "SubnetLen", default, skip_serializing_if = "Option::is_none")]
    pub subnet_len: Option<u8>,
    #[serde(rename = "SubnetMin", default, skip_serializing_if = "Option::is_none")]
    pub subnet_min: Option<Ipv4Addr>,
    #[serde(rename = "SubnetMax", default, skip_serializing_if = "Option::is_none")]
    pub subnet_max: Option<Ipv4Addr>,
    #[serde(rename = "Backend")]
    pub backend: BackendConfig,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "VNI", default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(rename = "Port", default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// The config checked and with flannel's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub network: Ipv4Net,
    pub subnet_len: u8,
    /// First and last subnet that may be leased (their network addresses).
    pub min: Ipv4Addr,
    pub max: Ipv4Addr,
    pub backend: Backend,
    pub vni: u32,
    pub port: u16,
}

impl NetConfig {
    /// Parse `<prefix>/config`; `key` names it in errors.
    pub fn parse(key: &str, text: &[u8]) -> Result<NetConfig> {
        serde_json::from_slice(text).map_err(|e| anyhow::anyhow!("{key}: not a flannel network config: {e}"))
    }

    /// Check it and fill in flannel's defaults: SubnetLen 24 (or Network's
    /// length + 1 for a range of /24 or smaller), the range from its second
    /// subnet to its last, VNI 1 and, for VXLAN, port 8472.
    pub fn plan(&self, key: &str) -> Result<Plan> {
        let net = self.network;
        if net != net.trunc() {
            bail!("{key}: Network {net} has host bits set (did you mean {}?)", net.trunc());
        }
        let backend: Backend = self.backend.kind.parse().with_context(|| format!("{key}: Backend.Type"))?;
        let default_len = if net.prefix_len() < 24 { 24 } else { net.prefix_len() + 1 };
        let len = self.subnet_len.unwrap_or(default_len);
        if len <= net.prefix_len() || len > 30 {
            bail!("{key}: SubnetLen {len} must be longer than Network's /{} and at most 30", net.prefix_len());
        }
        let subnets = || net.subnets(len).expect("checked length");
        // flannel leaves the range's first subnet out by default: its
        // network address is the range's own.
        let first = subnets().nth(1).expect("a shorter SubnetLen gives two subnets at least").network();
        let last = subnets().last().expect("a range has a subnet").network();
        let (min, max) = (self.subnet_min.unwrap_or(first), self.subnet_max.unwrap_or(last));
        for (what, ip) in [("SubnetMin", min), ("SubnetMax", max)] {
            if !net.contains(&ip) || Ipv4Net::new(ip, len).expect("len checked").trunc().network() != ip {
                bail!("{key}: {what} {ip} is not the start of a /{len} inside {net}");
            }
        }
        if min > max {
            bail!("{key}: SubnetMin {min} is above SubnetMax {max}");
        }
        let vni = self.backend.vni.unwrap_or(super::DEFAULT_VNI);
        if !(1..=super::MAX_VNI).contains(&vni) {
            bail!("{key}: Backend.VNI {vni} is out of range (1 to {})", super::MAX_VNI);
        }
        let port = match self.backend.port {
            Some(0) | None => FLANNEL_VXLAN_PORT,
            Some(p) => p,
        };
        Ok(Plan { network: net, subnet_len: len, min, max, backend, vni, port })
    }
}

impl Plan {
    /// The subnets that may be leased, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.network
            .subnets(self.subnet_len)
            .expect("checked length")
            .filter(|s| (self.min..=self.max).contains(&s.network()))
    }

    /// Whether `s` is a subnet this config may lease.
    pub fn allows(&self, s: Ipv4Net) -> bool {
        s.prefix_len() == self.subnet_len && s == s.trunc() && (self.min..=self.max).contains(&s.network())
    }

    /// A free subnet, starting at `seed` (mod the count) so that nodes
    /// starting at once mostly try different ones; the store's transaction
    /// settles any collision.
    pub fn pick_free(&self, taken: &HashSet<Ipv4Net>, seed: u64) -> Option<Ipv4Net> {
        let all: Vec<Ipv4Net> = self.subnets().filter(|s| !taken.contains(s)).collect();
        (!all.is_empty()).then(|| all[(seed % all.len() as u64) as usize])
    }
}

/// A lease's value, as flannel writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    #[serde(rename = "PublicIP")]
    pub public_ip: Ipv4Addr,
    #[serde(rename = "BackendType")]
    pub backend_type: String,
    #[serde(rename = "BackendData", default, skip_serializing_if = "Option::is_none")]
    pub backend_data: Option<BackendData>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendData {
    #[serde(rename = "VNI", default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(rename = "VtepMAC", default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
}

pub use crate::net::cluster::key_name;

/// The subnet of a key name.
pub fn parse_key_name(name: &str) -> Option<Ipv4Net> {
    let (ip, len) = name.split_once('-')?;
    let s = Ipv4Net::new(ip.parse().ok()?, len.parse().ok()?).ok()?;
    (s == s.trunc()).then_some(s)
}

/// What this node puts in its lease.
pub fn own_attrs(public_ip: Ipv4Addr, backend: Backend, vni: u32, vtep_mac: Mac) -> LeaseAttrs {
    let data = matches!(backend, Backend::Vxlan | Backend::VxlanL2)
        .then(|| BackendData { vni: Some(vni), vtep_mac: Some(vtep_mac.to_string()) });
    LeaseAttrs { public_ip, backend_type: backend.to_string(), backend_data: data, rest: Default::default() }
}

/// A lease as a peer of a node using `backend`: the peer's own address and
/// VTEP MAC, never derived (a flannel node's MAC is random). A lease this
/// node cannot use says why.
pub fn peer_of(name: &str, value: &[u8], backend: Backend) -> Result<Node> {
    let subnet = parse_key_name(name).with_context(|| format!("key {name:?} names no subnet"))?;
    let a: LeaseAttrs = serde_json::from_slice(value).map_err(|e| anyhow::anyhow!("not a lease: {e}"))?;
    if a.backend_type != backend.to_string() {
        bail!("its backend is {:?}, this node's {backend}", a.backend_type);
    }
    let vtep_mac = match backend {
        Backend::Vxlan => {
            let mac = a.backend_data.and_then(|d| d.vtep_mac).context("a vxlan lease without BackendData.VtepMAC")?;
            Some(Mac::for_interface(&mac).with_context(|| format!("VtepMAC {mac:?}"))?)
        }
        _ => None,
    };
    Ok(Node { name: name.to_string(), underlay_ip: a.public_ip, subnet, vtep_mac })
}

/// flannel's `subnet.env`, for tools built for flannel.
pub fn subnet_env(network: Ipv4Net, subnet: Ipv4Net, mtu: u32) -> String {
    let gw = subnet.hosts().next().unwrap_or(subnet.network());
    format!(
        "FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={gw}/{}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=true\n",
        subnet.prefix_len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Result<Plan> {
        NetConfig::parse("cfg", json.as_bytes())?.plan("cfg")
    }

    #[test]
    fn flannel_defaults() {
        let p = plan(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#).unwrap();
        assert_eq!((p.subnet_len, p.vni, p.port, p.backend), (24, 1, 8472, Backend::Vxlan));
        assert_eq!(p.subnets().count(), 255);
        assert_eq!(p.subnets().next().map(key_name).as_deref(), Some("10.244.1.0-24"));
        let p = plan(r#"{"Network":"10.9.0.0/24","Backend":{"Type":"host-gw"}}"#).unwrap();
        assert_eq!(p.subnet_len, 25);
        let p = plan(
            r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.10.0","SubnetMax":"10.244.11.0",
                "Backend":{"Type":"vxlan","VNI":7,"Port":4789,"DirectRouting":true}}"#,
        )
        .unwrap();
        assert_eq!(p.subnets().map(key_name).collect::<Vec<_>>(), ["10.244.10.0-24", "10.244.11.0-24"]);
        assert_eq!((p.vni, p.port), (7, 4789));
    }

    #[test]
    fn bad_configs_say_why() {
        let e = |j: &str| format!("{:#}", plan(j).unwrap_err());
        assert!(e("{").contains("not a flannel network config"));
        assert!(e(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#).contains("unknown cluster backend"));
        assert!(e(r#"{"Network":"10.244.0.1/16","Backend":{"Type":"vxlan"}}"#).contains("host bits"));
        assert!(e(r#"{"Network":"10.244.0.0/16","SubnetLen":16,"Backend":{"Type":"vxlan"}}"#).contains("SubnetLen"));
        assert!(e(r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.0.7","Backend":{"Type":"vxlan"}}"#)
            .contains("SubnetMin 10.244.0.7 is not the start"));
        assert!(e(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":0}}"#).contains("VNI 0"));
    }

    #[test]
    fn free_subnets_skip_taken_ones_and_run_out() {
        let p = plan(r#"{"Network":"10.1.0.0/22","SubnetMax":"10.1.2.0","Backend":{"Type":"vxlan"}}"#).unwrap();
        let a: Ipv4Net = "10.1.1.0/24".parse().unwrap();
        let taken: HashSet<Ipv4Net> = [a].into();
        for seed in 0..4 {
            assert_eq!(p.pick_free(&taken, seed), Some("10.1.2.0/24".parse().unwrap()));
        }
        let full: HashSet<Ipv4Net> = p.subnets().collect();
        assert_eq!(p.pick_free(&full, 3), None);
        assert!(p.allows(a) && !p.allows("10.1.1.0/25".parse().unwrap()));
        assert!(!p.allows("10.1.0.0/24".parse().unwrap()) && !p.allows("10.1.3.0/24".parse().unwrap()));
    }

    #[test]
    fn keys_and_leases_read_as_flannel_writes_them() {
        let s: Ipv4Net = "10.244.52.0/24".parse().unwrap();
        assert_eq!(key_name(s), "10.244.52.0-24");
        assert_eq!(parse_key_name("10.244.52.0-24"), Some(s));
        assert_eq!(parse_key_name("10.244.52.1-24"), None);
        let v = br#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"9A:5B:00:11:22:33"}}"#;
        let n = peer_of("10.244.52.0-24", v, Backend::Vxlan).unwrap();
        assert_eq!(n.underlay_ip, "192.0.2.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(n.vtep_mac.map(|m| m.to_string()).as_deref(), Some("9a:5b:00:11:22:33"));
        let e = peer_of("10.244.52.0-24", v, Backend::HostGw).unwrap_err().to_string();
        assert!(e.contains("its backend is \"vxlan\""), "{e}");
        assert!(peer_of("10.244.52.0-24", b"nope", Backend::Vxlan).unwrap_err().to_string().contains("not a lease"));
        let own = own_attrs("192.0.2.9".parse().unwrap(), Backend::Vxlan, 1, "0e:52:c0:00:02:09".parse().unwrap());
        let text = serde_json::to_string(&own).unwrap();
        assert_eq!(
            text,
            r#"{"PublicIP":"192.0.2.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:52:c0:00:02:09"}}"#
        );
        assert_eq!(
            subnet_env("10.244.0.0/16".parse().unwrap(), s, 1450),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
    }
}
