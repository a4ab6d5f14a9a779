//! Services, as elements only: the VIP in `svc_all` and in the set of the shared chain for the service's
//! number of backends and spreading (named as the chain), one `svc_dst_I` element for its backend I and
//! one `svc_self` element per backend, for the masquerade of a backend landing on itself.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{lb_chain, pick_rule, slot, Live, SvcChange, SvcRules, SVC_ALL, SVC_PICK, SVC_SELF, TABLE};

const VIP_TYPE: &str = "ipv4_addr . inet_proto . inet_service";

/// The service maps made with the table, declared again with each service batch (declaring is idempotent).
pub(super) fn declare_service_sets(b: &mut String) {
    let _ = writeln!(b, "add set {TABLE} {SVC_ALL} {{ type {VIP_TYPE}; }}");
    let _ = writeln!(
        b,
        "add set {TABLE} {SVC_SELF} {{ type ipv4_addr . ipv4_addr . inet_service . ipv4_addr . inet_proto; }}"
    );
}

/// A backend slot's map.
pub(super) fn declare_slot(b: &mut String, map: &str) {
    let _ = writeln!(b, "add map {TABLE} {map} {{ type {VIP_TYPE} : ipv4_addr . inet_service; }}");
}

/// The set of the VIPs whose connections go to shared chain `chain`, named as the chain.
pub(super) fn declare_lb_set(b: &mut String, chain: &str) {
    let _ = writeln!(b, "add set {TABLE} {chain} {{ type {VIP_TYPE}; }}");
}

/// `svc_pick`'s rule for shared chain `chain`: after the chain and its set are in the batch.
pub(super) fn add_pick(b: &mut String, chain: &str) {
    let _ = writeln!(b, "add rule {TABLE} {SVC_PICK} {}", pick_rule(chain));
}

/// The chains a service with `k` backends spread by `lb` needs and `have` lacks (its slots', then its
/// own, each with its rule), after the slot maps they use: the batch that makes them the first time.
fn need_chains(b: &mut String, have: &BTreeSet<String>, lb: crate::net::service_types::Lb, k: usize) {
    for i in 0..k {
        declare_slot(b, &slot(i).0);
    }
    let (chain, rule) = lb_chain(lb, k);
    declare_lb_set(b, &chain);
    if have.contains(&chain) {
        return;
    }
    for (_, slot_chain, slot_rule) in (0..k).map(slot).filter(|(_, c, _)| !have.contains(c)) {
        let _ = writeln!(b, "add chain {TABLE} {slot_chain}\nadd rule {TABLE} {slot_chain} {slot_rule}");
    }
    let _ = writeln!(b, "add chain {TABLE} {chain}\nadd rule {TABLE} {chain} {rule}");
    add_pick(b, &chain);
}

/// One element: its set, its key as nft lists it back, and its value (a set's element has none).
type Elem = (String, String, Option<String>);

/// `svc`'s keys in `svc_self`: `B . B . PORT . VIP . proto` for each backend B:PORT (what the postrouting
/// rule reads after the DNAT: source, destination, destination port, original destination, protocol).
fn self_keys(svc: &SvcRules) -> BTreeSet<String> {
    let v = svc.vip;
    svc.backends.iter().map(|(ip, port)| format!("{ip} . {ip} . {port} . {} . {}", v.ip, v.proto)).collect()
}

/// Every element of `svc`.
fn elements(svc: &SvcRules) -> Vec<Elem> {
    let v = svc.vip;
    let vip = format!("{} . {} . {}", v.ip, v.proto, v.port);
    let (chain, _) = lb_chain(svc.lb, svc.backends.len());
    let mut out = vec![(SVC_ALL.to_string(), vip.clone(), None), (chain, vip.clone(), None)];
    for (i, (ip, port)) in svc.backends.iter().enumerate() {
        out.push((slot(i).0, vip.clone(), Some(format!("{ip} . {port}"))));
    }
    out.extend(self_keys(svc).into_iter().map(|k| (SVC_SELF.to_string(), k, None)));
    out
}

