//! Single-host networks with real packets: bridge (with masquerade,
//! --internal, --icc=false and isolation, on both firewall backends),
//! routed, veth, connect/disconnect, parallel IPAM, gc after a crash, and
//! bad input. Each test is a world of its own: a node netns where rcon
//! runs and an "internet" netns behind the node's uplink (TESTING.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{sh, unique, wait_until, World};

pub(crate) const UPLINK_NODE: &str = "203.0.113.2";
pub(crate) const UPLINK_INET: &str = "203.0.113.1";

pub(crate) struct NetWorld {
    pub(crate) w: World,
    pub(crate) inet: String,
    pub(crate) listeners: Vec<Child>,
}

impl Drop for NetWorld {
    fn drop(&mut self) {
        for l in &mut self.listeners {
            let _ = l.kill();
            let _ = l.wait();
        }
    }
}

fn busybox_layout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/.cache/busybox-oci")
}

/// Node + internet namespaces joined by an uplink veth; rcon uses `backend`.
pub(crate) fn net_world(tag: &str, backend: &str) -> NetWorld {
    let mut w = World::with_node(tag);
    let inet = format!("{}i", w.name);
    w.add_system_netns(&inet);
    let node = w.node.clone().unwrap();
    sh(&format!("ip link add up0 netns {node} type veth peer name up1 netns {inet}"));
    w.sh_in(
        &node,
        &format!(
            "ip addr add {UPLINK_NODE}/24 dev up0 && ip link set up0 up && ip route add default via {UPLINK_INET}"
        ),
    );
    w.sh_in(&inet, &format!("ip addr add {UPLINK_INET}/24 dev up1 && ip link set up1 up"));
    std::fs::create_dir_all(&w.data_root).unwrap();
    std::fs::write(w.data_root.join("config.json"), format!("{{\"firewall_backend\":\"{backend}\"}}")).unwrap();
    w.ok(&["image", "import", busybox_layout().to_str().unwrap(), "busybox"]);
    NetWorld { w, inet, listeners: Vec::new() }
}

impl NetWorld {
    pub(crate) fn node(&self) -> &str {
        self.w.node.as_deref().unwrap()
    }

