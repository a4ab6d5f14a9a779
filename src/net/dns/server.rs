//! The resolver's worker (`rcon dns --worker`): a UDP and a TCP socket on
//! each DNS network's gateway, port 53, each served by a plain blocking
//! thread, and a control socket whose every connection means "the records
//! changed". The table is rebuilt from the records off the hot path and
//! swapped in whole; a serving thread notices the new generation on its
//! next query. In the etcd cluster mode the cluster network's table also
//! holds the other nodes' names (across_etcd).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};

use super::across::Record;
use super::across_etcd::{self, Across};
use super::answer::{self, Reply};
use super::table::{self, NetTable, Table};
use super::{forward, resolv};
use crate::net::{endpoint, network, service_store};

/// Forwarded queries in flight (a thread each); more get SERVFAIL at once.
const MAX_FORWARDS: usize = 256;
/// UDP serving threads per gateway, at most.
const MAX_UDP_THREADS: usize = 4;
/// The UDP receive buffer: some thousands of queries.
const UDP_RCVBUF: usize = 4 << 20;
/// A TCP client that says nothing for this long is let go.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// On TERM, how long the names this node published may take to be withdrawn before we exit.
/// Under the supervisor's 2 s grace before its KILL.
const STOP_WAIT: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct Shared {
    table: RwLock<Arc<Table>>,
    generation: AtomicU64,
    forwards: AtomicUsize,
}

/// One gateway's sockets, kept to stop its threads.
struct Listener {
    stop: Arc<AtomicBool>,
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Listener {
    /// Wake both threads out of their blocking calls; they see `stop` and end.
    fn close(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = socket::shutdown(self.udp.as_raw_fd(), socket::Shutdown::Both);
        let _ = socket::shutdown(self.tcp.as_raw_fd(), socket::Shutdown::Both);
    }
}

/// Serve until killed. `control` is the socket writers poke; the first table and every listener must
/// come up (their error is ours), then "ready" goes to stdout and `let_go_of_stdio` detaches us.
pub fn run(control: &Path, data_root: &Path, let_go_of_stdio: impl FnOnce() -> Result<()>) -> Result<i32> {
    let across = Arc::new(Mutex::new(None));
    on_term(across.clone())?;
    let shared = Arc::new(Shared::default());
    let _ = std::fs::remove_file(control);
    let ctl = UnixListener::bind(control).with_context(|| format!("binding {}", control.display()))?;
    let mut listeners = HashMap::new();
    let w = Worker { data_root, control, shared: &shared, across: &across };
    w.reload(&mut listeners, true)?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let_go_of_stdio()?;
    // Now with the log as stderr: the names across nodes, which the first load left out.
    let _ = w.reload(&mut listeners, false);
    loop {
        let Ok((first, _)) = ctl.accept() else { continue };
        // Every poke waiting now is answered by one rebuild, begun after they all came.
        let mut waiting = vec![first];
        ctl.set_nonblocking(true)?;
        while let Ok((c, _)) = ctl.accept() {
            waiting.push(c);
        }
        ctl.set_nonblocking(false)?;
        // A failed rebuild keeps the table that was.
        let _ = w.reload(&mut listeners, false);
        for mut c in waiting {
            let _ = c.write_all(b"k");
        }
    }
}

/// TERM and INT are taken by a thread of their own, so that the names this node published go with the
/// resolver: it withdraws them (for at most STOP_WAIT) and exits. Without them it exits at once. The
/// supervisor blocks other signals it waits for; those are unblocked here.
fn on_term(across: Arc<Mutex<Option<Across>>>) -> Result<()> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    // Every thread started from now on inherits the mask, so only the waiting thread takes them.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&set), None).context("sigprocmask")?;
    std::thread::spawn(move || {
        let _ = set.wait();
        if let Some(a) = across.lock().unwrap_or_else(|e| e.into_inner()).take() {
            a.stop(STOP_WAIT);
        }
        std::process::exit(0);
    });
    Ok(())
}

