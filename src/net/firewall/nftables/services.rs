//! Services: a VIP element of `svc_vips` that jumps to the service's chain, which DNATs to one backend
//! by numgen, and the `svc_self` pairs of every backend.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::{svc_chain, Live, SvcRules, SVC_SELF, SVC_VIPS, TABLE};
use crate::net::service_types::Lb;

/// The service maps, declared with the table and again with each service batch (declaring is idempotent).
pub(super) fn declare_service_sets(b: &mut String) {
    let _ = writeln!(b, "add map {TABLE} {SVC_VIPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}");
    let _ = writeln!(b, "add set {TABLE} {SVC_SELF} {{ type ipv4_addr . ipv4_addr; }}");
}

/// The batch that restates (or, `svc` None, removes) service `name`: its chain (DNAT to one backend, by
/// numgen), its VIP element, and the service hairpin set made equal to `all`.
pub(crate) fn render_service(live: &Live, name: &str, svc: Option<&SvcRules>, all: &[Ipv4Addr]) -> String {
    let chain = svc_chain(name);
    let mut b = String::new();
    declare_service_sets(&mut b);
    let had = live.chains.contains(&chain);
    for e in live.svc.iter().filter(|e| e.set == SVC_VIPS && e.owner.as_deref() == Some(name)) {
        let _ = writeln!(b, "delete element {TABLE} {SVC_VIPS} {{ {} }}", e.key);
    }
    match svc {
        Some(s) => {
            if had {
                let _ = writeln!(b, "flush chain {TABLE} {chain}");
            } else {
                let _ = writeln!(b, "add chain {TABLE} {chain}");
            }
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
            let v = s.vip;
            let _ = writeln!(
                b,
                "add element {TABLE} {SVC_VIPS} {{ {} . {} . {} comment \"{name}\" : goto {chain} }}",
                v.ip, v.proto, v.port
            );
        }
        None if had => {
            let _ = writeln!(b, "flush chain {TABLE} {chain}\ndelete chain {TABLE} {chain}");
        }
        None => {}
    }
    let want: BTreeSet<String> = all.iter().map(|ip| format!("{ip} . {ip}")).collect();
    let have: BTreeSet<&str> = live.svc.iter().filter(|e| e.set == SVC_SELF).map(|e| e.key.as_str()).collect();
    for k in have.iter().filter(|k| !want.contains(**k)) {
        let _ = writeln!(b, "delete element {TABLE} {SVC_SELF} {{ {k} }}");
    }
    for k in want.iter().filter(|k| !have.contains(k.as_str())) {
        let _ = writeln!(b, "add element {TABLE} {SVC_SELF} {{ {k} }}");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::live;
    use super::super::live::PortElem;
    use super::*;

    #[test]
    fn services_restate_their_chain_and_the_hairpin_set() {
        let backends = [("10.1.0.2".parse().unwrap(), 80), ("10.1.0.3".parse().unwrap(), 80)];
        let svc =
            SvcRules { name: "web", vip: "10.96.0.1:80".parse().unwrap(), lb: Lb::Roundrobin, backends: &backends };
        let all = [backends[0].0, backends[1].0];
        let got = render_service(&live(), "web", Some(&svc), &all);
        assert!(got.contains("add chain ip rcon svc-web\n"), "{got}");
        assert!(
            got.contains("add rule ip rcon svc-web meta l4proto tcp dnat ip to numgen inc mod 2 map { 0 : 10.1.0.2 . 80, 1 : 10.1.0.3 . 80 }"),
            "{got}"
        );
        assert!(
            got.contains("add element ip rcon svc_vips { 10.96.0.1 . tcp . 80 comment \"web\" : goto svc-web }"),
            "{got}"
        );
        assert!(got.contains("add element ip rcon svc_self { 10.1.0.3 . 10.1.0.3 }"), "{got}");
        let mut with = live();
        with.chains.insert("svc-web".into());
        with.svc.push(PortElem { set: SVC_VIPS.into(), key: "10.96.0.1 . tcp . 80".into(), owner: Some("web".into()) });
        with.svc.push(PortElem { set: SVC_SELF.into(), key: "10.1.0.2 . 10.1.0.2".into(), owner: None });
        let gone = render_service(&with, "web", None, &[]);
        for line in [
            "delete element ip rcon svc_vips { 10.96.0.1 . tcp . 80 }",
            "flush chain ip rcon svc-web\ndelete chain ip rcon svc-web",
            "delete element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 }",
        ] {
            assert!(gone.contains(line), "missing {line:?} in\n{gone}");
        }
        let empty = SvcRules { backends: &[], ..svc };
        assert!(render_service(&Live::default(), "web", Some(&empty), &[]).contains("add rule ip rcon svc-web reject"));
    }
}
