//! Networks for containers, driven by the OCI state alone: the annotations
//! `rcon.network` (comma-separated network names), `rcon.ip` and `rcon.mac`
//! (for the first network). `create` calls this once the container's netns
//! exists, `delete` once its processes are gone, and `rcon network hook`
//! does the same from a createRuntime/poststop hook of any runtime.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};

use super::endpoint::Endpoint;
use super::firewall::Backend;
use super::manage::{self, AttachRequest};
use crate::Context;

pub const NETWORK: &str = "rcon.network";
pub const IP: &str = "rcon.ip";
pub const MAC: &str = "rcon.mac";

/// The networks the annotations ask for, in order, with the first one's address and MAC.
pub fn requested(ann: &HashMap<String, String>) -> Result<Vec<(String, Option<Ipv4Addr>, Option<String>)>> {
    let Some(nets) = ann.get(NETWORK) else { return Ok(Vec::new()) };
    let ip = ann
        .get(IP)
        .map(|s| s.parse::<Ipv4Addr>().with_context(|| format!("annotation {IP}: {s:?} is not an IPv4 address")))
        .transpose()?;
    let mac = ann.get(MAC).cloned();
    Ok(nets
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .enumerate()
        .map(|(i, n)| (n.to_string(), if i == 0 { ip } else { None }, if i == 0 { mac.clone() } else { None }))
        .collect())
}

/// Attach the container whose init is `pid` to the networks its
/// annotations name. All or nothing: a failure detaches what was attached.
pub fn on_create(
    ctx: &Context,
    id: &str,
    pid: i32,
    ann: &HashMap<String, String>,
    fw: Backend,
) -> Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    for (network, ip, mac) in requested(ann)? {
        let req = AttachRequest {
            network: network.clone(),
            netns: manage::netns_of_pid(pid),
            ifname: None,
            ip,
            mac,
            owner: Some(id.to_string()),
            firewall: fw,
        };
        match manage::attach(ctx, &req) {
            Ok(ep) => out.push(ep),
            Err(e) => {
                let _ = manage::detach_owner(ctx, id);
                return Err(e.context(format!("network {network}")));
            }
        }
    }
    Ok(out)
}

/// Release everything the container had on every network.
pub fn on_delete(ctx: &Context, id: &str) -> Result<()> {
    manage::detach_owner(ctx, id)
}
