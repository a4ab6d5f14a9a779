//! Interfaces by ioctl on a plain socket: flags for the container init,
//! which has no async runtime and no netlink socket of its own, and the MTU
//! and existence of a device for the userspace IPIP daemon.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context as _, Result};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

nix::ioctl_readwrite_bad!(get_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
const NAME_MAX: usize = libc::IFNAMSIZ - 1;

/// An `ifreq` naming `name`, the rest zeroes; InvalidInput for a name the kernel would not take.
pub fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() > NAME_MAX || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
    }
    // SAFETY: ifreq is plain old data (bytes, integers and a union of them): all zeroes is a valid one.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    Ok(req)
}

fn inet_socket() -> io::Result<OwnedFd> {
    Ok(socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?)
}

/// Bring `lo` up in the calling thread's network namespace. A plain ioctl:
/// the container init calls this and has no async runtime.
pub fn loopback_up() -> Result<()> {
    let sock = inet_socket().context("socket for lo")?;
    let mut req = ifreq("lo")?;
    // SAFETY: SIOCGIFFLAGS fills and SIOCSIFFLAGS reads one `ifreq`, and `req` is one, alive for both
    // calls; the union's flags member is the one SIOCGIFFLAGS wrote, and any bits are a valid c_short.
    unsafe {
        get_flags(sock.as_raw_fd(), &mut req).context("reading lo flags")?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        set_flags(sock.as_raw_fd(), &req).context("bringing lo up")?;
    }
    Ok(())
}

/// Set the MTU of `name` (SIOCSIFMTU).
pub fn set_mtu(name: &str, mtu: libc::c_int) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu;
    // SAFETY: SIOCSIFMTU reads one `ifreq`, and `req` is one, alive for the call.
    if unsafe { libc::ioctl(inet_socket()?.as_raw_fd(), libc::SIOCSIFMTU, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The MTU of `name` (SIOCGIFMTU).
pub fn mtu(name: &str) -> io::Result<usize> {
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFMTU writes one `ifreq`, and `req` is one, alive for the call.
    if unsafe { libc::ioctl(inet_socket()?.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union's mtu member is the one SIOCGIFMTU wrote, and any bits are a valid c_int.
    Ok(usize::try_from(unsafe { req.ifr_ifru.ifru_mtu }).unwrap_or(0))
}

/// Whether `name` exists in the calling thread's network namespace (not
/// /sys/class/net: that shows the namespace sysfs was mounted in).
pub fn exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else { return false };
    // SAFETY: `c` is a NUL-terminated string, alive for the call, which only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_would_refuse_are_refused() {
        assert!(ifreq("eth0").is_ok());
        assert!(ifreq(&"x".repeat(NAME_MAX)).is_ok());
        for bad in ["", "a/b", &"x".repeat(NAME_MAX + 1)] {
            assert_eq!(ifreq(bad).unwrap_err().to_string(), format!("bad interface name {bad:?}"));
        }
        assert!(exists("lo"));
        assert!(!exists("rcon-no-such-if"));
        assert!(mtu("lo").unwrap() > 0);
    }
}
