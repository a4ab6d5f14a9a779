//! Cross-host pod networks with real packets: worlds of two and three
//! nodes (each a namespace with its own rcon), joined by an underlay bridge
//! in a namespace of its own. For each backend, containers on different
//! nodes exchange a ping, a 1 MB TCP stream checked by its digest, and
//! full-size pings; the server sees the client's own address (no NAT); a
//! capture on the underlay shows the encapsulation; removing a peer removes
//! its entries and cuts it off. Also: `cluster apply` twice changes nothing,
//! and bad input changes nothing.

use std::process::{Child, Command, Stdio};

use crate::common::{sh, wait_until, World};
use crate::network::ip_of;

/// Underlay addresses: node i is 192.168.77.(i+1); its pods 10.244.(i+1).0/24.
pub(crate) fn underlay_ip(i: usize) -> String {
    format!("192.168.77.{}", i + 1)
}

fn node_subnet(i: usize) -> String {
    format!("10.244.{}.0/24", i + 1)
}

pub(crate) struct Cluster {
    pub(crate) nodes: Vec<World>,
    /// The underlay namespace (bridge `ul`), owned by the first node's world.
    pub(crate) underlay: String,
    /// Node i's underlay address.
    pub(crate) ips: Vec<String>,
    captures: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.captures {
            let _ = c.kill();
            let _ = c.wait();
        }
        for w in &self.nodes {
            let _ = w.rcon(&["cluster", "reset", "-f"]);
        }
    }
}

/// `n` node worlds, each with the busybox image.
fn nodes(tag: &str, n: usize) -> Vec<World> {
    let nodes: Vec<World> = (0..n).map(|i| World::with_node(&format!("{tag}{i}"))).collect();
    for w in &nodes {
        w.ok(&["image", "import", concat!(env!("CARGO_MANIFEST_DIR"), "/hack/.cache/busybox-oci"), "busybox"]);
    }
    nodes
}

/// `n` nodes on one underlay bridge (MTU 1500), each with the busybox image.
pub(crate) fn cluster(tag: &str, n: usize) -> Cluster {
    let mut nodes = nodes(tag, n);
    let underlay = format!("{}u", nodes[0].name);
    nodes[0].add_system_netns(&underlay);
    sh(&format!("ip -n {underlay} link add ul type bridge && ip -n {underlay} link set ul up"));
    for (i, w) in nodes.iter().enumerate() {
        plug(&underlay, w.node.as_ref().unwrap(), &format!("p{i}"), &underlay_ip(i));
    }
    let ips = (0..n).map(underlay_ip).collect();
    Cluster { nodes, underlay, ips, captures: Vec::new() }
}

/// Plug namespace `ns` into the underlay bridge: its `u0` (address `ip`/24)
/// is a veth whose other end, `port`, is a port of the bridge.
pub(crate) fn plug(underlay: &str, ns: &str, port: &str, ip: &str) {
    sh(&format!(
        "ip link add u0 netns {ns} type veth peer name {port} netns {underlay} && \
         ip -n {underlay} link set {port} master ul up && \
         ip -n {ns} addr add {ip}/24 dev u0 && ip -n {ns} link set u0 up"
    ));
}

/// Two nodes in two subnets (192.168.77.1 and 192.168.78.2) joined by a
/// router namespace whose link to node 1 has MTU 1400: a hop with a smaller
/// MTU than the nodes' own underlays (1500) in the middle of the path. Node 1
/// routes to node 0 with MTU 1400.
fn routed_pair(tag: &str) -> Cluster {
    let mut nodes = nodes(tag, 2);
    let router = format!("{}r", nodes[0].name);
    nodes[0].add_system_netns(&router);
    let (n0, n1) = (nodes[0].node.clone().unwrap(), nodes[1].node.clone().unwrap());
    sh(&format!(
        "ip netns exec {router} sysctl -qw net.ipv4.ip_forward=1 && \
         ip link add u0 netns {n0} type veth peer name a0 netns {router} && \
         ip link add u0 netns {n1} type veth peer name b0 netns {router} mtu 1400 && \
         ip -n {router} addr add 192.168.77.254/24 dev a0 && ip -n {router} link set a0 up && \
         ip -n {router} addr add 192.168.78.254/24 dev b0 && ip -n {router} link set b0 up && \
         ip -n {n0} addr add 192.168.77.1/24 dev u0 && ip -n {n0} link set u0 up && \
         ip -n {n0} route add 192.168.78.0/24 via 192.168.77.254 && \
         ip -n {n1} addr add 192.168.78.2/24 dev u0 && ip -n {n1} link set u0 up && \
         ip -n {n1} route add 192.168.77.0/24 via 192.168.78.254 mtu 1400"
    ));
    let ips = vec!["192.168.77.1".to_string(), "192.168.78.2".to_string()];
    Cluster { nodes, underlay: router, ips, captures: Vec::new() }
}

