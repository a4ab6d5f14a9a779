//! A network's part of the table, and the base it needs: the batch that adds (or replaces) one network,
//! and the one that removes it (with the whole table, when it is the last).

use std::fmt::Write as _;

use super::services::declare_service_sets;
use super::{
    nat_chain, out_chain, Live, NetRules, BASE_RULES, BASE_TAG, FWD_DST, FWD_SRC, HAIRPIN, NAT_SRC, PUB_ADDR, PUB_ANY,
    SUBNETS, SVC_PICK, TABLE,
};

/// The batch that installs the base table (when missing or different) and `net`'s rules, replacing whatever
/// `net.name` had before.
pub(crate) fn render_add(live: &Live, net: &NetRules) -> String {
    let (name, s) = (net.name.as_str(), net.subnet.trunc());
    let (out, nat) = (out_chain(name), nat_chain(name));
    let masq = net.masquerade && !net.internal;
    let mut b = String::new();
    // Every chain before any map: nft 1.0.6 fails a map element that jumps to a chain declared after the map
    // when the table is new in the same batch. Only missing chains are declared: `add` of an existing chain
    // is harmless but costs a grace period, like a deletion. Sets and maps are cheap to restate.
    let _ = writeln!(b, "add table {TABLE}");
    let mut chains = vec![
        ("forward", " { type filter hook forward priority filter; policy accept; }"),
        ("postrouting", " { type nat hook postrouting priority srcnat; policy accept; }"),
        ("pub_pre", " { type nat hook prerouting priority dstnat; policy accept; }"),
        ("pub_out", " { type nat hook output priority -100; policy accept; }"),
        ("pub_dnat", ""),
        (SVC_PICK, ""),
        ("replies", ""),
        (&out, ""),
    ];
    if masq {
        chains.push((&nat, ""));
    }
    for (chain, spec) in chains.into_iter().filter(|(c, _)| !live.chains.contains(*c)) {
        let _ = writeln!(b, "add chain {TABLE} {chain}{spec}");
    }
    let _ = writeln!(b, "add set {TABLE} {SUBNETS} {{ type ipv4_addr; flags interval; }}");
    for map in [FWD_SRC, FWD_DST, NAT_SRC] {
        let _ = writeln!(b, "add map {TABLE} {map} {{ type ipv4_addr : verdict; flags interval; }}");
    }
    let port = "inet_proto . inet_service";
    let _ = writeln!(b, "add map {TABLE} {PUB_ANY} {{ type {port} : ipv4_addr . inet_service; }}");
    let _ = writeln!(b, "add map {TABLE} {PUB_ADDR} {{ type ipv4_addr . {port} : ipv4_addr . inet_service; }}");
    let _ = writeln!(b, "add set {TABLE} {HAIRPIN} {{ type ipv4_addr . ipv4_addr; }}");
    declare_service_sets(&mut b);
    for (chain, rules) in BASE_RULES {
        if base_intact(live, chain, rules) {
            continue;
        }
        flush(&mut b, live, chain);
        for r in rules {
            let _ = writeln!(b, "add rule {TABLE} {chain} {r} comment \"{BASE_TAG}\"");
        }
    }
    // What this network had before.
    for e in live.elems.iter().filter(|e| e.owner.as_deref() == Some(name)) {
        let _ = writeln!(b, "delete element {TABLE} {} {{ {} }}", e.set, e.key);
    }
    if !masq && live.chains.contains(&nat) {
        let _ = writeln!(b, "flush chain {TABLE} {nat}");
        let _ = writeln!(b, "delete chain {TABLE} {nat}");
    }
    // Its rules now.
    flush(&mut b, live, &out);
    let _ = writeln!(b, "add rule {TABLE} {out} ip daddr {s} accept");
    let _ = writeln!(b, "add rule {TABLE} {out} ip daddr @{SUBNETS} drop");
    let _ = writeln!(b, "add rule {TABLE} {out} {}", if net.internal { "drop" } else { "accept" });
    if masq {
        flush(&mut b, live, &nat);
        let _ = writeln!(b, "add rule {TABLE} {nat} ip daddr != {} masquerade", net.unnat.trunc());
    }
    let c = format!("comment \"{name}\"");
    let _ = writeln!(b, "add element {TABLE} {SUBNETS} {{ {s} {c} }}");
    let _ = writeln!(b, "add element {TABLE} {FWD_SRC} {{ {s} {c} : jump {out} }}");
    let inbound = if net.internal { "drop" } else { "jump replies" };
    let _ = writeln!(b, "add element {TABLE} {FWD_DST} {{ {s} {c} : {inbound} }}");
    if masq {
        let _ = writeln!(b, "add element {TABLE} {NAT_SRC} {{ {s} {c} : jump {nat} }}");
    }
    b
}

