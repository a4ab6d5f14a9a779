//! Child processes, written once: run a program to its end, fed and
//! captured, within a time limit (`run`, or `spawn` then `Running::wait` to
//! run several at once); start a resident rcon child and wait for its ready
//! line (`start_resident`); stop a process, TERM then KILL (`stop`).
//!
//! Every wait is poll(2) on the pipes and on a pidfd: no sleep loop, and no
//! helper thread (a child inherits the namespaces of the thread that spawns
//! it, and `rcon create` stays single-threaded up to its fork).

use std::ffi::OsStr;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::pidfd::{poll_timeout, Pidfd};
use super::proc::{proc_start_time, Creator};

/// Why a child could not be run; each names the program.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", spawn_text(.prog, .err))]
    Spawn { prog: String, err: io::Error },
    #[error("writing to {prog}: {err}")]
    Write { prog: String, err: io::Error },
    #[error("waiting for {prog}: {err}")]
    Wait { prog: String, err: io::Error },
    #[error("{prog} timed out after {after:?}")]
    TimedOut { prog: String, after: Duration },
}

impl Error {
    /// Whether the program itself is missing (not on PATH, or no such file).
    pub fn program_missing(&self) -> bool {
        matches!(self, Error::Spawn { err, .. } if err.kind() == ErrorKind::NotFound)
    }

    /// The system's error under it, for a caller that words its own line.
    pub fn into_io(self) -> io::Error {
        match self {
            Error::Spawn { err, .. } | Error::Write { err, .. } | Error::Wait { err, .. } => err,
            Error::TimedOut { .. } => ErrorKind::TimedOut.into(),
        }
    }
}

fn spawn_text(prog: &str, err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::NotFound => format!("{prog} not found in PATH (is its package installed?)"),
        _ => format!("spawning {prog}: {err}"),
    }
}

/// Which of a child's outputs `run` keeps; the others go to /dev/null.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub stdout: bool,
    pub stderr: bool,
}

impl Keep {
    pub const BOTH: Keep = Keep { stdout: true, stderr: true };
    pub const STDOUT: Keep = Keep { stdout: true, stderr: false };
    pub const STDERR: Keep = Keep { stdout: false, stderr: true };
}

/// Run `cmd` to its end: `input` on its stdin (None: /dev/null; a child that stops reading is no error,
/// its status says why), the outputs `keep` names captured. Past `timeout` the child is killed and reaped.
/// A failing status is no error here: the caller reads `Output::status`.
pub fn run(cmd: &mut Command, input: Option<&[u8]>, keep: Keep, timeout: Option<Duration>) -> Result<Output, Error> {
    spawn(cmd, input, keep)?.wait(timeout)
}

/// The first half of `run`: the child is started and runs while the caller starts others.
pub fn spawn<'a>(cmd: &mut Command, input: Option<&'a [u8]>, keep: Keep) -> Result<Running<'a>, Error> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let piped = |yes| if yes { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(piped(input.is_some())).stdout(piped(keep.stdout)).stderr(piped(keep.stderr));
    match cmd.spawn() {
        Ok(child) => Ok(Running { prog, child, input: input.unwrap_or_default() }),
        Err(err) => Err(Error::Spawn { prog, err }),
    }
}

/// A child started by `spawn`.
pub struct Running<'a> {
    prog: String,
    child: Child,
    input: &'a [u8],
}

