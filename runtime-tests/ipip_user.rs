//! Userspace IPIP (`rcon ipipd`) with real packets: two node namespaces on
//! a veth underlay, a TUN made by `ipip_user::create_tun` in each, and the
//! daemon carrying ping, a 1 MB TCP transfer and full-size DF packets; the
//! wire seen by tcpdump; the supervisor restarting a killed worker; a peer
//! table reloaded on SIGHUP.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rcon::net::overlay::ipip_user::{self, Peer};

use crate::common::{new_netns, pid_alive, require_root, sh, unique, wait_pid_gone, wait_until};

const TUN: &str = "ipip0";
const UNDERLAY_MTU: u32 = 1500;

/// One node: its namespace, underlay address, pod subnet and TUN address.
struct Node {
    ns: String,
    underlay: &'static str,
    subnet: &'static str,
    tun_ip: &'static str,
}

/// Two nodes joined by a veth underlay, each with a TUN and a route to the
/// other's subnet through it. Drop stops every daemon, then deletes the
/// namespaces (and with them the veth and the TUNs).
struct Pair {
    a: Node,
    b: Node,
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.id() as i32), nix::sys::signal::SIGTERM);
            let _ = d.wait();
        }
        for ns in [&self.a.ns, &self.b.ns] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).stderr(Stdio::null()).status();
        }
    }
}

fn in_ns(ns: &str, cmd: &str) -> String {
    sh(&format!("nsenter --net=/var/run/netns/{ns} sh -c '{}'", cmd.replace('\'', "'\\''")))
}

fn try_in_ns(ns: &str, cmd: &str) -> bool {
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{ns}"))
        .args(["sh", "-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `f` run inside `ns`, on a thread of its own.
fn spawn_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let _in = rcon::net::netns::enter(File::open(path).unwrap()).unwrap();
        f()
    })
}

/// `ipip_user::create_tun` run inside `ns`.
fn create_tun_in(ns: &str) {
    spawn_in(ns, || ipip_user::create_tun(TUN, UNDERLAY_MTU - ipip_user::OVERHEAD).unwrap()).join().unwrap();
}

impl Pair {
    fn new() -> Pair {
        require_root();
        let base = unique("ipip");
        let a =
            Node { ns: format!("{base}a"), underlay: "192.168.77.1", subnet: "10.244.1.0/24", tun_ip: "10.244.1.1" };
        let b =
            Node { ns: format!("{base}b"), underlay: "192.168.77.2", subnet: "10.244.2.0/24", tun_ip: "10.244.2.1" };
        let dir = tempfile::Builder::new().prefix(&format!("rcon-{base}-")).tempdir().unwrap();
        let p = Pair { a, b, dir, daemons: Vec::new() };
        for n in [&p.a, &p.b] {
            new_netns(&n.ns);
        }
        sh(&format!("ip link add u0 netns {} type veth peer name u0 netns {}", p.a.ns, p.b.ns));
        for (n, other) in [(&p.a, &p.b), (&p.b, &p.a)] {
            create_tun_in(&n.ns);
            in_ns(
                &n.ns,
                &format!(
                    "ip addr add {}/24 dev u0 && ip link set u0 up && ip addr add {}/32 dev {TUN} && \
                     ip link set {TUN} up && ip route add {} dev {TUN}",
                    n.underlay, n.tun_ip, other.subnet
                ),
            );
        }
        p
    }

    fn peers_file(&self, n: &Node) -> PathBuf {
        self.dir.path().join(format!("{}.json", n.ns))
    }

    /// Each node's peers file names the other node.
    fn write_peers(&self) {
        for (n, other) in [(&self.a, &self.b), (&self.b, &self.a)] {
            let peer = Peer { subnet: other.subnet.parse().unwrap(), underlay_ip: other.underlay.parse().unwrap() };
            ipip_user::write_peers(&self.peers_file(n), &[peer]).unwrap();
        }
    }

