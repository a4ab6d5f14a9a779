//! Names across nodes (docs/DNS.md "Across nodes"): two etcd-mode nodes,
//! whose resolvers publish their cluster network's names under
//! `<prefix>/rcon/dns/` and watch each other's.

use super::failures::running;
use super::key_of;
use super::store::PREFIX;
use super::world::EtcdCluster;
use crate::common::{resolver_pid, wait_until};
use crate::dns::{addresses_in, nslookup};
use crate::network::{ip_of, server_on};

/// What `name` resolves to from a container on node `i`'s cluster network (empty: it does not).
fn resolves_on(e: &EtcdCluster, i: usize, name: &str) -> Vec<String> {
    addresses_in(&lookup_on(e, i, name), name)
}

/// nslookup's output for `name` from a container on node `i`'s cluster network.
fn lookup_on(e: &EtcdCluster, i: usize, name: &str) -> String {
    e.c.client(i, &nslookup(name)).1
}

/// Wait until `name` resolves on node `i` to exactly `want` (in any order).
pub(super) fn wait_resolves(e: &EtcdCluster, i: usize, name: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut last = Vec::new();
    wait_until(&format!("{name} to resolve to {want:?} on node {i}"), || {
        last = resolves_on(e, i, name);
        last.sort();
        last == want
    });
}

/// Wait until `name` is NXDOMAIN on node `i`.
fn wait_nxdomain(e: &EtcdCluster, i: usize, name: &str) {
    wait_until(&format!("{name} to be NXDOMAIN on node {i}"), || lookup_on(e, i, name).contains("NXDOMAIN"));
}

/// The names key of node `i`.
fn names_key(e: &EtcdCluster, i: usize) -> String {
    format!("{PREFIX}/rcon/dns/{}", key_of(e, i))
}

/// The value of `key` parsed (None: no such key).
fn names_at(e: &EtcdCluster, key: &str) -> Option<serde_json::Value> {
    let v = e.ctl(&["get", "--print-value-only", key]);
    (!v.trim().is_empty()).then(|| serde_json::from_str(v.trim()).unwrap_or_else(|err| panic!("{key}: {err}: {v}")))
}

/// Node `i`'s resolver log.
fn resolver_log(e: &EtcdCluster, i: usize) -> String {
    std::fs::read_to_string(e.c.nodes[i].root.join(".dns/log")).unwrap_or_default()
}

/// The pid of node `i`'s resolver worker (the supervisor's child).
fn worker_of(e: &EtcdCluster, i: usize) -> i32 {
    let sup = resolver_pid(&e.c.nodes[i].root).expect("a recorded resolver");
    let kids = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).unwrap_or_default();
    kids.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// A container, a pod and an alias of node 0 resolve on node 1 and bytes
