//! rcon's etcd cluster mode (docs/CLUSTER.md) against a real etcd that each
//! test starts in its own world: nodes lease subnets and their agents
//! program peers; a hand-made flannel node shares the store; etcd and the
//! agents fail; bad input changes nothing; TLS with client certificates.

mod flannel;
mod store;
mod world;

use world::etcd_cluster;

/// Phase-1 check of the harness itself: etcd answers etcdctl from a node
/// and from its own namespace, refuses a client without a certificate,
/// keeps its keys over a kill and a restart, and a flannel node leases.
#[test]
fn harness_smoke() {
    let mut e = etcd_cluster("eh", 1, true);
    let node = e.c.nodes[0].node.clone().unwrap();
    e.etcd.ctl_ok(&node, &["put", "/k", "v"]);
    assert_eq!(e.ctl(&["get", "--print-value-only", "/k"]).trim(), "v");
    let ca = e.etcd.tls.as_ref().unwrap().ca.display().to_string();
    let out = e.etcd.ctl_raw(&node, &["--cacert", &ca, "get", "/k"]);
    assert!(!out.status.success(), "a client without a certificate was let in");
    eprintln!("refused: {}", String::from_utf8_lossy(&out.stderr));
    e.etcd.stop();
    assert!(!e.etcd.ctl(&node, &["get", "/k"]).status.success());
    e.etcd.start();
    assert_eq!(e.ctl(&["get", "--print-value-only", "/k"]).trim(), "v");
    let f = e.flannel();
    f.lease(&e.etcd, 60);
    assert_eq!(e.leases(), ["10.244.200.0-24"]);
    let fake =
        r#"{"PublicIP":"192.168.77.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:52:c0:a8:4d:01"}}"#;
    e.ctl(&["put", "/coreos.com/network/subnets/10.244.1.0-24", fake]);
    f.program_peers(&e.etcd);
    // Static rcon vxlan on flannel's port, told the flannel node's MAC: pods reach each other.
    e.c.nodes[0].ok(&[
        "cluster",
        "init",
        "--cidr",
        "10.244.0.0/16",
        "--node-subnet",
        "10.244.1.0/24",
        "--backend",
        "vxlan",
        "--port",
        "8472",
        "--underlay",
        "u0",
    ]);
    e.c.nodes[0].ok(&["node", "add", "f", "--underlay-ip", &f.ip, "--subnet", &f.subnet, "--vtep-mac", &f.mac]);
    let ip = e.c.sleeper(0);
    assert!(f.pod_reaches(&ip), "flannel pod -> rcon pod");
    assert!(e.c.reaches(0, &f.pod_ip), "rcon pod -> flannel pod");
    e.c.nodes[0].ok(&["rm", "-f", "srv"]);
}
