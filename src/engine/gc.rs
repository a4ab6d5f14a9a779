//! `rcon gc`: each layer collects its own garbage, called once each, top down.
//!
//! - engine: pods whose creator died half-way (their teardown releases their
//!   containers and endpoints), then its own data dirs and names;
//! - runtime: containers left half-made or half-deleted;
//! - net: endpoints, leases, links, rules and port claims nobody owns.
//!
//! The order matters: what a higher layer removes takes its lower objects
//! with it, so the lower gc then finds only true orphans. Each layer takes
//! its own locks (the records' and the firewall's), so gc may run beside any
//! other command.

use std::fs;

use anyhow::{Context as _, Result};

use super::{creator_path, forget, names_dir, pod, rootfs, NAME_TMP};
use crate::net::firewall::Backend;
use crate::net::manage::{self as net, GcReport as NetReport};
use crate::runtime;
use crate::store::Broken;
use crate::Context;

/// What one gc removed, and the records it could not read.
#[derive(Debug, Default)]
pub struct Report {
    pub pods: Vec<String>,
    /// Containers (and half-made container dirs) removed, by id.
    pub containers: Vec<String>,
    pub net: NetReport,
    /// Unreadable records removed because `remove_broken` asked for it.
    pub broken_removed: Vec<Broken>,
    /// Unreadable records left in place, with all they may own.
    pub broken: Vec<Broken>,
}

/// Collect every layer's garbage on the firewall `backends`. With
/// `remove_broken`, unreadable records that own nothing a person must look
/// at are removed too. What was removed goes into `r` as it goes, so that a
/// failure part way still reports what the earlier layers removed.
pub fn gc(ctx: &Context, backends: &[Backend], remove_broken: bool, r: &mut Report) -> Result<()> {
    r.pods = pod::gc(ctx)?;
    let rt = runtime::gc(ctx)?;
    r.containers = [rt.dirs, rt.containers.clone()].concat();
    for id in &rt.containers {
        forget(ctx, id)?;
    }
    r.containers.extend(data_dirs(ctx)?);
    names(ctx)?;
    r.net = net::gc(ctx, backends)?;

    let mut broken = std::mem::take(&mut r.net.broken);
    // The cluster's records are the overlay's, which sits above net's manage.
    broken.extend(crate::net::overlay::broken(&ctx.data_root));
    broken.extend(pod::store(ctx).scan()?.broken);
    broken.extend(runtime::scan(ctx)?.broken);
    for b in broken {
        if remove_broken && removable(&b) && crate::store::remove_broken(&b)? {
            r.broken_removed.push(b);
        } else {
            r.broken.push(b);
        }
    }
    Ok(())
}

/// The broken records `--remove-broken` may remove. A container's state is
/// how its processes, cgroup and mounts are found, and the cluster settings
/// how its device is: those are for a person to look at.
pub fn removable(b: &Broken) -> bool {
    !matches!(b.kind, "container" | "cluster")
}

/// Engine data dirs (overlay, name) whose container never got as far as
/// the runtime, or was removed by the runtime alone. Returns their ids.
fn data_dirs(ctx: &Context) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(ctx.data_root.join("containers")) else { return Ok(removed) };
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        // A data dir still being made: its creator is in its name.
        if id.starts_with(rootfs::NEW) {
            if rootfs::new_dir_creator(&id).is_none_or(|c| !c.alive()) {
                fs::remove_dir_all(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            }
            continue;
        }
        if ctx.container_dir(&id).exists() {
            continue;
        }
        let creator: Option<runtime::state::Creator> = crate::store::read_json(&creator_path(ctx, &id)).ok();
        // A container that ran and was removed by the runtime alone (OCI
        // delete of an engine container) has no creator alive either.
        if creator.is_none_or(|c| !c.alive()) && !rootfs::creator_held(&e.path()) {
            forget(ctx, &id)?;
            removed.push(id);
        }
    }
    Ok(removed)
}

/// A name's container has neither state nor data dir: a run reserves its
/// name only once its data dir exists, and `forget` drops the name first.
pub(super) fn owner_gone(ctx: &Context, owner: &str) -> bool {
    owner.is_empty() || !(ctx.container_dir(owner).exists() || rootfs::container_dir(ctx, owner).exists())
}

/// Names (and half-written reservations) whose container is gone.
fn names(ctx: &Context) -> Result<()> {
    for e in fs::read_dir(names_dir(ctx)).into_iter().flatten().flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let owner = match file.strip_prefix(NAME_TMP) {
            Some(id) => id.to_string(),
            None => fs::read_to_string(e.path()).unwrap_or_default().trim().to_string(),
        };
        if owner_gone(ctx, &owner) {
            fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    Ok(())
}
