//! Service virtual IPs, ClusterIP-style: a VIP:port that no interface holds,
//! DNATed from PREROUTING and OUTPUT to one of its backends (container
//! endpoints), with the load spread round-robin or at random.
//!
//! A service is a record, `<data-root>/services/<name>.json`, changed under an
//! flock on the directory; its rules are restated whole (one atomic batch)
//! whenever its backends change. A backend is an endpoint: when the endpoint
//! goes (its container is removed), it leaves every service it was in.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::firewall::{self, Backend, SvcRules};
use super::ipam::{Book, Ipam};
use super::kernel::{Firewalls, RealFirewalls};
use super::ports::Proto;
use crate::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lb {
    #[default]
    Random,
    Roundrobin,
}

impl FromStr for Lb {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Lb> {
        match s {
            "random" => Ok(Lb::Random),
            "roundrobin" => Ok(Lb::Roundrobin),
            _ => bail!("--lb {s:?}: use random or roundrobin"),
        }
    }
}

impl fmt::Display for Lb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lb::Random => "random",
            Lb::Roundrobin => "roundrobin",
        })
    }
}

/// `IP:PORT[/proto]`, the service's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
}

impl FromStr for Vip {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Vip> {
        let (addr, proto) = match s.rsplit_once('/') {
            Some((a, p)) => (a, p.parse().with_context(|| format!("--vip {s}"))?),
            None => (s, Proto::Tcp),
        };
        let bad = || anyhow::anyhow!("--vip {s:?}: use IP:PORT[/tcp|udp|sctp]");
        let (ip, port) = addr.split_once(':').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
            bail!("--vip {s}: {ip} cannot be a service address");
        }
        Ok(Vip { ip, port, proto })
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.ip, self.port, self.proto)
    }
}

/// One backend: a container's endpoint and the port it serves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The container (id) as given to `--backend`, and its name then.
    pub container: String,
    pub name: String,
    /// The endpoint's key: how the backend leaves when its endpoint goes.
    pub endpoint: String,
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub vip: Vip,
    pub lb: Lb,
    pub firewall: Backend,
    pub backends: Vec<Member>,
}

/// `CONTAINER:PORT`, as `--backend` takes it.
pub fn parse_backend(s: &str) -> Result<(String, u16)> {
    let bad = || anyhow::anyhow!("--backend {s:?}: use CONTAINER:PORT");
    let (c, p) = s.rsplit_once(':').ok_or_else(bad)?;
    let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    if c.is_empty() {
        return Err(bad());
    }
    Ok((c.to_string(), port))
}

/// The services on disk: `<data-root>/services/<name>.json`.
pub type Store = crate::store::Records<Service>;

pub fn store(data_root: &Path) -> Store {
    Store::new(data_root.join("services"), "service")
}

impl crate::store::Named for Service {
    fn name(&self) -> &str {
        &self.name
    }
}

// --- the use cases -------------------------------------------------------------------------------------

/// Container `id`'s first interface with an address, as a backend on `port`.
pub fn member(ctx: &Context, id: &str, name: &str, port: u16) -> Result<Member> {
    let ep = super::manage::endpoints_of(ctx, id)?
        .into_iter()
        .find(|e| e.ip.is_some())
        .with_context(|| format!("container {name:?} has no interface on an rcon network to serve from"))?;
    Ok(Member { container: id.to_string(), name: name.to_string(), endpoint: ep.key, ip: ep.ip.unwrap(), port })
}

/// A backend given by address: a pod on another node of the cluster (or any
/// address this node routes into one of its networks or its cluster range).
pub fn member_at(ctx: &Context, ip: Ipv4Addr, port: u16) -> Result<Member> {
    let cluster = super::overlay::load(&ctx.data_root)?.map(|c| c.cidr);
    let nets = super::manage::list_networks(ctx)?;
    if !cluster.iter().chain(nets.iter().map(|n| &n.subnet)).any(|r| r.contains(&ip)) {
        bail!("--backend {ip}:{port}: {ip} is in no rcon network and no cluster range of this node");
    }
    let key = address_key(ip);
    Ok(Member { container: String::new(), name: ip.to_string(), endpoint: key, ip, port })
}

