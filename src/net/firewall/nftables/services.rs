//! Services: a VIP element of `svc_vips` that jumps to the service's chain, which DNATs to one backend
//! by numgen, and a `svc_self` element per backend, for the masquerade of a backend landing on itself.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{svc_chain, Live, SvcChange, SvcRules, SVC_SELF, SVC_VIPS, TABLE};
use crate::net::service_types::Lb;

/// The service maps, declared with the table and again with each service batch (declaring is idempotent).
pub(super) fn declare_service_sets(b: &mut String) {
    let _ = writeln!(b, "add map {TABLE} {SVC_VIPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}");
    let _ = writeln!(
        b,
        "add set {TABLE} {SVC_SELF} {{ type ipv4_addr . ipv4_addr . inet_service . ipv4_addr . inet_proto; }}"
    );
}

/// `svc`'s key in `svc_vips`, as nft lists it back.
fn vip_key(svc: &SvcRules) -> String {
    format!("{} . {} . {}", svc.vip.ip, svc.vip.proto, svc.vip.port)
}

/// `svc`'s keys in `svc_self`: `B . B . PORT . VIP . proto` for each backend B:PORT (what the postrouting
/// rule reads after the DNAT: source, destination, destination port, original destination, protocol).
pub(super) fn self_keys(svc: &SvcRules) -> BTreeSet<String> {
    let v = svc.vip;
    svc.backends.iter().map(|(ip, port)| format!("{ip} . {ip} . {port} . {} . {}", v.ip, v.proto)).collect()
}

