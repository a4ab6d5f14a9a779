//! Networks for containers, driven by the OCI state alone: the annotations
//! `rcon.network` (comma-separated network names), `rcon.ip`, `rcon.mac`
//! `rcon.ports` (comma-separated `-p` specs; all for the first network) and `rcon.dns-names` (the
//! resolver's names for the container, on every network). `create` calls this once the container's netns
//! exists, `delete` once its processes are gone, and `rcon network hook`
//! does the same from a createRuntime/poststop hook of any runtime.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};

use super::endpoint::Endpoint;
use super::macaddr::Mac;
use super::manage::{self, AttachRequest};
use super::ports;
use crate::Context;

pub const NETWORK: &str = "rcon.network";
pub const IP: &str = "rcon.ip";
pub const MAC: &str = "rcon.mac";
pub const PORTS: &str = "rcon.ports";
/// The names rcon's resolver answers for the container (comma-separated: its name, then aliases).
pub const DNS_NAMES: &str = "rcon.dns-names";

/// Write what `requests` reads: the annotations for `network`, with an
/// address, a MAC and published ports (`rcon run --network N --ip A --mac M -p P`).
pub fn annotate(
    ann: &mut HashMap<String, String>,
    network: &str,
    ip: Option<Ipv4Addr>,
    mac: Option<Mac>,
    ports: &[String],
    names: &[String],
) {
    ann.insert(NETWORK.into(), network.into());
    if !names.is_empty() {
        ann.insert(DNS_NAMES.into(), names.join(","));
    }
    if !ports.is_empty() {
        ann.insert(PORTS.into(), ports.join(","));
    }
    if let Some(ip) = ip {
        ann.insert(IP.into(), ip.to_string());
    }
    if let Some(mac) = mac {
        ann.insert(MAC.into(), mac.to_string());
    }
}

/// One attach request per network the annotations name, in order; the
/// first network gets `rcon.ip` and `rcon.mac`.
pub fn requests(ann: &HashMap<String, String>, owner: &str, pid: i32) -> Result<Vec<AttachRequest>> {
    let Some(nets) = ann.get(NETWORK) else { return Ok(Vec::new()) };
    let ports = match ann.get(PORTS) {
        Some(p) => ports::parse_list(p).with_context(|| format!("annotation {PORTS}"))?,
        None => Vec::new(),
    };
    let ip = ann
        .get(IP)
        .map(|s| s.parse::<Ipv4Addr>().with_context(|| format!("annotation {IP}: {s:?} is not an IPv4 address")))
        .transpose()?;
    let names: Vec<String> = ann
        .get(DNS_NAMES)
        .map_or_else(Vec::new, |n| n.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect());
    let mac = ann.get(MAC).map(|s| Mac::for_interface(s).with_context(|| format!("annotation {MAC}"))).transpose()?;
    Ok(nets
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .enumerate()
        .map(|(i, n)| AttachRequest {
            network: n.to_string(),
            netns: manage::netns_of_pid(pid),
            ifname: None,
            ip: ip.filter(|_| i == 0),
            mac: mac.filter(|_| i == 0),
            owner: Some(owner.to_string()),
            ports: if i == 0 { ports.clone() } else { Vec::new() },
            names: names.clone(),
        })
        .collect())
}

/// Attach the container whose init is `pid` to the networks its
/// annotations name. All or nothing: a failure detaches what was attached.
pub fn on_create(ctx: &Context, id: &str, pid: i32, ann: &HashMap<String, String>) -> Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    for req in requests(ann, id, pid)? {
        match manage::attach(ctx, &req) {
            Ok(ep) => out.push(ep),
            Err(e) => {
                let _ = manage::detach_owner(ctx, id, None);
                return Err(e.context(format!("network {}", req.network)));
            }
        }
    }
    Ok(out)
}

/// Release everything the container had on every network.
pub fn on_delete(ctx: &Context, id: &str) -> Result<()> {
    manage::detach_owner(ctx, id, None).map(drop)
}
