//! Service virtual IPs with real TCP, on both firewall backends: a client
//! container reaches the VIP and its connections spread over the backends,
//! the node reaches it, a backend reaches it (also landing on itself), and a
//! backend removed (by rm-backend or with its container) gets no more
//! traffic. Removal leaves no rule.

use std::collections::BTreeSet;

use crate::network::{net_world, NetWorld};

const VIP: &str = "10.96.0.100";

/// A shell loop of `count` connections to VIP:`port`, one answer a line.
fn connects(count: usize, port: u16) -> String {
    format!("for i in $(seq {count}); do nc -w 2 {VIP} {port} </dev/null; done")
}

/// What `count` connections to VIP:80 from a fresh client container got back, one answer each.
fn from_client(nw: &NetWorld, count: usize) -> Vec<String> {
    let (_, out) = nw.client("svc", &connects(count, 80));
    out.lines().map(str::to_string).collect()
}

fn rules(nw: &NetWorld, backend: &str) -> String {
    match backend {
        "nftables" => nw.w.sh_in(
            nw.node(),
            // Every element of a service set or map (`svc_all`, `svc-random-2`, `svc_dst_0`, `svc_self`);
            // the shared chains stay by design. No table prints nothing, and jq fails on anything else.
            "nft -j list table ip rcon 2>/dev/null | jq -c '.nftables[] | (.set // .map // empty) \
             | select(.name | startswith(\"svc\")) | .name as $n | (.elem // [])[] | [$n, .]'",
        ),
        _ => nw.w.sh_in(nw.node(), "iptables-save -t nat | grep -e 'svc:' -e ':RCON-S-' || true"),
    }
}

/// `service create NAME --vip VIP:PORT`, with a `--backend` per target and
/// the flags (`--lb …`) that follow the targets as they are.
fn create(nw: &NetWorld, name: &str, port: u16, rest: &[&str]) {
    let vip = format!("{VIP}:{port}");
    let mut args = vec!["service", "create", name, "--vip", &vip];
    let flags = rest.iter().position(|a| a.starts_with("--")).unwrap_or(rest.len());
    for b in &rest[..flags] {
        args.extend(["--backend", b]);
    }
    args.extend(&rest[flags..]);
    nw.w.ok(&args);
}

