//! The TUN side: a persistent multi-queue device, and its queues.
//!
//! Every queue is opened with IFF_VNET_HDR: each read and write starts with
//! a `virtio_net_hdr`. The flag belongs to the device and the last TUNSETIFF
//! sets it, so every opener (`create`, `delete`, the worker) uses the same
//! flags; whether the kernel hands over super-packets (TSO) and partial
//! checksums is then switched by `open_queue`'s `offload` (TUNSETOFFLOAD).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context as _, Result};

use crate::net::link::IFNAMSIZ_MAX;

const TUN_PATH: &str = "/dev/net/tun";
const FLAGS: libc::c_int = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR;

fn ifreq(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX || name.contains('/') {
        bail!("bad interface name {name:?}");
    }
    // SAFETY: ifreq is plain old data (bytes, integers and a union of them): all zeroes is a valid one.
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
    // SAFETY: TUNSETIFF reads one `ifreq`, and `req` is one, alive for the call.
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
    // SAFETY: TUNSETPERSIST takes an integer, no pointer.
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
    // SAFETY: TUNSETPERSIST takes an integer, no pointer.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETPERSIST, 0 as libc::c_ulong) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("releasing {name}"));
    }
    Ok(())
}

fn inet_socket() -> Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for the MTU ioctls");
    }
    // SAFETY: socket just returned this new fd (not -1): nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(sock) })
}

fn set_mtu(name: &str, mtu: u32) -> Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).context("MTU out of range")?;
    // SAFETY: SIOCSIFMTU reads one `ifreq`, and `req` is one, alive for the call.
    if unsafe { libc::ioctl(inet_socket()?.as_raw_fd(), libc::SIOCSIFMTU, &req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setting the MTU of {name} to {mtu}"));
    }
    Ok(())
}

/// The MTU of `name`.
pub fn mtu(name: &str) -> Result<usize> {
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFMTU writes one `ifreq`, and `req` is one, alive for the call.
    if unsafe { libc::ioctl(inet_socket()?.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("reading the MTU of {name}"));
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

/// One more queue of the existing device `name`. TUNSETIFF would quietly
/// make a new, non-persistent device if `name` were gone: it must exist.
/// With `offload` the device takes checksum offload and TSO for IPv4
/// (reads may be 64 KB TCP super-packets with partial checksums); without,
/// none (every read is one whole packet). Returns whether offloads are on:
/// a kernel that refuses them leaves them off.
pub fn open_queue(name: &str, nonblocking: bool, offload: bool) -> Result<(File, bool)> {
    if !exists(name) {
        bail!("TUN device {name} does not exist");
    }
    let f = open_dev(nonblocking)?;
    attach(&f, name)?;
    let sz = super::offload::VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one c_int, and `sz` is one, alive for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETVNETHDRSZ, &sz) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("TUNSETVNETHDRSZ on {name}"));
    }
    // SAFETY: TUNSETOFFLOAD takes an integer (the feature bits), no pointer.
    let set = |features: libc::c_uint| unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETOFFLOAD, features as libc::c_ulong) } == 0;
    let on = offload && set(libc::TUN_F_CSUM | libc::TUN_F_TSO4);
    if !on && !set(0) {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("turning offloads off on {name}"));
    }
    Ok((f, on))
}