/// What a reload reads and writes.
struct Worker<'a> {
    data_root: &'a Path,
    control: &'a Path,
    shared: &'a Arc<Shared>,
    across: &'a Mutex<Option<Across>>,
}

impl Worker<'_> {
    /// Read the records, swap the table in, and listen on new gateways (stop on gone ones). `strict`:
    /// a gateway that cannot be listened on is an error (the first load, which also leaves etcd
    /// out: its lines go to the log, which is not stderr yet); later it is tried again.
    fn reload(&self, listeners: &mut HashMap<Ipv4Addr, Listener>, strict: bool) -> Result<()> {
        let nets = network::store(self.data_root).list()?;
        let eps = endpoint::Store::new(self.data_root).all()?;
        let svcs = service_store::store(self.data_root).list()?;
        let upstreams = resolv::upstreams(&resolv::parse(&resolv::host_text()));
        let mut tables = table::build(&nets, &eps, &svcs);
        // This node's names on the cluster network go to etcd; the other nodes' come into its table.
        let want = if strict { None } else { across_etcd::target(self.data_root, &nets) };
        let mine = |t: &across_etcd::Target| Record::of(table::names_on(&t.network, &eps));
        if let Some((t, remote)) = across_etcd::sync(self.across, want, self.control, mine) {
            let gw = nets.iter().find(|n| n.name == t.network).and_then(table::serves);
            if let Some(net) = gw.and_then(|gw| tables.get_mut(&gw)) {
                remote.merge_into(Arc::make_mut(net));
            }
        }
        swap(self.shared, listeners, Table { nets: tables, upstreams }, strict)
    }
}

/// Swap `table` in, and listen on new gateways (stop on gone ones).
fn swap(shared: &Arc<Shared>, listeners: &mut HashMap<Ipv4Addr, Listener>, table: Table, strict: bool) -> Result<()> {
    let table = Arc::new(table);
    *shared.table.write().unwrap_or_else(|e| e.into_inner()) = table.clone();
    shared.generation.fetch_add(1, Ordering::AcqRel);
    listeners.retain(|gw, l| {
        let keep = table.nets.contains_key(gw);
        if !keep {
            l.close();
        }
        keep
    });
    for gw in table.nets.keys() {
        if !listeners.contains_key(gw) {
            match listen(*gw, shared) {
                Ok(l) => {
                    listeners.insert(*gw, l);
                }
                Err(e) if strict => return Err(e),
                Err(_) => {}
            }
        }
    }
    Ok(())
}

/// A socket on GW:53 that may be bound before the address is up (a bridge being made again).
fn bound(gw: Ipv4Addr, ty: SockType) -> Result<OwnedFd> {
    let fd = socket::socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    socket::setsockopt(&fd, sockopt::IpFreebind, &true).context("IP_FREEBIND")?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(gw, 53)))
        .with_context(|| format!("listening on {gw}:53"))?;
    Ok(fd)
}

fn listen(gw: Ipv4Addr, shared: &Arc<Shared>) -> Result<Listener> {
    let udp_fd = bound(gw, SockType::Datagram)?;
    // Room for a burst while the one serving thread is off the CPU: a full buffer drops queries.
    // Best effort (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which rcon has).
    let _ = socket::setsockopt(&udp_fd, sockopt::RcvBufForce, &UDP_RCVBUF);
    let udp = UdpSocket::from(udp_fd);
    let tcp_fd = bound(gw, SockType::Stream)?;
    socket::listen(&tcp_fd, Backlog::new(128).expect("a valid backlog")).context("listen")?;
    let tcp = TcpListener::from(tcp_fd);
    let stop = Arc::new(AtomicBool::new(false));
    // One blocking loop per core on the same socket: a loop that is off the CPU holds up no query.
    for _ in 0..std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_UDP_THREADS) {
        let (u, s, st) = (udp.try_clone()?, shared.clone(), stop.clone());
        std::thread::spawn(move || serve_udp(u, gw, s, st));
    }
    let (t, s, st) = (tcp.try_clone()?, shared.clone(), stop.clone());
    std::thread::spawn(move || serve_tcp(t, gw, s, st));
    Ok(Listener { stop, udp, tcp })
}

