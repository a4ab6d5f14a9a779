//! The data plane (`rcon ipipd --worker`). Per TUN queue one thread carries
//! packets out: it reads inner packets from its queue until the queue is
//! empty (up to a batch), and hands the whole batch to the raw socket with
//! one sendmmsg. One thread carries packets in: one recvmmsg takes what the
//! raw socket holds (up to a batch), and each inner packet is written to
//! the TUN. The main thread waits for SIGHUP and swaps in a new peer table.
//!
//! RCON_IPIP_BATCH=1 turns batching off (one read and one send per packet,
//! the design of flannel's UDP backend): the benchmark's baseline.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use super::table::{decap, encap_target, outer_header, Table, IPPROTO_IPIP, OUTER_LEN};
use super::{tun, Config, Peer};

/// Packets per sendmmsg/recvmmsg when batching.
const BATCH: usize = 64;
/// Room for any IPv4 packet (the raw socket hands over reassembled ones).
const BUF: usize = 65536;
/// Socket buffers: a few batches' worth at 10 Gbit/s.
const SOCK_BUF: libc::c_int = 4 << 20;

type Shared = Arc<RwLock<Arc<Table>>>;

pub fn load(path: &Path) -> Result<Table> {
    let peers: Vec<Peer> = crate::store::read_json(path)?;
    Ok(Table::new(peers))
}

fn batch_size() -> Result<usize> {
    match std::env::var("RCON_IPIP_BATCH") {
        Err(_) => Ok(BATCH),
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => bail!("RCON_IPIP_BATCH={v:?}: want a number from 1 to 1024"),
        },
    }
}

fn os_err<T>(what: &str) -> Result<T> {
    Err(std::io::Error::last_os_error()).context(what.to_string())
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> libc::c_int {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    unsafe { libc::setsockopt(fd, level, opt, (&v as *const libc::c_int).cast(), len) }
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr_in {
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from(ip).to_be();
    sa
}

/// The raw IPv4 socket for protocol 4, bound to `local`: it sees every IPIP
/// packet addressed to this node, and sends ours with the header we build.
pub fn raw_socket(local: Ipv4Addr) -> Result<OwnedFd> {
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, IPPROTO_IPIP.into()) };
    if fd < 0 {
        return os_err("raw IPv4 socket for protocol 4");
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    if setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_HDRINCL, 1) < 0 {
        return os_err("IP_HDRINCL");
    }
    for (force, plain) in [(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF), (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)] {
        if setsockopt_int(raw, libc::SOL_SOCKET, force, SOCK_BUF) < 0 {
            setsockopt_int(raw, libc::SOL_SOCKET, plain, SOCK_BUF);
        }
    }
    let sa = sockaddr(local);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    if unsafe { libc::bind(raw, (&sa as *const libc::sockaddr_in).cast(), len) } < 0 {
        return os_err(&format!("binding the raw socket to {local}"));
    }
    Ok(fd)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Fill `bufs` from the TUN queue: block for the first packet, then take
/// what is queued without waiting, up to `bufs.len()`. Returns the count.
fn read_batch(tun: &mut File, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> Result<usize> {
    let mut n = 0;
    while n < bufs.len() {
        match tun.read(&mut bufs[n]) {
            Ok(len) => {
                lens[n] = len;
                n += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if n > 0 {
                    break;
                }
                let mut pfd = libc::pollfd { fd: tun.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 && errno() != libc::EINTR {
                    return os_err("poll on the TUN queue");
                }
            }
            Err(e) => return Err(e).context("reading the TUN queue"),
        }
    }
    Ok(n)
}

/// Send `msgs` on the raw socket, all of them: a message the kernel refuses
/// (no route, a firewall, too big) is dropped and the rest still go.
fn send_all(raw: RawFd, msgs: &mut [libc::mmsghdr]) {
    let mut off = 0;
    while off < msgs.len() {
        let left = (msgs.len() - off) as libc::c_uint;
        let r = unsafe { libc::sendmmsg(raw, msgs[off..].as_mut_ptr(), left, 0) };
        if r > 0 {
            off += r as usize;
        } else if errno() != libc::EINTR {
            off += 1;
        }
    }
}

fn empty_msgs(n: usize) -> Vec<libc::mmsghdr> {
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}

fn empty_iov() -> libc::iovec {
    libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }
}

/// TUN → wire, for one queue.
fn tun_to_wire(mut tun: File, raw: Arc<OwnedFd>, table: Shared, local: Ipv4Addr, batch: usize) -> Result<()> {
    let mut bufs = vec![vec![0u8; BUF]; batch];
    let mut lens = vec![0usize; batch];
    let mut hdrs = vec![[0u8; OUTER_LEN]; batch];
    let mut addrs = vec![sockaddr(Ipv4Addr::UNSPECIFIED); batch];
    let mut iovs = vec![[empty_iov(), empty_iov()]; batch];
    let mut msgs = empty_msgs(batch);
    loop {
        let n = read_batch(&mut tun, &mut bufs, &mut lens)?;
        let t = table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut m = 0;
        for i in 0..n {
            let inner = &mut bufs[i][..lens[i]];
            let Some(dst) = encap_target(inner, &t, local) else { continue };
            hdrs[m] = outer_header(inner, local, dst);
            addrs[m] = sockaddr(dst);
            iovs[m] = [
                libc::iovec { iov_base: hdrs[m].as_mut_ptr().cast(), iov_len: OUTER_LEN },
                libc::iovec { iov_base: inner.as_mut_ptr().cast(), iov_len: inner.len() },
            ];
            let h = &mut msgs[m].msg_hdr;
            h.msg_name = (&mut addrs[m] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iovs[m].as_mut_ptr();
            h.msg_iovlen = 2;
            m += 1;
        }
        send_all(raw.as_raw_fd(), &mut msgs[..m]);
    }
}

/// Wire → TUN: everything the raw socket receives.
fn wire_to_tun(raw: Arc<OwnedFd>, mut tun: File, table: Shared, batch: usize) -> Result<()> {
    let mut bufs = vec![vec![0u8; BUF]; batch];
    let mut iovs: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    let mut msgs = empty_msgs(batch);
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let flags = if batch > 1 { libc::MSG_WAITFORONE } else { 0 };
    loop {
        let r = unsafe {
            libc::recvmmsg(raw.as_raw_fd(), msgs.as_mut_ptr(), batch as libc::c_uint, flags, std::ptr::null_mut())
        };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return os_err("receiving from the raw socket");
        }
        let t = table.read().unwrap_or_else(|e| e.into_inner()).clone();
        for (m, buf) in msgs.iter_mut().zip(&bufs).take(r as usize) {
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            m.msg_hdr.msg_flags = 0;
            if truncated {
                continue;
            }
            if let Some(inner) = decap(&buf[..m.msg_len as usize], &t) {
                // A TUN that is down refuses (EIO): the packet is dropped, as on a wire.
                let _ = tun.write(inner);
            }
        }
    }
}

fn spawn(name: String, f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Err(e) = f() {
                eprintln!("rcon: ipipd: {e:#}");
                std::process::exit(1);
            }
        })
        .context("starting a data plane thread")?;
    Ok(())
}

