//! Starting a process in namespaces: rcon forks an intermediate that joins
//! the namespaces given by path and unshares the new ones, then forks again
//! so the child lands in the new pid namespace (as its pid 1) and reports
//! the child's pid back. rcon is single-threaded at this point, so forking
//! is safe; no async runtime is ever started before it.

use std::convert::Infallible;
use std::fs::File;
use std::os::fd::AsFd;

use anyhow::{Context as _, Result};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use super::sync::{Channel, Msg};
use crate::sys::cgroup_fork::{fork_joined, Forked, Groups};

/// Namespaces to join (type flag + open file) and to create.
pub struct Namespaces {
    pub join: Vec<(CloneFlags, File)>,
    pub new: CloneFlags,
    /// uid_map and gid_map contents for a new user namespace.
    pub id_maps: Option<(String, String)>,
    /// The container's cgroup directory: the intermediate is born in it, so
    /// it and everything it forks are members from their first instruction.
    pub cgroup: Option<File>,
    /// cgroup v1 groups (devices, pids: cgroup_v1.rs) to join as well.
    pub v1_cgroups: Vec<File>,
}

/// Fork the two stages; `child` runs in the final process and only returns
/// on error (which is sent to rcon before the process exits).
pub fn spawn<F>(ns: Namespaces, child: F) -> Result<(i32, Channel)>
where
    F: FnOnce(&mut Channel) -> Result<Infallible>,
{
    let (mut parent, mut kid) = Channel::pair()?;
    let groups = Groups { v2: ns.cgroup.as_ref(), v1: &ns.v1_cgroups };
    // SAFETY: rcon is single-threaded here (see the module comment), so the child's copy of our memory
    // holds no lock another thread had taken.
    match unsafe { fork_joined(&groups) }? {
        Forked::Child(joined) => {
            drop(parent);
            let code = match joined.and_then(|()| intermediate(&ns, &mut kid, child)) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = kid.send(&Msg::Error { msg: format!("{e:#}") });
                    1
                }
            };
            // SAFETY: _exit takes an integer and ends this copy at once, so none of rcon's Drops or
            // atexit handlers (and no buffered output) runs a second time.
            unsafe { libc::_exit(code) }
        }
        Forked::Parent(mid) => {
            drop(kid);
            let maps = ns.id_maps.clone();
            drop(ns);
            let res = wait_for_pid(&mut parent, mid.as_raw(), maps);
            let _ = waitpid(mid, None);
            res.map(|pid| (pid, parent))
        }
    }
}

/// rcon's side: write the id maps when asked, then take the init's pid.
fn wait_for_pid(chan: &mut Channel, mid: i32, maps: Option<(String, String)>) -> Result<i32> {
    loop {
        match chan.expect("namespace setup")? {
            Msg::Pid { pid } => return Ok(pid),
            Msg::UserNs => {
                let (uid_map, gid_map) = maps.clone().unwrap_or_default();
                write_id_map(mid, "uid_map", &uid_map).context("config.json: field linux.uidMappings")?;
                write_id_map(mid, "gid_map", &gid_map).context("config.json: field linux.gidMappings")?;
                chan.send(&Msg::UserNsDone)?;
            }
            other => anyhow::bail!("container init: unexpected {other:?}"),
        }
    }
}

fn write_id_map(pid: i32, file: &str, map: &str) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/{file}"), map).with_context(|| format!("writing {file} {map:?}"))
}

fn intermediate<F>(ns: &Namespaces, chan: &mut Channel, child: F) -> Result<()>
where
    F: FnOnce(&mut Channel) -> Result<Infallible>,
{
    for (flag, file) in &ns.join {
        setns(file.as_fd(), *flag).with_context(|| format!("joining namespace {flag:?}"))?;
    }
    let mut new = ns.new;
    if new.contains(CloneFlags::CLONE_NEWUSER) {
        // The user namespace first, so that it owns the others; rcon writes
        // its id maps from outside, then we become its root.
        unshare(CloneFlags::CLONE_NEWUSER).context("creating user namespace")?;
        chan.send(&Msg::UserNs)?;
        match chan.expect("user namespace mapping")? {
            Msg::UserNsDone => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
        let root = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
        nix::unistd::setresgid(root.1, root.1, root.1).context("setgid 0 in the user namespace")?;
        nix::unistd::setresuid(root.0, root.0, root.0).context("setuid 0 in the user namespace")?;
        new.remove(CloneFlags::CLONE_NEWUSER);
    }
    if !new.is_empty() {
        unshare(new).with_context(|| format!("creating namespaces {new:?}"))?;
    }
    // The child must not speak before we have reported its pid on the shared
    // channel: it waits for one byte on this pipe.
    let (go_rx, go_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: the intermediate is a fork of single-threaded rcon and starts no thread itself.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(go_tx);
            let mut b = [0u8; 1];
            if !matches!(nix::unistd::read(&go_rx, &mut b), Ok(1)) {
                // SAFETY: as for the intermediate's _exit: nothing of rcon's runs twice.
                unsafe { libc::_exit(1) }
            }
            drop(go_rx);
            // A panic must not unwind into rcon's own frames (and their Drops) in this copy.
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(chan)));
            let err = match res {
                Ok(Ok(never)) => match never {},
                Ok(Err(e)) => e,
                Err(_) => anyhow::anyhow!("container init panicked"),
            };
            let _ = chan.send(&Msg::Error { msg: format!("{err:#}") });
            // SAFETY: as for the intermediate's _exit: nothing of rcon's runs twice.
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => {
            chan.send(&Msg::Pid { pid: child.as_raw() })?;
            nix::unistd::write(&go_tx, b"g").context("releasing the init")?;
            Ok(())
        }
    }
}
