//! rcon's built-in pause process, the first piece of pod sandboxes: it holds
//! a pod's namespaces for as long as it lives, and does nothing else. As pid
//! 1 of a shared pid namespace it reaps every orphan that lands on it; TERM
//! or INT end it cleanly (exit 0), as Kubernetes' pause does.

use anyhow::{Context as _, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Run the pause loop until TERM or INT; returns the exit status.
pub fn run() -> Result<i32> {
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
    loop {
        match set.wait().context("sigwait")? {
            Signal::SIGTERM | Signal::SIGINT => return Ok(0),
            _ => reap_all(),
        }
    }
}

/// Collect every exited child without blocking.
fn reap_all() {
    while let Ok(ws) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if ws == WaitStatus::StillAlive {
            break;
        }
    }
}
