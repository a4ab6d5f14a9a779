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

use anyhow::{bail, Result};

use super::endpoint;
use super::firewall::{Backend, Guard, Want, WantService};
use super::kernel::{Firewalls, RealFirewalls};
use super::network;
use super::service_store;
use crate::Context;

/// What the records say `backend` must hold. `full`: for a restore, with the published ports, and only
/// when every record that could own a rule can be read (a restore replaces all of rcon's rules, and would
/// drop those of a record it cannot read). Without, for the check that runs on every command: no ports
/// (they are many, and the check does not look at them), and what can be read.
fn want(ctx: &Context, backend: Backend, full: bool) -> Result<Want> {
    let nets = network::store(&ctx.data_root).scan()?;
    // The check leaves the services out: reading every record on every command would make each
    // command cost more with each service (see `Ruleset::damage`).
    let svcs = if full { service_store::store(&ctx.data_root).scan()? } else { Default::default() };
    let eps = if full { endpoint::Store::new(&ctx.data_root).scan_all(None)? } else { Default::default() };
    if let Some(b) = nets.broken.iter().chain(&svcs.broken).chain(&eps.broken).next().filter(|_| full) {
        bail!("{b}; rcon's rules are not rebuilt without it (repair it, or remove it with `rcon gc --remove-broken`)");
    }
    let nets: Vec<network::Network> = nets.good.into_iter().filter(|n| n.firewall == backend).collect();
    let mut want = Want {
        networks: nets.iter().map(|n| n.rules()).collect(),
        bridged: nets.iter().any(|n| n.driver == network::Driver::Bridge),
        ..Want::default()
    };
    if full {
        for ep in eps.good {
            let Some(net) = nets.iter().find(|n| n.name == ep.network) else { continue };
            want.guards.extend(guard(net, &ep));
            if let (Some(ip), false) = (ep.ip, ep.ports.is_empty()) {
                want.ports.push((ep.key, ip, ep.ports));
            }
        }
    }
    want.services = svcs
        .good
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

/// What `ep`'s bridge port may send from (None: `net` is no bridge, or `ep` has no address yet).
pub(crate) fn guard(net: &network::Network, ep: &endpoint::Endpoint) -> Option<Guard> {
    let ip = ep.ip.filter(|_| net.driver == network::Driver::Bridge)?;
    Some(Guard {
        owner: ep.key.clone(),
        port: ep.host_ifname.clone(),
        from: (!net.allow_spoofing).then(|| (ep.mac.to_string(), ip)),
    })
}

/// Restore `backend`'s rules from the records when `force` or when something is missing; says so on
/// stderr when it had to. Returns what was missing.
fn restore(ctx: &Context, fw: &dyn Firewalls, backend: Backend, force: bool) -> Result<Option<String>> {
    restore_counted(ctx, fw, backend, force).map(|(what, _)| what)
}

/// [`restore`], with what the records asked for: (networks, endpoints with ports, services).
fn restore_counted(
    ctx: &Context,
    fw: &dyn Firewalls,
    backend: Backend,
    force: bool,
) -> Result<(Option<String>, [usize; 3])> {
    let _nets = network::store(&ctx.data_root).lock()?;
    let _svcs = service_store::store(&ctx.data_root).lock()?;
    let counts = std::cell::Cell::new([0; 3]);
    let read = || {
        let w = want(ctx, backend, true)?;
        counts.set([w.networks.len(), w.ports.len(), w.services.len()]);
        Ok(w)
    };
    let what = fw.open(backend).restore(&read, force)?;
    Ok((what, counts.get()))
}

/// Before a command changes `backend`'s rules: put back whatever of the records' rules is missing.
/// Call it holding no store lock (it may take them). Returns whether it restored.
pub fn ensure(ctx: &Context, backend: Backend) -> Result<bool> {
    ensure_with(ctx, &RealFirewalls, backend)
}

/// [`ensure`] with these firewalls.
pub fn ensure_with(ctx: &Context, fw: &dyn Firewalls, backend: Backend) -> Result<bool> {
    let Some(what) = fw.open(backend).damage(&want(ctx, backend, false)?)? else { return Ok(false) };
    // The command goes on either way: what it changes in the firewall succeeds or fails on its own.
    match restore(ctx, fw, backend, false) {
        Ok(Some(what)) => {
            crate::notice::notice(&format!("firewall ({backend}): {what}; restored rcon's rules from its records"));
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => {
            crate::notice::notice(&format!("firewall ({backend}): {what}, and restoring it failed: {e:#}"));
            Ok(false)
        }
    }
}

/// [`ensure`] for every backend some network uses.
pub fn ensure_all(ctx: &Context, fw: &dyn Firewalls) -> Result<()> {
    for b in backends_in_use(ctx)? {
        ensure_with(ctx, fw, b)?;
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
        let (_, [networks, published, services]) = restore_counted(ctx, &RealFirewalls, backend, true)?;
        out.push(Reloaded { backend, networks, published, services });
    }
    Ok(out)
}