/// The batch that makes service `c.name` what `c.new` says: the shared chains it needs (made when `live`
/// lacks them) and its elements; whatever it had that it keeps not (and no peer on its VIP address
/// shares) goes. What it had: `c.old`, each element deleted after an add of the same element, so that
/// the batch holds whether the element was there or not; or, `whole`, what `live` (the whole listing)
/// holds under its name or under its new VIP (a leftover of a crash).
pub(crate) fn render_service(live: &Live, c: &SvcChange, whole: bool) -> String {
    let mut b = String::new();
    declare_service_sets(&mut b);
    let new: Vec<Elem> = c.new.as_ref().map(elements).unwrap_or_default();
    if let Some(s) = &c.new {
        need_chains(&mut b, &live.chains, s.lb, s.backends.len());
    }
    let keep: BTreeSet<String> = c.new.iter().chain(c.peers).flat_map(self_keys).collect();
    let had: Vec<Elem> = if whole {
        let vip = new.first().map(|e| e.1.as_str());
        live.svc
            .iter()
            .filter(|e| e.owner.as_deref() == Some(c.name) || (e.set != SVC_SELF && Some(e.key.as_str()) == vip))
            .map(|e| (e.set.clone(), e.key.clone(), None))
            .collect()
    } else {
        c.old.as_ref().map(elements).unwrap_or_default()
    };
    for (set, key, value) in &had {
        if (set == SVC_SELF && keep.contains(key))
            || (!whole && new.contains(&(set.clone(), key.clone(), value.clone())))
        {
            continue;
        }
        if !whole {
            let value = value.as_deref().map(|v| format!(" : {v}")).unwrap_or_default();
            let _ = writeln!(b, "add element {TABLE} {set} {{ {key}{value} }}");
        }
        let _ = writeln!(b, "delete element {TABLE} {set} {{ {key} }}");
    }
    let name = c.name;
    for (set, key, value) in &new {
        let value = value.as_deref().map(|v| format!(" : {v}")).unwrap_or_default();
        let _ = writeln!(b, "add element {TABLE} {set} {{ {key} comment \"{name}\"{value} }}");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::live;
    use super::super::live::PortElem;
    use super::*;
    use crate::net::service_types::Lb;

    fn web(backends: &[(std::net::Ipv4Addr, u16)]) -> SvcRules<'_> {
        SvcRules { name: "web", vip: "10.96.0.1:80".parse().unwrap(), lb: Lb::Roundrobin, backends }
    }

    fn ip(s: &str) -> std::net::Ipv4Addr {
        s.parse().unwrap()
    }

    /// The batch without the declarations of maps and sets.
    fn body(b: &str) -> String {
        b.lines().filter(|l| !l.starts_with("add map") && !l.starts_with("add set")).map(|l| format!("{l}\n")).collect()
    }

    /// A live table where the chains of services with `k` backends spread round robin are made.
    fn with_chains(k: usize) -> Live {
        let mut l = live();
        l.chains.insert(lb_chain(Lb::Roundrobin, k).0);
        l.chains.extend((0..k).map(|i| slot(i).1));
        l
    }

    #[test]
    fn a_new_service_is_elements_and_the_shared_chain_once() {
        let backends = [(ip("10.1.0.2"), 80), (ip("10.1.0.3"), 80)];
        let c = SvcChange { name: "web", old: None, new: Some(web(&backends)), peers: &[] };
        let want = "\
add chain ip rcon svc-slot-0
add rule ip rcon svc-slot-0 dnat ip to ip daddr . meta l4proto . th dport map @svc_dst_0
add chain ip rcon svc-slot-1
add rule ip rcon svc-slot-1 dnat ip to ip daddr . meta l4proto . th dport map @svc_dst_1
add chain ip rcon svc-roundrobin-2
add rule ip rcon svc-roundrobin-2 numgen inc mod 2 vmap { 0 : goto svc-slot-0, 1 : goto svc-slot-1 }
add rule ip rcon svc_pick ip daddr . meta l4proto . th dport @svc-roundrobin-2 goto svc-roundrobin-2
add element ip rcon svc_all { 10.96.0.1 . tcp . 80 comment \"web\" }
add element ip rcon svc-roundrobin-2 { 10.96.0.1 . tcp . 80 comment \"web\" }
add element ip rcon svc_dst_0 { 10.96.0.1 . tcp . 80 comment \"web\" : 10.1.0.2 . 80 }
add element ip rcon svc_dst_1 { 10.96.0.1 . tcp . 80 comment \"web\" : 10.1.0.3 . 80 }
add element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp comment \"web\" }
add element ip rcon svc_self { 10.1.0.3 . 10.1.0.3 . 80 . 10.96.0.1 . tcp comment \"web\" }
";
        let got = render_service(&live(), &c, false);
        assert_eq!(body(&got), want);
        let slot_map =
            "add map ip rcon svc_dst_1 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }";
        assert!(got.find(slot_map) < got.find("add chain"), "a slot's map after its chain:\n{got}");
        let lb_set = "add set ip rcon svc-roundrobin-2 { type ipv4_addr . inet_proto . inet_service; }";
        assert!(got.find(lb_set) < got.find("add rule ip rcon svc_pick"), "the pick rule before its set:\n{got}");
        // The chains are there already: elements only.
        assert!(!render_service(&with_chains(2), &c, false).contains("chain"));
        let empty = SvcChange { new: Some(web(&[])), ..c };
        let got = render_service(&live(), &empty, false);
        assert!(got.contains("add rule ip rcon svc-none reject\n"), "{got}");
        assert!(got.contains("add element ip rcon svc-none { 10.96.0.1 . tcp . 80 comment \"web\" }"), "{got}");
    }

    #[test]
    fn a_change_drops_what_the_old_record_had_and_no_peer_needs() {
        let (b1, b2, b3) = ((ip("10.1.0.2"), 80), (ip("10.1.0.3"), 80), (ip("10.1.0.4"), 80));
        let (old, new) = ([b1, b2], [b1, b3]);
        let l = with_chains(2);
        let c = SvcChange { name: "web", old: Some(web(&old)), new: Some(web(&new)), peers: &[] };
        let got = body(&render_service(&l, &c, false));
        let gone = "10.1.0.3 . 10.1.0.3 . 80 . 10.96.0.1 . tcp";
        for line in [
            format!("add element ip rcon svc_self {{ {gone} }}\ndelete element ip rcon svc_self {{ {gone} }}\n"),
            "add element ip rcon svc_dst_1 { 10.96.0.1 . tcp . 80 : 10.1.0.3 . 80 }\n\
             delete element ip rcon svc_dst_1 { 10.96.0.1 . tcp . 80 }\n"
                .to_string(),
            "add element ip rcon svc_dst_1 { 10.96.0.1 . tcp . 80 comment \"web\" : 10.1.0.4 . 80 }\n".to_string(),
        ] {
            assert!(got.contains(&line), "missing {line:?} in\n{got}");
        }
        assert_eq!(got.matches("delete").count(), 2, "the VIP, its set and slot 0 stay:\n{got}");
        // A service on the same VIP address, another port, with b2 too, keeps the pair; one on another
        // address does not.
        let peer_backends = [b2];
        let peer = SvcRules { name: "api", vip: "10.96.0.1:8080".parse().unwrap(), ..web(&peer_backends) };
        let shared = render_service(&l, &SvcChange { peers: &[peer], ..c }, false);
        assert!(!shared.contains("delete element ip rcon svc_self"), "{shared}");
        let other = SvcRules { vip: "10.96.0.2:80".parse().unwrap(), ..peer };
        assert!(
            render_service(&l, &SvcChange { peers: &[other], ..c }, false).contains("delete element ip rcon svc_self")
        );
    }

    #[test]
    fn removal_adds_before_it_deletes_or_reads_the_whole_listing() {
        let backends = [(ip("10.1.0.2"), 80)];
        let c = SvcChange { name: "web", old: Some(web(&backends)), new: None, peers: &[] };
        let want = "\
add element ip rcon svc_all { 10.96.0.1 . tcp . 80 }
delete element ip rcon svc_all { 10.96.0.1 . tcp . 80 }
add element ip rcon svc-roundrobin-1 { 10.96.0.1 . tcp . 80 }
delete element ip rcon svc-roundrobin-1 { 10.96.0.1 . tcp . 80 }
add element ip rcon svc_dst_0 { 10.96.0.1 . tcp . 80 : 10.1.0.2 . 80 }
delete element ip rcon svc_dst_0 { 10.96.0.1 . tcp . 80 }
add element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp }
delete element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp }
";
        assert_eq!(body(&render_service(&with_chains(1), &c, false)), want);
        // The whole listing: what its comments give to the service goes, and only that.
        let mut with = live();
        let elem = |set: &str, key: &str, owner: &str| PortElem {
            set: set.into(),
            key: key.into(),
            owner: Some(owner.into()),
        };
        with.svc.push(elem(SVC_ALL, "10.96.0.1 . tcp . 80", "web"));
        with.svc.push(elem("svc-roundrobin-1", "10.96.0.1 . tcp . 80", "web"));
        with.svc.push(elem("svc_dst_0", "10.96.0.1 . tcp . 80", "web"));
        with.svc.push(elem(SVC_SELF, "10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp", "web"));
        with.svc.push(elem(SVC_SELF, "10.1.0.9 . 10.1.0.9 . 80 . 10.96.0.3 . tcp", "api"));
        let gc = body(&render_service(&with, &SvcChange { old: None, ..c }, true));
        assert_eq!(
            gc,
            "delete element ip rcon svc_all { 10.96.0.1 . tcp . 80 }\n\
             delete element ip rcon svc-roundrobin-1 { 10.96.0.1 . tcp . 80 }\n\
             delete element ip rcon svc_dst_0 { 10.96.0.1 . tcp . 80 }\n\
             delete element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp }\n"
        );
    }
}