/// The endpoint key an address backend goes by.
pub fn address_key(ip: Ipv4Addr) -> String {
    format!("addr:{ip}")
}

/// Restate `svc`'s rules, with every service's backends for the hairpin set.
fn apply(store: &Store, fw: &dyn Firewalls, svc: &Service) -> Result<()> {
    let backends: Vec<(Ipv4Addr, u16)> = svc.backends.iter().map(|m| (m.ip, m.port)).collect();
    let rules = SvcRules { name: &svc.name, vip: svc.vip, lb: svc.lb, backends: &backends };
    fw.open(svc.firewall).set_service(&rules, &all_backends(store, Some(svc))?)
}

/// Every backend address of every service, `changed` in place of its record.
fn all_backends(store: &Store, changed: Option<&Service>) -> Result<Vec<Ipv4Addr>> {
    let mut all: Vec<Ipv4Addr> = store
        .list()?
        .iter()
        .filter(|s| changed.is_none_or(|c| c.name != s.name))
        .chain(changed)
        .flat_map(|s| s.backends.iter().map(|m| m.ip))
        .collect();
    all.sort();
    all.dedup();
    Ok(all)
}

pub fn create(ctx: &Context, name: &str, vip: Vip, backends: Vec<Member>, lb: Lb) -> Result<Service> {
    crate::store::validate_id("service name", name)?;
    firewall::check_name("service name", name)?;
    super::heal::ensure(ctx, ctx.firewall)?;
    // The networks' lock first (the order `network rm` takes the two in): no
    // network is made meanwhile whose range holds the VIP.
    let _nets = super::network::store(&ctx.data_root).lock()?;
    let store = store(&ctx.data_root);
    let _lock = store.lock()?;
    if store.exists(name) {
        bail!("service {name:?} exists already");
    }
    if let Some(other) = store.list()?.into_iter().find(|s| s.vip == vip) {
        bail!("{vip} is the address of service {:?} already", other.name);
    }
    let svc = Service { name: name.to_string(), vip, lb, firewall: ctx.firewall, backends };
    let books = claim_vip(ctx, name, vip.ip)?;
    // Rules first: a failure leaves no record. The books stay locked until
    // the record names the service, so gc never takes its leases for orphans.
    let res = apply(&store, &RealFirewalls, &svc).and_then(|()| store.save(&svc));
    for b in &books {
        if res.is_err() {
            let _ = b.release(&lease_owner(name));
        }
    }
    res.map(|()| svc)
}

/// The holder name of a service's VIP in IPAM (never an endpoint key, which is hex).
pub fn lease_owner(service: &str) -> String {
    format!("svc:{service}")
}

