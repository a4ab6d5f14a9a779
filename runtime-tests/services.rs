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
            "nft list map ip rcon svc_vips 2>/dev/null | grep comment; nft list set ip rcon svc_self 2>/dev/null | grep elements; nft list chains ip rcon 2>/dev/null | grep 'chain svc'; true",
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