impl Running<'_> {
    /// Feed its input, collect its outputs and its status; see `run`.
    pub fn wait(mut self, timeout: Option<Duration>) -> Result<Output, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut stdin = self.child.stdin.take().filter(|_| !self.input.is_empty());
        let mut out = Drain(self.child.stdout.take(), Vec::new());
        let mut err = Drain(self.child.stderr.take(), Vec::new());
        for fd in [stdin.as_ref().map(|s| s.as_fd()), out.fd(), err.fd()].into_iter().flatten() {
            if let Err(err) = nonblocking(fd) {
                return Err(self.abort(Error::Wait { prog: self.prog.clone(), err }));
            }
        }
        let mut fed = 0;
        while stdin.is_some() || out.0.is_some() || err.0.is_some() {
            let Some(left) = left(deadline) else { return Err(self.time_out(timeout)) };
            let fds = [
                (stdin.as_ref().map(|s| s.as_fd()), PollFlags::POLLOUT),
                (out.fd(), PollFlags::POLLIN),
                (err.fd(), PollFlags::POLLIN),
            ];
            let [can_feed, can_out, can_err] = match ready(fds, left) {
                Ok(r) => r,
                Err(err) => return Err(self.abort(Error::Wait { prog: self.prog.clone(), err })),
            };
            if can_feed {
                match feed(stdin.as_mut(), &self.input[fed..]) {
                    Ok(n) => fed += n,
                    // A child that fails early closes its stdin: its status and stderr say why, not EPIPE.
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => fed = self.input.len(),
                    Err(err) => return Err(self.abort(Error::Write { prog: self.prog.clone(), err })),
                }
                if fed == self.input.len() {
                    stdin = None; // closed: the child reads EOF
                }
            }
            if can_out {
                out.pull();
            }
            if can_err {
                err.pull();
            }
        }
        let exited = match deadline {
            None => true,
            Some(d) => match Pidfd::open(self.child.id() as i32) {
                Ok(fd) => fd.exited_by(Some(d)),
                Err(err) => return Err(self.abort(Error::Wait { prog: self.prog.clone(), err })),
            },
        };
        if !exited {
            return Err(self.time_out(timeout));
        }
        let status = self.child.wait().map_err(|err| Error::Wait { prog: self.prog.clone(), err })?;
        Ok(Output { status, stdout: out.1, stderr: err.1 })
    }

    /// Kill and reap the child: `e` ends the run.
    fn abort(&mut self, e: Error) -> Error {
        let _ = self.child.kill();
        let _ = self.child.wait();
        e
    }

    fn time_out(&mut self, after: Option<Duration>) -> Error {
        self.abort(Error::TimedOut { prog: self.prog.clone(), after: after.unwrap_or_default() })
    }
}

/// One output pipe and what was read from it; the pipe is None once at its end.
struct Drain<R>(Option<R>, Vec<u8>);

impl<R: Read + AsFd> Drain<R> {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.as_ref().map(|p| p.as_fd())
    }

    /// Read what is there; the end of the pipe (or a broken one) closes it.
    fn pull(&mut self) {
        let Some(pipe) = self.0.as_mut() else { return };
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.1.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.0 = None;
    }
}

