//! Service virtual IPs, ClusterIP-style: a VIP:port that no interface holds,
//! DNATed from PREROUTING and OUTPUT to one of its backends (container
//! endpoints), with the load spread round-robin or at random.
//!
//! A service is a record, `<data-root>/services/<name>.json`, changed under an
//! flock on the directory; its rules are restated whole (one atomic batch)
//! whenever its backends change. A backend is an endpoint: when the endpoint
//! goes (its container is removed), it leaves every service it was in.

use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::endpoint::{self, Filter};
use super::firewall::{self, Backend, SvcRules};
use super::ipam::{Book, Ipam};
use super::kernel::{Firewalls, RealFirewalls};
use super::service_store::{address_key, lease_owner, store, Member, Service, Store};
use super::service_types::{Lb, Vip};
use super::{heal, network};
use crate::Context;

/// Container `id`'s first interface with an address, as a backend on `port`.
pub fn member(ctx: &Context, id: &str, name: &str, port: u16) -> Result<Member> {
    let ep = endpoint::Store::new(&ctx.data_root)
        .find(Filter { owner: Some(id), ..Default::default() })?
        .into_iter()
        .find(|e| e.ip.is_some())
        .with_context(|| format!("container {name:?} has no interface on an rcon network to serve from"))?;
    Ok(Member { container: id.to_string(), name: name.to_string(), endpoint: ep.key, ip: ep.ip.unwrap(), port })
}

/// A backend given by address: a pod on another node of the cluster (or any
/// address this node routes into one of its networks or its cluster range).
/// `cluster`: the node's cluster range, if it is in one (the overlay, above
/// this module, knows it).
pub fn member_at(ctx: &Context, cluster: Option<Ipv4Net>, ip: Ipv4Addr, port: u16) -> Result<Member> {
    let nets = network::store(&ctx.data_root).list()?;
    if !cluster.iter().chain(nets.iter().map(|n| &n.subnet)).any(|r| r.contains(&ip)) {
        bail!("--backend {ip}:{port}: {ip} is in no rcon network and no cluster range of this node");
    }
    let key = address_key(ip);
    Ok(Member { container: String::new(), name: ip.to_string(), endpoint: key, ip, port })
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
    heal::ensure(ctx, ctx.firewall)?;
    // The networks' lock first (the order `network rm` takes the two in): no
    // network is made meanwhile whose range holds the VIP.
    let _nets = network::store(&ctx.data_root).lock()?;
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
    res?;
    // Its name answers on every DNS network.
    super::dns::changed(ctx, false)?;
    Ok(svc)
}

/// Refuse a VIP that an interface holds (an address of the node, a
/// container's address, a network's gateway), and take it out of IPAM's
/// hands: a lease, on every network whose range holds it, so that no
/// container gets it later either. Returns those books, still locked.
fn claim_vip(ctx: &Context, name: &str, ip: Ipv4Addr) -> Result<Vec<Book>> {
    let nets = network::store(&ctx.data_root).list()?;
    if let Some(net) = nets.iter().find(|n| n.gateway == Some(ip)) {
        bail!("--vip {ip}: it is the gateway of network {}", net.name);
    }
    let kernel = super::kernel::Kernel::real();
    if let Some((link, _)) = kernel.links()?.all_ipv4_addresses()?.into_iter().find(|(_, a)| *a == ip) {
        bail!("--vip {ip}: the node's {link} holds that address");
    }
    if let Some(ep) = endpoint::Store::new(&ctx.data_root).all()?.into_iter().find(|e| e.ip == Some(ip)) {
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
    heal::ensure(ctx, store.get(name)?.firewall)?;
    let _lock = store.lock()?;
    let svc = store.get(name)?;
    store.remove(name)?;
    RealFirewalls.open(svc.firewall).remove_service(name, &all_backends(&store, None)?)?;
    let ipam = Ipam::new(&ctx.data_root);
    for net in ipam.networks()? {
        ipam.release(&net, &lease_owner(name), Some(svc.vip.ip), None)?;
    }
    super::dns::changed(ctx, true)
}

/// Change one service's backends, under the lock, and restate its rules.
pub fn change(ctx: &Context, name: &str, edit: impl FnOnce(&mut Service) -> Result<()>) -> Result<Service> {
    let store = store(&ctx.data_root);
    heal::ensure(ctx, store.get(name)?.firewall)?;
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