impl Cluster {
    /// `cluster init` on every node, then every node declares every other.
    pub(crate) fn init(&self, backend: &str, extra: &[&str]) {
        for (i, w) in self.nodes.iter().enumerate() {
            let sub = node_subnet(i);
            let mut args =
                vec!["cluster", "init", "--cidr", "10.244.0.0/16", "--node-subnet", &sub, "--backend", backend];
            args.extend_from_slice(&["--underlay", "u0"]);
            args.extend_from_slice(extra);
            w.ok(&args);
        }
        for i in 0..self.nodes.len() {
            for j in (0..self.nodes.len()).filter(|&j| j != i) {
                self.add_peer(i, j);
            }
        }
    }

    pub(crate) fn add_peer(&self, on: usize, peer: usize) {
        let (name, ip, sub) = (format!("n{peer}"), &self.ips[peer], node_subnet(peer));
        self.nodes[on].ok(&["node", "add", &name, "--underlay-ip", ip, "--subnet", &sub]);
    }

    fn reset(&self) {
        for w in &self.nodes {
            w.ok(&["cluster", "reset", "-f"]);
        }
    }

    /// A server container on node `i`: answers 7000 with the connection it
    /// sees (netstat: the client's address), 7001 with a 1 MB blob whose
    /// md5 it logs first. Returns its address.
    pub(crate) fn server(&self, i: usize) -> String {
        let script = "dd if=/dev/urandom of=/blob bs=1024 count=1024 2>/dev/null; md5sum /blob; \
                      nc -ll -p 7001 -e cat /blob & \
                      exec nc -ll -p 7000 -e sh -c 'netstat -tn | grep :7000'";
        self.nodes[i].ok(&["run", "-d", "--name", "srv", "--network", "cluster", "busybox", "sh", "-c", script]);
        wait_until("the server's digest", || self.nodes[i].ok(&["logs", "srv"]).contains("/blob"));
        ip_of(&self.nodes[i], "srv")
    }

