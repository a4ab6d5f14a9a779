//! The data plane (`rcon ipipd --worker`). Per TUN queue one thread carries
//! packets out: it reads from its queue until the queue is empty (up to a
//! batch), and hands the whole batch to the sending socket with one
//! sendmmsg. One thread carries packets in: one recvmmsg takes what the
//! receiving socket holds (up to a batch), and the inner packets are
//! written to the TUN.
//! The main thread waits for SIGHUP and swaps in a new peer table.
//!
//! With offloads (the default; offload.rs), the TUN hands over TCP
//! super-packets of up to 64 KB, cut here into the segments that go on the
//! wire, and the in-order segments of a flow in one received batch go to the
//! TUN as one GSO write: one read and one write per 64 KB instead of per
//! 1.5 KB. Every TUN write carries a vnet header, so packets from a kernel
//! ipip peer with unfinished checksums or GSO sizes are taken in too.
//!
//! RCON_IPIP_OFFLOAD=0 turns offloads off (batched, packet by packet);
//! RCON_IPIP_BATCH=1 turns batching and offloads off (one read and one send
//! per packet, the design of flannel's UDP backend): the benchmark's baselines.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use super::offload::{
    complete_csum, has_psh, merge_head, payload_of, single_hdr, tso_plan, tso_segment, Coalescer, VnetHdr,
    F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, VNET_HDR_LEN,
};
use super::sock::{rx_socket, tx_socket};
use super::table::{decap_range, ecn_decap, encap_target, outer_header, Table, OUTER_LEN};
use super::{icmp, tun, Config, Peer};
use crate::sys::rawsock::{errno, icmp_error, os_err, sockaddr, SA_LEN};

/// Packets per recvmmsg, and TUN reads per round, when batching.
pub(super) const BATCH: usize = 64;
/// Room for outgoing messages per sendmmsg (a super-packet makes up to 45).
const MSGS: usize = 256;
/// Room for any IPv4 packet (the raw socket hands over reassembled ones).
const BUF: usize = 65536;

type Shared = Arc<RwLock<Arc<Table>>>;

pub fn load(path: &Path) -> Result<Table> {
    let peers: Vec<Peer> = crate::store::read_json(path)?;
    Ok(Table::new(peers))
}

/// Offloads (TSO and checksum offload on the TUN, coalescing into it) unless
/// RCON_IPIP_OFFLOAD=0; never without batching.
fn offload_wanted(batch: usize) -> bool {
    batch > 1 && std::env::var("RCON_IPIP_OFFLOAD").map_or(true, |v| v != "0")
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

/// Read one packet (vnet header first) from the TUN queue into `buf`: when
/// `wait`, block until there is one; otherwise None once the queue is empty.
fn read_one(tun: &mut File, buf: &mut [u8], wait: bool) -> Result<Option<usize>> {
    loop {
        match tun.read(buf) {
            Ok(len) => return Ok(Some(len)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !wait {
                    return Ok(None);
                }
                let mut pfd = libc::pollfd { fd: tun.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: poll reads and writes one pollfd (n = 1), and `pfd` is one, alive for the call.
                if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 && errno() != libc::EINTR {
                    return os_err("poll on the TUN queue");
                }
            }
            Err(e) => return Err(e).context("reading the TUN queue"),
        }
    }
}

fn empty_msgs(n: usize) -> Vec<libc::mmsghdr> {
    // SAFETY: mmsghdr is plain old data (integers and raw pointers, null when zero): all zeroes is valid.
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}

fn empty_iov() -> libc::iovec {
    libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }
}

fn iov(b: &[u8]) -> libc::iovec {
    libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() }
}

/// Room for the outer header and an inner IPv4 and TCP header with options.
const HEAD: usize = OUTER_LEN + 60 + 60;

/// The outgoing IPIP packets of one sendmmsg: per message a head (the outer
/// header, and for a segment of a super-packet its own inner headers) and
/// a body in a TUN read buffer, which must outlive the flush.
pub(super) struct Tx {
    heads: Vec<[u8; HEAD]>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<[libc::iovec; 2]>,
    msgs: Vec<libc::mmsghdr>,
    n: usize,
    notifier: icmp::Notifier,
}

