//! A network's rules, and rcon's base chains and jumps they hang from: the input that adds (or replaces)
//! one network, and the one that removes it (with every `RCON-*` chain, when it is the last).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::live::Rule;
use super::{net_chain, Live, NetRules, FORWARD, ISOLATE, PORTS, POSTROUTING, PREFIX, PUBLISHED, SERVICES};

/// The `iptables-restore --noflush` input that installs rcon's chains and jumps if missing and `net`'s rules,
/// replacing whatever `net.name` had before.
pub(crate) fn render_add(live: &Live, net: &NetRules) -> String {
    let mut b = String::from("*filter\n");
    filter_base(live, &mut b);
    // Declaring the network's chain creates it, or flushes it when it exists.
    let _ = writeln!(b, ":{} - [0:0]", net_chain(&net.name));
    for r in live.owned(&net.name).filter(|r| r.table == "filter") {
        let _ = writeln!(b, "-D {} {}", r.chain, r.spec);
    }
    filter_net(net, &mut b);
    b.push_str("COMMIT\n*nat\n");
    nat_base(live, &mut b);
    for r in live.owned(&net.name).filter(|r| r.table == "nat") {
        let _ = writeln!(b, "-D {} {}", r.chain, r.spec);
    }
    nat_net(net, &mut b);
    b.push_str("COMMIT\n");
    b
}

/// The conntrack match and comment of the rules published ports need once.
fn published_dnat() -> String {
    format!("-m conntrack --ctstate DNAT -m comment --comment {PUBLISHED}")
}

/// rcon's filter chains and the rules outside its network chains, those `live` lacks.
pub(super) fn filter_base(live: &Live, b: &mut String) {
    for base in [FORWARD, ISOLATE] {
        if !live.has_chain("filter", base) {
            let _ = writeln!(b, ":{base} - [0:0]");
        }
    }
    if !live.has_jump("filter", "FORWARD", FORWARD) {
        let _ = writeln!(b, "-I FORWARD 1 -j {FORWARD}");
    }
    // Published ports reach a container from anywhere, another rcon network included.
    let dnat = published_dnat();
    if !live.has_comment("filter", ISOLATE, PUBLISHED) {
        let _ = writeln!(b, "-I {ISOLATE} 1 {dnat} -j RETURN");
    }
    // In FORWARD itself, beside the jump: a rule of rcon's own chain would move
    // whenever a network's rules are replaced.
    if !live.has_comment("filter", "FORWARD", PUBLISHED) {
        let _ = writeln!(b, "-I FORWARD 1 {dnat} -j ACCEPT");
    }
}

/// One network's filter rules (its chain declared already).
pub(super) fn filter_net(net: &NetRules, b: &mut String) {
    let (name, s, chain) = (net.name.as_str(), net.subnet.trunc(), net_chain(&net.name));
    let c = format!("-m comment --comment \"{name}\"");
    let _ = writeln!(b, "-I {FORWARD} 1 -s {s} {c} -j {chain}");
    if net.internal {
        let _ = writeln!(b, "-A {FORWARD} -d {s} {c} -j DROP");
    } else {
        let _ = writeln!(b, "-A {FORWARD} -d {s} -m conntrack --ctstate RELATED,ESTABLISHED {c} -j ACCEPT");
    }
    let _ = writeln!(b, "-A {ISOLATE} -d {s} {c} -j DROP");
    let _ = writeln!(b, "-A {chain} -d {s} -j ACCEPT");
    let _ = writeln!(b, "-A {chain} -j {ISOLATE}");
    let _ = writeln!(b, "-A {chain} -j {}", if net.internal { "DROP" } else { "ACCEPT" });
}

/// rcon's nat chains and the jumps to them, those `live` lacks.
pub(super) fn nat_base(live: &Live, b: &mut String) {
    for base in [POSTROUTING, PORTS, SERVICES] {
        if !live.has_chain("nat", base) {
            let _ = writeln!(b, ":{base} - [0:0]");
        }
    }
    for from in ["PREROUTING", "OUTPUT"] {
        if !live.has_jump("nat", from, SERVICES) {
            let _ = writeln!(b, "-A {from} -j {SERVICES}");
        }
        if !live.has_jump("nat", from, PORTS) {
            let _ = writeln!(b, "-A {from} -m addrtype --dst-type LOCAL -j {PORTS}");
        }
    }
    if !live.has_comment("nat", POSTROUTING, PUBLISHED) {
        let _ = writeln!(b, "-A {POSTROUTING} -s 127.0.0.0/8 {} -j MASQUERADE", published_dnat());
    }
    if !live.has_jump("nat", "POSTROUTING", POSTROUTING) {
        let _ = writeln!(b, "-I POSTROUTING 1 -j {POSTROUTING}");
    }
}

