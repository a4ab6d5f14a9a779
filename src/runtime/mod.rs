//! The OCI runtime: bundles, state, and the launch of container processes.
//! It knows nothing of bridges; networks attach through `net` or hooks.

mod cgroup;
mod cgroup_v1;
mod console;
mod container;
mod device_prog;
mod devices;
mod exec;
mod hooks;
mod init;
mod launch;
mod limits;
pub mod network;
mod process;
mod procs;
mod rootfs;
pub(crate) mod seccomp;
pub mod signal;
pub mod spec;
pub mod state;
mod supervise;
mod sync;
mod unsupported;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::Context;
pub use console::recv_fd;
pub use container::Collected;
pub use state::{State, Status};

pub use cgroup::sandbox as pod_cgroup;
pub use device_prog::PREFER_BPF as DEVICES_PREFER_BPF;

/// Whether this host can apply `linux.resources.devices` (what
/// unsupported.rs checks), for the engine's default device list.
pub fn applies_device_rules() -> bool {
    let h = unsupported::Host::probe();
    h.devices_controller || h.cgroup2
}

/// What `create` and `run --bundle` take besides the id.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

/// What `exec` takes besides the id.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub process_file: Option<PathBuf>,
    pub tty: bool,
    pub detach: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub args: Vec<String>,
}

/// Create a container whose init waits for `start`.
pub fn create(ctx: &Context, id: &str, o: &CreateOptions) -> Result<()> {
    container::create(ctx, id, o, None).map(|_| ())
}

pub fn start(ctx: &Context, id: &str) -> Result<()> {
    container::start(ctx, id).map(|_| ())
}

pub fn state(ctx: &Context, id: &str) -> Result<State> {
    container::state(ctx, id)
}

pub fn kill(ctx: &Context, id: &str, sig: Signal, all: bool) -> Result<()> {
    container::kill(ctx, id, sig, all)
}

pub fn delete(ctx: &Context, id: &str, force: bool) -> Result<()> {
    container::delete(ctx, id, force)
}

/// The runtime's part of `rcon gc`: containers that a dead rcon process left
/// half-made or half-deleted.
pub fn gc(ctx: &Context) -> Result<Collected> {
    container::gc(ctx)
}

/// Every container whose state can be read (see `scan`).
pub fn list(ctx: &Context) -> Result<Vec<State>> {
    Ok(container::scan(ctx)?.good)
}

/// Every container, and those whose state cannot be read.
pub fn scan(ctx: &Context) -> Result<crate::store::Listing<State>> {
    container::scan(ctx)
}

/// Apply `r` to a created or running container (`rcon update`).
pub fn update(ctx: &Context, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
    limits::update(ctx, id, r)
}

/// runc's stats event for the container (`rcon events --stats`).
pub fn stats(ctx: &Context, id: &str) -> Result<serde_json::Value> {
    limits::stats_event(ctx, id)
}

/// Stats every `interval` and OOM events, to `emit`, until the container exits.
pub fn events(
    ctx: &Context,
    id: &str,
    interval: std::time::Duration,
    emit: impl FnMut(&serde_json::Value) -> Result<()>,
) -> Result<()> {
    limits::events(ctx, id, interval, emit)
}

pub fn pids(ctx: &Context, id: &str) -> Result<Vec<i32>> {
    container::pids(ctx, id)
}

pub fn exec(ctx: &Context, id: &str, o: ExecOptions) -> Result<i32> {
    exec::exec(ctx, id, o)
}

/// create + start, then (unless detached) wait, remove the container and
/// return its exit status. Without --console-socket, a terminal container
/// gets its pty proxied to rcon's own stdio.
pub fn run(ctx: &Context, id: &str, o: &CreateOptions, detach: bool) -> Result<i32> {
    if detach {
        let (_, started) = create_and_start(ctx, id, o, false)?;
        drop(started);
        return Ok(0);
    }
    run_foreground(ctx, id, o, true, |_| {})
}

/// create + start + wait; the exit status (128+N for signal N). With
/// `remove`, the container is deleted afterwards; otherwise it stays, stopped.
/// `started` is called once the process runs (a monitor reports back there).
pub fn run_foreground(
    ctx: &Context,
    id: &str,
    o: &CreateOptions,
    remove: bool,
    started: impl FnOnce(&State),
) -> Result<i32> {
    let (st, pty) = create_and_start(ctx, id, o, true)?;
    tracing::debug!(id, "started");
    started(&st);
    let code = supervise::wait(st.pid, pty)?;
    tracing::debug!(id, code, "exited");
    if remove {
        container::delete(ctx, id, true)?;
        tracing::debug!(id, "deleted");
    }
    Ok(code)
}

fn create_and_start(
    ctx: &Context,
    id: &str,
    o: &CreateOptions,
    foreground: bool,
) -> Result<(State, Option<std::os::fd::OwnedFd>)> {
    let (ours, theirs) = match (foreground, &o.console_socket) {
        (true, None) => {
            let (a, b) = UnixStream::pair()?;
            (Some(a), Some(b))
        }
        _ => (None, None),
    };
    if foreground {
        supervise::prepare()?;
    }
    let (st, terminal) = container::create_started(ctx, id, o, theirs)?;
    // The init sent the pty's master before it reported created; it waits in the socket.
    let pty = match (&ours, terminal) {
        (Some(s), true) => match console::recv_fd(s) {
            Ok(fd) => Some(fd),
            Err(e) => {
                let _ = container::delete(ctx, id, true);
                return Err(e);
            }
        },
        _ => None,
    };
    Ok((st, pty))
}
