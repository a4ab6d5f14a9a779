//! The firewall (both backends) and ip_forward, proven with real packets.
//!
//! Each test builds its own small world (TESTING.md): a "node" namespace, where the library runs as rcon
//! would, with a veth to one or two "ctr" namespaces (10.11.0.0/24, 10.12.0.0/24; the node is .1, the
//! container .2) and a veth uplink to an "inet" namespace (198.51.100.0/24: inet .1, node .2, the node's
//! default route). Every link is made inside those namespaces, so the machine's own namespace never sees one.
//! Each namespace starts from the sysctl baseline (common/mod.rs), so the node's ip_forward is 0 before the
//! library turns it on, also on a host whose own ip_forward is 1.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcon::net::firewall::{self, Backend, NetRules};
use rcon::net::forwarding;
use rcon::net::link::Netlink;

use crate::common::{new_netns, require_root, sh, unique};

/// The links of the calling thread's namespace (forwarding's sysctl is written there).
fn here() -> Netlink {
    Netlink::current().unwrap()
}

const INET: &str = "198.51.100.1";
const UPLINK: &str = "198.51.100.2";

/// One test's namespaces and background processes, all removed on drop (also when the test fails).
struct Topo {
    base: String,
    ns: Vec<String>,
    procs: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Topo {
    /// A node, an inet and `ctrs` container namespaces, wired and addressed; forwarding is not on yet.
    fn new(ctrs: usize) -> Topo {
        require_root();
        let base = unique("fw");
        let dir = tempfile::Builder::new().prefix(&format!("rcon-{base}-")).tempdir().unwrap();
        let mut t = Topo { base, ns: Vec::new(), procs: Vec::new(), dir };
        for ns in ["node", "inet"] {
            t.add_ns(ns);
        }
        let (node, inet) = (t.name("node"), t.name("inet"));
        sh(&format!(
            "ip -n {node} link add up0 type veth peer name up0 netns {inet} && \
             ip -n {node} addr add {UPLINK}/24 dev up0 && ip -n {node} link set up0 up && \
             ip -n {inet} addr add {INET}/24 dev up0 && ip -n {inet} link set up0 up && \
             ip -n {node} route add default via {INET}"
        ));
        for k in 1..=ctrs {
            let ctr = t.add_ns(&format!("c{k}"));
            sh(&format!(
                "ip -n {node} link add c{k} type veth peer name eth0 netns {ctr} && \
                 ip -n {node} addr add 10.1{k}.0.1/24 dev c{k} && ip -n {node} link set c{k} up && \
                 ip -n {ctr} addr add 10.1{k}.0.2/24 dev eth0 && ip -n {ctr} link set eth0 up && \
                 ip -n {ctr} route add default via 10.1{k}.0.1"
            ));
        }
        t
    }

    fn add_ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.base);
        // With the sysctl baseline: the node starts with ip_forward 0 whatever the root namespace has.
        new_netns(&name);
        self.ns.push(name.clone());
        name
    }

    fn name(&self, role: &str) -> String {
        format!("{}-{role}", self.base)
    }

    /// The node's data root (forwarding.json).
    fn data_root(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, role: &str, cmd: &str) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.name(role)))
            .args(["sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run `cmd` in a namespace; panics on failure.
    fn sh(&self, role: &str, cmd: &str) -> String {
        let out = self.run(role, cmd);
        assert!(out.status.success(), "`{cmd}` in {role} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `f` on a thread inside the node namespace: the library's nft/iptables-restore children and its
    /// /proc/sys writes land there.
    fn in_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = std::fs::File::open(format!("/var/run/netns/{}", self.name("node"))).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns into the node");
                f()
            })
            .join()
            .expect("the node thread panicked")
        })
    }

    /// A TCP listener on :8080 in `role` that answers each connection with the peer address it sees.
    fn listen(&mut self, role: &str) {
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.name(role)))
            .args(["socat", "TCP-LISTEN:8080,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.procs.push(child);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.sh(role, "ss -Hltn 'sport = :8080'").contains("8080") {
            assert!(Instant::now() < end, "listener in {role} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connect from `role` to `addr`:8080: the source address the listener saw, or None when no connection
    /// was made (the 2 s connect timeout is a liveness bound, not a timing assertion).
    fn connect(&self, role: &str, addr: &str) -> Option<String> {
        let out = self.run(role, &format!("socat -u -T5 TCP:{addr}:8080,connect-timeout=2 -"));
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !seen.is_empty()).then_some(seen)
    }

    fn ping(&self, role: &str, addr: &str) -> bool {
        self.run(role, &format!("busybox ping -c1 -W2 {addr}")).status.success()
    }

    fn forwarding(&self, role: &str) -> String {
        self.sh(role, "cat /proc/sys/net/ipv4/ip_forward").trim().to_string()
    }

    /// What the node's packet filter shows of rcon: the nft table or the RCON lines of iptables-save.
    fn rcon_rules(&self, backend: Backend) -> String {
        match backend {
            Backend::Nftables => {
                let out = self.run("node", "nft list table ip rcon");
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
            Backend::Iptables => {
                let save = self.sh("node", "iptables-save");
                save.lines().filter(|l| l.contains("RCON")).collect::<Vec<_>>().join("\n")
            }
        }
    }

    /// A rule/table rcon did not make, to check it survives.
    fn add_foreign(&self, backend: Backend) {
        match backend {
            Backend::Nftables => self.sh(
                "node",
                "nft add table ip other && nft add chain ip other filt '{ type filter hook forward priority 10; }' \
                 && nft add rule ip other filt counter comment foreign",
            ),
            Backend::Iptables => self.sh(
                "node",
                "iptables -A FORWARD -m comment --comment foreign -j ACCEPT && \
                 iptables -t nat -A POSTROUTING -s 192.0.2.0/24 -m comment --comment foreign -j MASQUERADE",
            ),
        };
    }

    fn foreign_intact(&self, backend: Backend) -> bool {
        match backend {
            Backend::Nftables => self.sh("node", "nft list table ip other").contains("comment \"foreign\""),
            Backend::Iptables => {
                let save = self.sh("node", "iptables-save");
                save.contains("-A FORWARD -m comment --comment foreign -j ACCEPT")
                    && save.contains("-A POSTROUTING -s 192.0.2.0/24 -m comment --comment foreign -j MASQUERADE")
            }
        }
    }

    /// After the last network went: nothing of rcon's is left in the node.
    fn assert_no_rcon(&self, backend: Backend) {
        match backend {
            Backend::Nftables => {
                let tables = self.sh("node", "nft list tables");
                assert!(!tables.contains("rcon"), "rcon table left: {tables}");
            }
            Backend::Iptables => {
                let save = self.sh("node", "iptables-save");
                assert!(!save.contains("RCON"), "RCON chains or jumps left:\n{save}");
            }
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).stderr(Stdio::null()).status();
        }
    }
}

fn rules(name: &str, subnet: &str, internal: bool, masquerade: bool) -> NetRules {
    NetRules::plain(name, subnet.parse().unwrap(), internal, masquerade)
}

fn root_forwarding() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim().to_string()
}

