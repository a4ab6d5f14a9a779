//! The TUN side: a persistent multi-queue device, and its queues (the
//! ioctls themselves are in sys::tun and sys::iface).
//!
//! Every queue is opened with IFF_VNET_HDR: each read and write starts with
//! a `virtio_net_hdr`. The flag belongs to the device and the last TUNSETIFF
//! sets it, so every opener (`create`, `delete`, the worker) uses the same
//! flags; whether the kernel hands over super-packets (TSO) and partial
//! checksums is then switched by `open_queue`'s `offload` (TUNSETOFFLOAD).

use std::fs::File;

use anyhow::{bail, Context as _, Result};

use crate::net::link::IFNAMSIZ_MAX;
use crate::sys::{iface, tun};

const FLAGS: libc::c_int = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR;

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX || name.contains('/') {
        bail!("bad interface name {name:?}");
    }
    Ok(())
}

/// A handle on the TUN driver attached as one queue of `name` (made if it does not exist).
fn attach(name: &str, nonblocking: bool) -> Result<File> {
    check_name(name)?;
    let f = tun::open(nonblocking).context(tun::TUN_PATH)?;
    if let Err(e) = tun::set_iff(&f, name, FLAGS) {
        bail!("{name} is not usable as a multi-queue TUN device: {e}");
    }
    Ok(f)
}

/// Make `name` (or take it if it is already one of ours), persistent, with
/// MTU `mtu`, and leave it down.
pub fn create(name: &str, mtu: u32) -> Result<()> {
    let f = attach(name, false)?;
    tun::set_persist(&f, true).with_context(|| format!("making {name} persistent"))?;
    let mtu_c = libc::c_int::try_from(mtu).context("MTU out of range")?;
    iface::set_mtu(name, mtu_c).with_context(|| format!("setting the MTU of {name} to {mtu}"))
}

/// The MTU of `name`.
pub fn mtu(name: &str) -> Result<usize> {
    check_name(name)?;
    iface::mtu(name).with_context(|| format!("reading the MTU of {name}"))
}

/// Whether `name` exists in the calling thread's network namespace.
pub fn exists(name: &str) -> bool {
    iface::exists(name)
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
    let f = attach(name, nonblocking)?;
    let len = super::offload::VNET_HDR_LEN as libc::c_int;
    tun::set_vnet_hdr_len(&f, len).with_context(|| format!("TUNSETVNETHDRSZ on {name}"))?;
    let on = offload && tun::set_offload(&f, libc::TUN_F_CSUM | libc::TUN_F_TSO4).is_ok();
    if !on {
        tun::set_offload(&f, 0).with_context(|| format!("turning offloads off on {name}"))?;
    }
    Ok((f, on))
}
