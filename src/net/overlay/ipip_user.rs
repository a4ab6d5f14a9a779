//! Userspace IPIP (RFC 2003), for kernels without the ipip link type: a TUN
//! device carries the inner packets, a raw IPv4 socket for protocol 4 the
//! outer ones. Placeholder: the data plane is being written.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::runtime::state::Creator;

/// Where packets for `subnet` are sent: the peer node's underlay address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub underlay_ip: Ipv4Addr,
}

/// What the daemon needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The TUN device (made by `create_tun`).
    pub tun: String,
    /// This node's underlay address: the outer source.
    pub local: Ipv4Addr,
    /// The JSON list of `Peer`s, re-read on SIGHUP.
    pub peers_file: PathBuf,
    /// TUN queues (and worker threads).
    pub queues: usize,
}

/// A persistent multi-queue TUN device named `name` with MTU `mtu`, left down.
pub fn create_tun(_name: &str, _mtu: u32) -> Result<()> {
    bail!("userspace IPIP is not built yet")
}

/// Write the peers file atomically.
pub fn write_peers(path: &std::path::Path, peers: &[Peer]) -> Result<()> {
    crate::store::write_json(path, &peers)
}

/// Start the supervised daemon, detached from the caller; returns the supervisor.
pub fn start(_cfg: &Config) -> Result<Creator> {
    bail!("userspace IPIP is not built yet")
}

/// Make the daemon re-read its peers file.
pub fn reload(_daemon: Creator) -> Result<()> {
    bail!("userspace IPIP is not built yet")
}

/// Stop the supervisor and its worker.
pub fn stop(_daemon: Creator) -> Result<()> {
    bail!("userspace IPIP is not built yet")
}

/// `rcon ipipd …` (hidden): the supervisor, or with `worker` the data plane itself.
pub fn main(_cfg: &Config, _worker: bool) -> Result<i32> {
    bail!("userspace IPIP is not built yet")
}