/// Masquerade on, then the same network replaced without it; adding twice changes nothing; removal leaves a
/// foreign rule alone. The iptables run also sets the node's FORWARD policy to DROP, as on a Docker host.
fn masquerade(backend: Backend) {
    let root_before = root_forwarding();
    let mut t = Topo::new(1);
    t.add_foreign(backend);
    if backend == Backend::Iptables {
        t.sh("node", "iptables -P FORWARD DROP");
    }
    t.listen("inet");
    let fw = || firewall::open(backend);
    let dr = t.data_root().to_path_buf();
    let net = rules("m1", "10.11.0.0/24", false, true);
    t.in_node(|| {
        forwarding::enable(&here(), &dr, "m1").unwrap();
        fw().add_network(&net).unwrap();
    });
    assert_eq!(t.connect("c1", INET).as_deref(), Some(UPLINK), "egress is not masqueraded");

    // Adding again changes nothing.
    let before = t.rcon_rules(backend);
    t.in_node(|| fw().add_network(&net).unwrap());
    assert_eq!(t.rcon_rules(backend), before, "a second add changed the rules");
    assert_eq!(t.in_node(|| fw().networks().unwrap()), ["m1"]);

    // Replaced without masquerade: inet sees the container (it needs a route back).
    t.sh("inet", &format!("ip route add 10.11.0.0/24 via {UPLINK}"));
    t.in_node(|| fw().add_network(&rules("m1", "10.11.0.0/24", false, false)).unwrap());
    assert_eq!(t.connect("c1", INET).as_deref(), Some("10.11.0.2"), "still masqueraded after the replace");

    t.in_node(|| {
        fw().remove_network("m1").unwrap();
        fw().remove_network("m1").unwrap();
        assert!(fw().networks().unwrap().is_empty());
        forwarding::release(&here(), &dr, "m1").unwrap();
    });
    t.assert_no_rcon(backend);
    assert!(t.foreign_intact(backend), "a foreign rule was touched");
    assert_eq!(t.forwarding("node"), "0");
    assert_eq!(root_forwarding(), root_before, "the root namespace's ip_forward changed");
}

