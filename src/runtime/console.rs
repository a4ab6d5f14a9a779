//! `terminal: true`: the init opens a pty inside the container and sends
//! the master over the console socket with SCM_RIGHTS (runc's protocol: the
//! message body is the pty's name), then makes the slave its terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context as _, Result};
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

/// Open a pty, send its master to `console`, make the slave our stdio and ctty.
pub fn setup(console: &UnixStream, size: Option<(u16, u16)>) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).context("opening /dev/ptmx")?;
    grantpt(&master).context("grantpt")?;
    unlockpt(&master).context("unlockpt")?;
    let name = ptsname_r(&master).context("ptsname")?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, nix::sys::stat::Mode::empty())
        .with_context(|| format!("opening {name}"))?;
    if let Some((rows, cols)) = size {
        let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one `Winsize`, and `ws` is one, alive for the call on our open slave.
        unsafe { set_winsize(slave.as_raw_fd(), &ws) }.context("setting console size")?;
    }
    send_fd(console, master.as_raw_fd(), name.as_bytes()).context("sending pty master to console socket")?;
    drop(master);
    for fd in 0..3 {
        // libc directly: nix's dup2 returns an OwnedFd that would close stdio on drop.
        // SAFETY: no memory is passed; fds 0-2 are stdio, which nothing in this process owns as an
        // OwnedFd, so pointing them at the open slave breaks no owner.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup2 pty slave");
        }
    }
    // SAFETY: TIOCSCTTY takes an integer (0: do not steal), no pointer; fd 0 is the slave just dup'ed.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCSCTTY");
    }
    Ok(())
}

pub fn send_fd(sock: &UnixStream, fd: RawFd, body: &[u8]) -> Result<()> {
    let fds = [fd];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(body)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receive one fd sent with `send_fd` (the caller side of a console socket).
pub fn recv_fd(sock: &UnixStream) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this fd in our table for us alone: nothing else owns it.
                return Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(*fd) });
            }
        }
    }
    anyhow::bail!("console socket: no file descriptor received")
}