    /// A TCP server in the internet namespace that answers with the peer address it sees.
    pub(crate) fn inet_listener(&mut self, port: u16) {
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.inet))
            .args(["socat", &format!("TCP-LISTEN:{port},reuseaddr,fork"), "SYSTEM:echo peer=$SOCAT_PEERADDR"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.listeners.push(child);
        wait_until("the inet listener", || self.w.sh_in(&self.inet, "ss -ltn").contains(&format!(":{port}")));
    }

    /// A detached container on `net` answering TCP on 7000 with `from-NAME`.
    pub(crate) fn server(&self, name: &str, net: &str) -> String {
        self.server_with(name, net, &[])
    }

    /// The same, with more `run` flags (`-p …`); returns its address.
    pub(crate) fn server_with(&self, name: &str, net: &str, flags: &[&str]) -> String {
        server_on(&self.w, name, net, flags)
    }

    /// Run a command in a throwaway container on `net`; (exit code, stdout).
    pub(crate) fn client(&self, net: &str, script: &str) -> (i32, String) {
        let out = self.w.rcon(&["run", "--rm", "--network", net, "busybox", "sh", "-c", script]);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn reaches(&self, net: &str, ip: &str) -> bool {
        self.client(net, &format!("ping -c1 -w3 {ip}")).0 == 0
    }
}

/// Nothing of rcon's is left in the node's firewall.
pub(crate) fn assert_no_rules(nw: &NetWorld, backend: &str) {
    let rules = match backend {
        "nftables" => nw.w.sh_in(nw.node(), "nft list ruleset"),
        _ => nw.w.sh_in(nw.node(), "iptables-save | grep -i rcon || true"),
    };
    assert!(!rules.contains("rcon") && !rules.contains("RCON"), "rules left: {rules}");
}

/// The container's first address, without the prefix length.
/// A detached container on `w`'s network `net` (with more `run` flags) answering TCP on 7000 with
/// `from-NAME`; returns its address.
pub(crate) fn server_on(w: &World, name: &str, net: &str, flags: &[&str]) -> String {
    let reply = format!("from-{name}");
    let mut args = vec!["run", "-d", "--name", name, "--network", net];
    args.extend_from_slice(flags);
    args.extend(["busybox", "nc", "-ll", "-p", "7000", "-e", "echo", &reply]);
    w.ok(&args);
    // `run -d` returns once nc runs, not once it listens: a connection
    // made at once could meet a closed port.
    wait_until(&format!("{name} listening on 7000"), || {
        let out = w.rcon(&["exec", name, "netstat", "-ltn"]);
        String::from_utf8_lossy(&out.stdout).contains(":7000 ")
    });
    ip_of(w, name)
}

pub(crate) fn ip_of(w: &World, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", name])).unwrap();
    v["networks"][0]["ip"].as_str().unwrap().split('/').next().unwrap().to_string()
}

fn bridge_paths(backend: &str) {
    let mut nw = net_world(&format!("nb{}", &backend[..1]), backend);
    nw.w.ok(&["network", "create", "--subnet", "10.10.0.0/24", "front"]);
    let ip1 = nw.server("c1", "front");
    // Container to container: ICMP and a TCP byte stream.
    assert!(nw.reaches("front", &ip1));
    let (code, out) = nw.client("front", &format!("nc -w 2 {ip1} 7000"));
    assert_eq!((code, out.trim()), (0, "from-c1"));
    // To the gateway and to the node's own uplink address.
    assert!(nw.reaches("front", "10.10.0.1"));
    assert!(nw.reaches("front", UPLINK_NODE));
    // To the internet: the listener sees the node's uplink address (masquerade).
    nw.inet_listener(8080);
    let (code, out) = nw.client("front", &format!("nc -w 2 {UPLINK_INET} 8080"));
    assert_eq!((code, out.trim()), (0, format!("peer={UPLINK_NODE}").as_str()));

    // --internal: no way out, the node still answers.
    nw.w.ok(&["network", "create", "--subnet", "10.11.0.0/24", "--internal", "vault"]);
    assert!(!nw.reaches("vault", UPLINK_INET), "an internal network reached the internet");
    assert!(nw.reaches("vault", "10.11.0.1"));
    // Two networks do not reach each other, while both reach the internet.
    nw.w.ok(&["network", "create", "--subnet", "10.12.0.0/24", "back"]);
    let ip3 = nw.server("c3", "back");
    assert!(!nw.reaches("front", &ip3), "network front reached network back");
    assert!(nw.reaches("back", UPLINK_INET));
    // --icc=false: containers on one bridge are cut off from each other, not from the gateway.
    nw.w.ok(&["network", "create", "--subnet", "10.13.0.0/24", "--icc=false", "lonely"]);
    let ip4 = nw.server("c4", "lonely");
    assert!(!nw.reaches("lonely", &ip4), "icc=false let two containers talk");
    assert!(nw.reaches("lonely", "10.13.0.1"));

    // Removing everything leaves the node as it was: no bridge, veth, rule or lease.
    nw.w.ok(&["rm", "-f", "c1", "c3", "c4"]);
    for n in ["front", "vault", "back", "lonely"] {
        nw.w.ok(&["network", "rm", n]);
    }
    wait_until("only lo and the uplink in the node", || nw.w.sh_in(nw.node(), "ip -o link").lines().count() == 2);
    assert_no_rules(&nw, backend);
    assert_eq!(nw.w.sh_in(nw.node(), "cat /proc/sys/net/ipv4/ip_forward").trim(), "0");
    let leases = std::fs::read_dir(nw.w.data_root.join("ipam")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(leases, 0, "lease files left");
}

#[test]
fn bridge_paths_nftables() {
    bridge_paths("nftables");
}

#[test]
fn bridge_paths_iptables() {
    bridge_paths("iptables");
}

/// The default network: made on first use as rcon0 on 172.17.0.0/16, with
/// hairpin on its ports and a MAC that does not follow them.
#[test]
fn default_bridge_network() {
    let nw = net_world("nd", "nftables");
    let out = nw.w.ok(&["run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(out.contains("172.17.0."), "{out}");
    let mac_cmd = "ip -o link show rcon0 | grep -o \"link/ether [0-9a-f:]*\"";
    let mac = nw.w.sh_in(nw.node(), mac_cmd);
    nw.server("s1", "bridge");
    let port = nw.w.sh_in(nw.node(), "ip -d -o link show master rcon0");
    assert!(port.contains("hairpin on"), "{port}");
    assert_eq!(nw.w.sh_in(nw.node(), mac_cmd), mac, "the bridge MAC changed when a port came");
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["network", "inspect", "bridge"])).unwrap();
    assert_eq!(v["bridge"], "rcon0");
    assert_eq!(v["subnet"], "172.17.0.0/16");
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 1);
    // The network refuses rm while s1 is attached; --force detaches it.
    assert!(nw.w.fails(&["network", "rm", "bridge"]).contains("endpoint"));
}

/// The routed seed topology: /32 addresses, 169.254.1.1 onlink, proxy_arp.
#[test]
fn routed_pods_reach_host_and_each_other() {
    let nw = net_world("nr", "nftables");
    nw.w.ok(&["network", "create", "--driver", "routed", "--subnet", "10.20.0.0/24", "calico"]);
    let ip1 = nw.server("p1", "calico");
    let (_, routes) = nw.client("calico", "ip route; ip -o -4 addr show eth0");
    assert!(routes.contains("default via 169.254.1.1"), "{routes}");
    assert!(routes.contains("/32"), "{routes}");
    let host_end = nw.w.sh_in(nw.node(), &format!("ip route get {ip1}"));
    assert!(host_end.contains(" dev rv"), "the node routes {ip1} via its veth: {host_end}");
    assert!(nw.reaches("calico", UPLINK_NODE));
    assert!(nw.reaches("calico", &ip1));
    let (code, out) = nw.client("calico", &format!("nc -w 2 {ip1} 7000"));
    assert_eq!((code, out.trim()), (0, "from-p1"));
    nw.w.ok(&["rm", "-f", "p1"]);
    nw.w.ok(&["network", "rm", "calico"]);
    // The node end goes in the background (the kernel takes ~20 ms per veth).
    wait_until("the /32 route to go", || !nw.w.sh_in(nw.node(), "ip route").contains("10.20.0."));
}

/// The veth driver joins two namespaces directly.
#[test]
fn veth_driver_joins_two_namespaces() {
    let mut w = World::with_node("nv");
    let (a, b) = (unique("va"), unique("vb"));
    w.add_system_netns(&a);
    w.add_system_netns(&b);
    w.ok(&["network", "create", "--driver", "veth", "--subnet", "10.30.0.0/30", "p2p"]);
    let ea: serde_json::Value =
        serde_json::from_str(&w.ok(&["network", "attach", "--netns", &format!("/var/run/netns/{a}"), "p2p"])).unwrap();
    let eb: serde_json::Value =
        serde_json::from_str(&w.ok(&["network", "attach", "--netns", &format!("/var/run/netns/{b}"), "p2p"])).unwrap();
    let ipb = eb["ip"].as_str().unwrap();
    assert_ne!(ea["ip"], eb["ip"]);
    w.sh_in(&a, &format!("busybox ping -c1 -W1 {ipb}"));
    // A third end is refused; detaching one end takes the link away.
    let c = unique("vc");
    w.add_system_netns(&c);
    assert!(w.fails(&["network", "attach", "--netns", &format!("/var/run/netns/{c}"), "p2p"]).contains("two"));
    w.ok(&["network", "detach", "--netns", &format!("/var/run/netns/{a}"), "p2p"]);
    wait_until("a's eth0 to go", || !w.sh_in(&a, "ip -o link").contains("eth0"));
    w.ok(&["network", "detach", "--netns", &format!("/var/run/netns/{b}"), "p2p"]);
    w.ok(&["network", "rm", "p2p"]);
}

/// connect adds eth1 on a running container; disconnect removes it.
#[test]
fn connect_and_disconnect_a_running_container() {
    let nw = net_world("nc", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.40.0.0/24", "one"]);
    nw.w.ok(&["network", "create", "--subnet", "10.41.0.0/24", "two"]);
    nw.server("srv", "two");
    let srv2 = ip_of(&nw.w, "srv");
    nw.w.ok(&["run", "-d", "--name", "app", "--network", "one", "busybox", "sleep", "1000"]);
    assert!(nw.w.rcon(&["exec", "app", "ping", "-c1", "-W1", &srv2]).status.code() != Some(0));
    nw.w.ok(&["network", "connect", "--ip", "10.41.0.77", "two", "app"]);
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["inspect", "app"])).unwrap();
    let nets = v["networks"].as_array().unwrap();
    assert!(nets.iter().any(|n| n["interface"] == "eth1" && n["ip"] == "10.41.0.77/24"), "{v}");
    assert_eq!(nw.w.ok(&["exec", "app", "nc", "-w", "2", &srv2, "7000"]).trim(), "from-srv");
    nw.w.ok(&["network", "disconnect", "two", "app"]);
    wait_until("eth1 to go", || !nw.w.ok(&["exec", "app", "ip", "-o", "link"]).contains("eth1"));
    // The static address is free again.
    assert!(nw.w.ok(&["network", "inspect", "two"]).matches("10.41.0.77").count() == 0);
}