#[test]
fn firewall_masquerade_nftables() {
    masquerade(Backend::Nftables);
}

#[test]
fn firewall_masquerade_iptables() {
    masquerade(Backend::Iptables);
}

/// An internal network reaches neither the outside nor is reached from it; the node itself stays reachable.
fn internal(backend: Backend) {
    let mut t = Topo::new(1);
    t.listen("inet");
    t.listen("c1");
    t.sh("inet", &format!("ip route add 10.11.0.0/24 via {UPLINK}"));
    let fw = || firewall::open(backend);
    let dr = t.data_root().to_path_buf();
    t.in_node(|| forwarding::enable(&here(), &dr, "i1").unwrap());
    // Control: with forwarding alone, both directions work.
    assert!(t.connect("c1", INET).is_some(), "no egress before the rules: the world is broken");
    assert!(t.connect("inet", "10.11.0.2").is_some(), "no ingress before the rules: the world is broken");

    t.in_node(|| fw().add_network(&rules("i1", "10.11.0.0/24", true, true)).unwrap());
    assert_eq!(t.connect("c1", INET), None, "an internal network reached the outside");
    assert_eq!(t.connect("inet", "10.11.0.2"), None, "the outside reached an internal network");
    assert!(t.ping("c1", "10.11.0.1"), "the container cannot reach its gateway");
    assert!(t.ping("c1", UPLINK), "the container cannot reach the node's own address");

    t.in_node(|| {
        fw().remove_network("i1").unwrap();
        forwarding::release(&here(), &dr, "i1").unwrap();
    });
    t.assert_no_rcon(backend);
}

#[test]
fn firewall_internal_nftables() {
    internal(Backend::Nftables);
}

#[test]
fn firewall_internal_iptables() {
    internal(Backend::Iptables);
}

/// Two networks cannot reach each other, each reaches the outside; removing one leaves the other working,
/// and the last one takes every rcon rule with it, leaving a foreign one.
fn isolation(backend: Backend) {
    let mut t = Topo::new(2);
    t.add_foreign(backend);
    t.listen("inet");
    t.listen("c2");
    let fw = || firewall::open(backend);
    let dr = t.data_root().to_path_buf();
    t.in_node(|| {
        forwarding::enable(&here(), &dr, "a").unwrap();
        forwarding::enable(&here(), &dr, "b.x+1").unwrap();
    });
    assert!(t.connect("c1", "10.12.0.2").is_some(), "ctr1 cannot reach ctr2 before the rules: the world is broken");

    t.in_node(|| {
        fw().add_network(&rules("a", "10.11.0.0/24", false, true)).unwrap();
        fw().add_network(&rules("b.x+1", "10.12.0.0/24", false, true)).unwrap();
        // A third network may not overlap one of them.
        let err = fw().add_network(&rules("c", "10.12.0.128/25", false, true)).unwrap_err();
        assert!(format!("{err:#}").contains("overlaps 10.12.0.0/24 of network b.x+1"), "{err:#}");
        assert_eq!(fw().networks().unwrap(), ["a", "b.x+1"]);
    });
    assert_eq!(t.connect("c1", "10.12.0.2"), None, "network a reached network b");
    assert_eq!(t.connect("c1", INET).as_deref(), Some(UPLINK));
    assert_eq!(t.connect("c2", INET).as_deref(), Some(UPLINK));

    t.in_node(|| {
        fw().remove_network("a").unwrap();
        forwarding::release(&here(), &dr, "a").unwrap();
        assert_eq!(fw().networks().unwrap(), ["b.x+1"]);
    });
    assert_eq!(t.forwarding("node"), "1", "forwarding went off while network b needs it");
    assert_eq!(t.connect("c2", INET).as_deref(), Some(UPLINK), "network b lost egress when a went");
    assert!(!t.rcon_rules(backend).contains("10.11.0.0"), "network a's rules are left");

    t.in_node(|| {
        fw().remove_network("b.x+1").unwrap();
        forwarding::release(&here(), &dr, "b.x+1").unwrap();
    });
    t.assert_no_rcon(backend);
    assert!(t.foreign_intact(backend), "a foreign rule was touched");
    assert_eq!(t.forwarding("node"), "0");
}

