//! Bad input in etcd mode: one clear line each, and no change left behind
//! (no link, route or neighbour on the node, no cluster record, no
//! subnet.env, no lease in etcd). A lease value that is not JSON is skipped
//! by the agent, which keeps going.

use super::store::PREFIX;
use super::world::{etcd_cluster, EtcdCluster, CONFIG};

/// What a refused init must leave as it was: the node's kernel state, the
/// files in its rcon dirs (but the image store, and lock files: the cluster
/// lock's file stays once made, as the image store's does) and the leases
/// in etcd.
fn node_state(e: &EtcdCluster) -> (String, String, Vec<String>) {
    let w = &e.c.nodes[0];
    let files = crate::common::sh(&format!(
        "cd {} && find . -path ./images -prune -o ! -type d ! -name .lock -print | sort; \
         cd {} 2>/dev/null && find . ! -type d | sort || true",
        w.data_root.display(),
        w.root.display()
    ));
    (e.dataplane(0), files, e.leases())
}

/// Run `init` with `extra` (or exactly `args`), which must be refused with
/// one line containing `want` and change nothing. Returns what went wrong
/// (all cases run, so one failure shows every problem).
fn refused(e: &EtcdCluster, args: Vec<String>, want: &str) -> Vec<String> {
    let before = node_state(e);
    let out = e.c.nodes[0].rcon(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut bad = Vec::new();
    let case = args[args.iter().position(|a| a == "etcd").map_or(0, |i| i + 1)..].join(" ");
    if out.status.success() {
        bad.push(format!("{case}: succeeded"));
    }
    if err.trim_end().lines().count() != 1 || !err.starts_with("rcon: ") || !err.contains(want) {
        bad.push(format!("{case}: want one line `rcon: ...{want}...`, got {err:?}"));
    }
    let after = node_state(e);
    for (what, b, a) in [
        ("the kernel", &before.0, &after.0),
        ("the rcon dirs", &before.1, &after.1),
        ("the leases", &format!("{:?}", before.2), &format!("{:?}", after.2)),
    ] {
        if a != b {
            bad.push(format!("{case} ({}): changed {what}: before {b:?}, after {a:?}", err.trim()));
        }
    }
    bad
}

#[test]
fn bad_etcd_input_changes_nothing() {
    let e = etcd_cluster("eb", 1, false);
    let init = |extra: &[&str]| e.init_args(extra);
    let mut bad = Vec::new();
    // Nobody at that address (on the underlay, inside the world).
    let nobody: Vec<String> = ["cluster", "init", "--store", "etcd", "--underlay", "u0", "--etcd-endpoints"]
        .iter()
        .chain(&["http://192.168.77.99:2379"])
        .map(|s| s.to_string())
        .collect();
    bad.extend(refused(&e, nobody, "192.168.77.99:2379"));
    bad.extend(refused(&e, init(&[]), &format!("{PREFIX}/config")));
    let config = |json: &str| e.put_config(json);
    config(r#"{"Network":"10.244.0.0/16","#);
    bad.extend(refused(&e, init(&[]), &format!("{PREFIX}/config")));
    config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"gre"}}"#);
    bad.extend(refused(&e, init(&[]), "gre"));
    config(CONFIG);
    bad.extend(refused(&e, init(&["--public-ip", "10.9.9.9"]), "10.9.9.9"));
    // A /23 of /24s, both leased already.
    config(r#"{"Network":"10.244.0.0/23","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#);
    e.put_lease("10.244.0.0-24", "192.168.77.8", "0e:00:00:00:00:08", 600);
    e.put_lease("10.244.1.0-24", "192.168.77.9", "0e:00:00:00:00:09", 600);
    bad.extend(refused(&e, init(&[]), "10.244.0.0/23"));
    e.ctl(&["del", "--prefix", &format!("{PREFIX}/subnets/")]);
    // A subnet asked for that another node holds.
    config(CONFIG);
    e.put_lease("10.244.7.0-24", "192.168.77.7", "0e:00:00:00:00:07", 600);
    bad.extend(refused(&e, init(&["--node-subnet", "10.244.7.0/24"]), "10.244.7.0/24"));
    // Inside a cluster: a second init, and a peer declared by hand.
    e.init(0, &[]);
    bad.extend(refused(&e, init(&[]), "already in a cluster"));
    let add = ["node", "add", "x", "--underlay-ip", "192.168.77.9", "--subnet", "10.244.9.0/24"];
    bad.extend(refused(&e, add.map(String::from).into(), "etcd"));
    assert!(bad.is_empty(), "bad input:\n{}", bad.join("\n"));
}

/// A lease value that is not JSON: the agent logs `skipped KEY: ...`, and
/// the next good lease is added all the same.
#[test]
fn the_agent_skips_a_lease_that_is_not_json() {
    let mut e = etcd_cluster("ej", 1, false);
    e.put_config(CONFIG);
    e.init(0, &[]);
    e.start_agent(0, &[]);
    let before = e.dataplane(0);
    let m = e.agent(0).lines().len();
    let bad = e.free_octet(1, 77);
    let good = e.free_octet(1, bad.wrapping_add(1));
    e.ctl(&["put", &format!("{PREFIX}/subnets/10.244.{bad}.0-24"), "not json {"]);
    e.agent(0).wait_line(m, "the agent to skip the bad lease", |l| {
        l.starts_with(&format!("skipped {PREFIX}/subnets/10.244.{bad}.0-24: "))
            || l.starts_with(&format!("skipped 10.244.{bad}.0-24: "))
    });
    assert!(e.agent(0).alive());
    assert_eq!(e.dataplane(0), before, "a bad lease changed the data plane");
    e.put_lease(&format!("10.244.{good}.0-24"), "192.168.77.8", "0e:00:00:00:00:08", 600);
    let added = format!("added 10.244.{good}.0-24 via 192.168.77.8");
    e.agent(0).wait_line(m, "the agent to add the next lease", |l| l.starts_with(&added));
    assert!(e.has_route(0, &format!("10.244.{good}.0/24")));
}
