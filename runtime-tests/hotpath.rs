//! No child process on the hot path: `network attach` and `detach` (with
//! anti-spoofing and published ports, TCP and UDP), `network connect` and
//! `disconnect`, `run -p` (publish, then unpublish when it ends), and the CNI
//! plugin's ADD and DEL are traced with `strace -f -e trace=execve`, and the
//! only programs executed are rcon itself and, for `run`, the container's own
//! process. nftables is driven through libnftables and conntrack over
//! netlink, in-process; the changes are checked in the live ruleset, so a
//! path that did nothing would not pass either.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cni::Cni;
use crate::common::{rcon_bin, unique, World};
use crate::network::{net_world, NetWorld};

const SUBNET: &str = "10.71.0.0/24";

/// A fresh trace file in `w`'s directory, and the strace command line that writes it: every execve of
/// the whole process tree (failed ones too: a PATH search is a spawn attempt), paths in full.
fn strace(w: &World) -> (PathBuf, Vec<String>) {
    let file = w.dir.path().join(format!("trace-{}", unique("t")));
    let args = ["strace", "-f", "-qq", "-s", "4096", "-e", "trace=execve", "-o", file.to_str().unwrap()];
    let args = args.map(String::from).to_vec();
    (file, args)
}

/// The programs the traced tree executed, in order, but `own` (the traced binary itself).
fn others(trace: &Path, own: &str) -> Vec<String> {
    let own = Path::new(own).canonicalize().unwrap();
    let text = std::fs::read_to_string(trace).unwrap();
    let ran: Vec<&str> =
        text.lines().filter_map(|l| l.split_once("execve(\"").and_then(|(_, rest)| rest.split('"').next())).collect();
    assert!(!ran.is_empty(), "strace saw no execve at all");
    ran.into_iter().filter(|p| Path::new(p).canonicalize().ok().as_ref() != Some(&own)).map(String::from).collect()
}

/// Run rcon `args` in the node under strace; what it executed besides itself.
fn execs(nw: &NetWorld, args: &[&str]) -> Vec<String> {
    let (trace, wrapper) = strace(&nw.w);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let out = nw.w.wrapped(&wrapper, args).output().unwrap();
    assert!(out.status.success(), "rcon {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    others(&trace, rcon_bin())
}

/// [`execs`] of a command that must execute rcon alone.
fn only_rcon(nw: &NetWorld, args: &[&str]) {
    let spawned = execs(nw, args);
    assert!(spawned.is_empty(), "rcon {args:?} spawned {spawned:?}");
}

fn ruleset(nw: &NetWorld) -> String {
    nw.w.sh_in(nw.node(), "nft list ruleset")
}

/// The anti-spoofing elements of the node's bridge table.
fn guards(nw: &NetWorld) -> usize {
    nw.w.sh_in(nw.node(), "nft -j list set bridge rcon allow").matches("\"elem\"").count()
}

/// A node (nftables) with the bridge network `net` on SUBNET, and a named namespace to attach: its path.
fn node_with_netns(prefix: &str, net: &str) -> (NetWorld, String) {
    let mut nw = net_world(prefix, "nftables");
    nw.w.ok(&["network", "create", "--subnet", SUBNET, net]);
    let ns = unique(prefix);
    nw.w.add_system_netns(&ns);
    (nw, format!("/var/run/netns/{ns}"))
}

#[test]
fn the_hot_path_spawns_nothing() {
    let (nw, path) = node_with_netns("hp", "hot");

    // attach with anti-spoofing and both protocols published, then detach.
    only_rcon(&nw, &["network", "attach", "--netns", &path, "-p", "8088:80", "-p", "8089:53/udp", "hot"]);
    let rules = ruleset(&nw);
    assert!(rules.contains("8088") && rules.contains("8089"), "attach published nothing: {rules}");
    assert!(guards(&nw) > 0, "attach added no anti-spoofing element");
    only_rcon(&nw, &["network", "detach", "--netns", &path, "hot"]);
    let rules = ruleset(&nw);
    assert!(!rules.contains("8088") && !rules.contains("8089"), "detach left its ports: {rules}");
    assert_eq!(guards(&nw), 0, "detach left its anti-spoofing element");

    // The fallback: without the library (here: told not to use it) rcon runs `nft` for its ports
    // (the anti-spoofing element goes over netlink either way), and says so.
    let (trace, wrapper) = strace(&nw.w);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let out =
        nw.w.wrapped(&wrapper, &["network", "attach", "--netns", &path, "-p", "8090:80", "hot"])
            .env("RCON_NFT_PROGRAM", "1")
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("running the nft program instead of libnftables (RCON_NFT_PROGRAM=1)"), "{err}");
    let spawned = others(&trace, rcon_bin());
    assert!(spawned.iter().any(|p| p.ends_with("/nft")), "the fallback ran no nft: {spawned:?}");
    assert!(guards(&nw) > 0, "the fallback added no anti-spoofing element");
    assert!(ruleset(&nw).contains("8090"), "the fallback published nothing");
    only_rcon(&nw, &["network", "detach", "--netns", &path, "hot"]);

    // connect and disconnect a running container.
    nw.w.ok(&["network", "create", "--subnet", "10.72.0.0/24", "cold"]);
    nw.w.ok(&["run", "-d", "--name", "app", "--network", "cold", "busybox", "sleep", "1000"]);
    only_rcon(&nw, &["network", "connect", "--ip", "10.71.0.77", "hot", "app"]);
    assert!(nw.w.ok(&["exec", "app", "ip", "-o", "addr"]).contains("10.71.0.77/24"));
    only_rcon(&nw, &["network", "disconnect", "hot", "app"]);
    assert!(!nw.w.ok(&["exec", "app", "ip", "-o", "addr"]).contains("10.71.0.77"));
    nw.w.ok(&["rm", "-f", "app"]);

    // run -p: publish, the container's process, unpublish.
    let ran =
        execs(&nw, &["run", "--rm", "--network", "hot", "-p", "9191:9000/udp", "-p", "9192:9000", "busybox", "true"]);
    // The container's `true`, found on its PATH (busybox links it in /usr/sbin or /bin).
    let container = |p: &String| p.rsplit('/').next() == Some("true");
    assert!(ran.len() == 1 && ran.iter().all(container), "run spawned more than the container's process: {ran:?}");
    assert!(!ruleset(&nw).contains("9191"), "run left its ports");
}

