//! All of rcon's rules at once: what the live tables lack of what the records want (the check every
//! command runs), and the input that replaces rcon's chains and rules with exactly that (a restore).

use std::collections::BTreeSet;

use super::networks::{filter_base, filter_net, nat_base, nat_net, wipe};
use super::published::{port_lines, ports_chain};
use super::services::service_lines;
use super::{net_chain, svc_chain, Live, Want, FORWARD, ISOLATE, PORTS, POSTROUTING, PUBLISHED, SERVICES, SVC_TAG};

/// The input that replaces all of rcon's chains and rules with `want` (atomic per table).
pub(crate) fn render_restore(live: &Live, want: &Want) -> String {
    let mut fresh = Live::default();
    let mut keep = |table: &str, chains: Vec<String>| -> BTreeSet<String> {
        if want.networks.is_empty() {
            return BTreeSet::new();
        }
        for c in &chains {
            fresh.chains.insert((table.to_string(), c.clone()));
        }
        chains.into_iter().collect()
    };
    let filter: Vec<String> = [FORWARD.to_string(), ISOLATE.to_string()]
        .into_iter()
        .chain(want.networks.iter().map(|n| net_chain(&n.name)))
        .collect();
    let filter = keep("filter", filter);
    let nat: Vec<String> = [POSTROUTING, PORTS, SERVICES]
        .into_iter()
        .map(String::from)
        .chain(want.ports.iter().map(|(owner, _, _)| ports_chain(owner)))
        .chain(want.services.iter().map(|s| svc_chain(&s.name)))
        .collect();
    let nat = keep("nat", nat);
    let mut b = String::from("*filter\n");
    wipe(live, "filter", &filter, &mut b);
    if !want.networks.is_empty() {
        filter_base(&fresh, &mut b);
        want.networks.iter().for_each(|n| filter_net(n, &mut b));
    }
    b.push_str("COMMIT\n*nat\n");
    wipe(live, "nat", &nat, &mut b);
    if !want.networks.is_empty() {
        nat_base(&fresh, &mut b);
        want.networks.iter().for_each(|n| nat_net(n, &mut b));
        want.published().for_each(|p| port_lines(&p, &mut b));
        want.service_rules().for_each(|s| service_lines(&s, &mut b));
    }
    b.push_str("COMMIT\n");
    b
}

