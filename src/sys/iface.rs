//! Interface flags by ioctl, for the container init, which has no async
//! runtime and no netlink socket of its own.

use std::os::fd::AsRawFd;

use anyhow::{Context as _, Result};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

nix::ioctl_readwrite_bad!(get_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// Bring `lo` up in the calling thread's network namespace. A plain ioctl:
/// the container init calls this and has no async runtime.
pub fn loopback_up() -> Result<()> {
    let sock =
        socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).context("socket for lo")?;
    // SAFETY: ifreq is plain old data (bytes, integers and a union of them): all zeroes is a valid one.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills and SIOCSIFFLAGS reads one `ifreq`, and `req` is one, alive for both
    // calls; the union's flags member is the one SIOCGIFFLAGS wrote, and any bits are a valid c_short.
    unsafe {
        get_flags(sock.as_raw_fd(), &mut req).context("reading lo flags")?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        set_flags(sock.as_raw_fd(), &req).context("bringing lo up")?;
    }
    Ok(())
}