/// go by name end to end; a name on both nodes answers with both
/// addresses, and PTR too. The key holds the names; a record put by hand
/// resolves and a malformed one is skipped with a line in the log. A name
/// removed on node 0 goes from node 1 once the watch brings it; a killed
/// resolver publishes again; etcd away: the names last seen still answer,
/// and one added meanwhile arrives when etcd is back. A resolver that
/// stops withdraws its names, and `cluster reset` leaves no key of the
/// node.
#[test]
fn names_resolve_across_nodes() {
    let mut e = running("en", 2, &[]);
    let inspect = e.c.nodes[0].ok(&["network", "inspect", "cluster"]);
    assert!(inspect.contains("\"dns\": true"), "the cluster network has DNS: {inspect}");

    let web = server_on(&e.c.nodes[0], "web", "cluster", &["--network-alias", "www"]);
    e.c.nodes[0].ok(&["pod", "create", "--name", "pod1", "--network", "cluster"]);
    let twin0 = server_on(&e.c.nodes[0], "twin", "cluster", &[]);
    let twin1 = server_on(&e.c.nodes[1], "twin", "cluster", &[]);

    // The key of node 0 holds its names.
    let key0 = names_key(&e, 0);
    let mut v = None;
    wait_until("node 0's names in etcd", || {
        v = names_at(&e, &key0);
        v.as_ref().is_some_and(|v| v["names"]["pod1"].is_array())
    });
    let v = v.unwrap();
    assert_eq!(v["names"]["web"], serde_json::json!([web]), "{v}");
    assert_eq!(v["names"]["www"], serde_json::json!([web]), "{v}");
    let pod1 = v["names"]["pod1"][0].as_str().unwrap().to_string();

    // Node 1 resolves them and reaches web by name.
    wait_resolves(&e, 1, "web", &[&web]);
    wait_resolves(&e, 1, "www", &[&web]);
    wait_resolves(&e, 1, "pod1", &[&pod1]);
    let (ok, out) = e.c.client(1, "nc -w 3 web 7000");
    assert!(ok && out == "from-web\n", "node 1 -> web by name: {out}");
    wait_resolves(&e, 1, "twin", &[&twin0, &twin1]);
    wait_resolves(&e, 0, "twin", &[&twin0, &twin1]);
    let rev = lookup_on(&e, 1, &web);
    assert!(rev.contains("name = web"), "PTR of node 0's address on node 1: {rev}");

    // Another tool's record resolves; a malformed one is skipped with a line, and nothing breaks.
    let worker = worker_of(&e, 1);
    // (Keys named apart from any lease name: the nodes' subnets are picked at random.)
    e.ctl(&["put", &format!("{PREFIX}/rcon/dns/tool-a"), r#"{"names":{"other":["192.0.2.7"]}}"#]);
    e.ctl(&["put", &format!("{PREFIX}/rcon/dns/tool-b"), "garbage"]);
    wait_resolves(&e, 1, "other", &["192.0.2.7"]);
    wait_until("the skipped record in node 1's log", || {
        resolver_log(&e, 1).contains("skipped tool-b: not a names record")
    });
    assert_eq!(worker_of(&e, 1), worker, "node 1's resolver restarted: {}", resolver_log(&e, 1));
    assert_eq!(resolves_on(&e, 1, "web"), [web.as_str()]);

    // rm on node 0: NXDOMAIN there at once, on node 1 once the watch brings it.
    e.c.nodes[0].ok(&["rm", "-f", "web"]);
    assert!(lookup_on(&e, 0, "web").contains("NXDOMAIN"));
    wait_nxdomain(&e, 1, "web");
    wait_nxdomain(&e, 1, "www");
    assert_eq!(names_at(&e, &key0).unwrap()["names"].get("web"), None);

    // A killed resolver: the new one publishes again (here: a key deleted by hand comes back).
    let old = worker_of(&e, 0);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("node 0's new resolver", || ![0, old].contains(&worker_of(&e, 0)));
    e.ctl(&["del", &key0]);
    wait_until("node 0's names published again", || names_at(&e, &key0).is_some_and(|v| v["names"]["pod1"].is_array()));

    // etcd away: node 1 still answers node 0's names; a name made meanwhile arrives when it is back.
    e.etcd.stop();
    assert_eq!(resolves_on(&e, 1, "pod1"), [pod1.as_str()], "{}", resolver_log(&e, 1));
    let late = ip_of_new(&e, 0, "late");
    assert!(lookup_on(&e, 1, "late").contains("NXDOMAIN"));
    e.etcd.start();
    wait_resolves(&e, 1, "late", &[&late]);
    let log = resolver_log(&e, 0);
    let said = |what: &str| log.lines().any(|l| l.contains(what));
    assert!(said("publishing the names of network cluster at /coreos.com/network/rcon/dns/"), "{log}");
    assert!(said("retrying with backoff") && said("etcd answers again"), "{log}");

    // A resolver that stops withdraws its names before the command returns (not at the TTL).
    let key1 = names_key(&e, 1);
    assert!(names_at(&e, &key1).is_some_and(|v| v["names"]["twin"].is_array()));
    e.c.nodes[1].ok(&["network", "update", "--disable-dns", "cluster"]);
    assert_eq!(resolver_pid(&e.c.nodes[1].root), None, "node 1's resolver runs on");
    assert_eq!(names_at(&e, &key1), None, "node 1's names stayed after its resolver stopped");
    e.c.nodes[1].ok(&["network", "update", "--dns", "cluster"]);
    wait_until("node 1's names back", || names_at(&e, &key1).is_some_and(|v| v["names"]["twin"].is_array()));

    // Node 0 leaves: its key is gone and node 1 forgets its names.
    for (i, name) in [(0, "late"), (0, "twin"), (1, "twin")] {
        e.c.nodes[i].ok(&["rm", "-f", name]);
    }
    e.c.nodes[0].ok(&["pod", "rm", "-f", "pod1"]);
    e.c.nodes[0].ok(&["cluster", "reset", "-f"]);
    let left: Vec<String> =
        e.etcd.get_prefix(&e.etcd.ns, &format!("{PREFIX}/rcon/dns/")).into_iter().map(|(k, _)| k).collect();
    assert!(!left.contains(&key0), "node 0's names key stayed after reset: {left:?}");
    wait_nxdomain(&e, 1, "pod1");
}

/// A sleeping container `name` on node `i`'s cluster network; its address.
fn ip_of_new(e: &EtcdCluster, i: usize, name: &str) -> String {
    e.c.nodes[i].ok(&["run", "-d", "--name", name, "--network", "cluster", "busybox", "sleep", "1000"]);
    ip_of(&e.c.nodes[i], name)
}
