//! The seam between the network logic and the kernel's network objects.
//!
//! Attach, detach, gc and the overlay backends change links, addresses,
//! routes, neighbour and FDB entries of a namespace only through `Links`.
//! `link::Netlink` implements it over rtnetlink; `net::testing::FakeLinks`
//! implements it over an in-memory model, so that unit tests see what the
//! logic would do (and undo) without root.

use std::fs::File;
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use ipnet::Ipv4Net;

use crate::net::macaddr::Mac;

/// A route as rcon needs to see it: destination and output interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dest: Ipv4Net,
    pub oif: Option<u32>,
}

/// The operations rcon's logic needs on one network namespace.
/// A veth pair: the local end's name (and MAC, when given), the peer's
/// name, namespace and MAC, and both ends' MTU.
pub struct Veth<'a> {
    pub local: &'a str,
    pub local_mac: Option<Mac>,
    pub peer: &'a str,
    pub peer_ns: &'a File,
    pub peer_mac: Mac,
    pub mtu: u32,
}

/// A VXLAN device's settings: its VNI, UDP port and local address on the
/// `underlay` link's index, with learning as asked, its MTU and its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub underlay: u32,
    pub learning: bool,
    pub mtu: u32,
    pub mac: Mac,
}

pub trait Links {
    /// A handle on the namespace of `ns` (a netns file): a container's side.
    fn in_netns(&self, ns: &File) -> Result<Box<dyn Links>>;

    /// The index of link `name`, None when there is none.
    fn index(&self, name: &str) -> Result<Option<u32>>;
    fn link_names(&self) -> Result<Vec<String>>;
    fn mtu_of(&self, index: u32) -> Result<Option<u32>>;

    /// A bridge, up, with a fixed MAC (so it does not follow its ports).
    fn create_bridge(&self, name: &str, mac: Mac, mtu: u32) -> Result<u32>;
    /// A veth pair as `v` says, its peer born inside `v.peer_ns` (so its
    /// name may clash with nothing here). Returns the index of the local
    /// end, which is left down.
    fn create_veth(&self, v: &Veth) -> Result<u32>;
    /// A VXLAN device as `v` says, left down.
    fn create_vxlan(&self, name: &str, v: &Vxlan) -> Result<u32>;
    /// A kernel ipip device with no fixed remote, left down.
    fn create_ipip(&self, name: &str, local: Ipv4Addr, underlay: u32, mtu: u32) -> Result<u32>;

    /// IPv6 address generation off on a link that is still down.
    fn no_ipv6_addresses(&self, index: u32) -> Result<()>;
    /// Enslave to `master` (when given) and bring up.
    fn up(&self, index: u32, master: Option<u32>) -> Result<()>;
    /// Rename a link (it must be down) and optionally move it to another namespace.
    fn rename_into(&self, index: u32, name: &str, ns: Option<&File>) -> Result<()>;
    fn set_address(&self, index: u32, mac: Mac) -> Result<()>;
    /// Hairpin and port isolation of a bridge port.
    fn bridge_port(&self, index: u32, hairpin: bool, isolated: bool) -> Result<()>;
    fn delete_link(&self, index: u32) -> Result<()>;
    /// Delete link `name` without waiting for the kernel to finish (a
    /// veth takes about 20 ms to unregister); what is left is gc's.
    fn delete_detached(&self, name: &str) -> Result<()>;

