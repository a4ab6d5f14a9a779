//! rcon's networks behind the runtime's network hook (`runtime::network`).

use std::collections::HashMap;

use anyhow::Result;

use crate::runtime::network::{install, NetworkHook};
use crate::Context;

struct Wire;

impl NetworkHook for Wire {
    fn on_create(&self, ctx: &Context, id: &str, pid: i32, annotations: &HashMap<String, String>) -> Result<()> {
        crate::net::wire::on_create(ctx, id, pid, annotations).map(drop)
    }

    fn on_delete(&self, ctx: &Context, id: &str) -> Result<()> {
        crate::net::wire::on_delete(ctx, id)
    }
}

/// Give the runtime rcon's networks: the binary calls this first thing.
pub fn install_network_hook() {
    install(Box::new(Wire));
}