/// The network table of `gw` as of the latest generation, refreshed only when it changed.
struct View {
    gw: Ipv4Addr,
    generation: u64,
    table: Arc<Table>,
    net: Option<Arc<NetTable>>,
}

impl View {
    fn new(gw: Ipv4Addr) -> View {
        View { gw, generation: u64::MAX, table: Arc::default(), net: None }
    }

    fn current(&mut self, shared: &Shared) -> Option<&NetTable> {
        let g = shared.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.table = shared.table.read().unwrap_or_else(|e| e.into_inner()).clone();
            self.net = self.table.nets.get(&self.gw).cloned();
            self.generation = g;
        }
        self.net.as_deref()
    }
}

fn serve_udp(sock: UdpSocket, gw: Ipv4Addr, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut view = View::new(gw);
    let mut buf = [0u8; 4096];
    loop {
        let got = sock.recv_from(&mut buf);
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Ok((n, peer)) = got else { continue };
        let Some(net) = view.current(&shared) else { continue };
        match answer::answer(net, &buf[..n]) {
            Reply::Local(r) => {
                let _ = sock.send_to(&r, peer);
            }
            Reply::Forward => forward_udp(&sock, &buf[..n], peer, &shared, view.table.clone()),
            Reply::Drop => {}
        }
    }
}

/// Ask the upstreams on a thread of its own, so the loop goes on serving.
fn forward_udp(sock: &UdpSocket, query: &[u8], peer: SocketAddr, shared: &Arc<Shared>, table: Arc<Table>) {
    let Ok(reply_on) = sock.try_clone() else { return };
    if shared.forwards.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDS {
        shared.forwards.fetch_sub(1, Ordering::AcqRel);
        if let Some(r) = answer::servfail(query) {
            let _ = reply_on.send_to(&r, peer);
        }
        return;
    }
    let (query, shared) = (query.to_vec(), shared.clone());
    std::thread::spawn(move || {
        if let Some(r) = forward::forward(&query, &table.upstreams).or_else(|| answer::servfail(&query)) {
            let _ = reply_on.send_to(&r, peer);
        }
        shared.forwards.fetch_sub(1, Ordering::AcqRel);
    });
}

fn serve_tcp(listener: TcpListener, gw: Ipv4Addr, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    loop {
        let got = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        if let Ok((conn, _)) = got {
            let shared = shared.clone();
            std::thread::spawn(move || serve_conn(conn, gw, &shared));
        }
    }
}

/// Queries on one TCP connection, one after the other, until the client closes or idles.
fn serve_conn(mut conn: TcpStream, gw: Ipv4Addr, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(TCP_IDLE));
    let mut view = View::new(gw);
    while let Ok(q) = forward::read_framed(&mut conn) {
        let Some(net) = view.current(shared) else { break };
        let r = match answer::answer(net, &q) {
            Reply::Local(r) => Some(r),
            Reply::Forward => forward::forward(&q, &view.table.upstreams).or_else(|| answer::servfail(&q)),
            Reply::Drop => None,
        };
        match r {
            Some(r) if forward::write_framed(&mut conn, &r).is_ok() => {}
            _ => break,
        }
    }
    let _ = conn.shutdown(Shutdown::Both);
}

/// Tell the resolver listening on `control` that the records changed; with `wait`, return once it
/// has the new table (or after 2 s). False when no resolver listens there.
pub fn poke(control: &Path, wait: bool) -> bool {
    let Ok(mut s) = UnixStream::connect(control) else { return false };
    if wait {
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read(&mut [0u8; 1]);
    }
    true
}
