//! The TUN driver's ioctls (/dev/net/tun), each one plain syscall; which
//! flags and offloads a device gets is the caller's choice.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::iface::ifreq;

pub const TUN_PATH: &str = "/dev/net/tun";

/// A new handle on the TUN driver, not yet attached to a device.
pub fn open(nonblocking: bool) -> io::Result<File> {
    let flags = if nonblocking { libc::O_NONBLOCK } else { 0 };
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC | flags).open(TUN_PATH)
}

/// TUNSETIFF: attach `f` to the device `name` with `flags` (IFF_*), making it if it does not exist.
pub fn set_iff(f: &File, name: &str, flags: libc::c_int) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads one `ifreq`, and `req` is one, alive for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETPERSIST: whether the attached device outlives its last handle.
pub fn set_persist(f: &File, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer, no pointer.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETVNETHDRSZ: the length of the virtio header each read and write starts with.
pub fn set_vnet_hdr_len(f: &File, len: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one c_int, and `len` is one, alive for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETVNETHDRSZ, &len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETOFFLOAD: the offloads (TUN_F_*) the device takes; 0 for none.
pub fn set_offload(f: &File, features: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes an integer (the feature bits), no pointer.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETOFFLOAD, features as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