    /// Run `script` in a throwaway container on node `i`'s cluster network.
    pub(crate) fn client(&self, i: usize, script: &str) -> (bool, String) {
        let out = self.nodes[i].rcon(&["run", "--rm", "--network", "cluster", "busybox", "sh", "-c", script]);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A container that only sleeps, `srv` on node `i`; returns its address.
    pub(crate) fn sleeper(&self, i: usize) -> String {
        self.nodes[i].ok(&["run", "-d", "--name", "srv", "--network", "cluster", "busybox", "sleep", "1000"]);
        ip_of(&self.nodes[i], "srv")
    }

    /// Whether a container on node `from` gets an answer from `ip`.
    pub(crate) fn reaches(&self, from: usize, ip: &str) -> bool {
        self.client(from, &format!("ping -c1 -w3 {ip}")).0
    }

    pub(crate) fn node_sh(&self, i: usize, cmd: &str) -> String {
        self.nodes[i].sh_in(self.nodes[i].node.as_ref().unwrap(), cmd)
    }

    /// Start a capture of `filter` on the underlay bridge; returns the file it writes.
    pub(crate) fn capture(&mut self, filter: &str) -> std::path::PathBuf {
        let ns = self.underlay.clone();
        self.capture_on(&ns, "ul", filter)
    }

    /// Start a capture of `filter` on `iface` of namespace `ns`; returns the file it writes.
    pub(crate) fn capture_on(&mut self, ns: &str, iface: &str, filter: &str) -> std::path::PathBuf {
        let file = self.nodes[0].dir.path().join(format!("cap{}.txt", self.captures.len()));
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .args(["tcpdump", "-l", "-nn", "-v", "-i", iface])
            // Decode UDP as VXLAN whatever the port (tcpdump knows 4789 only).
            .args(if filter.starts_with("udp") { &["-T", "vxlan"][..] } else { &[][..] })
            .arg(filter)
            .stdout(std::fs::File::create(&file).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.captures.push(child);
        // tcpdump says "listening on" once its socket is open.
        let c = self.captures.last_mut().unwrap();
        let mut err = c.stderr.take().unwrap();
        let mut buf = [0u8; 256];
        let _ = std::io::Read::read(&mut err, &mut buf);
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        file
    }
}

/// The exchanges every backend must carry between node 1 and node 0.
fn exchanges(c: &mut Cluster, backend: &str, mtu: u32) {
    let ip = c.server(0);
    let digest = c.nodes[0].ok(&["logs", "srv"]).split_whitespace().next().unwrap().to_string();
    // Ping, and a full-size ping with DF set (busybox ping sends DF): the pod MTU is right.
    let (ok, out) = c.client(1, &format!("cat /sys/class/net/eth0/mtu; ping -c2 -w5 {ip} >/dev/null && echo ping-ok"));
    assert!(ok && out.contains("ping-ok"), "{backend}: no ping across nodes: {out}");
    assert_eq!(out.lines().next(), Some(mtu.to_string().as_str()), "{backend}: pod MTU");
    for size in [1372, mtu - 28] {
        let (ok, out) = c.client(1, &format!("ping -c1 -w5 -s {size} {ip}"));
        assert!(ok, "{backend}: a {}-byte ping with DF did not pass: {out}", size + 28);
    }
    // A 1 MB TCP stream, byte for byte.
    let (ok, out) = c.client(1, &format!("nc -w 5 {ip} 7001 | md5sum"));
    assert!(ok && out.starts_with(&digest), "{backend}: the 1 MB stream arrived changed: {out} (want {digest})");
    // The server sees the client's own address: no NAT between pods.
    let me = "ip -o -4 addr show eth0 | sed 's/.*inet \\([0-9.]*\\).*/\\1/'";
    let (_, out) = c.client(1, &format!("{me}; nc -w 3 {ip} 7000"));
    let client_ip = out.lines().next().unwrap_or_default().trim().to_string();
    assert!(client_ip.starts_with("10.244.2."), "{backend}: {out}");
    assert!(out.contains(&format!("{client_ip}:")), "{backend}: the server saw another address: {out}");
}

/// The wire: what the underlay carries for a ping from node 1's pod to node 0's.
fn wire_check(c: &mut Cluster, backend: &str, filter: &str, want: &[&str]) {
    let ip = ip_of(&c.nodes[0], "srv");
    let file = c.capture(filter);
    let (ok, _) = c.client(1, &format!("ping -c3 -w5 {ip}"));
    assert!(ok, "{backend}: ping during the capture");
    wait_until(&format!("{backend}: the capture to show {want:?}"), || {
        let got = std::fs::read_to_string(&file).unwrap_or_default();
        want.iter().all(|w| got.contains(w))
    });
}

/// After `node rm`, node 1 has no entry left for node 0 and its pods no longer reach node 0's.
fn peer_removal(c: &Cluster, backend: &str) {
    let ip = ip_of(&c.nodes[0], "srv");
    c.nodes[1].ok(&["node", "rm", "n0"]);
    let routes = c.node_sh(1, "ip route");
    assert!(!routes.contains("10.244.1.0/24"), "{backend}: route left: {routes}");
    let fdb = c.node_sh(1, "bridge fdb show | grep 192.168.77.1 || true");
    assert_eq!(fdb.trim(), "", "{backend}: fdb entries left");
    let neigh = c.node_sh(1, "ip neigh show nud permanent | grep 10.244.1.0 || true");
    assert_eq!(neigh.trim(), "", "{backend}: neighbour entry left");
    let (ok, _) = c.client(1, &format!("ping -c1 -w2 {ip}"));
    assert!(!ok, "{backend}: node 0's pod still answers after node rm");
    // Declared again, it answers again.
    c.add_peer(1, 0);
    let (ok, _) = c.client(1, &format!("ping -c1 -w5 {ip}"));
    assert!(ok, "{backend}: node 0's pod does not answer after node add");
}

fn backend_between_two_nodes(backend: &str, mtu: u32, filter: &str, want: &[&str]) {
    let c = carries_everything(&format!("c{}", &backend[..2].replace('-', "")), backend, &[], mtu, filter, want);
    reset_leaves_nothing(&c, backend);
}

/// Two nodes on `backend` (with `extra` init flags) carry every exchange,
/// show `want` on the wire, and forget a removed peer.
pub(crate) fn carries_everything(
    tag: &str,
    backend: &str,
    extra: &[&str],
    mtu: u32,
    filter: &str,
    want: &[&str],
) -> Cluster {
    let mut c = cluster(tag, 2);
    c.init(backend, extra);
    exchanges(&mut c, backend, mtu);
    wire_check(&mut c, backend, filter, want);
    peer_removal(&c, backend);
    c.nodes[0].ok(&["rm", "-f", "srv"]);
    c
}

/// `cluster reset` on both nodes leaves no link and no pod route.
pub(crate) fn reset_leaves_nothing(c: &Cluster, backend: &str) {
    c.reset();
    for i in 0..2 {
        let links = c.node_sh(i, "ip -o link | cut -d: -f2 | cut -d@ -f1 | sort");
        assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo", "u0"], "{backend}: reset left links");
        let routes = c.node_sh(i, "ip route");
        assert!(!routes.contains("10.244."), "{backend}: reset left routes: {routes}");
    }
}

#[test]
fn host_gw_between_two_nodes() {
    // No encapsulation: the pods' own addresses on the wire.
    backend_between_two_nodes("host-gw", 1500, "icmp", &["10.244.2.", "> 10.244.1.2: ICMP echo request"]);
}

#[test]
fn vxlan_between_two_nodes() {
    backend_between_two_nodes(
        "vxlan",
        1450,
        "udp port 4789",
        &["192.168.77.2.", "> 192.168.77.1.4789: VXLAN", "vni 1", "10.244.2.", "> 10.244.1.2: ICMP echo request"],
    );
}

#[test]
fn vxlan_l2_between_two_nodes() {
    backend_between_two_nodes("vxlan-l2", 1450, "udp port 4789", &["VXLAN", "> 10.244.1.2: ICMP echo request"]);
}

/// Three nodes, VXLAN on flannel's port 8472 and VNI 42: every pair of
/// nodes' pods reach each other, and the capture shows the configured port.
#[test]
fn vxlan_three_nodes_on_a_configured_port() {
    let mut c = cluster("c3", 3);
    c.init("vxlan", &["--vni", "42", "--port", "8472"]);
    let ips: Vec<String> = (0..3).map(|i| c.sleeper(i)).collect();
    for from in 0..3 {
        for (to, ip) in ips.iter().enumerate().filter(|(to, _)| *to != from) {
            let (ok, out) = c.client(from, &format!("ping -c1 -w5 {ip}"));
            assert!(ok, "node {from} -> node {to}: {out}");
        }
    }
    let file = c.capture("udp port 8472");
    let (ok, _) = c.client(2, &format!("ping -c2 -w5 {}", ips[0]));
    assert!(ok);
    wait_until("VXLAN on port 8472 with VNI 42", || {
        let got = std::fs::read_to_string(&file).unwrap_or_default();
        got.contains("192.168.77.1.8472: VXLAN") && got.contains("vni 42")
    });
}

/// `cluster apply` from a file: the first run sets everything up, a second
/// changes nothing, and a file without a node removes that node only.
#[test]
fn cluster_apply_reconciles_and_is_idempotent() {
    let c = cluster("ca", 2);
    let file = c.nodes[0].dir.path().join("cluster.toml");
    let write = |nodes: &str| {
        std::fs::write(
            &file,
            format!(
                "[cluster]\ncidr = \"10.244.0.0/16\"\nnode_subnet = \"10.244.1.0/24\"\nbackend = \"vxlan\"\n\
                 underlay = \"u0\"\n{nodes}"
            ),
        )
        .unwrap();
    };
    let peer = |name: &str, i: usize| {
        format!(
            "\n[[nodes]]\nname = \"{name}\"\nunderlay_ip = \"{}\"\nsubnet = \"{}\"\n",
            underlay_ip(i),
            node_subnet(i)
        )
    };
    write(&format!("{}{}", peer("n1", 1), peer("n9", 9)));
    let f = file.to_str().unwrap();
    let out = c.nodes[0].ok(&["cluster", "apply", f]);
    assert!(out.contains("initialised") && out.contains("added node n1") && out.contains("added node n9"), "{out}");
    // Sorted, and links without their index: a device made again is the same device.
    let state = || {
        let cmd = "{ ip route; ip neigh show nud permanent; bridge fdb show dev rcon-vx1; ip -o link | cut -d: -f2-; }";
        c.node_sh(0, &format!("{cmd} | sort"))
    };
    let before = state();
    assert_eq!(c.nodes[0].ok(&["cluster", "apply", f]).trim(), "", "a second apply changed something");
    assert_eq!(state(), before);
    // The device deleted behind rcon's back: apply makes it again, with
    // every peer's entries.
    c.node_sh(0, "ip link del rcon-vx1");
    assert_eq!(c.nodes[0].ok(&["cluster", "apply", f]).trim(), "recreated device rcon-vx1");
    assert_eq!(state(), before);
    write(&peer("n1", 1));
    assert_eq!(c.nodes[0].ok(&["cluster", "apply", f]).trim(), "removed node n9");
    let now = state();
    assert!(!now.contains("10.244.10.0") && now.contains("10.244.2.0/24"), "{now}");
    // The other settings differ: refused, nothing changed.
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("vxlan", "host-gw")).unwrap();
    let err = c.nodes[0].fails(&["cluster", "apply", f]);
    assert!(err.contains("cluster reset"), "{err}");
    assert_eq!(state(), now);
}

/// Bad input: one clear line, and the node as it was.
#[test]
fn bad_cluster_input_changes_nothing() {
    let c = cluster("cx", 1);
    let w = &c.nodes[0];
    let kernel = || c.node_sh(0, "ip -o link; ip route; ip neigh show nud permanent");
    let files = || std::fs::read_dir(&w.data_root).map(|r| r.count()).unwrap_or(0);
    let before = (kernel(), files());
    // `cluster init` on the range 10.244.0.0/16, with these flags.
    let init = |extra: &[&'static str]| {
        let mut a = vec!["cluster", "init", "--cidr", "10.244.0.0/16"];
        a.extend_from_slice(extra);
        a
    };
    let sub = ["--underlay", "u0", "--node-subnet", "10.244.1.0/24"];
    let with = |more: &[&'static str]| init(&[&sub[..], more].concat());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (init(&["--underlay", "u0", "--node-subnet", "10.99.1.0/24", "--backend", "vxlan"]), "not a subnet inside"),
        (with(&["--backend", "vxlan", "--vni", "16777216"]), "--vni 16777216 is out of range"),
        (with(&["--backend", "vxlan", "--vni", "0"]), "out of range"),
        (with(&["--backend", "gre"]), "gre"),
        (
            init(&["--underlay", "nosuch0", "--node-subnet", "10.244.1.0/24", "--backend", "vxlan"]),
            "--underlay nosuch0: no such interface",
        ),
        (vec!["node", "add", "x", "--underlay-ip", "192.168.77.9", "--subnet", "10.244.9.0/24"], "in no cluster"),
    ];
    for (a, want) in &cases {
        let err = w.fails(a);
        assert!(err.contains(want), "{a:?}: {err}");
        assert_eq!((kernel(), files()), before, "{a:?} changed the node");
    }
    // The kernel IPIP path, asked for on a kernel without it: refused, and
    // the network and bridge made on the way are gone again.
    let err = w.fails(&with(&["--backend", "ipip", "--ipip-mode", "kernel"]));
    assert!(err.contains("no ipip link type"), "{err}");
    assert_eq!(kernel(), before.0, "a refused ipip init changed the node");
    assert!(w.fails(&["cluster", "inspect"]).contains("in no cluster"));
    // Inside a cluster: peers that cannot be, and a second init.
    w.ok(&with(&["--backend", "host-gw"]));
    w.ok(&["node", "add", "a", "--underlay-ip", "192.168.77.2", "--subnet", "10.244.2.0/24"]);
    let state = || (kernel(), w.ok(&["node", "ls"]));
    let before = state();
    let add = |name: &'static str, ip: &'static str, subnet: &'static str| {
        vec!["node", "add", name, "--underlay-ip", ip, "--subnet", subnet]
    };
    let node_cases: Vec<(Vec<&str>, &str)> = vec![
        (add("b", "192.168.77.3", "10.99.3.0/24"), "not a subnet inside the cluster range"),
        (add("b", "192.168.77.3", "10.244.2.0/24"), "overlaps node a"),
        (add("b", "192.168.77.3", "10.244.1.0/24"), "overlaps this node's subnet"),
        (add("b", "10.1.2.3", "10.244.3.0/24"), "not on this node's underlay segment"),
        (add("a", "192.168.77.2", "10.244.4.0/24"), "already exists"),
        (vec!["node", "rm", "nosuch"], "does not exist"),
        (with(&["--backend", "vxlan"]), "already in a cluster"),
    ];
    for (a, want) in &node_cases {
        let err = w.fails(a);
        assert!(err.contains(want), "{a:?}: {err}");
        assert_eq!(state(), before, "{a:?} changed the node");
    }
}