    fn add_address(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()>;
    /// Via a gateway (`onlink` when it is not in a local subnet), or straight out of the device.
    fn add_route(&self, dest: Ipv4Net, via: Option<Ipv4Addr>, dev: u32, onlink: bool) -> Result<()>;
    /// A permanent neighbour entry.
    fn add_neighbour(&self, index: u32, ip: Ipv4Addr, mac: Mac) -> Result<()>;
    /// Forget route `dest`, its FDB entry, its neighbour: gone is done.
    fn del_route(&self, dest: Ipv4Net) -> Result<()>;
    fn del_fdb(&self, index: u32, mac: Mac, dst: Ipv4Addr) -> Result<()>;
    fn del_neighbour(&self, index: u32, ip: Ipv4Addr) -> Result<()>;
    /// The MACs of a device's own forwarding entries that point at `dst`.
    fn fdb_macs_to(&self, index: u32, dst: Ipv4Addr) -> Result<Vec<Mac>>;

    /// Send `reqs` together and return each one's answer, in order.
    fn send_all(&self, reqs: Vec<Request>) -> Vec<Result<()>>;

    /// The IPv4 addresses (with their prefixes) of link `index`.
    fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>>;
    /// Every IPv4 address of the namespace, with the name of its link.
    fn all_ipv4_addresses(&self) -> Result<Vec<(String, Ipv4Addr)>>;
    /// The IPv4 routes of the main table.
    fn routes(&self) -> Result<Vec<Route>>;
    /// The tc BPF filters on link `index`'s clsact ingress (or egress) hook: each one's program
    /// name and id. None on a link without clsact, nor in a fake world (no program runs there).
    fn tc_programs(&self, index: u32, ingress: bool) -> Result<Vec<(String, u32)>>;

    /// A sysctl under `/proc/sys/net/` of this namespace (`ipv4/ip_forward`).
    fn sysctl(&self, key: &str) -> Result<String>;
    fn set_sysctl(&self, key: &str, value: &str) -> Result<()>;

    /// The index of `name`, or a clear error when it does not exist.
    fn require(&self, name: &str) -> Result<u32> {
        self.index(name)?.with_context(|| format!("link {name} does not exist"))
    }

    /// Delete `name` if it exists.
    fn delete_by_name(&self, name: &str) -> Result<()> {
        match self.index(name)? {
            Some(i) => match self.delete_link(i) {
                Err(e) if crate::error::is_not_found(&e) => Ok(()),
                r => r,
            },
            None => Ok(()),
        }
    }

    /// Send one prepared request.
    fn send_one(&self, r: Request) -> Result<()> {
        self.send_all(vec![r]).pop().unwrap_or(Ok(()))
    }

    /// A per-interface IPv4 setting (`proxy_arp`, `route_localnet`).
    fn set_conf(&self, ifname: &str, key: &str, value: &str) -> Result<()> {
        self.set_sysctl(&format!("ipv4/conf/{ifname}/{key}"), value)
    }

    /// The MTU of the interface that holds the default route (1500 without one).
    fn default_route_mtu(&self) -> Result<u32> {
        let oif = self.routes()?.into_iter().find(|r| r.dest.prefix_len() == 0).and_then(|r| r.oif);
        Ok(match oif {
            Some(i) => self.mtu_of(i)?.unwrap_or(1500),
            None => 1500,
        })
    }
}

/// An entry to set with replace semantics, alone (`Links::send_one`) or
/// batched with others (`Links::send_all`): plain data, so a fake can apply
/// it to its model and a test can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `dest` via `via` on `dev`, replacing a route to the same destination.
    Route { dest: Ipv4Net, via: Option<Ipv4Addr>, dev: u32, onlink: bool },
    /// A permanent neighbour entry, replacing whatever `ip` had.
    Neighbour { index: u32, ip: Ipv4Addr, mac: Mac },
    /// A permanent FDB entry: `mac` behind `dst` (append: one more destination).
    Fdb { index: u32, mac: Mac, dst: Ipv4Addr, append: bool },
}

impl Request {
    pub fn set_route(dest: Ipv4Net, via: Option<Ipv4Addr>, dev: u32, onlink: bool) -> Request {
        Request::Route { dest, via, dev, onlink }
    }

    pub fn set_neighbour(index: u32, ip: Ipv4Addr, mac: Mac) -> Request {
        Request::Neighbour { index, ip, mac }
    }

    pub fn set_fdb(index: u32, mac: Mac, dst: Ipv4Addr, append: bool) -> Request {
        Request::Fdb { index, mac, dst, append }
    }

    /// What the request does, for its error's context.
    pub fn what(&self) -> String {
        match self {
            Request::Route { dest, via: Some(gw), .. } => format!("setting route {dest} via {gw}"),
            Request::Route { dest, via: None, .. } => format!("setting route {dest}"),
            Request::Neighbour { ip, .. } => format!("setting neighbour {ip}"),
            Request::Fdb { mac, dst, .. } => {
                format!("adding fdb entry {mac} dst {dst}")
            }
        }
    }
}
