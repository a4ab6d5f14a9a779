//! Resident rcon daemons as two processes (the userspace IPIP daemon, the DNS
//! resolver): a detached supervisor, and the worker it keeps alive. A worker
//! that dies is started again after a backoff (100 ms, doubling to 1 s, back
//! to 100 ms once a worker has lived for a while); SIGHUP is passed on to the
//! worker; TERM or INT stop the worker and end the supervisor with 0.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::proc::{self, Creator};
use super::spawn;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A worker that lived this long was healthy: the next restart is quick again.
const HEALTHY: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often a supervisor looks for its anchor (see `run`).
const ANCHOR_CHECK: Duration = Duration::from_secs(5);

/// Start `rcon ARGS` (a supervisor, which runs [`run`]) detached from the caller: its own session,
/// stdio on /dev/null once ready, in the caller's network namespace. It prints its pid when its first
/// worker is ready; returns it, named `what` in errors.
pub fn start(args: Vec<String>, what: &str) -> Result<Creator> {
    let mut cmd = spawn::rcon_self(args);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let (_, pid) = spawn::start_resident(&mut cmd, what, spawn::READY_TIMEOUT, |l| l.parse::<i32>().ok())?;
    let start = proc::proc_start_time(pid).map(|(t, _)| t).with_context(|| format!("{what} exited at once"))?;
    Ok(Creator { pid, start })
}

/// Stop a supervisor and its worker: TERM, then KILL; returns once it is gone.
pub fn stop(daemon: Creator, what: &str) -> Result<()> {
    if !spawn::stop(daemon, Duration::from_secs(5)) {
        bail!("{what} (pid {}) did not stop", daemon.pid);
    }
    Ok(())
}

/// Start the worker `rcon ARGS` and wait until it says "ready"; its error otherwise. It dies with us
/// (PDEATHSIG), so a supervisor killed by KILL leaves no worker behind.
pub fn spawn_worker(args: &[String], what: &str) -> Result<Child> {
    let mut cmd: Command = spawn::rcon_self(args);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (child, ()) = spawn::start_resident(&mut cmd, what, spawn::READY_TIMEOUT, |l| (l == "ready").then_some(()))?;
    Ok(child)
}

/// TERM, then KILL after a grace period; reaps it. Our child, not reaped yet: its pid is still its own.
fn end_worker(child: &Child) {
    spawn::stop(Creator { pid: child.id() as i32, start: 0 }, STOP_GRACE);
}

/// Run until TERM or INT, keeping one worker from `spawn` alive. The first worker must start (its error
/// is ours); then our pid goes to stdout and stdio is let go of. `anchor` is a path of the state the
/// daemon serves: once it is gone (a state root removed by hand, with no rcon left to stop us), the
/// worker is ended and so is the supervisor, rather than serving nothing for ever.
pub fn run(anchor: &Path, mut spawn: impl FnMut() -> Result<Child>) -> Result<i32> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    // Taken one at a time with sigtimedwait: no handler, and no signal lost
    // between starting a worker and waiting. std's spawn clears the mask
    // in the child.
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).context("sigprocmask")?;
    let _ = std::env::set_current_dir("/");
    let mut worker = Some(spawn()?);
    println!("{}", std::process::id());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    stdio_to_null()?;
    let mut started = Instant::now();
    let mut backoff = BACKOFF_MIN;
    let mut restart_at: Option<Instant> = None;
    let mut anchor_at = Instant::now() + ANCHOR_CHECK;
    loop {
        let wake = restart_at.map_or(anchor_at, |t| t.min(anchor_at));
        match next_signal(&set, Some(wake.saturating_duration_since(Instant::now()))) {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                if let Some(w) = &worker {
                    end_worker(w);
                }
                return Ok(0);
            }
            Some(Signal::SIGHUP) => {
                if let Some(w) = &worker {
                    let _ = kill(Pid::from_raw(w.id() as i32), Signal::SIGHUP);
                }
            }
            Some(_) => {
                let gone = worker.as_mut().is_some_and(|w| !matches!(w.try_wait(), Ok(None)));
                // Other children (none are expected) are reaped too.
                while matches!(waitpid(None, Some(WaitPidFlag::WNOHANG)), Ok(s) if s != WaitStatus::StillAlive) {}
                if gone {
                    worker = None;
                    if started.elapsed() >= HEALTHY {
                        backoff = BACKOFF_MIN;
                    }
                    restart_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            None => {}
        }
        if Instant::now() >= anchor_at {
            anchor_at = Instant::now() + ANCHOR_CHECK;
            if anchor.symlink_metadata().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
                if let Some(w) = &worker {
                    end_worker(w);
                }
                return Ok(0);
            }
        }
        if restart_at.is_some_and(|t| Instant::now() >= t) {
            restart_at = None;
            started = Instant::now();
            match spawn() {
                Ok(w) => worker = Some(w),
                Err(_) => {
                    restart_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// The next of the blocked signals in `set`, or None when `timeout` passed.
fn next_signal(set: &SigSet, timeout: Option<Duration>) -> Option<Signal> {
    let ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as _ });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: siginfo_t is plain old data (integers and a union of them): all zeroes is a valid one.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` and `info` are alive for the call, and `tsp` is null or points at `ts`, which is too.
    let r = unsafe { libc::sigtimedwait(set.as_ref(), &mut info, tsp) };
    if r < 0 {
        return None;
    }
    Signal::try_from(r).ok()
}

/// Point stdin, stdout and stderr at /dev/null: whoever started us may read
/// our pipes until they close (a worker calls this once it said "ready").
pub fn stdio_to_null() -> Result<()> {
    stdio_to(None)
}

/// stdin from /dev/null, stdout and stderr appended to `log` (made if need be): a daemon's lines.
pub fn stdio_to_log(log: &std::path::Path) -> Result<()> {
    stdio_to(Some(log))
}

fn stdio_to(log: Option<&std::path::Path>) -> Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("/dev/null")?;
    let out = match log {
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("opening {}", p.display()))?,
        None => null.try_clone().context("/dev/null")?,
    };
    for (fd, to) in [(libc::STDIN_FILENO, &null), (libc::STDOUT_FILENO, &out), (libc::STDERR_FILENO, &out)] {
        // SAFETY: no memory is passed; fds 0-2 are stdio, which nothing in this process owns as an
        // OwnedFd, so pointing them at another open file breaks no owner.
        if unsafe { libc::dup2(to.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup2 onto stdio");
        }
    }
    Ok(())
}