/// One network's masquerade, when it has one.
pub(super) fn nat_net(net: &NetRules, b: &mut String) {
    if net.masquerade && !net.internal {
        let (name, s) = (&net.name, net.subnet.trunc());
        let _ = writeln!(
            b,
            "-A {POSTROUTING} -s {s} ! -d {} -m comment --comment \"{name}\" -j MASQUERADE",
            net.unnat.trunc()
        );
    }
}

/// rcon's rules in the built-in chains of `table`: the jumps to its chains and the published-port rules.
fn builtin_refs<'a>(live: &'a Live, table: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
    live.rules.iter().filter(move |r| {
        r.table == table
            && !r.chain.starts_with(PREFIX)
            && (r.target.as_deref().is_some_and(|t| t.starts_with(PREFIX)) || r.comment.as_deref() == Some(PUBLISHED))
    })
}

/// The lines of one table that empty rcon's part of it: its rules in the built-in chains go, the chains
/// in `keep` are declared (created, or flushed), and every other rcon chain is flushed and deleted.
pub(super) fn wipe(live: &Live, table: &str, keep: &BTreeSet<String>, b: &mut String) {
    for r in builtin_refs(live, table) {
        let _ = writeln!(b, "-D {} {}", r.chain, r.spec);
    }
    for c in keep {
        let _ = writeln!(b, ":{c} - [0:0]");
    }
    let gone: Vec<&str> = live
        .chains
        .iter()
        .filter(|(t, c)| t == table && c.starts_with(PREFIX) && !keep.contains(c))
        .map(|(_, c)| &**c)
        .collect();
    for verb in ["-F", "-X"] {
        for c in &gone {
            let _ = writeln!(b, "{verb} {c}");
        }
    }
}

