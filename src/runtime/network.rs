//! The runtime's network hook: a container's networks wired in as it is
//! created (after its mounts, before the bundle's own hooks) and released
//! when it is deleted. The runtime owns the trait and knows nothing of
//! bridges; the engine installs rcon's networks (`net::wire`) behind it, so
//! the dependency runs engine → runtime and engine → net, never between
//! runtime and net. Without an installed hook (a library user that embeds
//! the runtime alone) containers get no network of rcon's.

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::Result;

use crate::Context;

pub trait NetworkHook: Send + Sync {
    /// Wire the container's networks, as its annotations ask.
    fn on_create(&self, ctx: &Context, id: &str, pid: i32, annotations: &HashMap<String, String>) -> Result<()>;
    /// Release what `on_create` made (its leases and records).
    fn on_delete(&self, ctx: &Context, id: &str) -> Result<()>;
}

static HOOK: OnceLock<Box<dyn NetworkHook>> = OnceLock::new();

/// Install the hook (once per process; later calls change nothing).
pub fn install(hook: Box<dyn NetworkHook>) {
    let _ = HOOK.set(hook);
}

pub(crate) fn on_create(ctx: &Context, id: &str, pid: i32, annotations: &HashMap<String, String>) -> Result<()> {
    HOOK.get().map_or(Ok(()), |h| h.on_create(ctx, id, pid, annotations))
}

pub(crate) fn on_delete(ctx: &Context, id: &str) -> Result<()> {
    HOOK.get().map_or(Ok(()), |h| h.on_delete(ctx, id))
}