/// Refuse a VIP that an interface holds (an address of the node, a
/// container's address, a network's gateway), and take it out of IPAM's
/// hands: a lease, on every network whose range holds it, so that no
/// container gets it later either. Returns those books, still locked.
fn claim_vip(ctx: &Context, name: &str, ip: Ipv4Addr) -> Result<Vec<Book>> {
    let nets = super::manage::list_networks(ctx)?;
    if let Some(net) = nets.iter().find(|n| n.gateway == Some(ip)) {
        bail!("--vip {ip}: it is the gateway of network {}", net.name);
    }
    let kernel = super::kernel::Kernel::real();
    if let Some((link, _)) = kernel.links()?.all_ipv4_addresses()?.into_iter().find(|(_, a)| *a == ip) {
        bail!("--vip {ip}: the node's {link} holds that address");
    }
    if let Some(ep) = super::endpoint::Store::new(&ctx.data_root).all()?.into_iter().find(|e| e.ip == Some(ip)) {
        let who = ep.owner.unwrap_or_else(|| ep.netns.display().to_string());
        bail!("--vip {ip}: container {who} holds that address ({} on network {})", ep.ifname, ep.network);
    }
    let ipam = Ipam::new(&ctx.data_root);
    let mut books = Vec::new();
    let owner = lease_owner(name);
    let res = (|| {
        for net in &nets {
            if net.pool().contains(&ip) {
                let book = ipam.open(&net.name)?;
                book.allocate(net.pool(), net.reserved_gateway(), &owner, Some(ip)).context(format!("--vip {ip}"))?;
                books.push(book);
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        for b in &books {
            let _ = b.release(&owner);
        }
        return Err(e);
    }
    Ok(books)
}

pub fn remove(ctx: &Context, name: &str) -> Result<()> {
    let store = store(&ctx.data_root);
    super::heal::ensure(ctx, store.get(name)?.firewall)?;
    let _lock = store.lock()?;
    let svc = store.get(name)?;
    store.remove(name)?;
    RealFirewalls.open(svc.firewall).remove_service(name, &all_backends(&store, None)?)?;
    let ipam = Ipam::new(&ctx.data_root);
    for net in ipam.networks()? {
        ipam.release(&net, &lease_owner(name), None)?;
    }
    Ok(())
}

/// Change one service's backends, under the lock, and restate its rules.
pub fn change(ctx: &Context, name: &str, edit: impl FnOnce(&mut Service) -> Result<()>) -> Result<Service> {
    let store = store(&ctx.data_root);
    super::heal::ensure(ctx, store.get(name)?.firewall)?;
    let _lock = store.lock()?;
    let mut svc = store.get(name)?;
    edit(&mut svc)?;
    apply(&store, &RealFirewalls, &svc)?;
    store.save(&svc)?;
    Ok(svc)
}

/// An endpoint went: it leaves every service it was a backend of.
pub fn drop_endpoint(ctx: &Context, fw: &dyn Firewalls, key: &str) -> Result<()> {
    let store = store(&ctx.data_root);
    if !store.any_dir() {
        return Ok(());
    }
    let _lock = store.lock()?;
    for mut svc in store.list()? {
        if svc.backends.iter().any(|m| m.endpoint == key) {
            svc.backends.retain(|m| m.endpoint != key);
            apply(&store, fw, &svc)?;
            store.save(&svc)?;
        }
    }
    Ok(())
}

/// gc: rules of services that have no record any more. Returns their names.
pub fn gc(ctx: &Context, fw: &dyn Firewalls, backends: &[Backend]) -> Result<Vec<String>> {
    let store = store(&ctx.data_root);
    let _lock = store.lock()?;
    // A service whose record cannot be read keeps its rules.
    let known = store.names();
    let mut removed = Vec::new();
    for b in backends {
        let fw = fw.open(*b);
        let Ok(names) = fw.services() else { continue };
        for n in names.into_iter().filter(|n| !known.contains(n)) {
            fw.remove_service(&n, &all_backends(&store, None)?)?;
            removed.push(format!("{b}:service {n}"));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_and_backends_parse() {
        let v: Vip = "10.96.0.100:80".parse().unwrap();
        assert_eq!((v.ip, v.port, v.proto), (Ipv4Addr::new(10, 96, 0, 100), 80, Proto::Tcp));
        assert_eq!("10.96.0.10:53/udp".parse::<Vip>().unwrap().to_string(), "10.96.0.10:53/udp");
        for bad in ["10.96.0.1", "10.96.0.1:0", "x:80", "0.0.0.0:80", "127.0.0.1:80", "10.0.0.1:80/icmp"] {
            assert!(bad.parse::<Vip>().is_err(), "{bad} accepted");
        }
        assert_eq!(parse_backend("web:8080").unwrap(), ("web".to_string(), 8080));
        assert!(parse_backend("web").is_err() && parse_backend(":80").is_err() && parse_backend("w:0").is_err());
        assert_eq!("roundrobin".parse::<Lb>().unwrap(), Lb::Roundrobin);
        assert!("rr".parse::<Lb>().is_err());
    }
}