/// The batch that makes service `c.name` what `c.new` says: its chain (DNAT to one backend, by numgen),
/// its VIP element, its `svc_self` elements; whatever `c.old` had that `c.new` (or a peer on the same
/// VIP address) does not keep goes. `live`: read when the old state is unknown (gc), for the elements
/// whose comment names the service. Every delete follows an add of the same object, so the batch holds
/// whether the object was there or not (a crash half-way, a hand edit): nothing needs reading first.
pub(crate) fn render_service(live: Option<&Live>, c: &SvcChange) -> String {
    let chain = svc_chain(c.name);
    let mut b = String::new();
    declare_service_sets(&mut b);
    // The chain first: the VIP elements' verdicts name it.
    let _ = writeln!(b, "add chain {TABLE} {chain}");
    let owned = |set: &'static str| {
        live.into_iter().flat_map(|l| &l.svc).filter(move |e| e.set == set && e.owner.as_deref() == Some(c.name))
    };
    let new_vip = c.new.as_ref().map(vip_key);
    let old_vips: BTreeSet<String> =
        c.old.as_ref().map(vip_key).into_iter().chain(owned(SVC_VIPS).map(|e| e.key.clone())).collect();
    for k in old_vips.iter().filter(|k| Some(*k) != new_vip.as_ref()) {
        let _ = writeln!(b, "add element {TABLE} {SVC_VIPS} {{ {k} : goto {chain} }}");
        let _ = writeln!(b, "delete element {TABLE} {SVC_VIPS} {{ {k} }}");
    }
    let keep: BTreeSet<String> = c.new.iter().chain(c.peers).flat_map(self_keys).collect();
    let had: BTreeSet<String> =
        c.old.iter().flat_map(self_keys).chain(owned(SVC_SELF).map(|e| e.key.clone())).collect();
    for k in had.difference(&keep) {
        let _ = writeln!(b, "add element {TABLE} {SVC_SELF} {{ {k} }}\ndelete element {TABLE} {SVC_SELF} {{ {k} }}");
    }
    let _ = writeln!(b, "flush chain {TABLE} {chain}");
    let Some(s) = c.new else {
        let _ = writeln!(b, "delete chain {TABLE} {chain}");
        return b;
    };
    let n = s.backends.len();
    if n == 0 {
        let _ = writeln!(b, "add rule {TABLE} {chain} reject");
    } else {
        let gen = match s.lb {
            Lb::Roundrobin => "inc",
            Lb::Random => "random",
        };
        let targets: Vec<String> =
            s.backends.iter().enumerate().map(|(i, (ip, port))| format!("{i} : {ip} . {port}")).collect();
        // A port in a DNAT target needs the protocol matched first.
        let _ = writeln!(
            b,
            "add rule {TABLE} {chain} meta l4proto {} dnat ip to numgen {gen} mod {n} map {{ {} }}",
            s.vip.proto,
            targets.join(", ")
        );
    }
    let name = c.name;
    let _ = writeln!(b, "add element {TABLE} {SVC_VIPS} {{ {} comment \"{name}\" : goto {chain} }}", vip_key(&s));
    for k in self_keys(&s) {
        let _ = writeln!(b, "add element {TABLE} {SVC_SELF} {{ {k} comment \"{name}\" }}");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::live;
    use super::super::live::PortElem;
    use super::*;

    fn web(backends: &[(std::net::Ipv4Addr, u16)]) -> SvcRules<'_> {
        SvcRules { name: "web", vip: "10.96.0.1:80".parse().unwrap(), lb: Lb::Roundrobin, backends }
    }

    fn ip(s: &str) -> std::net::Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_new_service_is_its_chain_its_vip_and_its_backends_own_pairs() {
        let backends = [(ip("10.1.0.2"), 80), (ip("10.1.0.3"), 80)];
        let c = SvcChange { name: "web", old: None, new: Some(web(&backends)), peers: &[] };
        let got = render_service(None, &c);
        let want = "\
add chain ip rcon svc-web
flush chain ip rcon svc-web
add rule ip rcon svc-web meta l4proto tcp dnat ip to numgen inc mod 2 map { 0 : 10.1.0.2 . 80, 1 : 10.1.0.3 . 80 }
add element ip rcon svc_vips { 10.96.0.1 . tcp . 80 comment \"web\" : goto svc-web }
add element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp comment \"web\" }
add element ip rcon svc_self { 10.1.0.3 . 10.1.0.3 . 80 . 10.96.0.1 . tcp comment \"web\" }
";
        assert!(got.ends_with(want), "{got}");
        assert!(!got.contains("delete"), "{got}");
        let empty = SvcChange { new: Some(web(&[])), ..c };
        assert!(render_service(None, &empty).contains("add rule ip rcon svc-web reject"));
    }

    #[test]
    fn a_change_drops_what_the_old_record_had_and_no_peer_needs() {
        let (b1, b2, b3) = ((ip("10.1.0.2"), 80), (ip("10.1.0.3"), 80), (ip("10.1.0.4"), 80));
        let old = [b1, b2];
        let new = [b1, b3];
        // A service on the same VIP address, another port, with b2 too.
        let peer_backends = [b2];
        let peer = SvcRules { name: "api", vip: "10.96.0.1:8080".parse().unwrap(), ..web(&peer_backends) };
        let c = SvcChange { name: "web", old: Some(web(&old)), new: Some(web(&new)), peers: &[] };
        let got = render_service(None, &c);
        let gone = "10.1.0.3 . 10.1.0.3 . 80 . 10.96.0.1 . tcp";
        assert!(
            got.contains(&format!(
                "add element ip rcon svc_self {{ {gone} }}\ndelete element ip rcon svc_self {{ {gone} }}\n"
            )),
            "{got}"
        );
        assert!(!got.contains("delete element ip rcon svc_vips"), "the VIP stays: {got}");
        assert_eq!(got.matches("delete").count(), 1, "{got}");
        // The peer keeps the pair; and the key tells services on different addresses apart.
        let shared = render_service(None, &SvcChange { peers: &[peer], ..c });
        assert!(!shared.contains("delete"), "{shared}");
        let other = SvcRules { vip: "10.96.0.2:80".parse().unwrap(), ..peer };
        assert!(render_service(None, &SvcChange { peers: &[other], ..c }).contains("delete element"));
    }

    #[test]
    fn removal_adds_before_it_deletes_so_it_holds_when_things_are_gone() {
        let backends = [(ip("10.1.0.2"), 80)];
        let c = SvcChange { name: "web", old: Some(web(&backends)), new: None, peers: &[] };
        let want = "\
add chain ip rcon svc-web
add element ip rcon svc_vips { 10.96.0.1 . tcp . 80 : goto svc-web }
delete element ip rcon svc_vips { 10.96.0.1 . tcp . 80 }
add element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp }
delete element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp }
flush chain ip rcon svc-web
delete chain ip rcon svc-web
";
        assert!(render_service(None, &c).ends_with(want));
        // gc knows the name alone: what the table's comments give to it goes.
        let mut with = live();
        with.chains.insert("svc-web".into());
        let elem = |set: &str, key: &str, owner: &str| PortElem {
            set: set.into(),
            key: key.into(),
            owner: Some(owner.into()),
        };
        with.svc.push(elem(SVC_VIPS, "10.96.0.1 . tcp . 80", "web"));
        with.svc.push(elem(SVC_SELF, "10.1.0.2 . 10.1.0.2 . 80 . 10.96.0.1 . tcp", "web"));
        with.svc.push(elem(SVC_SELF, "10.1.0.9 . 10.1.0.9 . 80 . 10.96.0.3 . tcp", "api"));
        let gc = render_service(Some(&with), &SvcChange { old: None, ..c });
        assert!(gc.ends_with(want), "{gc}");
    }
}
