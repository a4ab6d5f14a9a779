//! The daemon's sockets for IPIP: a raw IPv4 one to receive protocol 4 and
//! one to send (the syscalls are in sys::rawsock).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context as _, Result};

use super::table::IPPROTO_IPIP;
use crate::sys::rawsock::{bind, os_err, raw_socket, setsockopt_int};

/// Socket buffers: a few batches' worth at 10 Gbit/s.
const SOCK_BUF: libc::c_int = 4 << 20;

/// The receiving socket: raw, for protocol 4, bound to `local`, so it sees
/// every IPIP packet addressed to this node; and, with IP_RECVERR, the ICMP
/// errors about ours (see `icmp_error`).
pub fn rx_socket(local: Ipv4Addr) -> Result<OwnedFd> {
    let fd = raw_socket(IPPROTO_IPIP.into(), libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, SOCK_BUF)?;
    if setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, 1) < 0 {
        return os_err("IP_RECVERR on the raw socket");
    }
    bind(&fd, local).with_context(|| format!("binding the raw socket to {local}"))?;
    Ok(fd)
}

/// The sending socket: IPPROTO_RAW, which sends the headers we build and
/// receives nothing. Apart from the receiving one so that neither a copy of
/// each arrival nor the wake-ups of sent packets being freed (which take the
/// socket's wait-queue lock, where the receiving thread sleeps) cost anything.
pub fn tx_socket() -> Result<OwnedFd> {
    raw_socket(libc::IPPROTO_RAW, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SOCK_BUF)
}
