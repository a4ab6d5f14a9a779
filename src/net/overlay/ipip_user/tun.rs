//! The TUN side: a persistent multi-queue device, and its queues.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context as _, Result};

use crate::net::link::IFNAMSIZ_MAX;

const TUN_PATH: &str = "/dev/net/tun";
const FLAGS: libc::c_int = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE;

fn ifreq(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX || name.contains('/') {
        bail!("bad interface name {name:?}");
    }
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    Ok(req)
}

fn open_dev(nonblocking: bool) -> Result<File> {
    let flags = if nonblocking { libc::O_NONBLOCK } else { 0 };
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | flags)
        .open(TUN_PATH)
        .with_context(|| TUN_PATH.to_string())
}

/// TUNSETIFF: attach `f` as one queue of `name` (made if it does not exist).
fn attach(f: &File, name: &str) -> Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = FLAGS as libc::c_short;
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &req) } < 0 {
        let e = std::io::Error::last_os_error();
        bail!("{name} is not usable as a multi-queue TUN device: {e}");
    }
    Ok(())
}

/// Make `name` (or take it if it is already one of ours), persistent, with
/// MTU `mtu`, and leave it down.
pub fn create(name: &str, mtu: u32) -> Result<()> {
    let f = open_dev(false)?;
    attach(&f, name)?;
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("making {name} persistent"));
    }
    set_mtu(name, mtu)
}

/// Remove a device made by `create`; one that is gone already is fine.
pub fn delete(name: &str) -> Result<()> {
    if !exists(name) {
        return Ok(());
    }
    let f = open_dev(false)?;
    attach(&f, name)?;
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETPERSIST, 0 as libc::c_ulong) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("releasing {name}"));
    }
    Ok(())
}

fn set_mtu(name: &str, mtu: u32) -> Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).context("MTU out of range")?;
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for SIOCSIFMTU");
    }
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setting the MTU of {name} to {mtu}"));
    }
    Ok(())
}

/// Whether `name` exists in the calling thread's network namespace (not
/// /sys/class/net: that shows the namespace sysfs was mounted in).
pub fn exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else { return false };
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// One more queue of the existing device `name`. TUNSETIFF would quietly
/// make a new, non-persistent device if `name` were gone: it must exist.
pub fn open_queue(name: &str, nonblocking: bool) -> Result<File> {
    if !exists(name) {
        bail!("TUN device {name} does not exist");
    }
    let f = open_dev(nonblocking)?;
    attach(&f, name)?;
    Ok(f)
}
