//! rcon's etcd cluster mode (docs/CLUSTER.md) against a real etcd that each
//! test starts in its own world: nodes lease subnets and their agents
//! program peers; a hand-made flannel node shares the store; etcd and the
//! agents fail (failures.rs); bad input changes nothing (badinput.rs); names
//! resolve across nodes (dns.rs); TLS with client certificates.

mod badinput;
mod dns;
mod failures;
mod flannel;
mod store;
mod world;

use store::PREFIX;
use world::{etcd_cluster, EtcdCluster, CONFIG};

/// The lease key's last part for a subnet: `10.244.1.0/24` → `10.244.1.0-24`.
fn key(subnet: &str) -> String {
    subnet.replace('/', "-")
}

/// Node `i`'s lease key name.
fn key_of(e: &EtcdCluster, i: usize) -> String {
    key(&e.subnet_of(i))
}

/// Wait until every node has a route to every other node's subnet.
fn wait_meshed(e: &EtcdCluster, nodes: &[usize]) {
    let subnets: Vec<String> = nodes.iter().map(|&i| e.subnet_of(i)).collect();
    for &i in nodes {
        for (&j, sub) in nodes.iter().zip(&subnets).filter(|(&j, _)| j != i) {
            crate::common::wait_until(&format!("node {i}'s route to node {j} ({sub})"), || e.has_route(i, sub));
        }
    }
}

/// Node `from`'s pods reach node `to`'s server (`Cluster::server`): a ping
/// and the 1 MB blob, byte for byte.
fn pods_exchange(e: &EtcdCluster, from: usize, to: usize, ip: &str) {
    let digest = e.c.nodes[to].ok(&["logs", "srv"]).split_whitespace().next().unwrap().to_string();
    let (ok, out) = e.c.client(from, &format!("ping -c2 -w5 {ip}"));
    assert!(ok, "node {from} -> node {to}: no ping: {out}");
    let (ok, out) = e.c.client(from, &format!("nc -w 5 {ip} 7001 | md5sum"));
    assert!(ok && out.starts_with(&digest), "node {from} -> node {to}: the 1 MB stream: {out} (want {digest})");
}

/// `cluster config set` writes flannel's config, and two nodes that init at
/// the same moment lease distinct subnets (values as flannel writes them,
/// 24 h TTL, flannel's subnet.env); their agents connect their pods.
#[test]
fn two_nodes_init_at_once_and_their_agents_connect_pods() {
    let mut e = etcd_cluster("ea", 2, false);
    let set = ["cluster", "config", "set", "--cidr", "10.244.0.0/16", "--backend", "vxlan", "--port", "8472"];
    let out = e.rcon(0, &set);
    assert!(out.status.success(), "config set: {}", String::from_utf8_lossy(&out.stderr));
    let stored: serde_json::Value =
        serde_json::from_str(e.ctl(&["get", "--print-value-only", &format!("{PREFIX}/config")]).trim()).unwrap();
    assert_eq!(stored["Network"], "10.244.0.0/16", "{stored}");
    assert_eq!(stored["Backend"]["Type"], "vxlan", "{stored}");
    let got = e.rcon(1, &["cluster", "config", "get"]);
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).expect("config get prints JSON");
    assert_eq!(got["Network"], "10.244.0.0/16");

    let args = e.init_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = std::sync::Barrier::new(2);
    let outs: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let (w, args, start) = (&e.c.nodes[i], &args, &start);
                s.spawn(move || {
                    start.wait();
                    w.ok(args)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert_eq!(out.lines().last(), Some("cluster"), "init prints the network name: {out}");
    }
    let subs = [e.subnet_of(0), e.subnet_of(1)];
    assert_ne!(subs[0], subs[1], "two nodes got one subnet");
    let mut keys = vec![key(&subs[0]), key(&subs[1])];
    keys.sort();
    assert_eq!(e.leases(), keys);
    for (i, sub) in subs.iter().enumerate() {
        let v = e.lease_value(&key(sub));
        assert_eq!(v["PublicIP"], e.c.ips[i].as_str(), "{v}");
        assert_eq!(v["BackendType"], "vxlan", "{v}");
        assert_eq!(v["BackendData"]["VtepMAC"], e.inspect(i)["vtep_mac"], "{v}");
        assert_eq!(e.granted_ttl(&key(sub)), 24 * 3600, "the default lease TTL");
        let env = std::fs::read_to_string(e.c.nodes[i].root.join(".cluster/subnet.env")).expect("subnet.env");
        let gw = sub.replace(".0/", ".1/");
        for want in ["FLANNEL_NETWORK=10.244.0.0/16", &format!("FLANNEL_SUBNET={gw}"), "FLANNEL_MTU=1450"] {
            assert!(env.lines().any(|l| l == want), "subnet.env lacks {want}: {env}");
        }
        assert!(env.lines().any(|l| l == "FLANNEL_IPMASQ=true"), "{env}");
    }

    e.start_agent(0, &[]);
    e.start_agent(1, &[]);
    wait_meshed(&e, &[0, 1]);
    let ip = e.c.server(0);
    pods_exchange(&e, 1, 0, &ip);
    e.c.nodes[0].ok(&["rm", "-f", "srv"]);
    let ip = e.c.server(1);
    pods_exchange(&e, 0, 1, &ip);
    e.c.nodes[1].ok(&["rm", "-f", "srv"]);

    // Node 1 leaves: its lease is revoked, node 0 drops it, node 1's agent stops.
    let m = e.agent(0).lines().len();
    e.c.nodes[1].ok(&["cluster", "reset", "-f"]);
    let removed = format!("removed {}", key(&subs[1]));
    e.agent(0).wait_line(m, "node 0's agent to drop node 1", |l| l == removed);
    assert!(!e.has_route(0, &subs[1]), "node 0 kept node 1's route: {}", e.agent(0).log());
    assert_eq!(e.leases(), [key(&subs[0])]);
    crate::common::wait_until("node 1's agent to stop after the reset", || !e.agent(1).alive());
}