/// Ports and services across nodes: a pod on node 1 reaches node 0's
/// published port, and a service on node 0 spreads over a local backend and
/// a pod of node 1 (given by address).
#[test]
fn ports_and_services_across_nodes() {
    let c = cluster("cs", 2);
    c.init("vxlan", &[]);
    let reply = |i: usize| format!("from-node{i}");
    let run_srv = |i: usize, extra: &[&str]| {
        let mut a = vec!["run", "-d", "--name", "web", "--network", "cluster"];
        a.extend_from_slice(extra);
        let r = reply(i);
        a.extend(["busybox", "nc", "-ll", "-p", "7000", "-e", "echo", r.as_str()]);
        c.nodes[i].ok(&a);
        ip_of(&c.nodes[i], "web")
    };
    run_srv(0, &["-p", "8080:7000"]);
    let remote = run_srv(1, &[]);
    // The published port of node 0, from a pod of node 1.
    let (_, out) = c.client(1, &format!("nc -w 3 {} 8080", underlay_ip(0)));
    assert_eq!(out.trim(), reply(0));
    // A service on node 0 with one backend here and one on node 1.
    let remote_backend = format!("{remote}:7000");
    c.nodes[0].ok(&[
        "service",
        "create",
        "web",
        "--vip",
        "10.96.0.10:80",
        "--backend",
        "web:7000",
        "--backend",
        &remote_backend,
        "--lb",
        "roundrobin",
    ]);
    let (_, out) = c.client(0, "for i in 1 2 3 4; do nc -w 3 10.96.0.10 80; done");
    assert!(out.contains(&reply(0)) && out.contains(&reply(1)), "the service did not reach both nodes: {out}");
    // The remote backend leaves by its address.
    c.nodes[0].ok(&["service", "rm-backend", "web", &remote]);
    let (_, out) = c.client(0, "for i in 1 2 3; do nc -w 3 10.96.0.10 80; done");
    assert!(!out.contains(&reply(1)) && out.contains(&reply(0)), "{out}");
    let err = c.nodes[0].fails(&["service", "add-backend", "web", "10.99.0.5:7000"]);
    assert!(err.contains("in no rcon network and no cluster range"), "{err}");
    c.nodes[0].ok(&["service", "rm", "web"]);
}