/// 50 `run -d` at once on one network: 50 distinct addresses, none lost.
#[test]
fn parallel_runs_get_distinct_addresses() {
    let nw = net_world("np", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.50.0.0/24", "many"]);
    let kids: Vec<Child> = (0..50)
        .map(|i| {
            nw.w.cmd(&["run", "-d", "--name", &format!("m{i}"), "--network", "many", "busybox", "sleep", "1000"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut ips: Vec<String> = (0..50).map(|i| ip_of(&nw.w, &format!("m{i}"))).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50);
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["network", "inspect", "many"])).unwrap();
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 50);
    // Every one of them really is on the wire.
    let (code, _) =
        nw.client("many", &ips.iter().map(|ip| format!("ping -c1 -W1 {ip}")).collect::<Vec<_>>().join(" && "));
    assert_eq!(code, 0);
    let names: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    nw.w.ok(&args);
    assert_eq!(lease_count(&nw.w, "many"), 0);
}

/// rcon killed (SIGKILL) at each point of an attach; once the namespace is
/// gone, `rcon gc` leaves the node exactly as before.
#[test]
fn gc_after_a_crash_leaves_the_node_as_before() {
    let mut nw = net_world("ng", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.60.0.0/24", "crashy"]);
    let before = nw.w.sh_in(nw.node(), "ip -o link | cut -d: -f2 | sort");
    for point in ["attach:recorded", "attach:leased", "endpoint:created", "attach:wired"] {
        let ns = unique("vg");
        nw.w.add_system_netns(&ns);
        let path = format!("/var/run/netns/{ns}");
        let out =
            nw.w.cmd(&["network", "attach", "--netns", &path, "crashy"]).env("RCON_FAULT", point).output().unwrap();
        assert_eq!(out.status.code(), None, "{point}: rcon should have been killed");
        // While the namespace lives, gc leaves its endpoint alone. Killed
        // between its lease and its record, an attach left only a lease.
        nw.w.ok(&["gc"]);
        // Killed between its record's creation and its write, an attach left an empty record, which
        // gc removes with the lease at once: nothing was made after it.
        let recorded = usize::from(point != "attach:leased" && point != "endpoint:created");
        assert_eq!(endpoint_count(&nw.w, "crashy"), recorded, "{point}: gc removed a live endpoint");
        assert_eq!(lease_count(&nw.w, "crashy"), recorded, "{point}: gc left an orphan lease or took a live one");
        sh(&format!("ip netns delete {ns}"));
        nw.w.system_netns.retain(|n| n != &ns);
        nw.w.ok(&["gc"]);
        assert_eq!(endpoint_count(&nw.w, "crashy"), 0, "{point}");
        wait_until("the node's links to be as before", || {
            nw.w.sh_in(nw.node(), "ip -o link | cut -d: -f2 | sort") == before
        });
        assert_eq!(lease_count(&nw.w, "crashy"), 0, "{point}: lease left");
    }
    // A crash before the kernel work of a stray veth (made by hand) is also found.
    nw.w.sh_in(nw.node(), "ip link add rv00000000aa type veth peer name rv00000000ab");
    let report = nw.w.ok(&["gc"]);
    assert!(report.contains("rv00000000aa") || report.contains("rv00000000ab"), "{report}");
    wait_until("the stray veth to go", || nw.w.sh_in(nw.node(), "ip -o link | cut -d: -f2 | sort") == before);
}

/// `rcon run` killed at each point of its way (before the runtime, mid
/// network attach, after it): gc removes the abandoned containers with
/// their overlay, name, cgroup, endpoint, lease and veth.
#[test]
fn gc_after_killed_runs_leaves_nothing() {
    let nw = net_world("nk", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.61.0.0/24", "killed"]);
    let links = || nw.w.sh_in(nw.node(), "ip -o link | cut -d: -f2 | sort");
    let before = links();
    let records = || std::fs::read_dir(nw.w.data_root.join("endpoints/killed")).map(|r| r.count()).unwrap_or(0);
    // Killed between its endpoint record's creation and its write: the user's `rm -f` alone takes the
    // container with its empty record and its lease (it used to fail on the record).
    let torn = ["run", "--name", "torn", "--network", "killed", "busybox", "true"];
    let out = nw.w.cmd(&torn).env("RCON_FAULT", "endpoint:created").output().unwrap();
    assert_eq!(out.status.code(), None, "rcon should have been killed");
    assert_eq!(records(), 1, "the killed attach left no record");
    nw.w.ok(&["rm", "-f", "torn"]);
    assert_eq!((records(), lease_count(&nw.w, "killed")), (0, 0), "rm -f left the record or the lease");
    for point in ["run:mounted", "attach:recorded", "attach:leased", "endpoint:created", "attach:wired"] {
        let out =
            nw.w.cmd(&["run", "--network", "killed", "busybox", "true"]).env("RCON_FAULT", point).output().unwrap();
        assert_eq!(out.status.code(), None, "{point}: rcon should have been killed");
    }
    let report = nw.w.ok(&["gc"]);
    assert_eq!(report.matches("removed container").count(), 5, "{report}");
    assert_eq!(records(), 0, "gc left an endpoint record");
    assert!(nw.w.containers().iter().all(|c| c.starts_with('.')), "state left: {:?}", nw.w.containers());
    assert_eq!(std::fs::read_dir(nw.w.data_root.join("containers")).map(|r| r.count()).unwrap_or(0), 0);
    assert_eq!(endpoint_count(&nw.w, "killed"), 0);
    assert_eq!(lease_count(&nw.w, "killed"), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(nw.w.data_root.to_str().unwrap()), "an overlay was left mounted");
    wait_until("the node's links to be as before", || links() == before);
    // gc again finds nothing, and leaves a live container alone.
    nw.w.ok(&["run", "-d", "--name", "alive", "--network", "killed", "busybox", "sleep", "1000"]);
    assert_eq!(nw.w.ok(&["gc"]).trim(), "");
    assert_eq!(endpoint_count(&nw.w, "killed"), 1);
    assert_eq!(lease_count(&nw.w, "killed"), 1);
}

fn endpoint_count(w: &World, net: &str) -> usize {
    inspected_len(w, net, "endpoints")
}

pub(crate) fn lease_count(w: &World, net: &str) -> usize {
    inspected_len(w, net, "leases")
}

/// The length of a list in `network inspect NET`.
fn inspected_len(w: &World, net: &str, list: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", net])).unwrap();
    v[list].as_array().unwrap_or_else(|| panic!("no {list} in {v}")).len()
}

/// Bad input: one clear line, and nothing changes.
#[test]
fn bad_network_input_changes_nothing() {
    let nw = net_world("nx", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.70.0.0/24", "taken"]);
    let snapshot = || {
        (
            nw.w.sh_in(nw.node(), "ip -o link | cut -d: -f2 | sort"),
            nw.w.sh_in(nw.node(), "nft list ruleset"),
            nw.w.ok(&["network", "ls"]),
        )
    };
    let before = snapshot();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["network", "create", "--subnet", "10.70.0.128/25", "overlap"], "overlaps"),
        (vec!["network", "create", "--subnet", "203.0.113.0/25", "onuplink"], "overlaps"),
        (vec!["network", "create", "--subnet", "10.71.0.0/24", "--gateway", "10.99.0.1", "gwout"], "outside"),
        (vec!["network", "create", "--bridge", "a-name-far-too-long-for-linux", "longbr"], "interface name"),
        (vec!["network", "create", "--subnet", "10.72.0.0/24", "taken"], "already exists"),
        (vec!["network", "create", "--driver", "vxlan", "nodriver"], "driver"),
        (vec!["run", "--rm", "--network", "nosuchnet", "busybox", "true"], "does not exist"),
        (vec!["run", "--rm", "--network", "taken", "--ip", "10.99.0.5", "busybox", "true"], "outside"),
        (vec!["run", "--rm", "--network", "taken", "--ip", "10.70.0.1", "busybox", "true"], "gateway"),
    ];
    for (args, want) in cases {
        let err = nw.w.fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A static address already taken.
    nw.w.ok(&["run", "-d", "--name", "holder", "--network", "taken", "--ip", "10.70.0.9", "busybox", "sleep", "1000"]);
    let err = nw.w.fails(&["run", "--rm", "--network", "taken", "--ip", "10.70.0.9", "busybox", "true"]);
    assert!(err.contains("10.70.0.9") && err.contains("leased"), "{err}");
    nw.w.ok(&["rm", "-f", "holder"]);
    wait_until("the node to be as before", || snapshot() == before);
    assert_eq!(std::fs::read_dir(nw.w.data_root.join("containers")).map(|r| r.count()).unwrap_or(0), 0);
}