#[test]
fn firewall_isolation_nftables() {
    isolation(Backend::Nftables);
}

#[test]
fn firewall_isolation_iptables() {
    isolation(Backend::Iptables);
}

/// ip_forward goes on in the node only, stays on while a network needs it, and is put back as it was.
#[test]
fn firewall_forwarding() {
    let root_before = root_forwarding();
    let t = Topo::new(0);
    let dr = t.data_root().to_path_buf();
    let record = dr.join("forwarding.json");
    assert_eq!(t.forwarding("node"), "0");

    t.in_node(|| {
        forwarding::enable(&here(), &dr, "a").unwrap();
        forwarding::enable(&here(), &dr, "a").unwrap();
        forwarding::enable(&here(), &dr, "b").unwrap();
    });
    assert_eq!(t.forwarding("node"), "1");
    assert_eq!(root_forwarding(), root_before, "the root namespace's ip_forward changed");
    assert!(record.exists());
    t.in_node(|| forwarding::release(&here(), &dr, "a").unwrap());
    assert_eq!(t.forwarding("node"), "1", "released while b needs it");
    t.in_node(|| {
        forwarding::release(&here(), &dr, "b").unwrap();
        forwarding::release(&here(), &dr, "b").unwrap();
    });
    assert_eq!(t.forwarding("node"), "0", "the previous value is not restored");
    assert!(!record.exists(), "the record is left");

    // A namespace that forwarded before rcon keeps forwarding after it.
    t.sh("node", "echo 1 > /proc/sys/net/ipv4/ip_forward");
    t.in_node(|| {
        forwarding::enable(&here(), &dr, "c").unwrap();
        forwarding::release(&here(), &dr, "c").unwrap();
    });
    assert_eq!(t.forwarding("node"), "1");
    assert_eq!(root_forwarding(), root_before, "the root namespace's ip_forward changed");
}

/// Concurrent adds and removes from several threads in one namespace (as from several rcon processes):
/// the netns lock keeps every read-modify-apply whole, so all networks end up installed, then all gone.
fn concurrent(backend: Backend) {
    let t = Topo::new(0);
    let names: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
    std::thread::scope(|s| {
        for (i, n) in names.iter().enumerate() {
            let t = &t;
            s.spawn(move || {
                let fw = || firewall::open(backend);
                t.in_node(|| fw().add_network(&rules(n, &format!("10.{}.0.0/24", 50 + i), false, true)).unwrap());
            });
        }
    });
    let fw = || firewall::open(backend);
    assert_eq!(t.in_node(|| fw().networks().unwrap()), names);
    std::thread::scope(|s| {
        for n in &names {
            let t = &t;
            s.spawn(move || {
                let fw = || firewall::open(backend);
                t.in_node(|| fw().remove_network(n).unwrap());
            });
        }
    });
    t.assert_no_rcon(backend);
}

#[test]
fn firewall_concurrent_nftables() {
    concurrent(Backend::Nftables);
}

#[test]
fn firewall_concurrent_iptables() {
    concurrent(Backend::Iptables);
}
