//! The table as a whole: what a live table lacks of what the records want (the check every command
//! runs), and the batch that replaces the table with exactly that (a restore).

use std::fmt::Write as _;

use super::networks::{base_intact, render_add};
use super::published::render_ports;
use super::services::{add_pick, declare_lb_set, declare_slot, render_service};
use super::{
    is_lb_chain, lb_chain, nat_chain, out_chain, slot, Live, SvcChange, Want, BASE_RULES, BASE_TAG, SETS, SVC_PICK,
    TABLE,
};

/// The first thing of `want` that `live` lacks: the table, a base chain or its rules, a set, a network's
/// or a service's chains and their rules. Elements are not checked, so that the check reads a terse
/// listing whose size does not grow with the published ports (an attach in flight would read as damage
/// anyway: it records its ports before it adds them); what deletes a whole table, chain or set is caught,
/// and every restore puts back all elements.
pub(crate) fn damage(live: &Live, want: &Want) -> Option<String> {
    if want.networks.is_empty() {
        return None;
    }
    if !live.exists {
        return Some(format!("table {TABLE} is missing"));
    }
    if let Some((chain, _)) = BASE_RULES.iter().find(|(c, r)| !live.chains.contains(*c) || !base_intact(live, c, r)) {
        return Some(format!("chain {chain} of table {TABLE} is missing or changed"));
    }
    if let Some(set) = SETS.iter().find(|s| !live.sets.contains(**s)) {
        return Some(format!("set {set} of table {TABLE} is missing"));
    }
    // One `svc_pick` rule and one set per shared service chain: a rule or set lost leaves that chain's
    // services unreachable.
    let lb_chains: Vec<&String> = live.chains.iter().filter(|c| is_lb_chain(c)).collect();
    if !live.chains.contains(SVC_PICK) || live.rules.get(SVC_PICK).map_or(0, Vec::len) != lb_chains.len() {
        return Some(format!("chain {SVC_PICK} of table {TABLE} is missing or changed"));
    }
    if let Some(set) = lb_chains.iter().find(|c| !live.sets.contains(c.as_str())) {
        return Some(format!("set {set} of table {TABLE} is missing"));
    }
    let rules = |chain: &str| live.rules.get(chain).map_or(0, Vec::len);
    for net in &want.networks {
        let name = net.name.as_str();
        let masq = net.masquerade && !net.internal;
        let (out, nat) = (out_chain(name), nat_chain(name));
        if rules(&out) != 3 || (masq && rules(&nat) != 1) {
            return Some(format!(
                "network {name}: its chain {} lost its rules",
                if rules(&out) != 3 { out } else { nat }
            ));
        }
    }
    // Services are not checked one by one: that would read every service record on every command. A
    // ruleset that lost the table, a base chain or the service maps is caught above.
    None
}

