//! One bad record fails alone (issue 17 part 3). For each kind of record
//! (network, endpoint, lease, container, pod, service, cluster peer), the
//! file is torn or emptied as a crash or a full disk leaves it. Then: its
//! listing still works, shows it broken and warns once naming its path; an
//! unrelated command works with real packets; a command that needs it
//! fails with one line naming the path; gc removes a real leftover (a stray
//! rcon veth, as a killed attach leaves) and fails with the summary; and
//! nothing the broken record may own is gone.

use std::path::{Path, PathBuf};

use crate::common::World;
use crate::network::{ip_of, net_world, NetWorld};

/// What a crash mid-write leaves of a network record.
const TORN: &str = r#"{"name": "net1", "subn"#;

/// A record broken on disk for the test's span; put back on drop, so that
/// the world's teardown finds what it has to remove.
struct Broken {
    path: PathBuf,
    was: Vec<u8>,
}

impl Broken {
    fn with(path: PathBuf, content: &str) -> Broken {
        let was = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::write(&path, content).unwrap();
        Broken { path, was }
    }

    fn p(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for Broken {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.was);
    }
}

/// The listing succeeds, prints a row for `name` marked broken and one
/// warning line naming `path`; returns stdout.
fn listed_broken(w: &World, args: &[&str], name: &str, path: &str) -> String {
    let out = w.rcon(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rcon {args:?} failed: {stderr}");
    assert!(stdout.lines().any(|l| l.contains(name) && l.contains("broken")), "{args:?}: no broken row: {stdout}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(path)).collect();
    assert_eq!(warnings.len(), 1, "{args:?}: not one warning naming {path}: {stderr}");
    assert!(warnings[0].contains("is unreadable"), "{stderr}");
    stdout.into_owned()
}

/// A command that needs the record: one line naming its path.
fn needs_it(w: &World, args: &[&str], path: &str) {
    let err = w.fails(args);
    assert!(err.contains(path) && err.contains("is unreadable"), "{args:?}: {err}");
}

/// A stray veth of rcon's naming in the node, as a killed attach leaves it.
const STRAY: &str = "rv00000000aa";

/// gc removes the stray veth, then fails with one summary line naming `path`.
fn gc_goes_on(nw: &NetWorld, path: &str) {
    nw.w.sh_in(nw.node(), &format!("ip link add {STRAY} type veth peer name rv00000000ab"));
    let out = nw.w.rcon(&["gc"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "gc succeeded with a broken record: {stdout}");
    assert!(stdout.contains("removed link rv00000000a"), "gc did not go on with the rest: {stdout}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "gc's summary is not one line: {stderr}");
    assert!(stderr.contains("gc: 1 record could not be read") && stderr.contains(path), "{stderr}");
    assert!(!link_exists(nw, STRAY) && !link_exists(nw, "rv00000000ab"), "the stray veth is still there");
}

/// Whether the node has a link `name` (`ip -o link` prints `N: name:` or `N: name@peer:`).
fn link_exists(nw: &NetWorld, name: &str) -> bool {
    let links = nw.w.sh_in(nw.node(), "ip -o link");
    links.contains(&format!(" {name}@")) || links.contains(&format!(" {name}:"))
}

/// The node-side veth of a container's first interface.
fn host_veth(w: &World, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", name])).unwrap();
    v["networks"][0]["host_interface"].as_str().unwrap().to_string()
}

fn pings(nw: &NetWorld, net: &str, ip: &str) -> bool {
    nw.client(net, &format!("ping -c1 -W3 {ip}")).0 == 0
}

fn sleeper(w: &World, name: &str, net: &str) {
    w.ok(&["run", "-d", "--name", name, "--network", net, "busybox", "sleep", "1000"]);
}

#[test]
fn a_torn_network_record_fails_alone() {
    let nw = net_world("rn", "nftables");
    let w = &nw.w;
    w.ok(&["network", "create", "--subnet", "10.70.0.0/24", "net1"]);
    w.ok(&["network", "create", "--subnet", "10.71.0.0/24", "net2"]);
    sleeper(w, "c1", "net1");
    let (veth, ip) = (host_veth(w, "c1"), ip_of(w, "c1"));
    let rules = || nw.w.sh_in(nw.node(), "nft list ruleset | grep -c net1 || true");
    let rules_before = rules();
    let b = Broken::with(w.data_root.join("networks/net1.json"), TORN);

    listed_broken(w, &["network", "ls"], "net1", &b.p());
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["network", "ls", "--format", "json"])).unwrap();
    let row = json.as_array().unwrap().iter().find(|n| n["name"] == "net1").expect("net1 in the JSON listing");
    assert_eq!(row["broken"]["path"], b.p().as_str(), "{row}");
    assert!(pings(&nw, "net2", "10.71.0.1"), "a container on net2 cannot reach its gateway");
    needs_it(w, &["run", "--rm", "--network", "net1", "busybox", "true"], &b.p());
    needs_it(w, &["network", "rm", "net1"], &b.p());

    gc_goes_on(&nw, &b.p());
    assert!(link_exists(&nw, "rcon-net1") && link_exists(&nw, &veth), "gc removed net1's bridge or c1's veth");
    assert_eq!(rules(), rules_before, "gc touched net1's rules");
    assert_eq!(
        w.rcon(&["exec", "c1", "ping", "-c1", "-W3", "10.70.0.1"]).status.code(),
        Some(0),
        "c1 ({ip}) is cut off"
    );
}

#[test]
fn an_empty_endpoint_record_fails_alone() {
    let nw = net_world("re", "nftables");
    let w = &nw.w;
    w.ok(&["network", "create", "--subnet", "10.72.0.0/24", "n"]);
    sleeper(w, "c1", "n");
    let (veth, ip) = (host_veth(w, "c1"), ip_of(w, "c1"));
    let dir = w.data_root.join("endpoints/n");
    let file = std::fs::read_dir(&dir).unwrap().flatten().next().unwrap().path();
    let b = Broken::with(file, "");

    let out = w.rcon(&["network", "inspect", "n"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["broken"][0]["path"], b.p().as_str(), "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&b.p()));
    assert!(pings(&nw, "n", &ip), "c1 ({ip}) cannot be reached from a new container");
    needs_it(w, &["network", "disconnect", "n", "c1"], &b.p());

    gc_goes_on(&nw, &b.p());
    assert!(link_exists(&nw, &veth), "gc removed the veth of the broken endpoint record");
    assert!(w.data_root.join("ipam/n").join(&ip).symlink_metadata().is_ok(), "gc released c1's lease");
    assert!(pings(&nw, "n", &ip), "c1 ({ip}) cut off after gc");
}

#[test]
fn a_broken_lease_keeps_its_address() {
    let nw = net_world("rl", "nftables");
    let w = &nw.w;
    w.ok(&["network", "create", "--subnet", "10.73.0.0/24", "n"]);
    sleeper(w, "c1", "n");
    let ip = ip_of(w, "c1");
    // A lease is a symlink; a restore or a hand edit can leave a plain file.
    let lease = w.data_root.join("ipam/n").join(&ip);
    let owner = std::fs::read_link(&lease).unwrap();
    std::fs::remove_file(&lease).unwrap();
    std::fs::write(&lease, "").unwrap();
    let p = lease.display().to_string();

    let out = w.rcon(&["network", "inspect", "n"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["broken"][0]["path"], p.as_str(), "{v}");
    // The address is never handed out again, asked for or not.
    let err = w.fails(&["run", "--rm", "--network", "n", "--ip", &ip, "busybox", "true"]);
    assert!(err.contains(&format!("{ip} is taken: lease {p} is unreadable")), "{err}");
    assert!(pings(&nw, "n", &ip), "c1 ({ip}) cannot be reached from a new container");

    gc_goes_on(&nw, &p);
    assert!(lease.exists(), "gc removed the broken lease");
    assert!(pings(&nw, "n", &ip), "c1 ({ip}) cut off after gc");
    std::fs::remove_file(&lease).unwrap();
    std::os::unix::fs::symlink(owner, &lease).unwrap();
}

#[test]
fn a_torn_container_state_fails_alone() {
    let nw = net_world("rc", "nftables");
    let w = &nw.w;
    let id = w.ok(&["run", "-d", "--name", "c1", "busybox", "sleep", "1000"]).trim().to_string();
    let (veth, ip, pid) = (host_veth(w, "c1"), ip_of(w, "c1"), w.state_of(&id)["pid"].as_i64().unwrap() as i32);
    let b = Broken::with(w.root.join(&id).join("state.json"), r#"{"ociVersion": "1.0.2", "id": "#);

    listed_broken(w, &["ps"], &id[..12], &b.p());
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(json[0]["broken"]["path"], b.p().as_str(), "{json}");
    // The default network and its gateway, from a new container.
    let gw = ip.rsplit_once('.').map(|(n, _)| format!("{n}.1")).unwrap();
    assert!(pings(&nw, "bridge", &gw), "a new container on the default network cannot reach {gw}");
    needs_it(w, &["state", &id], &b.p());
    needs_it(w, &["rm", "-f", &id], &b.p());

    gc_goes_on(&nw, &b.p());
    assert!(crate::common::pid_alive(pid), "the container's process is gone");
    assert!(link_exists(&nw, &veth) && pings(&nw, "bridge", &ip), "c1 ({ip}) cut off after gc");
}

#[test]
fn a_torn_pod_record_fails_alone() {
    let nw = net_world("rp", "nftables");
    let w = &nw.w;
    w.ok(&["pod", "create", "--name", "p1"]);
    w.ok(&["pod", "create", "--name", "p2"]);
    let eps = || {
        let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["network", "inspect", "bridge"])).unwrap();
        v["endpoints"].as_array().unwrap().iter().map(|e| e["host_ifname"].as_str().unwrap().to_string()).collect()
    };
    let before: Vec<String> = eps();
    let b = Broken::with(w.data_root.join("pods/p1.json"), r#"{"name": "p1", "id": "#);

    listed_broken(w, &["pod", "ls"], "p1", &b.p());
    let gw = "172.17.0.1";
    let out = w.rcon(&["run", "--rm", "--pod", "p2", "busybox", "ping", "-c1", "-W3", gw]);
    assert!(out.status.success(), "a container in p2 cannot reach {gw}: {}", String::from_utf8_lossy(&out.stderr));
    needs_it(w, &["run", "--rm", "--pod", "p1", "busybox", "true"], &b.p());
    needs_it(w, &["pod", "rm", "-f", "p1"], &b.p());

    gc_goes_on(&nw, &b.p());
    assert_eq!(eps(), before, "gc changed the pods' endpoints");
    assert!(before.iter().all(|v| link_exists(&nw, v)), "gc removed a pod's veth");
    assert!(w.netns_dir.join("p1").exists(), "gc removed p1's netns");
}

#[test]
fn a_torn_service_record_fails_alone() {
    let nw = net_world("rs", "nftables");
    let w = &nw.w;
    w.ok(&["network", "create", "--subnet", "10.74.0.0/24", "svc"]);
    nw.server("b1", "svc");
    w.ok(&["service", "create", "web", "--vip", "10.96.0.100:80", "--backend", "b1:7000"]);
    w.ok(&["service", "create", "api", "--vip", "10.96.0.101:80", "--backend", "b1:7000"]);
    let b = Broken::with(w.data_root.join("services/web.json"), "");
    let via = |vip: &str| nw.client("svc", &format!("nc -w 2 {vip} 80 </dev/null")).1.trim().to_string();

    listed_broken(w, &["service", "ls"], "web", &b.p());
    assert_eq!(via("10.96.0.101"), "from-b1", "service api does not answer");
    needs_it(w, &["service", "inspect", "web"], &b.p());
    needs_it(w, &["service", "rm", "web"], &b.p());

    gc_goes_on(&nw, &b.p());
    assert_eq!(via("10.96.0.100"), "from-b1", "gc took the broken service's rules");
    assert_eq!(via("10.96.0.101"), "from-b1");
}

#[test]
fn a_torn_cluster_peer_fails_alone() {
    let nw = net_world("rk", "nftables");
    let w = &nw.w;
    // A one-node cluster on the uplink: its peers are routes via the uplink segment.
    let init = ["cluster", "init", "--cidr", "10.244.0.0/16", "--node-subnet", "10.244.1.0/24", "--underlay", "up0"];
    w.ok(&[&init[..], &["--backend", "host-gw"]].concat());
    let add = |n: &str, ip: &str, sub: &str| nw.w.ok(&["node", "add", n, "--underlay-ip", ip, "--subnet", sub]);
    add("a", "203.0.113.10", "10.244.2.0/24");
    add("b", "203.0.113.11", "10.244.3.0/24");
    let b = Broken::with(w.data_root.join("cluster/nodes/b.json"), r#"{"name": "b", "underlay_ip": "203."#);
    let routes = || nw.w.sh_in(nw.node(), "ip route");

    listed_broken(w, &["node", "ls"], "b", &b.p());
    add("c", "203.0.113.12", "10.244.4.0/24");
    assert!(routes().contains("10.244.4.0/24 via 203.0.113.12"), "{}", routes());
    assert!(pings(&nw, "cluster", "10.244.1.1"), "a pod cannot reach its node's gateway");
    needs_it(w, &["node", "rm", "b"], &b.p());

    gc_goes_on(&nw, &b.p());
    assert!(routes().contains("10.244.3.0/24 via 203.0.113.11"), "b's route went: {}", routes());
}

/// `gc --remove-broken`: the broken records go (and are named), gc succeeds.
#[test]
fn gc_remove_broken_removes_them() {
    let nw = net_world("rr", "nftables");
    let w = &nw.w;
    w.ok(&["network", "create", "--subnet", "10.75.0.0/24", "net1"]);
    let p: &Path = &w.data_root.join("networks/net1.json");
    std::fs::write(p, TORN).unwrap();
    let out = w.ok(&["gc", "--remove-broken"]);
    assert!(out.contains(&format!("removed broken network record {}", p.display())), "{out}");
    assert!(!p.exists());
    // Nothing names net1 now: the next gc takes its rules.
    let out = w.ok(&["gc"]);
    assert!(out.contains("net1"), "{out}");
}
