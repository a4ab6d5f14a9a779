//! Raw and plain IPv4 sockets by syscall: made with the options asked for,
//! bound, an ICMP socket that only sends, the kernel's path MTU, the ICMP
//! errors IP_RECVERR queues, one datagram sent.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context as _, Result};

/// The length of a `sockaddr_in`, as the socket calls take it.
pub const SA_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
/// Linux's per-socket filter of ICMP types (linux/icmp.h), on SOL_RAW.
const ICMP_FILTER: libc::c_int = 1;

/// The last OS error, as an error saying `what` failed.
pub fn os_err<T>(what: &str) -> Result<T> {
    Err(std::io::Error::last_os_error()).context(what.to_string())
}

/// setsockopt with one c_int value; the syscall's return.
pub fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> libc::c_int {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel reads `len` bytes, one c_int, from `v`, alive for the call.
    unsafe { libc::setsockopt(fd, level, opt, (&v as *const libc::c_int).cast(), len) }
}

pub fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data (integers and bytes): all zeroes is a valid one.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from(ip).to_be();
    sa
}

/// A raw IPv4 socket for `proto`, its buffer made `bytes` big: with `force`
/// (the SO_*BUFFORCE option), or with `plain` where that is not allowed.
pub fn raw_socket(proto: libc::c_int, force: libc::c_int, plain: libc::c_int, bytes: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return os_err(&format!("raw IPv4 socket for protocol {proto}"));
    }
    // SAFETY: socket just returned this new fd (not -1): nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, force, bytes) < 0 {
        setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, plain, bytes);
    }
    Ok(fd)
}

/// Bind `fd` to `ip`.
pub fn bind(fd: &OwnedFd, ip: Ipv4Addr) -> std::io::Result<()> {
    let sa = sockaddr(ip);
    // SAFETY: the kernel reads SA_LEN bytes, one sockaddr_in, from `sa`, alive for the call.
    if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), SA_LEN) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw ICMP socket that only sends: its filter drops every arrival.
pub fn icmp_socket() -> Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return os_err("raw ICMP socket");
    }
    // SAFETY: socket just returned this new fd (not -1): nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Every bit set: every ICMP type filtered out.
    if setsockopt_int(fd.as_raw_fd(), libc::SOL_RAW, ICMP_FILTER, -1) < 0 {
        return os_err("ICMP_FILTER on the raw ICMP socket");
    }
    Ok(fd)
}

/// The kernel's path MTU to `peer`: what IP_MTU says on a UDP socket
/// connected to it (connecting sends nothing).
pub fn path_mtu(peer: Ipv4Addr) -> Option<u32> {
    // SAFETY: socket takes integers only.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: socket just returned this new fd (not -1): nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut sa = sockaddr(peer);
    sa.sin_port = 9u16.to_be();
    // SAFETY: the kernel reads SA_LEN bytes, one sockaddr_in, from `sa`, alive for the call.
    if unsafe { libc::connect(fd.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), SA_LEN) } < 0 {
        return None;
    }
    let mut mtu: libc::c_int = 0;
    let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `l` bytes, one c_int, into `mtu`, and its length into `l`;
    // both are alive for the call.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU, (&mut mtu as *mut libc::c_int).cast(), &mut l)
    };
    (r == 0 && mtu > 0).then_some(mtu as u32)
}

/// An ICMP error that the kernel queued on `fd` (IP_RECVERR) about one of
/// the outer packets: its type and code, with what it quotes after the
/// outer header (the inner packet's start) in `buf[..len]`. None once the
/// queue is empty.
pub fn icmp_error(fd: RawFd, buf: &mut [u8]) -> Option<(u8, u8, usize)> {
    loop {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = [0u64; 16];
        // SAFETY: msghdr is plain old data (integers and raw pointers, null when zero): all zeroes is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points at `iov` (which spans `buf`) and at `control`, with their lengths, and
        // all of them are alive for the call: the kernel writes only within them.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            return None;
        }
        // SAFETY: `msg` is a valid msghdr whose control length the kernel set to what it filled of
        // `control`; CMSG_FIRSTHDR only reads it, and gives a header within that part or null.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !c.is_null() {
            // SAFETY: a non-null `c` from CMSG_FIRSTHDR/CMSG_NXTHDR is a whole, aligned cmsghdr in `control`.
            let h = unsafe { &*c };
            if h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_RECVERR {
                // SAFETY: an IP_RECVERR message's data is a sock_extended_err that the kernel wrote in
                // full within `control`; read_unaligned asks nothing of its alignment.
                let e = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::sock_extended_err) };
                if e.ee_origin == libc::SO_EE_ORIGIN_ICMP {
                    return Some((e.ee_type, e.ee_code, n as usize));
                }
            }
            // SAFETY: `c` is a header of `msg`'s control data; CMSG_NXTHDR gives the next within it or null.
            c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
        }
    }
}

/// Send `msg` to `ip` on `fd`; a datagram the kernel refuses is dropped.
pub fn send_to(fd: RawFd, msg: &[u8], ip: Ipv4Addr) {
    let sa = sockaddr(ip);
    // SAFETY: the kernel reads `msg.len()` bytes from `msg` and SA_LEN bytes from `sa`, both alive for the call.
    unsafe { libc::sendto(fd, msg.as_ptr().cast(), msg.len(), 0, (&sa as *const libc::sockaddr_in).cast(), SA_LEN) };
}
