//! Userspace IPIP (RFC 2003), for kernels without the ipip link type: a TUN
//! device carries the inner packets, raw IPv4 sockets the outer ones (one
//! receiving protocol 4, one sending; sock.rs). What goes on the wire is what the kernel's ipip sends (no
//! outer options, TTL and DF taken from the inner packet), so a node with
//! the kernel's ipip and one with this daemon talk to each other.
//!
//! `rcon ipipd` runs as two processes: a supervisor (started detached by
//! `start`) and the worker it keeps alive, which moves the packets (see
//! worker.rs for the data plane and its batching, offload.rs for the TUN
//! offloads: TSO super-packets cut in userspace, GSO writes to the TUN,
//! icmp.rs for its ICMP answers: packets too big for the path, peers that
//! cannot be reached). probe.rs measures the raw-socket wire alone.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::sys::proc::{self, Creator};
use crate::sys::spawn;

mod icmp;
mod offload;
pub mod probe;
mod sock;
mod supervisor;
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

/// Start the supervised daemon, detached from the caller (its own session,
/// stdio on /dev/null), in the caller's network namespace; returns the
/// supervisor once the data plane is up.
pub fn start(cfg: &Config) -> Result<Creator> {
    let mut cmd = spawn::rcon_self(supervisor::args(cfg));
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let (_, pid) = spawn::start_resident(&mut cmd, "rcon ipipd", spawn::READY_TIMEOUT, |l| l.parse::<i32>().ok())?;
    let start = proc::proc_start_time(pid).map(|(t, _)| t).context("rcon ipipd exited at once")?;
    Ok(Creator { pid, start })
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
    if !spawn::stop(daemon, Duration::from_secs(5)) {
        bail!("rcon ipipd (pid {}) did not stop", daemon.pid);
    }
    Ok(())
}

/// `rcon ipipd …` (hidden): the supervisor, or with `worker` the data plane itself.
pub fn main(cfg: &Config, worker: bool) -> Result<i32> {
    if worker {
        worker::run(cfg, stdio_to_null)
    } else {
        supervisor::run(cfg, stdio_to_null)
    }
}

/// Point stdin, stdout and stderr at /dev/null: whoever started us may read
/// our pipes until they close.
fn stdio_to_null() -> Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("/dev/null")?;
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: no memory is passed; fds 0-2 are stdio, which nothing in this process owns as an
        // OwnedFd, so pointing them at another open file breaks no owner.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup2 onto stdio");
        }
    }
    Ok(())
}
