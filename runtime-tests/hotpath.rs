//! No child process on the hot path: `network attach` and `detach` (with
//! anti-spoofing and published ports, TCP and UDP), `network connect` and
//! `disconnect`, and `run -p` (publish, then unpublish when it ends) are
//! traced with `strace -f -e trace=execve`, and the only programs executed
//! are rcon itself and, for `run`, the container's own process. nftables is
//! driven through libnftables and conntrack over netlink, in-process; the
//! changes are checked in the live ruleset, so a path that did nothing would
//! not pass either.

use std::path::Path;

use crate::common::{rcon_bin, unique};
use crate::network::{net_world, NetWorld};

const SUBNET: &str = "10.71.0.0/24";

/// Run rcon `args` in the node under strace; the program of every execve the
/// whole process tree made, in order (failed ones too: a PATH search is a
/// spawn attempt).
fn execs(nw: &NetWorld, args: &[&str]) -> Vec<String> {
    let trace = nw.w.dir.path().join(format!("trace-{}", unique("t")));
    let trace_s = trace.to_str().unwrap();
    let out =
        nw.w.wrapped(&["strace", "-f", "-qq", "-s", "4096", "-e", "trace=execve", "-o", trace_s], args)
            .output()
            .unwrap();
    assert!(out.status.success(), "rcon {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&trace).unwrap();
    text.lines()
        .filter_map(|l| {
            l.split_once("execve(\"").map(|(_, rest)| rest.split('"').next().unwrap_or_default().to_string())
        })
        .collect()
}

/// `execs` of a command that must execute rcon alone.
fn only_rcon(nw: &NetWorld, args: &[&str]) {
    let rcon = Path::new(rcon_bin()).canonicalize().unwrap();
    let ran = execs(nw, args);
    assert!(!ran.is_empty(), "strace saw no execve at all for {args:?}");
    let others: Vec<_> = ran.iter().filter(|p| Path::new(p).canonicalize().ok().as_ref() != Some(&rcon)).collect();
    assert!(others.is_empty(), "rcon {args:?} spawned {others:?}");
}

fn ruleset(nw: &NetWorld) -> String {
    nw.w.sh_in(nw.node(), "nft list ruleset")
}

/// The anti-spoofing elements of the node's bridge table.
fn guards(nw: &NetWorld) -> usize {
    nw.w.sh_in(nw.node(), "nft -j list set bridge rcon allow").matches("\"elem\"").count()
}

#[test]
fn the_hot_path_spawns_nothing() {
    let mut nw = net_world("hp", "nftables");
    nw.w.ok(&["network", "create", "--subnet", SUBNET, "hot"]);
    let ns = unique("hp");
    nw.w.add_system_netns(&ns);
    let path = format!("/var/run/netns/{ns}");

    // attach with anti-spoofing and both protocols published, then detach.
    only_rcon(&nw, &["network", "attach", "--netns", &path, "-p", "8088:80", "-p", "8089:53/udp", "hot"]);
    let rules = ruleset(&nw);
    assert!(rules.contains("8088") && rules.contains("8089"), "attach published nothing: {rules}");
    assert!(guards(&nw) > 0, "attach added no anti-spoofing element");
    only_rcon(&nw, &["network", "detach", "--netns", &path, "hot"]);
    let rules = ruleset(&nw);
    assert!(!rules.contains("8088") && !rules.contains("8089"), "detach left its ports: {rules}");
    assert_eq!(guards(&nw), 0, "detach left its anti-spoofing element");

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
    let rcon = Path::new(rcon_bin()).canonicalize().unwrap();
    let others: Vec<_> = ran.iter().filter(|p| Path::new(p).canonicalize().ok().as_ref() != Some(&rcon)).collect();
    // The container's `true`, found on its PATH (busybox links it in /usr/sbin or /bin).
    let container = |p: &&String| p.rsplit('/').next() == Some("true");
    assert!(
        others.len() == 1 && others.iter().all(container),
        "run spawned more than the container's process: {ran:?}"
    );
    assert!(!ruleset(&nw).contains("9191"), "run left its ports");
}