/// What an IPIP ping from node 1's pod to node 0's looks like on the wire.
pub(crate) const IPIP_WIRE: [&str; 4] =
    ["192.168.77.2 > 192.168.77.1: ", "proto IPIP (4)", "10.244.2.", "> 10.244.1.2: ICMP echo request"];

/// ipip on this kernel (no ipip link type) with rcon's userspace data
/// plane: it carries everything the kernel's would.
#[test]
fn ipip_userspace_between_two_nodes() {
    let c = carries_everything("cip", "ipip", USERSPACE, 1480, "ip proto 4", &IPIP_WIRE);
    reset_leaves_nothing(&c, "ipip");
}

const USERSPACE: &[&str] = &["--ipip-mode", "userspace"];

/// `kill -9` of rcon during `cluster init`, before and after the device (and
/// the userspace IPIP daemon, or the eBPF programs) exist: `cluster reset`
/// removes everything, daemon and tc filter included, and the node can
/// init again.
#[test]
fn cluster_reset_after_a_killed_init() {
    let c = cluster("ck", 1);
    let w = &c.nodes[0];
    for (point, mode) in
        [("cluster:recorded", "userspace"), ("cluster:device", "userspace"), ("cluster:device", "ebpf")]
    {
        let args = ["cluster", "init", "--cidr", "10.244.0.0/16", "--node-subnet", "10.244.1.0/24"];
        let out = w
            .cmd(&args)
            .args(["--backend", "ipip", "--ipip-mode", mode, "--underlay", "u0"])
            .env("RCON_FAULT", point)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), None, "{point}: rcon should have been killed");
        w.ok(&["cluster", "reset", "-f"]);
        let links = c.node_sh(0, "ip -o link | cut -d: -f2 | cut -d@ -f1 | sort");
        assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo", "u0"], "{point}: links left");
        let filters = c.node_sh(0, "tc filter show dev u0 ingress");
        assert_eq!(filters.trim(), "", "{point} {mode}: a tc filter was left on the underlay");
        let peers = w.data_root.join("cluster/ipip-peers.json");
        let daemons = sh(&format!("pgrep -f 'ipip[d] .*--peers {}' || true", peers.display()));
        assert_eq!(daemons.trim(), "", "{point}: an ipipd daemon was left");
    }
    w.ok(&[
        "cluster",
        "init",
        "--cidr",
        "10.244.0.0/16",
        "--node-subnet",
        "10.244.1.0/24",
        "--backend",
        "vxlan",
        "--underlay",
        "u0",
    ]);
}