/// Open everything, start the threads, report "ready" on stdout, then
/// reload the peers on each SIGHUP until killed.
pub fn run(cfg: &Config, let_go_of_stdio: impl FnOnce() -> Result<()>) -> Result<i32> {
    if cfg.queues == 0 {
        bail!("--queues must be at least 1");
    }
    let batch = batch_size()?;
    // Blocked before any thread starts, so that every thread inherits it
    // and SIGHUP is only ever taken by sigwait below.
    let mut hup = SigSet::empty();
    hup.add(Signal::SIGHUP);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&hup), None).context("sigmask")?;
    let table: Shared = Arc::new(RwLock::new(Arc::new(load(&cfg.peers_file)?)));
    let raw = Arc::new(raw_socket(cfg.local)?);
    let mut queues = Vec::with_capacity(cfg.queues);
    for _ in 0..cfg.queues {
        queues.push(tun::open_queue(&cfg.tun, batch > 1)?);
    }
    let rx_tun = queues[0].try_clone().context("dup of the TUN queue")?;
    for (i, q) in queues.into_iter().enumerate() {
        let (raw, table, local) = (raw.clone(), table.clone(), cfg.local);
        spawn(format!("ipip-tx{i}"), move || tun_to_wire(q, raw, table, local, batch))?;
    }
    let rx_table = table.clone();
    spawn("ipip-rx".into(), move || wire_to_tun(raw, rx_tun, rx_table, batch))?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let_go_of_stdio()?;
    loop {
        if hup.wait().context("sigwait")? == Signal::SIGHUP {
            // A bad file keeps the table we have: the data plane goes on.
            if let Ok(t) = load(&cfg.peers_file) {
                *table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
            }
        }
    }
}