    /// `rcon ipipd` (the supervisor) in `n`'s namespace; returns its pid
    /// once it has reported ready. It gets TERM if this test's thread dies.
    fn start(&mut self, on_a: bool) -> i32 {
        let n = if on_a { &self.a } else { &self.b };
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", n.ns))
            .arg(crate::common::rcon_bin())
            .args(["ipipd", "--tun", TUN, "--local", n.underlay, "--queues", "2", "--peers"])
            .arg(self.peers_file(n))
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: the hook runs in the forked child before exec and makes one
        // prctl(2) call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let pid: i32 = line.trim().parse().unwrap_or_else(|_| panic!("rcon ipipd said {line:?}"));
        assert_eq!(pid, child.id() as i32, "nsenter execs rcon: the supervisor is our child");
        self.daemons.push(child);
        pid
    }

    fn start_both(&mut self) -> (i32, i32) {
        (self.start(true), self.start(false))
    }

    fn ping_ok(&self) -> bool {
        try_in_ns(&self.a.ns, &format!("busybox ping -c 1 -W 1 {}", self.b.tun_ip))
    }
}

/// The worker the supervisor `pid` runs (its only child), if any.
fn worker_of(pid: i32) -> Option<i32> {
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    kids.split_whitespace().next()?.parse().ok().filter(|&w| pid_alive(w))
}

fn wait_for_ping(p: &Pair) {
    wait_until("a ping across the tunnel", || p.ping_ok());
}

#[test]
fn ipip_user_carries_ping_tcp_and_full_size_df_packets() {
    let mut p = Pair::new();
    let link = in_ns(&p.a.ns, &format!("ip -d link show {TUN}"));
    assert!(link.contains("mtu 1480") && link.contains("multi_queue") && link.contains("persist on"), "{link}");
    p.write_peers();
    p.start_both();
    wait_for_ping(&p);

    // 1 MB over TCP, both ways of the tunnel (data one way, ACKs the other).
    let (src, dst) = (p.dir.path().join("in"), p.dir.path().join("out"));
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let mut server = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", p.b.ns))
        .args(["socat", "-u", "TCP-LISTEN:7000,reuseaddr"])
        .arg(format!("CREATE:{}", dst.display()))
        .spawn()
        .unwrap();
    wait_until("the TCP listener", || in_ns(&p.b.ns, "ss -ltn").contains(":7000"));
    in_ns(&p.a.ns, &format!("socat -u OPEN:{} TCP:{}:7000", src.display(), p.b.tun_ip));
    assert!(server.wait().unwrap().success());
    assert!(std::fs::read(&dst).unwrap() == data, "the 1 MB transfer arrived changed");

    // Full-size packets: 1452 bytes of ICMP data make a 1480-byte inner
    // packet (the TUN MTU) and a 1500-byte outer one (the underlay MTU).
    // Linux sends the echo requests with DF (its default PMTU discovery) and
    // the replies without: the outer header copies the inner DF bit, as the
    // kernel's ipip does for IPv4 inside. tcpdump shows both headers.
    let cap = p.dir.path().join("cap.pcap");
    let mut dump = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", p.b.ns))
        .args(["tcpdump", "-i", "u0", "-n", "-U", "-c", "4", "-w"])
        .arg(&cap)
        .arg("ip proto 4")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(dump.stderr.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("listening on u0"), "tcpdump: {first}");
    in_ns(&p.a.ns, &format!("busybox ping -c 2 -s 1452 -W 2 {}", p.b.tun_ip));
    wait_until("tcpdump to see 4 packets", || dump.try_wait().unwrap().is_some());
    let seen = sh(&format!("tcpdump -r {} -n -v 2>/dev/null", cap.display()));
    assert_eq!(seen.matches("proto IPIP (4), length 1500)").count(), 4, "{seen}");
    let df = "flags [DF], proto IPIP (4), length 1500)\n    192.168.77.1 > 192.168.77.2: IP (tos 0x0, ttl 64";
    assert_eq!(seen.matches(df).count(), 2, "requests: outer DF and TTL from the inner packet: {seen}");
    let no_df = "flags [none], proto IPIP (4), length 1500)\n    192.168.77.2 > 192.168.77.1: IP (tos 0x0, ttl 64";
    assert_eq!(seen.matches(no_df).count(), 2, "replies: no DF inside, none outside: {seen}");
    assert_eq!(seen.matches("flags [DF], proto ICMP (1), length 1480)").count(), 2, "{seen}");
    assert!(seen.contains("10.244.1.1 > 10.244.2.1: ICMP echo request"), "{seen}");
    assert!(seen.contains("10.244.2.1 > 10.244.1.1: ICMP echo reply"), "{seen}");
}

