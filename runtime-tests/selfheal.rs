//! The firewall heals itself: after a firewall reload, `nft flush ruleset`
//! or a chain deleted by hand, the next rcon command that changes the
//! firewall (or `rcon firewall reload`) puts back every rule its records
//! call for, on both backends. Proven with packets: a published port from
//! the internet namespace, masquerade to it, isolation between two networks
//! and a service VIP; each is first shown broken by the damage, so the test
//! fails if nothing heals.

use crate::network::{assert_no_rules, net_world, NetWorld, UPLINK_INET, UPLINK_NODE};
use crate::ports::tcp_from;

const VIP: &str = "10.96.0.10";

/// What the packets say: (published port answers, masquerade works, isolation holds, service answers).
fn paths(nw: &NetWorld, port: u16, isolated_ip: &str) -> (bool, bool, bool, bool) {
    let inet = nw.inet.clone();
    let published = tcp_from(nw, &inet, UPLINK_NODE, port) == "from-s1";
    let (_, out) = nw.client("back", &format!("nc -w 2 {UPLINK_INET} 8080 </dev/null"));
    let masq = out.trim() == format!("peer={UPLINK_NODE}");
    let (code, _) = nw.client("front", &format!("nc -w 2 {isolated_ip} 7000 </dev/null"));
    let isolated = code != 0;
    let (_, out) = nw.client("back", &format!("nc -w 2 {VIP} 80 </dev/null"));
    let service = out.trim() == "from-s1";
    (published, masq, isolated, service)
}

/// rcon's command `args`, which must succeed and say on stderr that it restored the rules.
fn heals(nw: &NetWorld, args: &[&str]) {
    let out = nw.w.rcon(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rcon {args:?}: {err}");
    assert!(err.contains("restored rcon's rules from its records"), "rcon {args:?} did not heal: {err}");
}

fn heal(backend: &str) {
    let mut nw = net_world(&format!("sh{}", &backend[..1]), backend);
    nw.inet_listener(8080);
    nw.w.ok(&["network", "create", "--subnet", "10.10.0.0/24", "front"]);
    nw.w.ok(&["network", "create", "--subnet", "10.12.0.0/24", "back"]);
    nw.server_with("s1", "front", &["-p", "8081:7000"]);
    let s2 = nw.server("s2", "back");
    nw.w.ok(&["service", "create", "web", "--vip", &format!("{VIP}:80"), "--backend", "s1:7000"]);
    assert_eq!(paths(&nw, 8081, &s2), (true, true, true, true), "{backend}: before any damage");

    let (flush_chain, delete_chain) = match backend {
        "nftables" => ("nft flush chain ip rcon postrouting", "nft delete chain ip rcon pub_pre"),
        _ => (
            "iptables -t nat -F RCON-POSTROUTING",
            "iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j RCON-PORTS && \
             iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j RCON-PORTS",
        ),
    };
    let table_gone = match backend {
        "nftables" => "nft delete table ip rcon",
        _ => "iptables-save | grep -v RCON | iptables-restore",
    };
    // (damage, what breaks, the command that heals it)
    let rounds: [(&str, &str, Vec<&str>); 4] = [
        (table_gone, "everything", vec!["run", "-d", "--name", "s3", "-p", "8083:7000", "busybox", "sleep", "600"]),
        ("nft flush ruleset", "everything", vec!["firewall", "reload"]),
        (flush_chain, "masquerade", vec!["gc"]),
        (delete_chain, "published ports", vec!["network", "create", "--subnet", "10.14.0.0/24", "extra"]),
    ];
    for (damage, what, cmd) in rounds {
        nw.w.sh_in(nw.node(), damage);
        let broken = paths(&nw, 8081, &s2);
        assert_ne!(broken, (true, true, true, true), "{backend}: `{damage}` broke nothing");
        if cmd[0] == "firewall" {
            let out = nw.w.ok(&cmd);
            assert!(out.contains(&format!("{backend}: restored 3 network(s), 2 endpoint(s)")), "{out}");
        } else {
            heals(&nw, &cmd);
        }
        assert_eq!(paths(&nw, 8081, &s2), (true, true, true, true), "{backend}: after `{damage}` ({what}) and {cmd:?}");
    }
    // The container started by the healing run got its port too, and nothing heals twice.
    nw.server_with("s4", "front", &["-p", "8084:7000"]);
    let inet = nw.inet.clone();
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, 8084), "from-s4");
    let out = nw.w.rcon(&["gc"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("restored"), "an intact firewall was restored");
    // Removal after a restore leaves nothing of rcon's.
    nw.w.ok(&["service", "rm", "web"]);
    nw.w.ok(&["rm", "-f", "s1", "s2", "s3", "s4"]);
    for n in ["front", "back", "extra", "bridge"] {
        nw.w.ok(&["network", "rm", n]);
    }
    assert_no_rules(&nw, backend);
}

#[test]
fn firewall_heals_nftables() {
    heal("nftables");
}

#[test]
fn firewall_heals_iptables() {
    heal("iptables");
}
