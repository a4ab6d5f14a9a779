//! Userspace IPIP (RFC 2003), for kernels without the ipip link type: a TUN
//! device carries the inner packets, raw IPv4 sockets the outer ones (one
//! receiving protocol 4, one sending; sock.rs). What goes on the wire is what the kernel's ipip sends (no
//! outer options, TTL and DF taken from the inner packet), so a node with
//! the kernel's ipip and one with this daemon talk to each other.
//!
//! `rcon ipipd` runs as two processes: a supervisor (sys/supervise.rs, started
//! detached by `start`) and the worker it keeps alive, which moves the packets (see
//! worker.rs for the data plane and its batching, offload.rs for the TUN
//! offloads: TSO super-packets cut in userspace, GSO writes to the TUN,
//! icmp.rs for its ICMP answers: packets too big for the path, peers that
//! cannot be reached). probe.rs measures the raw-socket wire alone.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::sys::proc::Creator;
use crate::sys::supervise;

mod icmp;
mod offload;
pub mod probe;
mod sock;
mod table;
mod tun;
mod worker;

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

/// The bytes the outer header adds: the TUN's MTU is the underlay's minus this.
pub const OVERHEAD: u32 = table::OUTER_LEN as u32;

/// A persistent multi-queue TUN device named `name` with MTU `mtu`, left down.
/// Taking an existing one of ours again is fine (and sets the MTU).
pub fn create_tun(name: &str, mtu: u32) -> Result<()> {
    tun::create(name, mtu)
}

/// Write the peers file atomically.
pub fn write_peers(path: &std::path::Path, peers: &[Peer]) -> Result<()> {
    crate::store::write_json(path, &peers)
}

/// The `rcon ipipd` arguments that start this configuration (the supervisor's; its worker's add
/// `--worker`).
fn args(cfg: &Config) -> Vec<String> {
    vec![
        "ipipd".into(),
        "--tun".into(),
        cfg.tun.clone(),
        "--local".into(),
        cfg.local.to_string(),
        "--peers".into(),
        cfg.peers_file.display().to_string(),
        "--queues".into(),
        cfg.queues.to_string(),
    ]
}

/// Start the supervised daemon (sys/supervise.rs), detached from the caller, in the caller's network
/// namespace; returns the supervisor once the data plane is up.
pub fn start(cfg: &Config) -> Result<Creator> {
    supervise::start(args(cfg), "rcon ipipd")
}

/// Make the daemon re-read its peers file.
pub fn reload(daemon: Creator) -> Result<()> {
    if !daemon.alive() {
        bail!("rcon ipipd (pid {}) is not running", daemon.pid);
    }
    kill(Pid::from_raw(daemon.pid), Signal::SIGHUP).with_context(|| format!("signalling ipipd {}", daemon.pid))
}

/// Stop the supervisor and its worker: TERM, then KILL; returns once it is gone.
pub fn stop(daemon: Creator) -> Result<()> {
    supervise::stop(daemon, "rcon ipipd")
}

/// `rcon ipipd …` (hidden): the supervisor, or with `worker` the data plane itself.
pub fn main(cfg: &Config, worker: bool) -> Result<i32> {
    if worker {
        worker::run(cfg, supervise::stdio_to_null)
    } else {
        let mut a = args(cfg);
        a.push("--worker".into());
        supervise::run(&cfg.peers_file, || supervise::spawn_worker(&a, "the ipipd worker"))
    }
}