#[test]
fn ipip_user_supervisor_restarts_the_worker_and_stops_with_term() {
    let mut p = Pair::new();
    p.write_peers();
    let (sup, _) = p.start_both();
    wait_for_ping(&p);
    let worker = worker_of(sup).expect("a worker");
    sh(&format!("kill -9 {worker}"));
    wait_until("a new worker", || worker_of(sup).is_some_and(|w| w != worker));
    wait_for_ping(&p);

    let new = worker_of(sup).unwrap();
    sh(&format!("kill -TERM {sup}"));
    let d = p.daemons.iter_mut().find(|d| d.id() as i32 == sup).unwrap();
    assert!(d.wait().unwrap().success(), "the supervisor exits 0 on TERM");
    wait_pid_gone(new);
    assert!(!p.ping_ok(), "nothing carries packets once the daemon is stopped");
}

#[test]
fn ipip_user_reloads_peers_on_sighup() {
    let mut p = Pair::new();
    p.write_peers();
    ipip_user::write_peers(&p.peers_file(&p.a), &[]).unwrap();
    let (sup_a, _) = p.start_both();
    assert!(!p.ping_ok(), "no peer yet on node a: no traffic");
    p.write_peers();
    sh(&format!("kill -HUP {sup_a}"));
    wait_for_ping(&p);
}

#[test]
fn ipip_user_without_its_tun_fails_in_one_line() {
    let p = Pair::new();
    p.write_peers();
    let out = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", p.a.ns))
        .arg(crate::common::rcon_bin())
        .args(["ipipd", "--tun", "nosuchtun", "--local", p.a.underlay, "--peers"])
        .arg(p.peers_file(&p.a))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("TUN device nosuchtun does not exist"), "{err}");
}

/// The bench's wire probe (probe.rs, examples/ipip_wire.rs) counts real
/// packets: what node a sends for a moment, node b's receiver takes and
/// checks, 1500 bytes each; a receiver that expects another peer takes
/// none of them.
#[test]
fn wire_probe_counts_the_packets_it_sends() {
    use std::time::Duration;

    use rcon::net::overlay::ipip_user::probe;

    let p = Pair::new();
    let (a, b): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        (p.a.underlay.parse().unwrap(), p.b.underlay.parse().unwrap());
    let (first, idle) = (Duration::from_secs(10), Duration::from_millis(500));
    let from_a = spawn_in(&p.b.ns, move || probe::receive(b, a, first, idle).unwrap());
    let stranger = std::net::Ipv4Addr::new(192, 168, 77, 9);
    let from_other = spawn_in(&p.b.ns, move || probe::receive(b, stranger, first, idle).unwrap());
    // Both receivers are bound: two protocol-4 raw sockets in /proc/net/raw.
    wait_until("the probe's receivers", || {
        in_ns(&p.b.ns, "cat /proc/net/raw").lines().filter(|l| l.contains(":0004 ")).count() == 2
    });
    let sent = spawn_in(&p.a.ns, move || probe::send(a, b, 1500, 0.3, 2).unwrap()).join().unwrap();
    let got = from_a.join().unwrap();
    assert!(sent > 0, "nothing sent");
    assert!(got.packets > 0 && got.packets <= sent, "sent {sent}, received {got:?}");
    assert_eq!(got.bytes, got.packets * 1500, "{got:?}");
    assert!(got.secs > 0.0 && got.secs < 5.0, "{got:?}");
    assert_eq!(from_other.join().unwrap().packets, 0, "taken from a node that is not the peer");
}