/// A hop with a smaller MTU between two userspace IPIP nodes. Node 0's pod
/// sends full-size segments to node 1's; the router's "fragmentation
/// needed" teaches node 0's kernel the path MTU, and node 0's daemon passes
/// it on to the pod for each packet the kernel then refuses, as the kernel's
/// ipip does. So the 1 MB stream arrives: without that it stalls, lost in a
/// black hole.
#[test]
fn ipip_user_passes_a_smaller_path_mtu_on_to_the_pods() {
    let c = routed_pair("pm");
    c.init("ipip", USERSPACE);
    let ip = c.server(0);
    let digest = c.nodes[0].ok(&["logs", "srv"]).split_whitespace().next().unwrap().to_string();
    // busybox nc's -w bounds the connect only: a stalled stream is cut by timeout.
    let (ok, out) = c.client(1, &format!("timeout 20 nc {ip} 7001 | md5sum"));
    assert!(ok && out.starts_with(&digest), "the 1 MB stream across the 1400-byte hop: {out} (want {digest})");
    let route = c.node_sh(0, "ip route get 192.168.78.2");
    assert!(route.contains("mtu 1400"), "node 0 did not learn the path MTU: {route}");
    // Node 1's own route says 1400: its daemon tells its pods the same way.
    // The first full-size ping is refused; the pod's kernel then knows to
    // fragment the second (busybox ping lets it), which passes.
    let (ok, out) = c.client(1, &format!("ping -c1 -w3 -s 1452 {ip} >/dev/null; ping -c1 -w3 -s 1452 {ip}"));
    assert!(ok && out.contains("1460 bytes from"), "node 1's pod was not told the path MTU: {out}");
}