/// The first thing of `want` that `live` lacks: a chain or jump of rcon's base, a network's rules, a
/// service's rules (its VIP jump and masquerades: its own chain is not in the glance). Published ports
/// are not checked (see the nftables backend's `damage`).
pub(crate) fn damage(live: &Live, want: &Want) -> Option<String> {
    if want.networks.is_empty() {
        return None;
    }
    let chains = [("filter", FORWARD), ("filter", ISOLATE), ("nat", POSTROUTING), ("nat", PORTS), ("nat", SERVICES)];
    if let Some((t, c)) = chains.iter().find(|(t, c)| !live.has_chain(t, c)) {
        return Some(format!("chain {c} of table {t} is missing"));
    }
    let jumps = [
        ("filter", "FORWARD", FORWARD),
        ("nat", "PREROUTING", SERVICES),
        ("nat", "PREROUTING", PORTS),
        ("nat", "OUTPUT", SERVICES),
        ("nat", "OUTPUT", PORTS),
        ("nat", "POSTROUTING", POSTROUTING),
    ];
    if let Some((t, from, to)) = jumps.iter().find(|(t, f, to)| !live.has_jump(t, f, to)) {
        return Some(format!("the jump from {from} to {to} (table {t}) is missing"));
    }
    let published = [("filter", ISOLATE), ("filter", "FORWARD"), ("nat", POSTROUTING)];
    if let Some((t, c)) = published.iter().find(|(t, c)| !live.has_comment(t, c, PUBLISHED)) {
        return Some(format!("the published-port rule of {c} (table {t}) is missing"));
    }
    let count = |table: &str, chain: &str| live.rules.iter().filter(|r| r.table == table && r.chain == chain).count();
    for net in &want.networks {
        let owned = |table: &str| live.owned(&net.name).filter(|r| r.table == table).count();
        let masq = net.masquerade && !net.internal;
        if count("filter", &net_chain(&net.name)) != 3 || owned("filter") != 3 || owned("nat") != usize::from(masq) {
            return Some(format!("network {}: its rules are missing or changed", net.name));
        }
    }
    for svc in &want.services {
        let tag = format!("{SVC_TAG}{}", svc.name);
        let tagged =
            live.rules.iter().filter(|r| r.table == "nat" && r.comment.as_deref() == Some(tag.as_str())).count();
        if tagged != svc.backends.len() + 1 {
            return Some(format!("service {}: its rules are missing", svc.name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{live, net, SAVE};
    use super::*;

    #[test]
    fn damage_names_what_is_missing() {
        let a = Want { networks: vec![net("a", "10.1.0.0/24", false, true)], ..Want::default() };
        assert_eq!(damage(&live(), &a), None);
        assert_eq!(damage(&live(), &Want::default()), None);
        // The listing has no rules in b+x's own chain.
        let both = Want { networks: vec![a.networks[0].clone(), net("b+x", "10.2.0.0/24", true, false)], ..a.clone() };
        assert_eq!(damage(&live(), &both).unwrap(), "network b+x: its rules are missing or changed");
        let no_jump = Live::parse(&SAVE.replace("-A POSTROUTING -j RCON-POSTROUTING\n", "")).unwrap();
        assert_eq!(
            damage(&no_jump, &a).unwrap(),
            "the jump from POSTROUTING to RCON-POSTROUTING (table nat) is missing"
        );
        let flushed =
            Live::parse(&SAVE.replace("-A RCON-POSTROUTING -s 10.1.0.0/24", "-A OTHER -s 10.1.0.0/24")).unwrap();
        assert_eq!(damage(&flushed, &a).unwrap(), "network a: its rules are missing or changed");
        assert_eq!(damage(&Live::default(), &a).unwrap(), "chain RCON-FORWARD of table filter is missing");
    }

    #[test]
    fn restore_replaces_everything_of_rcon_and_nothing_else() {
        let a = Want { networks: vec![net("a", "10.1.0.0/24", false, true)], ..Want::default() };
        let got = render_restore(&live(), &a);
        for line in [
            "-D FORWARD -j RCON-FORWARD",
            "-D FORWARD -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT",
            ":RCON-FORWARD - [0:0]",
            ":RCON-N-a - [0:0]",
            "-F RCON-N_77267fbff2ca85bc\n-X RCON-N_77267fbff2ca85bc",
            "-I FORWARD 1 -j RCON-FORWARD",
            "-A RCON-N-a -d 10.1.0.0/24 -j ACCEPT",
            "-D POSTROUTING -j RCON-POSTROUTING",
            "-X RCON-P-k1",
            "-A RCON-POSTROUTING -s 10.1.0.0/24 ! -d 10.1.0.0/24 -m comment --comment \"a\" -j MASQUERADE",
        ] {
            assert!(got.contains(line), "missing {line:?} in\n{got}");
        }
        assert!(!got.contains("DOCKER") && !got.contains("foreign") && !got.contains("docker0"), "{got}");
        // Each declared chain is declared once, before any rule goes into it.
        assert_eq!(got.matches(":RCON-N-a ").count(), 1);
        let decl = got.find(":RCON-N-a ").unwrap();
        assert!(got.find("-A RCON-N-a").unwrap() > decl);
        // No network: everything of rcon goes, and nothing comes back.
        let gone = render_restore(&live(), &Want::default());
        assert!(gone.contains("-X RCON-FORWARD") && !gone.contains("-I ") && !gone.contains("-A "), "{gone}");
    }
}
