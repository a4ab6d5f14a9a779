//! What fails in an etcd cluster and what must hold meanwhile: etcd killed
//! (the data plane stays, the agent catches up once it is back), leases
//! deleted (by etcdctl, by `node rm`, or the node's own), an agent stopped
//! (its short lease expires and the others drop it), an agent restarted
//! (nothing changes), a node reinstalled (it gets its subnet back).

use nix::sys::signal::Signal;

use super::store::PREFIX;
use super::world::{etcd_cluster, EtcdCluster, CONFIG};
use super::{key, key_of, wait_meshed};

/// `n` nodes with the default config, each inited (with `extra`) and
/// running its agent, meshed.
pub(super) fn running(tag: &str, n: usize, extra: &[&str]) -> EtcdCluster {
    let mut e = etcd_cluster(tag, n, false);
    e.put_config(CONFIG);
    for i in 0..n {
        e.init(i, extra);
    }
    for i in 0..n {
        e.start_agent(i, &[]);
    }
    wait_meshed(&e, &(0..n).collect::<Vec<_>>());
    e
}

/// etcd killed: the agents live on and the pods keep talking. etcd back:
/// a lease put afterwards reaches both agents and their data planes.
#[test]
fn etcd_down_traffic_flows_and_the_agents_catch_up() {
    let mut e = running("ek", 2, &[]);
    let ip = e.c.sleeper(0);
    assert!(e.c.reaches(1, &ip), "no ping before etcd went down");
    e.etcd.stop();
    assert!(e.c.reaches(1, &ip), "no ping while etcd is down");
    for i in 0..2 {
        assert!(e.agent(i).alive(), "node {i}'s agent died with etcd: {}", e.agent(i).log());
    }
    let marks: Vec<usize> = (0..2).map(|i| e.agent(i).lines().len()).collect();
    e.etcd.start();
    let o = e.free_octet(2, 99);
    e.put_lease(&format!("10.244.{o}.0-24"), "192.168.77.9", "0e:00:00:00:00:99", 600);
    let added = format!("added 10.244.{o}.0-24 via 192.168.77.9");
    for (i, &m) in marks.iter().enumerate() {
        e.agent(i).wait_line(m, &format!("node {i}'s agent to add the lease put after the restart"), |l| {
            l.starts_with(&added)
        });
        assert!(e.has_route(i, &format!("10.244.{o}.0/24")), "node {i}: no route for the new lease");
    }
    assert!(e.c.reaches(1, &ip), "no ping after etcd came back");
    e.c.nodes[0].ok(&["rm", "-f", "srv"]);
}

/// Three nodes, node 2 without an agent. Its lease deleted with etcdctl:
/// the other two drop its route, FDB and neighbour entries. A lease removed
/// with `node rm` (by subnet) goes the same way. A node's own lease
/// deleted: its agent acquires one again and says so, and the others learn it.
#[test]
fn deleted_leases_leave_every_node() {
    let mut e = etcd_cluster("ed", 3, false);
    e.put_config(CONFIG);
    for i in 0..3 {
        e.init(i, &[]);
    }
    e.start_agent(0, &[]);
    e.start_agent(1, &[]);
    wait_meshed(&e, &[0, 1, 2]);
    let ls = e.c.nodes[0].ok(&["node", "ls"]);
    let head = ls.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(head, ["SUBNET", "PUBLIC", "IP", "BACKEND", "VTEP", "MAC", "TTL"], "{ls}");
    assert_eq!(ls.lines().count(), 4, "{ls}");
    let own = e.subnet_of(0);
    assert!(ls.lines().any(|l| l.starts_with(&own) && l.contains("(this node)")), "{ls}");

    let sub2 = e.subnet_of(2);
    let ip2 = e.c.ips[2].clone();
    let marks: Vec<usize> = (0..2).map(|i| e.agent(i).lines().len()).collect();
    e.ctl(&["del", &format!("{PREFIX}/subnets/{}", key(&sub2))]);
    for (i, &m) in marks.iter().enumerate() {
        let removed = format!("removed {}", key(&sub2));
        e.agent(i).wait_line(m, &format!("node {i}'s agent to remove node 2"), |l| l == removed);
        crate::common::wait_until(&format!("node {i}'s entries for node 2 to go"), || {
            let fdb = e.c.node_sh(i, "bridge fdb show");
            let neigh = e.c.node_sh(i, "ip neigh show nud permanent");
            !e.has_route(i, &sub2) && !fdb.contains(&ip2) && !neigh.contains(&sub2.replace("/24", ""))
        });
    }

    // `node rm SUBNET` on node 1 deletes a lease for every node.
    let o = e.free_octet(2, 98);
    let (key, sub) = (format!("10.244.{o}.0-24"), format!("10.244.{o}.0/24"));
    e.put_lease(&key, "192.168.77.8", "0e:00:00:00:00:98", 600);
    crate::common::wait_until("node 0 to add the lease", || e.has_route(0, &sub));
    e.c.nodes[1].ok(&["node", "rm", &sub]);
    assert!(!e.leases().contains(&key), "node rm left the lease");
    for i in 0..2 {
        crate::common::wait_until(&format!("node {i} to drop {sub}"), || !e.has_route(i, &sub));
    }

    // Node 1's own lease deleted: it acquires one again.
    let own1 = key_of(&e, 1);
    let m = e.agent(1).lines().len();
    e.ctl(&["del", &format!("{PREFIX}/subnets/{own1}")]);
    let lost = format!("lease of {own1} was lost: acquired it again");
    e.agent(1).wait_line(m, "node 1's agent to acquire its lease again", |l| l == lost);
    crate::common::wait_until("node 1's lease to be back in the store", || e.leases().len() == 2);
    wait_meshed(&e, &[0, 1]);
}