/// A base chain holds its rules of this layout version.
pub(super) fn base_intact(live: &Live, chain: &str, rules: &[&str]) -> bool {
    let have = live.rules.get(chain).map(Vec::as_slice).unwrap_or_default();
    have.len() == rules.len() && have.iter().all(|c| c.as_deref() == Some(BASE_TAG))
}

/// `flush chain` for a chain that exists already (a new one is empty, and the flush would be a deletion).
fn flush(b: &mut String, live: &Live, chain: &str) {
    if live.chains.contains(chain) {
        let _ = writeln!(b, "flush chain {TABLE} {chain}");
    }
}

/// The batch that removes `name`'s elements and chains, or the whole table when no other network remains;
/// None when there is nothing to do.
pub(crate) fn render_remove(live: &Live, name: &str) -> Option<String> {
    if !live.exists {
        return None;
    }
    if live.owners().iter().all(|o| *o == name) {
        return Some(format!("delete table {TABLE}\n"));
    }
    let mut b = String::new();
    for e in live.elems.iter().filter(|e| e.owner.as_deref() == Some(name)) {
        let _ = writeln!(b, "delete element {TABLE} {} {{ {} }}", e.set, e.key);
    }
    for chain in [out_chain(name), nat_chain(name)] {
        if live.chains.contains(&chain) {
            let _ = writeln!(b, "flush chain {TABLE} {chain}");
            let _ = writeln!(b, "delete chain {TABLE} {chain}");
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
add table ip rcon
add chain ip rcon forward { type filter hook forward priority filter; policy accept; }
add chain ip rcon postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip rcon pub_pre { type nat hook prerouting priority dstnat; policy accept; }
add chain ip rcon pub_out { type nat hook output priority -100; policy accept; }
add chain ip rcon pub_dnat
add chain ip rcon svc_pick
add chain ip rcon replies
add chain ip rcon out-web
add chain ip rcon nat-web
add set ip rcon subnets { type ipv4_addr; flags interval; }
add map ip rcon fwd_src { type ipv4_addr : verdict; flags interval; }
add map ip rcon fwd_dst { type ipv4_addr : verdict; flags interval; }
add map ip rcon nat_src { type ipv4_addr : verdict; flags interval; }
add map ip rcon pub_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map ip rcon pub_addr { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
add set ip rcon hairpin { type ipv4_addr . ipv4_addr; }
add set ip rcon svc_all { type ipv4_addr . inet_proto . inet_service; }
add set ip rcon svc_self { type ipv4_addr . ipv4_addr . inet_service . ipv4_addr . inet_proto; }
add rule ip rcon forward ct status dnat accept comment \"rcon base 5\"
add rule ip rcon forward ip saddr vmap @fwd_src comment \"rcon base 5\"
add rule ip rcon forward ip daddr vmap @fwd_dst comment \"rcon base 5\"
add rule ip rcon postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade comment \"rcon base 5\"
add rule ip rcon postrouting ct status dnat ip saddr . ip daddr . th dport . ct original ip daddr . meta l4proto @svc_self masquerade comment \"rcon base 5\"
add rule ip rcon postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade comment \"rcon base 5\"
add rule ip rcon postrouting ip saddr vmap @nat_src comment \"rcon base 5\"
add rule ip rcon replies ct state established,related accept comment \"rcon base 5\"
add rule ip rcon pub_pre ip daddr . meta l4proto . th dport @svc_all jump svc_pick comment \"rcon base 5\"
add rule ip rcon pub_pre fib daddr type local jump pub_dnat comment \"rcon base 5\"
add rule ip rcon pub_out ip daddr . meta l4proto . th dport @svc_all jump svc_pick comment \"rcon base 5\"
add rule ip rcon pub_out fib daddr type local jump pub_dnat comment \"rcon base 5\"
add rule ip rcon pub_dnat dnat ip to ip daddr . meta l4proto . th dport map @pub_addr comment \"rcon base 5\"
add rule ip rcon pub_dnat dnat ip to meta l4proto . th dport map @pub_any comment \"rcon base 5\"
add rule ip rcon out-web ip daddr 10.88.0.0/16 accept
add rule ip rcon out-web ip daddr @subnets drop
add rule ip rcon out-web accept
add rule ip rcon nat-web ip daddr != 10.88.0.0/16 masquerade
add element ip rcon subnets { 10.88.0.0/16 comment \"web\" }
add element ip rcon fwd_src { 10.88.0.0/16 comment \"web\" : jump out-web }
add element ip rcon fwd_dst { 10.88.0.0/16 comment \"web\" : jump replies }
add element ip rcon nat_src { 10.88.0.0/16 comment \"web\" : jump nat-web }
";
        assert_eq!(got, want);
    }

    #[test]
    fn internal_network() {
        let got = render_add(&Live::default(), &net("iso", "10.3.0.0/24", true, true));
        assert!(!got.contains("nat-iso") && !got.contains("!= 10.3.0.0/24 masquerade"), "{got}");
        assert!(got.contains("add rule ip rcon out-iso drop\n"), "{got}");
        assert!(got.contains("add element ip rcon fwd_dst { 10.3.0.0/24 comment \"iso\" : drop }\n"), "{got}");
    }

    #[test]
    fn replace_drops_the_old_elements_and_chains() {
        // "a" comes back with another subnet and without masquerade.
        let got = render_add(&live(), &net("a", "10.5.0.0/24", false, false));
        for line in [
            "delete element ip rcon subnets { 10.1.0.0/24 }",
            "delete element ip rcon fwd_src { 10.1.0.0/24 }",
            "delete element ip rcon fwd_dst { 10.1.0.0/24 }",
            "delete element ip rcon nat_src { 10.1.0.0/24 }",
            "flush chain ip rcon nat-a\ndelete chain ip rcon nat-a",
            "add element ip rcon fwd_src { 10.5.0.0/24 comment \"a\" : jump out-a }",
        ] {
            assert!(got.contains(line), "missing {line:?} in\n{got}");
        }
        assert!(!got.contains("10.2.0.0"), "touched network b:\n{got}");
        // Deletes come before the chain goes and before the new elements.
        assert!(got.find("delete element ip rcon nat_src").unwrap() < got.find("delete chain ip rcon nat-a").unwrap());
        assert!(got.find("delete element ip rcon fwd_src").unwrap() < got.find("add element ip rcon fwd_src").unwrap());
    }

    #[test]
    fn base_rules_restated_only_when_they_differ() {
        // Network "c" joins a table whose base rules are in place: nothing is flushed, nothing deleted.
        let got = render_add(&live(), &net("c", "10.3.0.0/24", false, true));
        assert!(!got.contains("flush") && !got.contains("delete") && !got.contains("rcon base"), "{got}");
        assert!(!got.contains("add chain ip rcon forward") && !got.contains("add chain ip rcon replies"), "{got}");
        assert!(got.contains("add chain ip rcon out-c\nadd chain ip rcon nat-c\n"), "{got}");
        // A base chain that lost a rule, or whose rules carry another tag, is restated whole.
        let mut stale = live();
        stale.rules.get_mut("forward").unwrap().pop();
        stale.rules.insert("replies".into(), vec![Some("rcon base 2".into())]);
        let got = render_add(&stale, &net("c", "10.3.0.0/24", false, true));
        assert!(got.contains("flush chain ip rcon forward\nadd rule ip rcon forward ct status dnat accept"), "{got}");
        assert!(got.contains("flush chain ip rcon replies\nadd rule ip rcon replies ct state"), "{got}");
        assert!(!got.contains("flush chain ip rcon postrouting"), "{got}");
    }

    #[test]
    fn remove_one_then_last() {
        let got = render_remove(&live(), "a").unwrap();
        let want = "\
delete element ip rcon subnets { 10.1.0.0/24 }
delete element ip rcon fwd_src { 10.1.0.0/24 }
delete element ip rcon fwd_dst { 10.1.0.0/24 }
delete element ip rcon nat_src { 10.1.0.0/24 }
flush chain ip rcon out-a
delete chain ip rcon out-a
flush chain ip rcon nat-a
delete chain ip rcon nat-a
";
        assert_eq!(got, want);
        assert_eq!(render_remove(&live(), "zzz"), None, "an absent network is a no-op");
        let mut only_b = live();
        only_b.elems.retain(|e| e.owner.as_deref() == Some("b"));
        assert_eq!(render_remove(&only_b, "b").as_deref(), Some("delete table ip rcon\n"));
        assert_eq!(render_remove(&Live::default(), "b"), None);
    }

    #[test]
    fn odd_names_hash_their_chains() {
        let got = render_add(&Live::default(), &net("a+b", "10.4.0.0/24", false, true));
        let out = out_chain("a+b");
        assert!(out.starts_with("out_") && !got.contains("out-a+b"), "{got}");
        assert!(got.contains(&format!("comment \"a+b\" : jump {out}")), "{got}");
    }
}
