//! Releasing an nftables netlink socket can stall: the kernel's release
//! notifier takes the namespace's nf_tables commit lock and, when a commit
//! deleted something lately, waits with it held for that commit's memory to
//! be freed after an RCU grace period (about 15 ms here). The process that
//! drops the last reference pays it in `close` or in its exit, and every
//! other process's commit in that namespace waits behind it. A stream of
//! detaches, each deleting a set element, would pay it once per command.
//!
//! So rcon never drops the last reference itself. [`hand_off`] passes
//! copies of this process's NETLINK_NETFILTER sockets (SCM_RIGHTS) to a
//! holder, a forked child listening on an abstract unix socket (abstract
//! names are per network namespace, so there is one holder per namespace).
//! The holder keeps them until nobody has handed it any for
//! [`IDLE_MS`], then exits, and the kernel frees them all at once, paying
//! the wait at most once per burst, after the burst. The first caller in a
//! namespace with no holder forks one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::socket::{
    accept, bind, connect, listen, recvmsg, sendmsg, socket, AddressFamily, Backlog, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The holder's abstract socket name (the leading NUL is added by nix).
const NAME: &[u8] = b"rcon-nfnl-holder";
/// A holder exits after this long without a new socket.
const IDLE_MS: u16 = 1000;
/// ... or when it holds this many (fds are a finite resource).
const MAX_HELD: usize = 512;

/// Holders this process forked and has not reaped (a long-lived caller, the
/// cluster agent, outlives them).
static CHILDREN: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// Give the holder a copy of each netfilter netlink socket this process has
/// open (libnftables keeps its own): call right before they are closed.
pub fn hand_off_all() {
    hand_off(&nfnl_fds());
}

/// Give the holder a copy of `fds` (netfilter netlink sockets), so that
/// closing ours does not release them. Call right before closing them. Best
/// effort: on any failure the close just pays the wait.
pub fn hand_off(fds: &[i32]) {
    if fds.is_empty() || send(fds).is_ok() {
        return;
    }
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    children.retain(|pid| matches!(waitpid(*pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)));
    // SAFETY: rcon forks single-threaded (current-thread runtimes, and threads joined before their
    // callers return), so the child may allocate; it only makes syscalls and `_exit`s, never
    // returning into the caller's code.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => children.push(child),
        Ok(ForkResult::Child) => hold(),
        Err(_) => {}
    }
}

/// The caller's side: one message carrying `fds` to the holder.
fn send(fds: &[i32]) -> nix::Result<()> {
    let s = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    connect(s.as_raw_fd(), &UnixAddr::new_abstract(NAME)?)?;
    let iov = [std::io::IoSlice::new(b"h")];
    sendmsg::<()>(s.as_raw_fd(), &iov, &[ControlMessage::ScmRights(fds)], MsgFlags::empty(), None)?;
    Ok(())
}

/// Whether `fd` is an open file descriptor of this process.
fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD on any number only tells whether it is an open fd.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The netfilter netlink sockets among this process's fds.
fn nfnl_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let fds = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    fds.filter(|&fd| is_nfnl(fd)).collect()
}

/// The holder: keep only the netfilter netlink sockets, take over the name
/// (or, when another holder won it meanwhile, hand them to that one), then
/// gather what callers send until idle.
fn hold() -> ! {
    let max = open_max();
    for fd in 0..max {
        if is_open(fd) && !is_nfnl(fd) {
            // SAFETY: the fork's copies of the caller's fds are this child's to close; the child uses
            // none of them afterwards.
            unsafe { libc::close(fd) };
        }
    }
    let _ = nix::unistd::setsid();
    let Ok(l) = listener() else {
        let mine: Vec<i32> = (0..max).filter(|&fd| is_open(fd)).collect();
        let _ = send(&mine);
        exit()
    };
    let mut held = 0usize;
    loop {
        let mut pfd = libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd on the stack.
        if unsafe { libc::poll(&mut pfd, 1, i32::from(IDLE_MS)) } <= 0 || held >= MAX_HELD {
            exit()
        }
        let Ok(c) = accept(l.as_raw_fd()) else { continue };
        // SAFETY: accept returned a new fd that nothing else owns.
        let c = unsafe { OwnedFd::from_raw_fd(c) };
        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([i32; 16]);
        if let Ok(msg) = recvmsg::<()>(c.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            for cmsg in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    held += fds.len(); // kept open: that is the point
                }
            }
        }
    }
}

fn listener() -> nix::Result<OwnedFd> {
    let l = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    bind(l.as_raw_fd(), &UnixAddr::new_abstract(NAME)?)?;
    listen(&l, Backlog::new(64)?)?;
    Ok(l)
}

fn exit() -> ! {
    // SAFETY: _exit ends the child without running the caller's Drops or atexit handlers, which the
    // fork copied; the kernel closes the held sockets.
    unsafe { libc::_exit(0) }
}

fn open_max() -> i32 {
    // SAFETY: sysconf takes an integer name and returns an integer.
    (unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }).clamp(64, 4096) as i32
}

/// Whether `fd` is a NETLINK_NETFILTER socket.
fn is_nfnl(fd: i32) -> bool {
    int_opt(fd, libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
        && int_opt(fd, libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
}

/// An integer socket option of `fd`; None when it is not a socket.
fn int_opt(fd: i32, opt: libc::c_int) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_DOMAIN and SO_PROTOCOL write one c_int into `v`, whose size `len` gives.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    (rc == 0).then_some(v)
}