impl Tx {
    pub(super) fn new(cap: usize) -> Result<Tx> {
        let mut tx = Tx {
            heads: vec![[0u8; HEAD]; cap],
            addrs: vec![sockaddr(Ipv4Addr::UNSPECIFIED); cap],
            iovs: vec![[empty_iov(), empty_iov()]; cap],
            msgs: empty_msgs(cap),
            n: 0,
            notifier: icmp::Notifier::new()?,
        };
        // The vectors never grow: these pointers stay good.
        for i in 0..cap {
            let h = &mut tx.msgs[i].msg_hdr;
            h.msg_name = (&mut tx.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = SA_LEN;
            h.msg_iov = tx.iovs[i].as_mut_ptr();
            h.msg_iovlen = 2;
        }
        Ok(tx)
    }

    /// The head of the next message, flushing first if all are taken.
    pub(super) fn next_head(&mut self, raw: RawFd) -> &mut [u8; HEAD] {
        if self.n == self.heads.len() {
            self.flush(raw);
        }
        &mut self.heads[self.n]
    }

    /// Take the message whose head `next_head` gave: `head_len` bytes of it, then `body`.
    pub(super) fn push(&mut self, dst: Ipv4Addr, head_len: usize, body: &[u8]) {
        let i = self.n;
        self.addrs[i] = sockaddr(dst);
        self.iovs[i] = [iov(&self.heads[i][..head_len]), iov(body)];
        self.n += 1;
    }

    /// Send every message: one the kernel refuses (no route, a firewall)
    /// is dropped and the rest still go; one refused as too big for the
    /// path is also answered to its sender (icmp.rs).
    pub(super) fn flush(&mut self, raw: RawFd) {
        let mut off = 0;
        while off < self.n {
            let left = (self.n - off) as libc::c_uint;
            // SAFETY: `left` messages from `off` are filled in (`push`), each pointing at its own
            // address and iovecs in vectors that never grow, and at a head in `heads` and a body
            // that the caller keeps alive until this flush (see `Tx`).
            let r = unsafe { libc::sendmmsg(raw, self.msgs[off..].as_mut_ptr(), left, 0) };
            if r > 0 {
                off += r as usize;
                continue;
            }
            match errno() {
                libc::EINTR => continue,
                libc::EMSGSIZE => self.refused(off),
                _ => {}
            }
            off += 1;
        }
        self.n = 0;
    }

    /// Message `i` was too big for the path to its peer.
    fn refused(&mut self, i: usize) {
        let mut quote = [0u8; icmp::QUOTE];
        let mut len = 0;
        for (k, v) in self.iovs[i].iter().enumerate() {
            // The head's outer header is not quoted.
            // SAFETY: message `i` < `n` was filled in by `push`: its head iovec spans `heads[i]`, and its
            // body iovec a buffer that outlives the flush calling us (see `Tx`).
            let part = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
            let part = if k == 0 { &part[OUTER_LEN..] } else { part };
            let n = part.len().min(quote.len() - len);
            quote[len..len + n].copy_from_slice(&part[..n]);
            len += n;
        }
        let peer = Ipv4Addr::from(u32::from_be(self.addrs[i].sin_addr.s_addr));
        self.notifier.too_big(&quote[..len], peer);
    }
}

/// One packet read from the TUN (`buf`: vnet header, then the packet) into
/// `tx`: dropped if it is not ours to send; its checksum completed if the
/// kernel left it partial; cut into segments if it is a TSO super-packet.
fn encap(buf: &mut [u8], tx: &mut Tx, raw: RawFd, t: &Table, local: Ipv4Addr) {
    let Some(h) = VnetHdr::parse(buf) else { return };
    let pkt = &mut buf[VNET_HDR_LEN..];
    let Some(dst) = encap_target(pkt, t, local) else { return };
    match h.gso_type {
        GSO_NONE => {
            let partial = h.flags & F_NEEDS_CSUM != 0;
            if partial && !complete_csum(pkt, h.csum_start.into(), h.csum_offset.into()) {
                return;
            }
            let head = tx.next_head(raw);
            head[..OUTER_LEN].copy_from_slice(&outer_header(pkt, local, dst));
            tx.push(dst, OUTER_LEN, pkt);
        }
        GSO_TCPV4 => {
            let Some(plan) = tso_plan(pkt, h.gso_size) else { return };
            let outer = outer_header(pkt, local, dst);
            for i in 0..plan.segments() {
                let head = tx.next_head(raw);
                head[..OUTER_LEN].copy_from_slice(&outer);
                let body = tso_segment(pkt, &plan, i, &mut head[OUTER_LEN..]);
                tx.push(dst, OUTER_LEN + plan.hlen, &pkt[body]);
            }
        }
        // Not asked for (no UDP or IPv6 offloads): never sent as it is.
        _ => {}
    }
}

/// TUN → wire, for one queue: read what the queue holds (up to `batch`
/// reads, or until a sendmmsg's worth of messages is ready), then send.
fn tun_to_wire(mut tun: File, raw: Arc<OwnedFd>, table: Shared, local: Ipv4Addr, batch: usize) -> Result<()> {
    let mut bufs = vec![vec![0u8; VNET_HDR_LEN + BUF]; batch];
    let mut tx = Tx::new(batch.max(MSGS))?;
    let raw = raw.as_raw_fd();
    loop {
        let (mut n, mut t) = (0, None);
        while n < batch && tx.n < batch {
            let Some(len) = read_one(&mut tun, &mut bufs[n], n == 0)? else { break };
            let t = t.get_or_insert_with(|| table.read().unwrap_or_else(|e| e.into_inner()).clone());
            encap(&mut bufs[n][..len], &mut tx, raw, t, local);
            n += 1;
        }
        tx.flush(raw);
    }
}

/// Room for a batch of packets from the receiving socket (each buffer big
/// enough for any IPv4 packet: the raw socket hands over reassembled ones),
/// and the recvmmsg that fills it.
pub(super) struct RxBatch {
    pub(super) bufs: Vec<Vec<u8>>,
    // What `msgs` point into: kept, never touched again.
    _iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl RxBatch {
    pub(super) fn new(n: usize) -> RxBatch {
        let mut bufs = vec![vec![0u8; BUF]; n];
        let mut iovs: Vec<libc::iovec> = bufs.iter_mut().map(|b| iov(b)).collect();
        let mut msgs = empty_msgs(n);
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        RxBatch { bufs, _iovs: iovs, msgs }
    }

    /// One recvmmsg: what the socket holds, up to a batch, waiting only for
    /// the first packet. The count, or -1 with errno set.
    pub(super) fn recv(&mut self, fd: RawFd) -> i32 {
        let flags = if self.msgs.len() > 1 { libc::MSG_WAITFORONE } else { 0 };
        let n = self.msgs.len() as libc::c_uint;
        // SAFETY: each of the `n` messages points at one iovec of `_iovs`, spanning its buffer in
        // `bufs`; all are owned by `self`, never resized, and alive for the call. No timeout (null).
        unsafe { libc::recvmmsg(fd, self.msgs.as_mut_ptr(), n, flags, std::ptr::null_mut()) }
    }

    /// `f(index, packet)` for each of the `r` packets received whole.
    pub(super) fn each(&mut self, r: usize, mut f: impl FnMut(usize, &mut [u8])) {
        for (i, m) in self.msgs.iter_mut().enumerate().take(r) {
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            m.msg_hdr.msg_flags = 0;
            if !truncated {
                f(i, &mut self.bufs[i][..m.msg_len as usize]);
            }
        }
    }
}

/// Wire → TUN: everything the raw socket receives; with `offload`, the
/// segments of a TCP flow in one batch go to the TUN as one super-packet.
fn wire_to_tun(
    raw: OwnedFd,
    tun: File,
    table: Shared,
    mtu: Arc<AtomicUsize>,
    batch: usize,
    offload: bool,
) -> Result<()> {
    let mut rx = RxBatch::new(batch);
    let mut coalescer = Coalescer::new(mtu.load(Ordering::Relaxed));
    let mut spans: Vec<(usize, Range<usize>)> = Vec::with_capacity(batch);
    let mut writes: Vec<(usize, usize, usize, bool)> = Vec::with_capacity(batch);
    let mut rest: Vec<usize> = Vec::with_capacity(batch);
    let mut wiov: Vec<libc::iovec> = Vec::with_capacity(batch + 2);
    let mut notifier = icmp::Notifier::new()?;
    loop {
        let r = rx.recv(raw.as_raw_fd());
        if r < 0 {
            match errno() {
                libc::EINTR => {}
                e if broken_socket(e) => return os_err("receiving from the raw socket"),
                // An ICMP error about an outer packet (IP_RECVERR).
                _ => answer_errors(raw.as_raw_fd(), &mut rx.bufs[0], &mut notifier),
            }
            continue;
        }
        let t = table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mtu = mtu.load(Ordering::Relaxed);
        coalescer.mtu = mtu;
        spans.clear();
        rx.each(r as usize, |i, outer| {
            if let Some(inner) = decap_range(outer, &t) {
                if ecn_decap(outer[1], &mut outer[inner.clone()]) {
                    spans.push((i, inner));
                }
            }
        });
        let bufs = &mut rx.bufs;
        // What to write: (first packet, payload in all, PSH at the end,
        // where its followers start in `rest`), followers in `rest`.
        writes.clear();
        rest.clear();
        if offload {
            let pkts: Vec<&[u8]> = spans.iter().map(|(i, r)| &bufs[*i][r.clone()]).collect();
            for o in coalescer.run(&pkts) {
                let from = rest.len();
                rest.extend(&o.rest);
                let payload = o.rest.iter().map(|&j| payload_of(pkts[j]).len()).sum::<usize>();
                let psh = o.rest.last().is_some_and(|&j| has_psh(pkts[j]));
                writes.push((o.first, payload, from, psh));
            }
        } else {
            writes.extend((0..spans.len()).map(|k| (k, 0, 0, false)));
        }
        for (w, &(first, payload, from, psh)) in writes.iter().enumerate() {
            let to = writes.get(w + 1).map_or(rest.len(), |n| n.2);
            let (bi, ref range) = spans[first];
            let head = &mut bufs[bi][range.clone()];
            let hdr = if to > from {
                let own = payload_of(head).len();
                merge_head(head, own + payload, psh).bytes()
            } else {
                single_hdr(head, mtu).bytes()
            };
            wiov.clear();
            wiov.push(iov(&hdr));
            wiov.push(iov(&bufs[bi][range.clone()]));
            for &k in &rest[from..to] {
                let (bj, ref rj) = spans[k];
                wiov.push(iov(payload_of(&bufs[bj][rj.clone()])));
            }
            // A TUN that is down refuses (EIO): the packet is dropped, as on a wire.
            // SAFETY: every iovec in `wiov` spans `hdr` or a part of `bufs`, all alive and unchanged
            // for the call; the kernel only reads them.
            let _ = unsafe { libc::writev(tun.as_raw_fd(), wiov.as_ptr(), wiov.len() as libc::c_int) };
        }
    }
}

/// Whether a failed recvmmsg's errno means the socket itself is unusable;
/// any other is an ICMP error about one of our packets (IP_RECVERR).
pub(super) fn broken_socket(errno: i32) -> bool {
    matches!(errno, libc::EBADF | libc::EFAULT | libc::EINVAL | libc::ENOTSOCK)
}

/// Drain the receiving socket's error queue; tell the senders of inner
/// packets whose outer packets could not be delivered. "Fragmentation
/// needed" is left out: the kernel keeps that MTU, and `Tx::refused`
/// answers the packets it then refuses.
fn answer_errors(raw: RawFd, buf: &mut [u8], notifier: &mut icmp::Notifier) {
    while let Some((kind, code, len)) = icmp_error(raw, buf) {
        if kind == icmp::DEST_UNREACH && code != icmp::FRAG_NEEDED {
            notifier.peer_unreachable(&buf[..len.min(buf.len())]);
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
    let rx = rx_socket(cfg.local)?;
    let tx = Arc::new(tx_socket()?);
    let mut queues = Vec::with_capacity(cfg.queues);
    let mut offload = offload_wanted(batch);
    for _ in 0..cfg.queues {
        let (q, on) = tun::open_queue(&cfg.tun, batch > 1, offload)?;
        offload &= on;
        queues.push(q);
    }
    let rx_tun = queues[0].try_clone().context("dup of the TUN queue")?;
    for (i, q) in queues.into_iter().enumerate() {
        let (tx, table, local) = (tx.clone(), table.clone(), cfg.local);
        spawn(format!("ipip-tx{i}"), move || tun_to_wire(q, tx, table, local, batch))?;
    }
    let rx_table = table.clone();
    let mtu = Arc::new(AtomicUsize::new(tun::mtu(&cfg.tun)?));
    let rx_mtu = mtu.clone();
    spawn("ipip-rx".into(), move || wire_to_tun(rx, rx_tun, rx_table, rx_mtu, batch, offload))?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let_go_of_stdio()?;
    loop {
        if hup.wait().context("sigwait")? == Signal::SIGHUP {
            // A bad file keeps the table we have: the data plane goes on.
            if let Ok(t) = load(&cfg.peers_file) {
                *table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
            }
            if let Ok(m) = tun::mtu(&cfg.tun) {
                mtu.store(m, Ordering::Relaxed);
            }
        }
    }
}