/// Write what the pipe takes now.
fn feed(stdin: Option<&mut ChildStdin>, rest: &[u8]) -> io::Result<usize> {
    match stdin.map(|s| s.write(rest)) {
        Some(Err(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(0),
        Some(r) => r,
        None => Ok(0),
    }
}

fn nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// What is left until `deadline` as a poll timeout; None once it passed.
fn left(deadline: Option<Instant>) -> Option<PollTimeout> {
    match deadline {
        None => Some(PollTimeout::NONE),
        Some(d) => d.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()).map(poll_timeout),
    }
}

/// poll(2) on up to three descriptors: which are ready, or broken (the next read or write says how).
/// Nothing is ready when the time ran out or a signal came.
fn ready(fds: [(Option<BorrowedFd<'_>>, PollFlags); 3], left: PollTimeout) -> io::Result<[bool; 3]> {
    let mut polled: Vec<PollFd> = fds.iter().filter_map(|(fd, ev)| fd.map(|fd| PollFd::new(fd, *ev))).collect();
    match poll(&mut polled, left) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    let mut got = polled.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty()));
    Ok(fds.map(|(fd, _)| fd.is_some() && got.next().unwrap_or(false)))
}

/// How long `start_resident` waits for the ready line: far longer than any start takes, even under
/// emulation; it only bounds a child that hangs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// This very binary (`/proc/self/exe`) as `rcon ARGS`: the processes rcon
/// leaves running (the pause, the daemons). They keep none of the fds rcon
/// was started with beyond stdio: a caller's `flock` lock or a pipe it reads
/// to its end would otherwise live as long as they do.
pub fn rcon_self<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("rcon").args(args);
    // SAFETY: close_range takes integers and, with CLOSE_RANGE_CLOEXEC, closes nothing before the exec
    // (std's own exec-error pipe keeps working); async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Close every fd above stdio that this process did not open itself, for one that stays resident
/// without an exec (the `run -d` monitor), so that it keeps none of its caller's fds (a `flock` lock,
/// a pipe read to its end) for the container's lifetime, nor hands them to the container. Those are
/// the fds without close-on-exec: an fd can only have come through an exec without it, while Rust
/// opens every file of its own with O_CLOEXEC.
pub fn close_inherited() -> io::Result<()> {
    let inherited: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| fd > 2)
        // SAFETY: F_GETFD only reads the flags of an fd number; a closed one (the listing's own) fails.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == 0)
        .collect();
    for fd in inherited {
        // SAFETY: no object of this process owns these fds (they came with the exec, and everything it
        // opened since has close-on-exec), so closing them leaves no owner with a dangling fd.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Start `cmd`, a child meant to stay, and read its first line of stdout within `timeout`; `ready` turns
/// the line (trimmed) into what the caller wants. Its stdin is /dev/null and both outputs are piped; the
/// child lets go of them once ready. No line, another line, or none in time is an error naming `what`
/// with the child's stderr on one line (its own leading `rcon: ` cut): `WHAT failed (STATUS): STDERR`,
/// or `WHAT was not ready within 30s` for a child that hung, which is killed.
pub fn start_resident<T>(
    cmd: &mut Command,
    what: &str,
    timeout: Duration,
    ready: impl FnOnce(&str) -> Option<T>,
) -> anyhow::Result<(Child, T)> {
    let deadline = Instant::now() + timeout;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let line = first_line(child.stdout.take().expect("piped"), deadline);
    if let Some(v) = line.and_then(|l| ready(l.trim())) {
        return Ok((child, v));
    }
    let exited = Pidfd::open(child.id() as i32).is_ok_and(|fd| fd.exited_by(Some(deadline)));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().with_context(|| format!("waiting for {what}"))?;
    let mut err = Drain(child.stderr.take(), Vec::new());
    if err.fd().is_some_and(|fd| nonblocking(fd).is_ok()) {
        err.pull(); // what is there: a grandchild may hold the pipe open
    }
    let err = String::from_utf8_lossy(&err.1);
    let err = err.trim().trim_start_matches("rcon: ").replace('\n', " ");
    if !exited {
        bail!("{what} was not ready within {timeout:?}{}{err}", if err.is_empty() { "" } else { ": " });
    }
    bail!("{what} failed ({status}): {err}");
}

/// The first line on `pipe` (without waiting for more once it ends), or what came before the pipe's end;
/// None when `deadline` passed first.
fn first_line(pipe: impl Read + AsFd, deadline: Instant) -> Option<String> {
    nonblocking(pipe.as_fd()).ok()?;
    let mut got = Drain(Some(pipe), Vec::new());
    while got.0.is_some() && !got.1.contains(&b'\n') {
        let left = left(Some(deadline))?;
        if ready([(got.fd(), PollFlags::POLLIN), (None, PollFlags::empty()), (None, PollFlags::empty())], left).ok()?[0]
        {
            got.pull();
        }
    }
    let end = got.1.iter().position(|&b| b == b'\n').unwrap_or(got.1.len());
    Some(String::from_utf8_lossy(&got.1[..end]).into_owned())
}

/// How long a KILLed process gets to go: it only waits on the kernel.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Stop `p`: TERM, up to `grace` for it to exit, then KILL; returns whether it is gone. A process already
/// gone, or a pid that now names another process (its start time is not the recorded one; a start of 0
/// checks nothing, for a child not yet reaped), is left alone. A child of ours is reaped.
pub fn stop(p: Creator, grace: Duration) -> bool {
    if let Ok(fd) = Pidfd::open(p.pid) {
        // Checked once the pidfd pins the process: a signal through it cannot reach a reused pid.
        if let Some((_, zombie)) = proc_start_time(p.pid).filter(|(t, _)| p.start == 0 || *t == p.start) {
            if !zombie {
                for (sig, wait) in [(libc::SIGTERM, grace), (libc::SIGKILL, KILL_WAIT)] {
                    if fd.signal(sig).is_err() || fd.exited_by(Some(Instant::now() + wait)) {
                        break;
                    }
                }
            }
            // Reap it if it is our child; ECHILD otherwise.
            let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
    !p.alive()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::process_alive;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn runs_a_program_to_its_end() {
        let out = run(&mut Command::new("true"), None, Keep::BOTH, None).unwrap();
        assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
        let out = run(&mut sh("echo out; echo err >&2; exit 3"), None, Keep::BOTH, None).unwrap();
        assert_eq!((out.status.code(), &out.stdout[..], &out.stderr[..]), (Some(3), &b"out\n"[..], &b"err\n"[..]));
        let out = run(&mut sh("echo out; echo err >&2"), None, Keep::STDERR, None).unwrap();
        assert_eq!((&out.stdout[..], &out.stderr[..]), (&b""[..], &b"err\n"[..]));
    }

    #[test]
    fn feeds_and_reads_more_than_a_pipe_holds() {
        // cat writes while it reads: with both pipes full at once, a writer that did not also read would hang.
        let input: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let out =
            run(&mut sh("cat; cat /dev/null >&2"), Some(&input), Keep::BOTH, Some(Duration::from_secs(60))).unwrap();
        assert!(out.status.success());
        assert!(out.stdout == input, "cat gave back {} bytes of {}", out.stdout.len(), input.len());
    }

    #[test]
    fn a_child_that_reads_nothing_is_no_write_error() {
        let input = vec![b'x'; 1 << 20];
        let out = run(&mut sh("echo early >&2; exit 1"), Some(&input), Keep::BOTH, None).unwrap();
        assert_eq!((out.status.code(), &out.stderr[..]), (Some(1), &b"early\n"[..]));
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = run(&mut Command::new("rcon-no-such-prog"), None, Keep::BOTH, None).unwrap_err();
        assert_eq!(e.to_string(), "rcon-no-such-prog not found in PATH (is its package installed?)");
        assert!(e.program_missing());
        let e = run(&mut Command::new("/"), None, Keep::BOTH, None).unwrap_err();
        assert!(e.to_string().starts_with("spawning /: "), "{e}");
    }

    #[test]
    fn a_child_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidf = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 100", pidf.display());
        let e = run(&mut sh(&script), Some(b"in"), Keep::BOTH, Some(Duration::from_millis(300))).unwrap_err();
        assert!(matches!(e, Error::TimedOut { .. }), "{e}");
        assert_eq!(e.to_string(), "sh timed out after 300ms");
        let pid: i32 = std::fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
        assert!(!process_alive(pid, 0), "the timed-out child still runs");
    }

    #[test]
    fn runs_several_at_once() {
        let a = spawn(&mut sh("read x; echo a$x"), Some(b"1\n"), Keep::STDOUT).unwrap();
        let b = spawn(&mut sh("echo b"), None, Keep::STDOUT).unwrap();
        assert_eq!(b.wait(None).unwrap().stdout, b"b\n");
        assert_eq!(a.wait(None).unwrap().stdout, b"a1\n");
    }

    fn creator(child: &Child) -> Creator {
        let pid = child.id() as i32;
        Creator { pid, start: proc_start_time(pid).unwrap().0 }
    }

    #[test]
    fn a_resident_child_is_ready_then_stopped() {
        let (child, word) =
            start_resident(&mut sh("echo ' ready '; exec sleep 100"), "the sleeper", READY_TIMEOUT, |l| {
                (l == "ready").then(|| l.to_string())
            })
            .unwrap();
        assert_eq!(word, "ready");
        let p = creator(&child);
        assert!(p.alive());
        assert!(stop(p, Duration::from_secs(10)));
        assert!(!p.alive());
    }

    #[test]
    fn a_resident_child_that_fails_reports_its_stderr() {
        let e = start_resident(
            &mut sh("echo 'rcon: no tun' >&2; echo more >&2; exit 2"),
            "the daemon",
            READY_TIMEOUT,
            |l| l.parse::<i32>().ok(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the daemon failed (exit status: 2): no tun more");
        let e = start_resident(&mut Command::new("/nonexistent/rcon"), "the daemon", READY_TIMEOUT, |_| Some(()))
            .unwrap_err();
        assert_eq!(e.to_string(), "starting the daemon");
    }

    #[test]
    fn a_resident_child_that_hangs_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidf = dir.path().join("pid");
        let script = format!("echo $$ > {}; echo stuck >&2; exec sleep 100", pidf.display());
        let e = start_resident(&mut sh(&script), "the daemon", Duration::from_millis(300), |_| Some(())).unwrap_err();
        assert_eq!(e.to_string(), "the daemon was not ready within 300ms: stuck");
        let pid: i32 = std::fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
        assert!(!process_alive(pid, 0), "the hung child still runs");
    }

    #[test]
    fn stop_kills_a_child_that_ignores_term() {
        // An ignored signal stays ignored across exec: this sleep ignores TERM.
        let (child, ()) =
            start_resident(&mut sh("trap '' TERM; echo ready; exec sleep 100"), "the stubborn", READY_TIMEOUT, |l| {
                (l == "ready").then_some(())
            })
            .unwrap();
        let p = creator(&child);
        assert!(stop(p, Duration::from_millis(200)));
        assert!(!p.alive());
    }

    #[test]
    fn stop_leaves_a_reused_pid_alone_and_a_gone_one_is_fine() {
        let mut other = Command::new("sleep").arg("100").spawn().unwrap();
        let mut p = creator(&other);
        p.start += 1; // the recorded process was another one
        assert!(stop(p, Duration::from_secs(1)), "the recorded process is gone");
        assert!(other.try_wait().unwrap().is_none(), "a process that reused the pid was signalled");
        other.kill().unwrap();
        other.wait().unwrap();
        assert!(stop(creator_of_gone(&other), Duration::from_secs(1)));
    }

    fn creator_of_gone(child: &Child) -> Creator {
        Creator { pid: child.id() as i32, start: 1 }
    }
}