/// The batch that replaces the whole table with `want`: the table is deleted and made again in one
/// transaction, so no packet sees it half-built. Chains are declared before any map (see `render_add`).
pub(crate) fn render_restore(want: &Want) -> String {
    let mut b = format!("add table {TABLE}\ndelete table {TABLE}\n");
    if want.networks.is_empty() {
        return b;
    }
    let _ = writeln!(b, "add table {TABLE}");
    let mut live = Live { exists: true, ..Live::default() };
    let own_chains = want.networks.iter().flat_map(|n| {
        let masq = n.masquerade && !n.internal;
        std::iter::once(out_chain(&n.name)).chain(masq.then(|| nat_chain(&n.name)))
    });
    // The shared service chains in use (and their slots'), declared with the others; their rules and
    // the slot maps after the base maps.
    let lb: std::collections::BTreeSet<_> = want.services.iter().map(|s| (s.lb, s.backends.len())).collect();
    let slots = lb.iter().map(|(_, k)| *k).max().unwrap_or(0);
    let svc_chains = (0..slots).map(|i| slot(i).1).chain(lb.iter().map(|(l, k)| lb_chain(*l, *k).0));
    for chain in own_chains {
        let _ = writeln!(b, "add chain {TABLE} {chain}");
        live.chains.insert(chain);
    }
    for chain in svc_chains {
        let _ = writeln!(b, "add chain {TABLE} {chain}");
        live.chains.insert(chain);
    }
    for net in &want.networks {
        b.push_str(&render_add(&live, net));
        // The base is in the batch now: the next network's part adds only its own.
        live.chains.insert(SVC_PICK.to_string());
        for (chain, rules) in BASE_RULES {
            live.chains.insert(chain.to_string());
            live.rules.insert(chain.to_string(), vec![Some(BASE_TAG.to_string()); rules.len()]);
        }
    }
    for p in want.published() {
        b.push_str(&render_ports(&p, true));
    }
    for (map, chain, rule) in (0..slots).map(slot) {
        declare_slot(&mut b, &map);
        let _ = writeln!(b, "add rule {TABLE} {chain} {rule}");
    }
    for (chain, rule) in lb.iter().map(|(l, k)| lb_chain(*l, *k)) {
        let _ = writeln!(b, "add rule {TABLE} {chain} {rule}");
        declare_lb_set(&mut b, &chain);
        add_pick(&mut b, &chain);
    }
    for svc in want.service_rules() {
        let c = SvcChange { name: svc.name, old: None, new: Some(svc), peers: &[] };
        b.push_str(&render_service(&live, &c, false));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::net;
    use super::super::live::Elem;
    use super::super::{FWD_DST, FWD_SRC, NAT_SRC, PUB_ANY, SUBNETS};
    use super::*;
    use crate::net::service_types::Lb;

    fn want_two() -> Want {
        use crate::net::ports::{Mapping, Proto};
        let m = vec![Mapping { proto: Proto::Tcp, host_ip: None, host_port: 8080, ctr_port: 80 }];
        let svc = |name: &str, vip: &str| crate::net::firewall::WantService {
            name: name.into(),
            vip: vip.parse().unwrap(),
            lb: Lb::Random,
            backends: vec![("10.1.0.2".parse().unwrap(), 80)],
        };
        Want {
            networks: vec![net("a", "10.1.0.0/24", false, true), net("b", "10.2.0.0/24", true, false)],
            ports: vec![("k1".into(), "10.1.0.2".parse().unwrap(), m)],
            services: vec![svc("web", "10.96.0.1:80"), svc("api", "10.96.0.2:80")],
            ..Want::default()
        }
    }

    #[test]
    fn restore_rebuilds_the_table_in_one_batch() {
        let got = render_restore(&want_two());
        assert!(got.starts_with("add table ip rcon\ndelete table ip rcon\nadd table ip rcon\n"), "{got}");
        let lines: Vec<&str> = got.lines().collect();
        let first_map = lines.iter().position(|l| l.starts_with("add map") || l.starts_with("add set")).unwrap();
        let last_chain = lines.iter().rposition(|l| l.starts_with("add chain")).unwrap();
        assert!(last_chain < first_map, "a chain declared after a map:\n{got}");
        // The base rules once, whatever the number of networks.
        let base: usize = BASE_RULES.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(got.matches(&format!("comment \"{BASE_TAG}\"")).count(), base, "{got}");
        for line in [
            "add element ip rcon fwd_dst { 10.2.0.0/24 comment \"b\" : drop }",
            "add element ip rcon nat_src { 10.1.0.0/24 comment \"a\" : jump nat-a }",
            "add element ip rcon pub_any { tcp . 8080 comment \"k1\" : 10.1.0.2 . 80 }",
            "add element ip rcon svc_all { 10.96.0.2 . tcp . 80 comment \"api\" }",
            "add element ip rcon svc-random-1 { 10.96.0.2 . tcp . 80 comment \"api\" }",
            "add rule ip rcon svc_pick ip daddr . meta l4proto . th dport @svc-random-1 goto svc-random-1",
            "add rule ip rcon svc-random-1 numgen random mod 1 vmap { 0 : goto svc-slot-0 }",
            "add rule ip rcon svc-slot-0 dnat ip to ip daddr . meta l4proto . th dport map @svc_dst_0",
        ] {
            assert!(got.contains(line), "missing {line:?} in\n{got}");
        }
        assert!(!got.contains("nat-b"), "an internal network masquerades:\n{got}");
        for svc in ["web", "api"] {
            let vip = if svc == "web" { "10.96.0.1" } else { "10.96.0.2" };
            let pair =
                format!("add element ip rcon svc_self {{ 10.1.0.2 . 10.1.0.2 . 80 . {vip} . tcp comment \"{svc}\" }}");
            assert_eq!(got.matches(&pair).count(), 1, "{got}");
        }
        // No network: the table just goes.
        assert_eq!(render_restore(&Want::default()), "add table ip rcon\ndelete table ip rcon\n");
    }

    /// The live table exactly as `want_two` makes it.
    fn intact() -> Live {
        let w = want_two();
        let mut l = Live { exists: true, ..Live::default() };
        for (chain, rules) in BASE_RULES {
            l.chains.insert(chain.into());
            l.rules.insert(chain.into(), vec![Some(BASE_TAG.into()); rules.len()]);
        }
        l.chains.insert(SVC_PICK.into());
        l.sets = SETS.iter().map(|s| s.to_string()).collect();
        for n in &w.networks {
            l.rules.insert(out_chain(&n.name), vec![None; 3]);
            let masq = n.masquerade && !n.internal;
            if masq {
                l.rules.insert(nat_chain(&n.name), vec![None]);
            }
            for set in [SUBNETS, FWD_SRC, FWD_DST].into_iter().chain(masq.then_some(NAT_SRC)) {
                l.elems.push(Elem { set: set.into(), key: n.subnet, owner: Some(n.name.clone()) });
            }
        }
        l
    }

    #[test]
    fn damage_names_what_is_missing() {
        let w = want_two();
        assert_eq!(damage(&intact(), &w), None);
        assert_eq!(damage(&Live::default(), &Want::default()), None, "no network needs no table");
        assert_eq!(damage(&Live::default(), &w).unwrap(), "table ip rcon is missing");
        let mut l = intact();
        l.rules.remove("postrouting");
        assert_eq!(damage(&l, &w).unwrap(), "chain postrouting of table ip rcon is missing or changed");
        let mut l = intact();
        l.sets.remove(PUB_ANY);
        assert_eq!(damage(&l, &w).unwrap(), "set pub_any of table ip rcon is missing");
        let mut l = intact();
        l.rules.remove("nat-a");
        assert_eq!(damage(&l, &w).unwrap(), "network a: its chain nat-a lost its rules");
        // Services are not checked one by one (see `damage`); their maps are.
        let mut l = intact();
        l.sets.remove("svc_all");
        assert_eq!(damage(&l, &w).unwrap(), "set svc_all of table ip rcon is missing");
        // A shared service chain without its pick rule, or without its set.
        let mut l = intact();
        l.chains.insert("svc-random-1".into());
        assert_eq!(damage(&l, &w).unwrap(), "chain svc_pick of table ip rcon is missing or changed");
        l.rules.insert(SVC_PICK.into(), vec![None]);
        assert_eq!(damage(&l, &w).unwrap(), "set svc-random-1 of table ip rcon is missing");
        l.sets.insert("svc-random-1".into());
        assert_eq!(damage(&l, &w), None);
        // Elements are not read (a terse listing has none).
        let mut l = intact();
        l.elems.clear();
        assert_eq!(damage(&l, &w), None);
    }
}
