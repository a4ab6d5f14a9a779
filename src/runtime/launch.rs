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

/// Namespaces to join (type flag + open file) and to create.
pub struct Namespaces {
    pub join: Vec<(CloneFlags, File)>,
    pub new: CloneFlags,
}

/// Fork the two stages; `child` runs in the final process and only returns
/// on error (which is sent to rcon before the process exits).
pub fn spawn<F>(ns: Namespaces, child: F) -> Result<(i32, Channel)>
where
    F: FnOnce(&mut Channel) -> Result<Infallible>,
{
    let (mut parent, mut kid) = Channel::pair()?;
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(parent);
            let code = match intermediate(&ns, &mut kid, child) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = kid.send(&Msg::Error { msg: format!("{e:#}") });
                    1
                }
            };
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: mid } => {
            drop(kid);
            drop(ns);
            let msg = parent.expect("namespace setup");
            let _ = waitpid(mid, None);
            match msg? {
                Msg::Pid { pid } => Ok((pid, parent)),
                other => anyhow::bail!("container init: unexpected {other:?}"),
            }
        }
    }
}

fn intermediate<F>(ns: &Namespaces, chan: &mut Channel, child: F) -> Result<()>
where
    F: FnOnce(&mut Channel) -> Result<Infallible>,
{
    for (flag, file) in &ns.join {
        setns(file.as_fd(), *flag).with_context(|| format!("joining namespace {flag:?}"))?;
    }
    if !ns.new.is_empty() {
        unshare(ns.new).with_context(|| format!("creating namespaces {:?}", ns.new))?;
    }
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            // A panic must not unwind into rcon's own frames (and their Drops) in this copy.
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(chan)));
            let err = match res {
                Ok(Ok(never)) => match never {},
                Ok(Err(e)) => e,
                Err(_) => anyhow::anyhow!("container init panicked"),
            };
            let _ = chan.send(&Msg::Error { msg: format!("{err:#}") });
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => chan.send(&Msg::Pid { pid: child.as_raw() }),
    }
}
