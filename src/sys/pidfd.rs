//! Process file descriptors (Linux 5.3+): a pidfd pins one process, so a
//! signal sent through it never reaches a pid the kernel reused, and poll(2)
//! on it wakes the moment the process exits (child or not).

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub struct Pidfd(OwnedFd);

impl AsFd for Pidfd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Pidfd {
    /// A pidfd for `pid`; ESRCH when no such process exists (a zombie still does).
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pidfd_open just returned this new descriptor (not -1): nothing else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Send `sig`; ESRCH once the process has exited.
    pub fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        // SAFETY: the descriptor is ours and open for the call; a null siginfo and zero flags ask for what
        // kill(2) sends, and no other memory is passed.
        let r = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the process exits by `deadline` (None: wait for as long as it takes). A zombie has exited.
    pub fn exited_by(&self, deadline: Option<Instant>) -> bool {
        loop {
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => poll_timeout(left),
                    None => PollTimeout::ZERO,
                },
                None => PollTimeout::NONE,
            };
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, left) {
                Ok(n) if n > 0 => return true,
                Ok(_) if left == PollTimeout::ZERO => return false,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// `d` as a poll timeout, rounded up to a whole millisecond (rounding down would spin) and capped at what
/// poll takes; a longer wait polls again.
pub(crate) fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_is_seen_and_a_gone_pid_is_esrch() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let fd = Pidfd::open(child.id() as i32).unwrap();
        assert!(fd.exited_by(None));
        // A zombie has exited, and still takes signals without error (kill(2) does the same).
        assert!(fd.exited_by(Some(Instant::now())));
        fd.signal(libc::SIGTERM).unwrap();
        child.wait().unwrap();
        assert_eq!(fd.signal(libc::SIGTERM).unwrap_err().raw_os_error(), Some(libc::ESRCH));
        assert_eq!(Pidfd::open(child.id() as i32).err().and_then(|e| e.raw_os_error()), Some(libc::ESRCH));
    }

    #[test]
    fn a_running_process_has_not_exited() {
        let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let fd = Pidfd::open(child.id() as i32).unwrap();
        assert!(!fd.exited_by(Some(Instant::now() + Duration::from_millis(20))));
        fd.signal(libc::SIGKILL).unwrap();
        assert!(fd.exited_by(None));
        child.wait().unwrap();
    }
}