/// A peer node that is down: node 0's underlay link goes down and node 1
/// forgets its neighbour entry. The ARP for node 0 fails, the kernel reports
/// the outer packet undeliverable, and node 1's daemon tells the pod: its
/// connect fails with "No route to host" at once instead of timing out.
#[test]
fn ipip_user_tells_pods_when_a_peer_node_is_down() {
    let (c, ip) = two_nodes_and_a_sleeper("pd", "ipip", USERSPACE);
    assert!(c.reaches(1, &ip), "no ping before node 0 went down");
    c.node_sh(0, "ip link set u0 down");
    c.node_sh(1, "ip neigh flush dev u0");
    let (ok, out) = c.client(1, &format!("nc -w 20 {ip} 7000 </dev/null 2>&1"));
    assert!(!ok && out.contains("No route to host"), "a connect to a pod on a node that is down: {out}");
}

/// Two nodes on `backend`, and a sleeping container on node 0, whose address is returned.
pub(crate) fn two_nodes_and_a_sleeper(tag: &str, backend: &str, extra: &[&str]) -> (Cluster, String) {
    let c = cluster(tag, 2);
    c.init(backend, extra);
    let ip = c.sleeper(0);
    (c, ip)
}

/// `cluster repair` brings back what this node made and lost: the
/// userspace IPIP device, its daemon killed with its supervisor, a peer's
/// route, and the bridge with the device (a reboot's loss); each time the
/// pods reach each other again. Nothing lost, nothing done.
#[test]
fn cluster_repair_brings_back_what_was_lost() {
    let (c, ip) = two_nodes_and_a_sleeper("cr", "ipip", USERSPACE);
    let ping = || c.reaches(1, &ip);
    assert!(ping(), "no ping before anything was lost");
    let repair = || c.nodes[1].ok(&["cluster", "repair"]).trim().to_string();
    assert_eq!(repair(), "", "a repair with nothing lost did something");

    c.node_sh(1, "ip link del rcon-tun");
    assert!(!ping(), "a ping passed without node 1's TUN device");
    assert_eq!(repair(), "recreated device rcon-tun");
    assert!(ping(), "no ping after the device came back");

    let inspect: serde_json::Value = serde_json::from_str(&c.nodes[1].ok(&["cluster", "inspect"])).unwrap();
    let supervisor = inspect["daemon"]["pid"].as_i64().expect("a daemon pid");
    sh(&format!("kill -9 {supervisor}"));
    wait_until("the worker to die with its supervisor", || !ping());
    assert_eq!(repair(), "restarted the userspace IPIP daemon");
    assert!(ping(), "no ping after the daemon came back");

    c.node_sh(1, "ip route del 10.244.1.0/24");
    assert!(!ping(), "a ping passed without the route to node 0");
    assert_eq!(repair(), "");
    assert!(c.node_sh(1, "ip route").contains("10.244.1.0/24 dev rcon-tun"), "the route did not come back");
    assert!(ping(), "no ping after the route came back");

    // What a reboot takes from node 0 (its bridge and its device; the
    // server container is still there): both come back, with the server's
    // veth a port of the bridge again.
    c.node_sh(0, "ip link del rcon-cluster && ip link del rcon-tun");
    assert!(!ping(), "a ping passed without node 0's bridge and device");
    let out = c.nodes[0].ok(&["cluster", "repair"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["recreated bridge rcon-cluster", "recreated device rcon-tun"]);
    assert!(ping(), "no ping after node 0's bridge and device came back");
    c.nodes[0].ok(&["rm", "-f", "srv"]);
}

/// vxlan-l2 after node 0's bridge is deleted: `repair` makes the bridge
/// again, with the VXLAN device and the server's veth as its ports, and
/// the pods share one L2 subnet again.
#[test]
fn vxlan_l2_repair_after_the_bridge_is_lost() {
    let (c, ip) = two_nodes_and_a_sleeper("cl", "vxlan-l2", &[]);
    let ping = || c.reaches(1, &ip);
    assert!(ping(), "no ping before the bridge was lost");
    c.node_sh(0, "ip link del rcon-cluster");
    assert!(!ping(), "a ping passed without node 0's bridge");
    let out = c.nodes[0].ok(&["cluster", "repair"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["recreated bridge rcon-cluster", "made rcon-vx1 a port of rcon-cluster again"]
    );
    assert!(ping(), "no ping after the bridge came back");
    c.nodes[0].ok(&["rm", "-f", "srv"]);
}
