//! The one place that configures links. Later issues grow this into the
//! rtnetlink handle per namespace; for now the container init only needs
//! its loopback up, which a plain ioctl does without a runtime.

use anyhow::{Context as _, Result};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::os::fd::AsRawFd;

nix::ioctl_readwrite_bad!(get_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// Bring `lo` up in the calling thread's network namespace.
pub fn loopback_up() -> Result<()> {
    let sock =
        socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).context("socket for lo")?;
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    unsafe { get_flags(sock.as_raw_fd(), &mut req) }.context("reading lo flags")?;
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    unsafe { set_flags(sock.as_raw_fd(), &req) }.context("bringing lo up")?;
    Ok(())
}
