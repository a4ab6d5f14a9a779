//! Waiting in the foreground (`run`, `exec` without -d): rcon is the child
//! subreaper, forwards signals to the container's process, proxies the pty
//! when it owns one, and returns the exit status (128+N for signal N).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const FORWARDED: [Signal; 8] = [
    Signal::SIGCHLD,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    FORWARDED.iter().for_each(|s| set.add(*s));
    set
}

/// Become the subreaper and hold the signals we forward; call before the
/// container is launched so no exit or signal is missed.
pub fn prepare() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signal_set()), None).context("sigprocmask")?;
    Ok(())
}

/// Restores the caller's terminal mode on drop, even on error.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(orig) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, orig);
        }
    }
}

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

fn copy_winsize(pty: &OwnedFd) {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` and TIOCSWINSZ reads one, and `ws` is one, alive for
    // both calls; an fd that is closed or no terminal only makes the ioctl fail.
    unsafe {
        if get_winsize(0, &mut ws).is_ok() {
            let _ = set_winsize(pty.as_raw_fd(), &ws);
        }
    }
}

fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// How long a container whose terminal hung up may take to exit before it is
/// killed: the same grace `rcon stop` gives by default.
const HANGUP_GRACE: Duration = Duration::from_secs(10);

/// Wait for `pid`, forwarding signals and proxying `pty` to our stdio.
///
/// When our own terminal goes away (SIGHUP, or a read error on a terminal
/// stdin) the container's terminal is hung up too, as sshd does for a dropped
/// session: the pty is closed, SIGHUP is sent, and a process that outlives
/// the grace period (a pid-1 shell ignores SIGHUP) is killed, so a closed
/// window never leaves a container behind.
pub fn wait(pid: i32, mut pty: Option<OwnedFd>) -> Result<i32> {
    let sfd = SignalFd::with_flags(&signal_set(), SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let _raw = pty.as_ref().map(|p| {
        copy_winsize(p);
        RawMode::enter()
    });
    let stdin_is_tty = nix::unistd::isatty(std::io::stdin().as_fd()).unwrap_or(false);
    let mut stdin_open = pty.is_some();
    let mut code = None;
    let mut kill_at: Option<Instant> = None;
    let mut buf = [0u8; 8192];
    let our_stdin = std::io::stdin();
    while code.is_none() || pty.is_some() {
        let stdin = our_stdin.as_fd();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pty {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            }
        }
        let timeout = match (code, kill_at) {
            // Once the process is gone, only drain what the pty still holds.
            (Some(_), _) => PollTimeout::from(100u16),
            (None, Some(at)) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis().min(u16::MAX as u128);
                PollTimeout::from(ms as u16)
            }
            (None, None) => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(0) if code.is_some() => break,
            Ok(0) => {
                // The hangup grace ran out.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                kill_at = None;
                continue;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        let mut hangup = false;
        if ready[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = Signal::try_from(info.ssi_signo as i32).unwrap_or(Signal::SIGCHLD);
                match sig {
                    Signal::SIGCHLD => code = code.or(reap(pid)),
                    Signal::SIGWINCH => pty.iter().for_each(copy_winsize),
                    Signal::SIGHUP if pty.is_some() => hangup = true,
                    other => {
                        let _ = kill(Pid::from_raw(pid), other);
                    }
                }
            }
        }
        if let Some(p) = &pty {
            if ready.get(1) == Some(&true) {
                match nix::unistd::read(p, &mut buf) {
                    Ok(n) if n > 0 => write_all(1, &buf[..n]),
                    _ => pty = None,
                }
            }
        }
        if let (Some(p), true) = (&pty, stdin_open && ready.get(2) == Some(&true)) {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(n) if n > 0 => write_all(p.as_raw_fd(), &buf[..n]),
                // End of input on a terminal means the terminal is gone.
                _ if stdin_is_tty => hangup = true,
                _ => stdin_open = false,
            }
        }
        if hangup && code.is_none() && pty.is_some() {
            pty = None;
            stdin_open = false;
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
            kill_at = Some(Instant::now() + HANGUP_GRACE);
        }
    }
    Ok(code.unwrap_or(0))
}

/// Reap every exited child (we are the subreaper); the status of `pid` if it was among them.
fn reap(pid: i32) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(ws) => {
                if ws.pid() == Some(Pid::from_raw(pid)) {
                    found = exit_code(ws);
                }
            }
        }
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    // SAFETY: `fd` is our stdout, open for the life of the process, or the pty that the caller holds
    // across this call; the borrow ends when we return.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}
