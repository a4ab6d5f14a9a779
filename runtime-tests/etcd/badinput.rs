//! Bad input in etcd mode: one clear line each, and no change left behind
//! (no link, route or neighbour on the node, no cluster record, no
//! subnet.env, no lease in etcd). A lease value that is not JSON is skipped
//! by the agent, which keeps going.

use super::store::PREFIX;
use super::world::{etcd_cluster, EtcdCluster, CONFIG};

/// What a refused init must leave as it was.
fn node_state(e: &EtcdCluster) -> (String, usize, Vec<String>) {
    let files = std::fs::read_dir(&e.c.nodes[0].data_root).map(|r| r.count()).unwrap_or(0);
    (e.dataplane(0), files, e.leases())
}

/// `init` with `extra` is refused with one line containing `want`, and changes nothing.
fn refused(e: &EtcdCluster, extra: &[&str], want: &str) {
    let before = node_state(e);
    let args = e.init_args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = e.c.nodes[0].fails(&args);
    assert!(err.contains(want), "{extra:?}: {err}");
    assert!(err.starts_with("rcon: "), "{err}");
    assert_eq!(node_state(e), before, "{extra:?}: the refused init changed something ({err})");
    assert!(!e.c.nodes[0].root.join(".cluster/subnet.env").exists(), "{extra:?}: subnet.env left");
}

#[test]
fn bad_etcd_input_changes_nothing() {
    let e = etcd_cluster("eb", 1, false);
    let w = &e.c.nodes[0];
    // Nobody at that address (on the underlay, inside the world).
    let before = node_state(&e);
    let nobody = "http://192.168.77.99:2379";
    let err = w.fails(&["cluster", "init", "--store", "etcd", "--underlay", "u0", "--etcd-endpoints", nobody]);
    assert!(err.contains("192.168.77.99:2379"), "{err}");
    assert_eq!(node_state(&e), before, "an init without etcd changed something ({err})");
    assert!(w.fails(&["cluster", "inspect"]).contains("in no cluster"));
    refused(&e, &[], &format!("{PREFIX}/config"));
    let config = |json: &str| e.put_config(json);
    config(r#"{"Network":"10.244.0.0/16","#);
    refused(&e, &[], &format!("{PREFIX}/config"));
    config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"gre"}}"#);
    refused(&e, &[], "gre");
    config(CONFIG);
    refused(&e, &["--public-ip", "10.9.9.9"], "10.9.9.9");
    // A /23 of /24s, both leased already.
    config(r#"{"Network":"10.244.0.0/23","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#);
    e.put_lease("10.244.0.0-24", "192.168.77.8", "0e:00:00:00:00:08", 600);
    e.put_lease("10.244.1.0-24", "192.168.77.9", "0e:00:00:00:00:09", 600);
    refused(&e, &[], "10.244.0.0/23");
    e.ctl(&["del", "--prefix", &format!("{PREFIX}/subnets/")]);
    // Inside a cluster: a second init.
    config(CONFIG);
    e.init(0, &[]);
    refused(&e, &[], "already in a cluster");
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
    e.ctl(&["put", &format!("{PREFIX}/subnets/10.244.77.0-24"), "not json {"]);
    e.agent(0).wait_line(m, "the agent to skip the bad lease", |l| {
        l.starts_with(&format!("skipped {PREFIX}/subnets/10.244.77.0-24: "))
            || l.starts_with("skipped 10.244.77.0-24: ")
    });
    assert!(e.agent(0).alive());
    assert_eq!(e.dataplane(0), before, "a bad lease changed the data plane");
    e.put_lease("10.244.78.0-24", "192.168.77.8", "0e:00:00:00:00:08", 600);
    e.agent(0)
        .wait_line(m, "the agent to add the next lease", |l| l.starts_with("added 10.244.78.0-24 via 192.168.77.8"));
    assert!(e.has_route(0, "10.244.78.0/24"));
}
