//! `run -d`: a small rcon process (conmon's role) that stays behind as the
//! container's parent. It waits for the exit, records the status and, with
//! --rm, removes the container. Its stdout/stderr, inherited by the
//! container, go to the log file that `rcon logs` reads.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

use anyhow::{bail, Context as _, Result};
use nix::unistd::{fork, ForkResult};

use super::rootfs::Creating;
use crate::runtime::{self, CreateOptions};
use crate::Context;

/// Fork the monitor, and return once the container runs (or report why not).
/// The monitor takes over `creating`, the run's hold on the creator record.
pub fn start(ctx: &Context, id: &str, opts: &CreateOptions, rm: bool, creating: Creating) -> Result<()> {
    let log = super::log_path(ctx, id);
    fs::create_dir_all(log.parent().unwrap_or(&ctx.root))?;
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let (mut rx, mut tx) = std::os::unix::net::UnixStream::pair()?;
    // SAFETY: `rcon run -d` is single-threaded here (no thread or async runtime started yet), so the
    // child's copy of our memory holds no lock another thread had taken.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(rx);
            // `run -d` passes the container no fd of its own (no --preserve-fds here).
            let _ = crate::sys::spawn::close_inherited();
            let _ = nix::unistd::setsid();
            let null = fs::File::open("/dev/null").ok();
            // SAFETY: no memory is passed; fds 0-2 are stdio, which nothing in this process owns as an
            // OwnedFd, so pointing them at another open file breaks no owner.
            unsafe {
                if let Some(n) = &null {
                    libc::dup2(n.as_raw_fd(), 0);
                }
                libc::dup2(log_file.as_raw_fd(), 1);
                libc::dup2(log_file.as_raw_fd(), 2);
            }
            // Notices would land in the container's log: the waiting command prints them.
            crate::notice::collect();
            crate::store::fault("monitor:forked");
            let code = monitor(ctx, id, opts, rm, &mut tx, creating);
            // SAFETY: _exit takes an integer and ends the monitor at once, so the parent's Drops and
            // atexit handlers, copied by fork, do not run a second time.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { .. } => {
            drop(tx);
            let mut reply = String::new();
            rx.read_to_string(&mut reply).context("waiting for the container to start")?;
            match reply.strip_prefix("ok") {
                Some(notices) => {
                    notices.lines().filter(|l| !l.is_empty()).for_each(|l| eprintln!("rcon: {l}"));
                    Ok(())
                }
                None if reply.is_empty() => bail!("the container monitor exited before the container started"),
                None => bail!("{reply}"),
            }
        }
    }
}

fn monitor(
    ctx: &Context,
    id: &str,
    opts: &CreateOptions,
    rm: bool,
    tx: &mut std::os::unix::net::UnixStream,
    creating: Creating,
) -> i32 {
    // The front rcon may be killed while we make the container, and its
    // user's `rm` then finds no container by that name yet (no state) or one
    // half made. So we keep the hold on the creator record, which `rm` waits
    // for, until the container is recorded as started, or until a failed
    // start is undone: `rm` then removes it whole, or finds nothing.
    let mut creating = Some(creating);
    let res = runtime::run_foreground(ctx, id, opts, false, |_| {
        drop(creating.take());
        let notices: String = crate::notice::take().iter().map(|n| format!("\n{n}")).collect();
        let _ = tx.write_all(format!("ok{notices}").as_bytes());
        let _ = tx.shutdown(std::net::Shutdown::Both);
    });
    match res {
        Ok(code) => {
            let _ = fs::write(super::exit_path(ctx, id), code.to_string());
            if rm {
                let _ = super::remove(ctx, id, true);
            }
            0
        }
        Err(e) => {
            let _ = tx.write_all(format!("{e:#}").as_bytes());
            let _ = super::discard(ctx, id);
            1
        }
    }
}
