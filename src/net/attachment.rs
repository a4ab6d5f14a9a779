//! Attachments as a CNI runtime names them: an owner (the container id) and
//! an interface name, rather than a namespace. DEL and GC must find them
//! after the namespace is gone, so they are found through the owner index of
//! the endpoint records (`endpoint::Store`), never through the namespace.

use std::fs::File;

use anyhow::{bail, Context as _, Result};

use super::endpoint::{self, Endpoint, Filter};
use super::kernel::Kernel;
use super::manage;
use crate::Context;

/// The endpoints of `owner` on `network` with interface `ifname` (none, or one).
pub fn find(ctx: &Context, owner: &str, network: &str, ifname: &str) -> Result<Vec<Endpoint>> {
    let all = endpoint::Store::new(&ctx.data_root).find(Filter {
        owner: Some(owner),
        network: Some(network),
        ..Default::default()
    })?;
    Ok(all.into_iter().filter(|e| e.ifname == ifname).collect())
}

/// Detach `owner`'s interface `ifname` on `network`; nothing there is fine
/// (a second DEL, or a DEL after a GC). Returns how many were detached.
pub fn detach(ctx: &Context, owner: &str, network: &str, ifname: &str) -> Result<usize> {
    let k = Kernel::real();
    let filter = Filter { owner: Some(owner), network: Some(network), ..Default::default() };
    let mine: Vec<Endpoint> = manage::detachable(ctx, &k, filter)?.into_iter().filter(|e| e.ifname == ifname).collect();
    detach_all(ctx, &k, &mine)?;
    Ok(mine.len())
}

/// Detach every endpoint on `network` whose owner starts with `prefix` and
/// that `keep` does not keep. Returns the owner and interface of each.
pub fn retain(
    ctx: &Context,
    network: &str,
    prefix: &str,
    keep: impl Fn(&str, &str) -> bool,
) -> Result<Vec<(String, String)>> {
    let k = Kernel::real();
    let gone: Vec<Endpoint> = endpoint::Store::new(&ctx.data_root)
        .on_network(network)?
        .into_iter()
        .filter(|e| e.owner.as_deref().and_then(|o| o.strip_prefix(prefix)).is_some_and(|o| !keep(o, &e.ifname)))
        .collect();
    detach_all(ctx, &k, &gone)?;
    Ok(gone.into_iter().map(|e| (e.owner.unwrap_or_default(), e.ifname)).collect())
}

fn detach_all(ctx: &Context, k: &Kernel, eps: &[Endpoint]) -> Result<()> {
    if !eps.is_empty() {
        manage::ensure_for(ctx, k, eps)?;
    }
    eps.iter().try_for_each(|ep| manage::detach_endpoint(ctx, k, ep))
}

/// That `ep` is still wired as recorded, in the namespace at `netns`: the
/// same namespace, the node end present, the interface there with its address.
pub fn verify(ep: &Endpoint, netns: &std::path::Path) -> Result<()> {
    if !ep.netns_alive() {
        bail!("the namespace {} of interface {} is gone", ep.netns.display(), ep.ifname);
    }
    if endpoint::ns_identity(netns)? != ep.netns_id {
        bail!("interface {} was attached in another namespace ({})", ep.ifname, ep.netns.display());
    }
    let k = Kernel::real();
    let node = k.links()?;
    if node.index(&ep.host_ifname)?.is_none() && !ep.host_ifname.starts_with("rp") {
        bail!("the node end {} of interface {} is gone", ep.host_ifname, ep.ifname);
    }
    let ns = File::open(&ep.netns).with_context(|| format!("netns {}", ep.netns.display()))?;
    let inner = node.in_netns(&ns)?;
    let Some(idx) = inner.index(&ep.ifname)? else { bail!("interface {} is gone from its namespace", ep.ifname) };
    if let Some(ip) = ep.ip {
        if !inner.ipv4_addresses(idx)?.iter().any(|a| a.addr() == ip && a.prefix_len() == ep.prefix) {
            bail!("interface {} lost its address {ip}/{}", ep.ifname, ep.prefix);
        }
    }
    Ok(())
}