/// The CNI plugin's ADD (a bridge port with anti-spoofing, a TCP and a UDP mapping) and DEL.
#[test]
fn cni_add_and_del_spawn_nothing() {
    let mut nw = net_world("hc", "nftables");
    let (first, ctr) = (format!("{}f", nw.w.name), format!("{}c", nw.w.name));
    nw.w.add_system_netns(&first);
    nw.w.add_system_netns(&ctr);
    let mut cni = Cni::new(&nw.w);
    let conf = |port: u16| {
        json!({"cniVersion": "1.1.0", "name": "hotcni", "type": "rcon", "subnet": "10.73.0.0/24",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"},
                                               {"hostPort": port + 1, "containerPort": 53, "protocol": "udp"}]}})
    };
    // The first ADD creates the network, which is not the per-container path.
    cni.ok("ADD", "first", &first, &conf(8093));
    for cmd in ["ADD", "DEL"] {
        let (trace, wrapper) = strace(&nw.w);
        cni.wrap = wrapper;
        cni.ok(cmd, "ctr1", &ctr, &conf(8095));
        cni.wrap.clear();
        let spawned = others(&trace, env!("CARGO_BIN_EXE_rcon-cni"));
        assert!(spawned.is_empty(), "rcon-cni {cmd} spawned {spawned:?}");
        let rules = ruleset(&nw);
        assert_eq!(rules.contains("8095") && rules.contains("8096"), cmd == "ADD", "{cmd}: {rules}");
    }
    cni.ok("DEL", "first", &first, &conf(8093));
}

/// Whether the node has the holder of released nftables sockets (sys/linger.rs): its abstract
/// unix socket, which only processes in the node's network namespace see.
fn holder_listens(nw: &NetWorld) -> bool {
    nw.w.sh_in(nw.node(), "cat /proc/net/unix").contains("@rcon-nfnl-holder")
}

/// A command's nftables sockets go to a holder in the node's namespace instead of being released
/// by the command (a release can wait ~15 ms for the kernel after a deletion); the holder forks, is
/// found by the next command, and exits by itself once idle: no process is left behind.
#[test]
fn nftables_sockets_go_to_a_holder_that_then_exits() {
    let (nw, path) = node_with_netns("nh", "held");
    crate::common::wait_until("no holder before", || !holder_listens(&nw));
    nw.w.ok(&["network", "attach", "--netns", &path, "held"]);
    nw.w.ok(&["network", "detach", "--netns", &path, "held"]);
    assert!(holder_listens(&nw), "no holder took the sockets of attach and detach");
    assert_eq!(guards(&nw), 0, "detach left its anti-spoofing element");
    crate::common::wait_until("the idle holder exits", || !holder_listens(&nw));
}
