//! The firewall heals itself: rcon's rules are a function of its records
//! (networks, endpoints with published ports, services), so whatever a
//! firewall reload, `nft flush ruleset` or a hand edit took away is put back
//! from them, whole, in one batch.
//!
//! Every command that changes the firewall first asks the backend what the
//! live ruleset lacks of the records (one listing, no lock). When something
//! is missing it takes the network and service store locks (the records that
//! change under them stay still) and the backend's lock, reads the records
//! again, and restores. Endpoints are not locked: an attach saves its record
//! before it adds its ports, and a detach clears its record's ports before it
//! removes them, both under the backend's lock, so a restore either sees a
//! change or runs before its firewall part. `rcon firewall reload` restores
//! unconditionally.

use anyhow::Result;

use super::endpoint;
use super::firewall::{self, Backend, Want, WantService};
use super::network;
use super::service;
use crate::Context;

/// What the records say `backend` must hold; published ports only with `ports` (they are many, and the
/// check that runs on every command does not look at them).
fn want(ctx: &Context, backend: Backend, ports: bool) -> Result<Want> {
    let nets: Vec<network::Network> =
        network::store(&ctx.data_root).list()?.into_iter().filter(|n| n.firewall == backend).collect();
    let mut want = Want { networks: nets.iter().map(|n| n.rules()).collect(), ..Want::default() };
    if ports {
        for ep in endpoint::Store::new(&ctx.data_root).all()? {
            if let (Some(ip), false) = (ep.ip, ep.ports.is_empty()) {
                if nets.iter().any(|n| n.name == ep.network) {
                    want.ports.push((ep.key, ip, ep.ports));
                }
            }
        }
    }
    want.services = service::store(&ctx.data_root)
        .list()?
        .into_iter()
        .filter(|s| s.firewall == backend)
        .map(|s| WantService {
            name: s.name,
            vip: s.vip,
            lb: s.lb,
            backends: s.backends.iter().map(|m| (m.ip, m.port)).collect(),
        })
        .collect();
    Ok(want)
}

/// Restore `backend`'s rules from the records when `force` or when something is missing; says so on
/// stderr when it had to. Returns what was missing.
fn restore(ctx: &Context, backend: Backend, force: bool) -> Result<Option<String>> {
    let _nets = network::store(&ctx.data_root).lock()?;
    let _svcs = service::store(&ctx.data_root).lock()?;
    firewall::open(backend).restore(&|| want(ctx, backend, true), force)
}

/// Before a command changes `backend`'s rules: put back whatever of the records' rules is missing.
/// Call it holding no store lock (it may take them).
pub fn ensure(ctx: &Context, backend: Backend) -> Result<()> {
    let fw = firewall::open(backend);
    let Some(_) = fw.damage(&want(ctx, backend, false)?)? else { return Ok(()) };
    if let Some(what) = restore(ctx, backend, false)? {
        crate::notice::notice(&format!("firewall ({backend}): {what}; restored rcon's rules from its records"));
    }
    Ok(())
}

/// [`ensure`] for every backend some network uses.
pub fn ensure_all(ctx: &Context) -> Result<()> {
    for b in backends_in_use(ctx)? {
        ensure(ctx, b)?;
    }
    Ok(())
}

fn backends_in_use(ctx: &Context) -> Result<Vec<Backend>> {
    let nets = network::store(&ctx.data_root).list()?;
    Ok([Backend::Nftables, Backend::Iptables].into_iter().filter(|b| nets.iter().any(|n| n.firewall == *b)).collect())
}

/// One backend's outcome of `rcon firewall reload`.
#[derive(Debug, serde::Serialize)]
pub struct Reloaded {
    pub backend: Backend,
    pub networks: usize,
    pub published: usize,
    pub services: usize,
}

/// `rcon firewall reload`: every backend in use gets all of rcon's rules again, from the records.
pub fn reload(ctx: &Context) -> Result<Vec<Reloaded>> {
    let mut out = Vec::new();
    for backend in backends_in_use(ctx)? {
        restore(ctx, backend, true)?;
        let w = want(ctx, backend, true)?;
        out.push(Reloaded {
            backend,
            networks: w.networks.len(),
            published: w.ports.len(),
            services: w.services.len(),
        });
    }
    Ok(out)
}