fn services(backend: &str) {
    let nw = net_world(&format!("v{}", &backend[..1]), backend);
    nw.w.ok(&["network", "create", "--subnet", "10.30.0.0/24", "svc"]);
    nw.server("b1", "svc");
    nw.server("b2", "svc");
    create(&nw, "web", 80, &["b1:7000", "b2:7000", "--lb", "roundrobin"]);
    let ls = nw.w.ok(&["service", "ls"]);
    assert!(ls.contains("web") && ls.contains(&format!("{VIP}:80/tcp")), "{ls}");

    // A client container: round robin answers from both, alternately.
    let got = from_client(&nw, 6);
    assert_eq!(got.len(), 6, "{got:?}");
    let seen: BTreeSet<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(seen, BTreeSet::from(["from-b1", "from-b2"]), "{got:?}");
    assert!(got.windows(2).all(|w| w[0] != w[1]), "not round robin: {got:?}");

    // The node reaches the VIP.
    let node = nw.w.sh_in(nw.node(), &connects(2, 80).replace("nc ", "busybox nc "));
    let node_seen: BTreeSet<&str> = node.lines().collect();
    assert_eq!(node_seen, BTreeSet::from(["from-b1", "from-b2"]), "{node}");

    // A backend reaches the VIP, and lands on itself every other time.
    let own = nw.w.ok(&["exec", "b1", "sh", "-c", &connects(4, 80)]);
    let own_seen: BTreeSet<&str> = own.lines().collect();
    assert_eq!(own_seen, BTreeSet::from(["from-b1", "from-b2"]), "{own}");

    // rm-backend: b2 gets nothing any more.
    nw.w.ok(&["service", "rm-backend", "web", "b2"]);
    assert!(from_client(&nw, 4).iter().all(|a| a == "from-b1"));
    nw.w.ok(&["service", "add-backend", "web", "b2:7000"]);
    assert!(from_client(&nw, 4).contains(&"from-b2".to_string()));
    // A removed container leaves the service.
    nw.w.ok(&["rm", "-f", "b2"]);
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["service", "inspect", "web"])).unwrap();
    assert_eq!(v["backends"].as_array().unwrap().len(), 1, "{v}");
    assert!(from_client(&nw, 4).iter().all(|a| a == "from-b1"));

    // Random spreading reaches both too.
    nw.server("b3", "svc");
    create(&nw, "rnd", 81, &["b1:7000", "b3:7000"]);
    let script = connects(30, 81);
    let (_, out) = nw.client("svc", &script);
    let rnd: BTreeSet<&str> = out.lines().collect();
    assert_eq!(rnd, BTreeSet::from(["from-b1", "from-b3"]), "{out}");

    // Bad input changes nothing.
    let before = rules(&nw, backend);
    let err = nw.w.fails(&["service", "create", "web", "--vip", &format!("{VIP}:82"), "--backend", "b1:7000"]);
    assert!(err.contains("exists already"), "{err}");
    let err = nw.w.fails(&["service", "create", "dup", "--vip", &format!("{VIP}:80"), "--backend", "b1:7000"]);
    assert!(err.contains("is the address of service \"web\""), "{err}");
    let err = nw.w.fails(&["service", "create", "x", "--vip", &format!("{VIP}:83"), "--backend", "nosuch:80"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(rules(&nw, backend), before);

    // Removal leaves no rule behind.
    nw.w.ok(&["service", "rm", "web", "rnd"]);
    assert_eq!(rules(&nw, backend).trim(), "", "service rules left");
    assert_eq!(nw.w.ok(&["service", "ls"]).lines().count(), 1);
}

#[test]
fn services_nftables() {
    services("nftables");
}

#[test]
fn services_iptables() {
    services("iptables");
}

/// The files (and links) below `dir`, by path: what a directory of entries holds.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

/// Two services on one VIP address (ports 80 and 81) with the same backend:
/// removing one leaves the other whole, the masquerade of the backend
/// landing on itself included (their `svc_self` entries are the same pair).
#[test]
fn services_sharing_an_address_and_a_backend() {
    let nw = net_world("vs", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.31.0.0/24", "svc"]);
    nw.server("b1", "svc");
    create(&nw, "one", 80, &["b1:7000"]);
    create(&nw, "two", 81, &["b1:7000"]);
    nw.w.ok(&["service", "rm", "one"]);
    // b1 reaches the VIP's port 81 and lands on itself: it needs the masquerade.
    let own = nw.w.ok(&["exec", "b1", "sh", "-c", &connects(3, 81)]);
    assert_eq!(own.lines().collect::<Vec<_>>(), ["from-b1"; 3], "{own}");
    let (_, out) = nw.client("svc", &connects(2, 80));
    assert_eq!(out.trim(), "", "the removed service still answers: {out}");
    nw.w.ok(&["service", "rm", "two"]);
    assert_eq!(rules(&nw, "nftables").trim(), "", "service rules left");
}

/// `service create` and `service rm` killed (SIGKILL) at each point: `rcon
/// gc` removes the rules and index entries no record backs, and the service
/// can be made again on the same VIP and answers.
#[test]
fn services_after_a_crash() {
    let nw = net_world("vk", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.32.0.0/24", "svc"]);
    nw.server("b1", "svc");
    let index = nw.w.data_root.join("services/index");
    for point in ["service:indexed", "service:applied", "service:unrecorded"] {
        let vip = format!("{VIP}:80");
        let mut args = vec!["service", "create", "web", "--vip", &vip, "--backend", "b1:7000"];
        if point == "service:unrecorded" {
            nw.w.ok(&args);
            args = vec!["service", "rm", "web"];
        }
        let out = nw.w.cmd(&args).env("RCON_FAULT", point).output().unwrap();
        assert_eq!(out.status.code(), None, "{point}: rcon should have been killed");
        nw.w.ok(&["gc"]);
        assert_eq!(rules(&nw, "nftables").trim(), "", "{point}: rules left after gc");
        assert_eq!(files_under(&index), Vec::<String>::new(), "{point}: index entries left after gc");
        create(&nw, "web", 80, &["b1:7000"]);
        assert_eq!(from_client(&nw, 2), ["from-b1"; 2], "{point}");
        nw.w.ok(&["service", "rm", "web"]);
    }
}

/// A container's removal killed (SIGKILL) between its endpoint's record and the services: the
/// backend stays until `rcon gc` drops it, and then gets no more traffic.
#[test]
fn a_backend_after_a_crashed_detach() {
    let nw = net_world("vd", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.36.0.0/24", "svc"]);
    nw.server("b1", "svc");
    nw.server("b2", "svc");
    create(&nw, "web", 80, &["b1:7000", "b2:7000"]);
    let out = nw.w.cmd(&["rm", "-f", "b2"]).env("RCON_FAULT", "detach:unrecorded").output().unwrap();
    assert_eq!(out.status.code(), None, "rcon should have been killed");
    let backends = || {
        let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["service", "inspect", "web"])).unwrap();
        v["backends"].as_array().unwrap().len()
    };
    assert_eq!(backends(), 2, "killed before the services");
    let gc = nw.w.ok(&["gc"]);
    assert!(gc.contains("service backends of endpoint"), "{gc}");
    assert_eq!(backends(), 1);
    assert!(from_client(&nw, 4).iter().all(|a| a == "from-b1"));
    nw.w.ok(&["service", "rm", "web"]);
    assert_eq!(rules(&nw, "nftables").trim(), "", "service rules left");
}
