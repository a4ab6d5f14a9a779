//! Service virtual IPs, ClusterIP-style: a VIP:port that no interface holds,
//! DNATed from PREROUTING and OUTPUT to one of its backends (container
//! endpoints), with the load spread round-robin or at random.
//!
//! A service is a record, `<data-root>/services/<name>.json`, changed under an
//! flock on the directory; its rules are restated whole (one atomic batch)
//! whenever its backends change. A backend is an endpoint: when the endpoint
//! goes (its container is removed), it leaves every service it was in.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::endpoint::{self, Filter};
use super::firewall::{self, Backend, SvcChange, SvcRules};
use super::ipam::{Book, Ipam};
use super::kernel::{Firewalls, RealFirewalls};
use super::service_index::Index;
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

/// A service's backends as the firewall takes them.
fn targets(svc: &Service) -> Vec<(Ipv4Addr, u16)> {
    svc.backends.iter().map(|m| (m.ip, m.port)).collect()
}

fn rules<'a>(svc: &'a Service, targets: &'a [(Ipv4Addr, u16)]) -> SvcRules<'a> {
    SvcRules { name: &svc.name, vip: svc.vip, lb: svc.lb, backends: targets }
}

/// Take service `name`'s rules from `old` to `new` (None: none) in one batch, keeping what the other
/// services on its VIP address share with it. Reads only their records: the cost does not grow with
/// the number of services.
fn apply(
    store: &Store,
    idx: &Index,
    fw: &dyn Firewalls,
    name: &str,
    old: Option<&Service>,
    new: Option<&Service>,
) -> Result<()> {
    let Some(any) = new.or(old) else { return Ok(()) };
    let mut ips: Vec<Ipv4Addr> = old.iter().chain(&new).map(|s| s.vip.ip).collect();
    ips.dedup();
    let peers: Vec<Service> = ips
        .iter()
        .flat_map(|ip| idx.on_address(*ip, name).into_iter().map(move |n| (*ip, n)))
        .filter_map(|(ip, n)| store.get(&n).ok().filter(|s| s.vip.ip == ip && s.firewall == any.firewall))
        .collect();
    let peer_targets: Vec<_> = peers.iter().map(targets).collect();
    let peer_rules: Vec<SvcRules> = peers.iter().zip(&peer_targets).map(|(s, t)| rules(s, t)).collect();
    let (old_t, new_t) = (old.map(targets), new.map(targets));
    let c = SvcChange {
        name,
        old: old.zip(old_t.as_deref()).map(|(s, t)| rules(s, t)),
        new: new.zip(new_t.as_deref()).map(|(s, t)| rules(s, t)),
        peers: &peer_rules,
    };
    fw.open(any.firewall).change_service(&c)
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
    let idx = Index::open(&store, &ctx.data_root)?;
    // The index may name a service that is gone or moved: its record says.
    if let Some(other) = idx.vip_holder(&vip).filter(|o| store.get(o).is_ok_and(|s| s.vip == vip)) {
        bail!("{vip} is the address of service {other:?} already");
    }
    let svc = Service { name: name.to_string(), vip, lb, firewall: ctx.firewall, backends };
    let books = claim_vip(ctx, name, vip.ip)?;
    // Index and rules first: a failure leaves no record. The books stay locked until
    // the record names the service, so gc never takes its leases for orphans.
    let eps = endpoint::Store::new(&ctx.data_root);
    let res = commit(&store, &idx, &eps, &RealFirewalls, None, &svc);
    if res.is_err() {
        for b in &books {
            let _ = b.release(&lease_owner(name));
        }
        let _ = idx.forget(&svc);
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
    let ipam = Ipam::new(&ctx.data_root);
    // A container's address is leased in its network's book: one lookup per network that holds the
    // VIP, where a scan of every endpoint record would grow with the containers. Only a refusal
    // looks for the endpoint, to name it.
    let owner = lease_owner(name);
    for net in nets.iter().filter(|n| n.subnet.contains(&ip)) {
        if ipam.holder(&net.name, ip)?.is_some_and(|h| h != owner && !h.starts_with("svc:")) {
            if let Some(ep) = endpoint::Store::new(&ctx.data_root).all()?.into_iter().find(|e| e.ip == Some(ip)) {
                let who = ep.owner.unwrap_or_else(|| ep.netns.display().to_string());
                bail!("--vip {ip}: container {who} holds that address ({} on network {})", ep.ifname, ep.network);
            }
        }
    }
    let mut books = Vec::new();
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
    let idx = Index::open(&store, &ctx.data_root)?;
    // The record first: rules without a record are gc's to remove, by the service's name.
    store.remove(name)?;
    crate::store::fault("service:unrecorded");
    apply(&store, &idx, &RealFirewalls, name, Some(&svc), None)?;
    idx.forget(&svc)?;
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
    let old = store.get(name)?;
    let mut svc = old.clone();
    edit(&mut svc)?;
    let idx = Index::open(&store, &ctx.data_root)?;
    commit(&store, &idx, &endpoint::Store::new(&ctx.data_root), &RealFirewalls, Some(&old), &svc)?;
    Ok(svc)
}

/// The container backends `svc` has and `old` (None: a service being made) has not.
fn added<'a>(old: Option<&'a Service>, svc: &'a Service) -> impl Iterator<Item = &'a Member> {
    let had = move |m: &Member| old.is_some_and(|o| o.backends.iter().any(|b| b.endpoint == m.endpoint));
    svc.backends.iter().filter(move |m| !m.container.is_empty() && !had(m))
}

/// Save service `svc` (a change of `old`, or new): index, rules, record, and the index entries of
/// the endpoints `old` had and `svc` has not. In that order, so that the index never says less than
/// the record. Call it holding the store's lock.
///
/// The endpoints it adds were resolved before that lock, and a detach looks at the index without
/// it: it removes the endpoint's record first, then looks. So once the entries are written, the
/// records are checked again: a record still there means the detach has yet to look, and will find
/// the entry (and wait for this lock); one gone means the detach may have looked already, and the
/// change fails as if the endpoint had been missing from the start, leaving things as they were.
pub(crate) fn commit(
    store: &Store,
    idx: &Index,
    eps: &endpoint::Store,
    fw: &dyn Firewalls,
    old: Option<&Service>,
    svc: &Service,
) -> Result<()> {
    idx.add(svc)?;
    crate::store::fault("service:indexed");
    if let Some(m) = added(old, svc).find(|m| !recorded(eps, m)) {
        for m in added(old, svc) {
            idx.drop_backend(&svc.name, &m.endpoint)?;
        }
        bail!(
            "container {:?} has no interface on an rcon network to serve from (its endpoint {} was just detached)",
            m.name,
            m.endpoint
        );
    }
    apply(store, idx, fw, &svc.name, old, Some(svc))?;
    crate::store::fault("service:applied");
    store.save(svc)?;
    for m in old.iter().flat_map(|o| &o.backends).filter(|m| !svc.backends.iter().any(|b| b.endpoint == m.endpoint)) {
        idx.drop_backend(&svc.name, &m.endpoint)?;
    }
    Ok(())
}

/// Whether container backend `m`'s endpoint still has its record.
fn recorded(eps: &endpoint::Store, m: &Member) -> bool {
    // An error reading the records counts as gone: the change fails, and can be tried again.
    eps.find(Filter { owner: Some(&m.container), ..Default::default() })
        .is_ok_and(|found| found.iter().any(|e| e.key == m.endpoint))
}

/// An endpoint went: it leaves every service it was a backend of. The index names those services
/// (one lookup when there are none), so a detach costs the same at 10 services as at 10,000.
/// Call it after the endpoint's record is removed: a service change that adds the endpoint
/// meanwhile checks that record after writing its index entry (see [`commit`]), which is what makes
/// the lookup without the lock safe.
pub fn drop_endpoint(ctx: &Context, fw: &dyn Firewalls, key: &str) -> Result<()> {
    let store = store(&ctx.data_root);
    if !store.any_dir() {
        return Ok(());
    }
    let idx = Index::at(&ctx.data_root);
    if idx.built() && !idx.may_back(key) {
        return Ok(());
    }
    let _lock = store.lock()?;
    let idx = Index::open(&store, &ctx.data_root)?;
    drop_locked(&store, &idx, &endpoint::Store::new(&ctx.data_root), fw, key)
}

/// [`drop_endpoint`], holding the store's lock.
fn drop_locked(store: &Store, idx: &Index, eps: &endpoint::Store, fw: &dyn Firewalls, key: &str) -> Result<()> {
    for name in idx.backed_by(key) {
        let old = match store.get(&name) {
            Ok(old) => old,
            // Gone: so is its entry. Unreadable: it keeps it, for when it is repaired.
            Err(_) if !store.exists(&name) => {
                idx.drop_backend(&name, key)?;
                continue;
            }
            Err(_) => continue,
        };
        let mut svc = old.clone();
        svc.backends.retain(|m| m.endpoint != key);
        if svc.backends.len() == old.backends.len() {
            idx.drop_backend(&name, key)?;
        } else {
            commit(store, idx, eps, fw, Some(&old), &svc)?;
        }
    }
    Ok(())
}

/// gc: backends whose endpoint has no record, rules of services that have no record any more, and
/// index entries no record backs. Returns what went.
pub fn gc(ctx: &Context, fw: &dyn Firewalls, backends: &[Backend]) -> Result<Vec<String>> {
    let store = store(&ctx.data_root);
    let _lock = store.lock()?;
    let mut removed = Vec::new();
    if store.any_dir() {
        removed = drop_unrecorded(ctx, &store, fw)?;
    }
    // A service whose record cannot be read keeps its rules.
    let known = store.names();
    // What a service without a record owns is read off the live ruleset by its name; every other
    // service keeps what it shares with it.
    let all = store.list()?;
    let all_targets: Vec<_> = all.iter().map(targets).collect();
    let peers: Vec<SvcRules> = all.iter().zip(&all_targets).map(|(s, t)| rules(s, t)).collect();
    for b in backends {
        let fw = fw.open(*b);
        let Ok(names) = fw.services() else { continue };
        for n in names.into_iter().filter(|n| !known.contains(n)) {
            fw.change_service(&SvcChange { name: &n, old: None, new: None, peers: &peers })?;
            removed.push(format!("{b}:service {n}"));
        }
    }
    if store.any_dir() {
        Index::open(&store, &ctx.data_root)?.sweep(&store)?;
    }
    Ok(removed)
}

/// The backends whose endpoint record is gone: a detach killed between its record and its
/// [`drop_endpoint`]. Holding the store's lock.
fn drop_unrecorded(ctx: &Context, store: &Store, fw: &dyn Firewalls) -> Result<Vec<String>> {
    let idx = Index::open(store, &ctx.data_root)?;
    let keys = idx.backend_keys();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // The records are read after the index: an entry there was written, under this lock, by a change
    // that found its endpoint's record, so a record missing now went since (a broken one stays).
    let eps = endpoint::Store::new(&ctx.data_root);
    let scan = eps.scan_all(None)?;
    let live: HashSet<&str> =
        scan.good.iter().map(|e| e.key.as_str()).chain(scan.broken.iter().map(endpoint::broken_key)).collect();
    let mut dropped = Vec::new();
    for key in keys.into_iter().filter(|k| !live.contains(&k.as_str())) {
        drop_locked(store, &idx, &eps, fw, &key)?;
        dropped.push(format!("service backends of endpoint {key}"));
    }
    Ok(dropped)
}
