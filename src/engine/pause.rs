//! rcon's built-in pause process, the first piece of pod sandboxes: it holds
//! a pod's namespaces for as long as it lives, and does nothing else. As pid
//! 1 of a shared pid namespace it reaps every orphan that lands on it; TERM
//! or INT end it cleanly (exit 0), as Kubernetes' pause does.

use anyhow::{Context as _, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::ForkResult;
use std::io::Write as _;
use std::os::fd::AsRawFd;

use crate::sys::{cgroup_fork, fdpass};

/// The pod's groups the pause process is born in (see sys/cgroup_fork.rs)
/// rather than moved to afterwards: open dirs that rcon passes down as
/// inherited fds, named by these variables (`3` and `4,5`), so the pause's
/// command line stays `rcon pause` and shows no host path to the pod.
pub const V2_FD_VAR: &str = "RCON_PAUSE_CGROUP2_FD";
pub const V1_FDS_VAR: &str = "RCON_PAUSE_CGROUP_V1_FDS";

/// Run the pause loop until TERM or INT; returns the exit status. Its pid
/// (as the caller's namespace sees it) goes to stdout once it is ready and
/// in its groups.
pub fn run() -> Result<i32> {
    let (v2, v1) = (fdpass::take(V2_FD_VAR)?.pop(), fdpass::take(V1_FDS_VAR)?);
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    // Blocked, then taken one at a time: no handler, no race with a child
    // that exits before the loop starts.
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).context("sigprocmask")?;
    // Not holding any directory or terminal of whoever started it.
    let _ = std::env::set_current_dir("/");
    let _ = nix::unistd::setsid();
    // After unshare(CLONE_NEWPID) our child is the namespace's pid 1, and
    // that is the pause process; with groups, the child is born in them. In
    // both cases we only report the child and go.
    if in_new_pid_namespace()? || v2.is_some() || !v1.is_empty() {
        // The v1 groups by this (single) thread first: the child inherits them.
        for d in &v1 {
            cgroup_fork::join_v1(d)?;
        }
        // SAFETY: the pause process is single-threaded (it starts no thread or runtime), so the child's
        // copy of our memory holds no lock another thread had taken.
        match unsafe { cgroup_fork::fork_into(v2.as_ref()) }? {
            (ForkResult::Parent { child }, born_in) => {
                if let (Some(dir), false) = (&v2, born_in) {
                    cgroup_fork::move_into_v2(dir, child)?;
                }
                println!("{child}");
                return Ok(0);
            }
            (ForkResult::Child, _) => drop((v2, v1)),
        }
    } else {
        println!("{}", std::process::id());
    }
    let _ = std::io::stdout().flush();
    let_go_of_stdio()?;
    loop {
        match set.wait().context("sigwait")? {
            Signal::SIGTERM | Signal::SIGINT => return Ok(0),
            _ => reap_all(),
        }
    }
}

/// Whether our children go to another pid namespace than ours. Right after
/// unshare(CLONE_NEWPID) that namespace has no process yet, and the kernel
/// answers ENOENT for its link.
fn in_new_pid_namespace() -> Result<bool> {
    let ours = std::fs::read_link("/proc/self/ns/pid").context("reading /proc/self/ns/pid")?;
    match std::fs::read_link("/proc/self/ns/pid_for_children") {
        Ok(theirs) => Ok(theirs != ours),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).context("reading /proc/self/ns/pid_for_children"),
    }
}

/// stdin, stdout and stderr on /dev/null: whoever started us may be reading
/// our pipes until they close.
fn let_go_of_stdio() -> Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
    for fd in 0..3 {
        // SAFETY: no memory is passed; fds 0-2 are stdio, which nothing in this process owns as an
        // OwnedFd, so pointing them at another open file breaks no owner.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup2");
        }
    }
    Ok(())
}

/// Collect every exited child without blocking.
fn reap_all() {
    while let Ok(ws) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if ws == WaitStatus::StillAlive {
            break;
        }
    }
}