/// An agent killed on a node whose lease has a 3 s TTL: while it ran the
/// lease lived on past its TTL (renewed); once dead, the lease expires and
/// the other node drops its entries. The dead agent's node keeps its own.
#[test]
fn a_stopped_agent_lease_expires_and_peers_drop_it() {
    let mut e = running("es", 2, &["--lease-ttl", "3s"]);
    let sub1 = e.subnet_of(1);
    assert_eq!(e.granted_ttl(&key(&sub1)), 3);
    // Longer than the TTL: only renewals keep it.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(e.leases().len(), 2, "a lease expired while its agent ran: {}", e.agent(1).log());
    let node1_before = e.dataplane(1);
    let m = e.agent(0).lines().len();
    e.agents[1].take().unwrap().stop(Signal::SIGKILL);
    let removed = format!("removed {}", key(&sub1));
    e.agent(0).wait_line(m, "node 0's agent to drop the expired lease", |l| l == removed);
    crate::common::wait_until("node 0 to drop node 1's route", || !e.has_route(0, &sub1));
    assert_eq!(e.leases(), [key_of(&e, 0)]);
    assert_eq!(e.dataplane(1), node1_before, "a killed agent tore something down");
}

/// An agent stopped (SIGTERM) and started again: nothing changes on its
/// node, before or after, it reports no change and keeps its lease; the
/// pods still reach each other.
#[test]
fn a_restarted_agent_changes_nothing() {
    let mut e = running("er", 2, &[]);
    let ip = e.c.sleeper(1);
    let lease_key = format!("{PREFIX}/subnets/{}", key_of(&e, 0));
    let lease_of = |e: &EtcdCluster| {
        let kv: serde_json::Value = serde_json::from_str(&e.ctl(&["get", "-w", "json", &lease_key])).unwrap();
        kv["kvs"][0]["lease"].clone()
    };
    let (before, lease) = (e.dataplane(0), lease_of(&e));
    e.agents[0].take().unwrap().stop(Signal::SIGTERM);
    assert_eq!(e.dataplane(0), before, "a stopped agent tore something down");
    e.start_agent(0, &[]);
    let lines = e.agent(0).lines();
    assert!(
        lines.iter().all(|l| !["added ", "removed ", "changed ", "lease of "].iter().any(|p| l.starts_with(p))),
        "the restarted agent changed something: {lines:?}"
    );
    assert_eq!(e.dataplane(0), before, "the restarted agent changed the data plane");
    assert_eq!(lease_of(&e), lease, "the restarted agent took another lease");
    assert!(e.c.reaches(0, &ip), "no ping after the agent restarted");
    e.c.nodes[1].ok(&["rm", "-f", "srv"]);
}

/// A node that comes back with nothing of its own (a reinstall: its records
/// and devices gone) gets its old subnet back while its lease lives: init
/// finds the lease with its public IP and takes it over, and the old etcd
/// lease goes with it.
#[test]
fn a_reinstalled_node_gets_its_subnet_back() {
    let e = etcd_cluster("ei", 1, false);
    e.put_config(CONFIG);
    e.init(0, &[]);
    let before = e.subnet_of(0);
    let old_lease = e.inspect(0)["store"]["lease"].as_i64().unwrap();
    let w = &e.c.nodes[0];
    e.c.node_sh(0, "ip link del rcon-cluster && ip link del rcon-vx1");
    // A reinstall is a reboot too: the old install's processes (its DNS resolver, still bound to the
    // gateway's address) are gone with its links.
    crate::common::stop_resolver(&w.root);
    for d in [&w.data_root, &w.root] {
        std::fs::remove_dir_all(d).unwrap();
    }
    e.init(0, &[]);
    assert_eq!(e.subnet_of(0), before, "the reinstalled node got another subnet");
    assert_eq!(e.leases(), [key(&before)], "one lease, the node's own");
    let leases = e.ctl(&["lease", "list"]);
    assert!(!leases.contains(&format!("{old_lease:x}")), "the old etcd lease {old_lease:x} is still granted: {leases}");
    assert_ne!(e.inspect(0)["store"]["lease"].as_i64().unwrap(), old_lease);
}