/// A flannel node made by hand shares the store with two rcon nodes: the
/// agents program it from its lease (its own random MAC), it programs them
/// from theirs, and the pods reach each other both ways.
#[test]
fn flannel_node_and_rcon_pods_reach_each_other() {
    let mut e = etcd_cluster("ef", 2, false);
    e.put_config(CONFIG);
    e.init(0, &["--node-subnet", "10.244.5.0/24"]);
    assert_eq!(e.subnet_of(0), "10.244.5.0/24", "--node-subnet was not honoured");
    e.init(1, &[]);
    e.start_agent(0, &[]);
    e.start_agent(1, &[]);
    let f = e.flannel();
    f.lease(&e.etcd, 600);
    f.program_peers(&e.etcd);
    for i in 0..2 {
        let line = format!("added {} via {} ({})", f.key_name(), f.ip, f.mac);
        let a = e.agent(i);
        a.wait_line(0, &format!("node {i}'s agent to add the flannel node"), |l| l == line);
        let neigh = e.c.node_sh(i, "ip neigh show nud permanent");
        let dev = format!("{} dev", f.subnet.trim_end_matches("/24"));
        let entry = |l: &str| l.starts_with(&dev) && l.contains(&f.mac);
        assert!(neigh.lines().any(entry), "node {i}: no neighbour entry with the flannel node's MAC: {neigh}");
    }
    let ips: Vec<String> = (0..2).map(|i| e.c.sleeper(i)).collect();
    for (i, ip) in ips.iter().enumerate() {
        assert!(f.pod_reaches(ip), "flannel pod -> node {i}'s pod {ip}");
        assert!(e.c.reaches(i, &f.pod_ip), "node {i}'s pod -> flannel pod");
    }
    for w in &e.c.nodes {
        w.ok(&["rm", "-f", "srv"]);
    }
}

/// etcd with client certificates: init (with `--etcd-*file`), `config get`
/// (from the environment) and the agents (with what init recorded) work;
/// a client without a certificate is refused with one clear line and
/// leaves nothing behind. Names resolve across nodes over TLS too.
#[test]
fn tls_with_client_certificates() {
    let mut e = etcd_cluster("et", 2, true);
    e.put_config(CONFIG);
    let tls = e.etcd.tls.as_ref().unwrap();
    let (ca, cert, key) =
        (tls.ca.display().to_string(), tls.client_cert.display().to_string(), tls.client_key.display().to_string());
    let out = e.c.nodes[1]
        .cmd(&["cluster", "config", "get"])
        .env("RCON_ETCD_ENDPOINTS", e.etcd.endpoint())
        .env("RCON_ETCD_CAFILE", &ca)
        .env("RCON_ETCD_CERTFILE", &cert)
        .env("RCON_ETCD_KEYFILE", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "config get over TLS: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.244.0.0/16"));

    // No client certificate: refused with one line, nothing left behind.
    // Whether the line says why is checked last, so that the rest runs.
    let before = e.dataplane(1);
    let endpoint = e.etcd.endpoint();
    let no_cert =
        ["cluster", "init", "--store", "etcd", "--underlay", "u0", "--etcd-endpoints", &endpoint, "--etcd-cafile", &ca];
    let mut unclear = Vec::new();
    let err = e.c.nodes[1].fails(&no_cert);
    unclear.extend((!err.to_lowercase().contains("certificate")).then_some(err));
    assert_eq!(e.dataplane(1), before);
    assert!(e.c.nodes[1].fails(&["cluster", "inspect"]).contains("in no cluster"));
    assert!(!e.c.nodes[1].root.join(".cluster/subnet.env").exists());
    assert_eq!(e.leases(), Vec::<String>::new());
    let err = e.c.nodes[1].fails(&["cluster", "config", "get", "--etcd-endpoints", &endpoint, "--etcd-cafile", &ca]);
    unclear.extend((!err.to_lowercase().contains("certificate")).then_some(err));

    e.init(0, &[]);
    e.start_agent(0, &[]);
    e.init(1, &[]);
    let sub1 = key_of(&e, 1);
    e.agent(0).wait_line(0, "node 0's agent to add node 1 over TLS", |l| l.starts_with(&format!("added {sub1} via ")));
    e.start_agent(1, &[]);
    wait_meshed(&e, &[0, 1]);
    let ip = e.c.sleeper(0);
    assert!(e.c.reaches(1, &ip), "node 1's pod -> node 0's pod");
    // The resolvers reach etcd over TLS too, with what init recorded.
    dns::wait_resolves(&e, 1, "srv", &[&ip]);
    e.c.nodes[0].ok(&["rm", "-f", "srv"]);
    assert!(unclear.is_empty(), "a refused client certificate, told as something else: {unclear:?}");
}