/// The input that removes `name`'s rules and chain, or every `RCON-*` chain and jump when no other network
/// remains; None when there is nothing to do.
pub(crate) fn render_remove(live: &Live, name: &str) -> Option<String> {
    let last = live.owners().iter().all(|o| *o == name);
    let mut b = String::new();
    for table in ["filter", "nat"] {
        let mut lines = String::new();
        if last {
            // Our jumps from the built-in chains, then every rcon chain: flushed first so none is still
            // referenced when it is deleted.
            wipe(live, table, &BTreeSet::new(), &mut lines);
        } else {
            for r in live.owned(name).filter(|r| r.table == table) {
                let _ = writeln!(lines, "-D {} {}", r.chain, r.spec);
            }
            let chain = net_chain(name);
            if table == "filter" && live.has_chain(table, &chain) {
                let _ = writeln!(lines, "-F {chain}\n-X {chain}");
            }
        }
        if !lines.is_empty() {
            let _ = write!(b, "*{table}\n{lines}COMMIT\n");
        }
    }
    (!b.is_empty()).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{live, net};
    use super::*;

    #[test]
    fn add_to_empty() {
        let got = render_add(&Live::default(), &net("web", "10.88.0.7/16", false, true));
        let want = "\
*filter
:RCON-FORWARD - [0:0]
:RCON-ISOLATE - [0:0]
-I FORWARD 1 -j RCON-FORWARD
-I RCON-ISOLATE 1 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j RETURN
-I FORWARD 1 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT
:RCON-N-web - [0:0]
-I RCON-FORWARD 1 -s 10.88.0.0/16 -m comment --comment \"web\" -j RCON-N-web
-A RCON-FORWARD -d 10.88.0.0/16 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"web\" -j ACCEPT
-A RCON-ISOLATE -d 10.88.0.0/16 -m comment --comment \"web\" -j DROP
-A RCON-N-web -d 10.88.0.0/16 -j ACCEPT
-A RCON-N-web -j RCON-ISOLATE
-A RCON-N-web -j ACCEPT
COMMIT
*nat
:RCON-POSTROUTING - [0:0]
:RCON-PORTS - [0:0]
:RCON-SERVICES - [0:0]
-A PREROUTING -j RCON-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j RCON-PORTS
-A OUTPUT -j RCON-SERVICES
-A OUTPUT -m addrtype --dst-type LOCAL -j RCON-PORTS
-A RCON-POSTROUTING -s 127.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j MASQUERADE
-I POSTROUTING 1 -j RCON-POSTROUTING
-A RCON-POSTROUTING -s 10.88.0.0/16 ! -d 10.88.0.0/16 -m comment --comment \"web\" -j MASQUERADE
COMMIT
";
        assert_eq!(got, want);
    }

    #[test]
    fn internal_network() {
        let got = render_add(&Live::default(), &net("iso", "10.3.0.0/24", true, true));
        assert!(!got.contains("--comment \"iso\" -j MASQUERADE"), "{got}");
        assert!(got.contains("-A RCON-FORWARD -d 10.3.0.0/24 -m comment --comment \"iso\" -j DROP\n"), "{got}");
        assert!(got.contains("-A RCON-N-iso -j DROP\n"), "{got}");
    }

    #[test]
    fn replace_keeps_base_and_others() {
        let got = render_add(&live(), &net("a", "10.5.0.0/24", false, false));
        let want = "\
*filter
:RCON-N-a - [0:0]
-D RCON-FORWARD -s 10.1.0.0/24 -m comment --comment a -j RCON-N-a
-D RCON-FORWARD -d 10.1.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment a -j ACCEPT
-D RCON-ISOLATE -d 10.1.0.0/24 -m comment --comment a -j DROP
-I RCON-FORWARD 1 -s 10.5.0.0/24 -m comment --comment \"a\" -j RCON-N-a
-A RCON-FORWARD -d 10.5.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"a\" -j ACCEPT
-A RCON-ISOLATE -d 10.5.0.0/24 -m comment --comment \"a\" -j DROP
-A RCON-N-a -d 10.5.0.0/24 -j ACCEPT
-A RCON-N-a -j RCON-ISOLATE
-A RCON-N-a -j ACCEPT
COMMIT
*nat
-D RCON-POSTROUTING -s 10.1.0.0/24 ! -d 10.1.0.0/24 -m comment --comment a -j MASQUERADE
COMMIT
";
        assert_eq!(got, want);
    }

    #[test]
    fn remove_one_then_last() {
        let l = live();
        let got = render_remove(&l, "b+x").unwrap();
        assert_eq!(net_chain("b+x"), "RCON-N_77267fbff2ca85bc");
        let want = "\
*filter
-D RCON-FORWARD -s 10.2.0.0/24 -m comment --comment \"b+x\" -j RCON-N_77267fbff2ca85bc
-D RCON-FORWARD -d 10.2.0.0/24 -m comment --comment \"b+x\" -j DROP
-D RCON-ISOLATE -d 10.2.0.0/24 -m comment --comment \"b+x\" -j DROP
-F RCON-N_77267fbff2ca85bc
-X RCON-N_77267fbff2ca85bc
COMMIT
";
        assert_eq!(got, want);
        assert_eq!(render_remove(&l, "nope"), None);

        let mut only_a = live();
        only_a.rules.retain(|r| r.comment.as_deref() != Some("b+x"));
        let got = render_remove(&only_a, "a").unwrap();
        let want = "\
*filter
-D FORWARD -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT
-D FORWARD -j RCON-FORWARD
-F RCON-FORWARD
-F RCON-ISOLATE
-F RCON-N-a
-F RCON-N_77267fbff2ca85bc
-X RCON-FORWARD
-X RCON-ISOLATE
-X RCON-N-a
-X RCON-N_77267fbff2ca85bc
COMMIT
*nat
-D PREROUTING -j RCON-SERVICES
-D PREROUTING -m addrtype --dst-type LOCAL -j RCON-PORTS
-D OUTPUT -j RCON-SERVICES
-D OUTPUT -m addrtype --dst-type LOCAL -j RCON-PORTS
-D POSTROUTING -j RCON-POSTROUTING
-F RCON-P-k1
-F RCON-PORTS
-F RCON-POSTROUTING
-F RCON-SERVICES
-X RCON-P-k1
-X RCON-PORTS
-X RCON-POSTROUTING
-X RCON-SERVICES
COMMIT
";
        assert_eq!(got, want, "the foreign DOCKER-USER jump and docker0 masquerade stay");
        assert_eq!(render_remove(&Live::default(), "a"), None);
    }
}
