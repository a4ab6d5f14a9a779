//! Services: a jump from RCON-SERVICES for the VIP to the service's own chain, which DNATs to one
//! backend (`statistic`, as kube-proxy does), and the masquerade of a backend landing on itself.

use std::fmt::Write as _;

use super::{svc_chain, Live, SvcRules, POSTROUTING, SERVICES, SVC_TAG};
use crate::net::service_types::Lb;

/// The input that restates (or, `svc` None, removes) service `name`: a jump from RCON-SERVICES for its VIP
/// to a chain of its own that DNATs to one backend (statistic nth or random, as kube-proxy does), and the
/// masquerade of a backend whose flow through the VIP lands on itself (each service carries its own).
pub(crate) fn render_service(live: &Live, name: &str, svc: Option<&SvcRules>) -> String {
    let chain = svc_chain(name);
    let tag = format!("{SVC_TAG}{name}");
    let mut b = String::from("*nat\n");
    for r in live.rules.iter().filter(|r| r.table == "nat" && r.comment.as_deref() == Some(tag.as_str())) {
        let _ = writeln!(b, "-D {} {}", r.chain, r.spec);
    }
    match svc {
        Some(s) => service_lines(s, &mut b),
        None if live.has_chain("nat", &chain) => {
            let _ = writeln!(b, "-F {chain}\n-X {chain}");
        }
        None => {}
    }
    b.push_str("COMMIT\n");
    b
}

/// The nat lines that add one service: its chain (declared: made, or flushed), a DNAT per backend, the
/// masquerade of each backend reaching itself, and the jump for its VIP.
pub(super) fn service_lines(s: &SvcRules, b: &mut String) {
    let chain = svc_chain(s.name);
    let c = format!("-m comment --comment {SVC_TAG}{}", s.name);
    let _ = writeln!(b, ":{chain} - [0:0]");
    let n = s.backends.len();
    for (i, (ip, port)) in s.backends.iter().enumerate() {
        let left = n - i;
        let pick = match (left, s.lb) {
            (1, _) => String::new(),
            (_, Lb::Roundrobin) => format!("-m statistic --mode nth --every {left} --packet 0 "),
            (_, Lb::Random) => format!("-m statistic --mode random --probability {:.8} ", 1.0 / left as f64),
        };
        let _ = writeln!(b, "-A {chain} -p {} {pick}-j DNAT --to-destination {ip}:{port}", s.vip.proto);
        let _ = writeln!(b, "-I {POSTROUTING} 1 -s {ip}/32 -d {ip}/32 -m conntrack --ctstate DNAT {c} -j MASQUERADE");
    }
    let v = s.vip;
    let _ = writeln!(b, "-A {SERVICES} -d {}/32 -p {} --dport {} {c} -j {chain}", v.ip, v.proto, v.port);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_a_vip_jump_to_its_own_chain() {
        let backends = [("10.1.0.2".parse().unwrap(), 80), ("10.1.0.3".parse().unwrap(), 8080)];
        let svc =
            SvcRules { name: "web", vip: "10.96.0.1:80".parse().unwrap(), lb: Lb::Roundrobin, backends: &backends };
        let want = "\
*nat
:RCON-S-web - [0:0]
-A RCON-S-web -p tcp -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.1.0.2:80
-I RCON-POSTROUTING 1 -s 10.1.0.2/32 -d 10.1.0.2/32 -m conntrack --ctstate DNAT -m comment --comment svc:web -j MASQUERADE
-A RCON-S-web -p tcp -j DNAT --to-destination 10.1.0.3:8080
-I RCON-POSTROUTING 1 -s 10.1.0.3/32 -d 10.1.0.3/32 -m conntrack --ctstate DNAT -m comment --comment svc:web -j MASQUERADE
-A RCON-SERVICES -d 10.96.0.1/32 -p tcp --dport 80 -m comment --comment svc:web -j RCON-S-web
COMMIT
";
        assert_eq!(render_service(&Live::default(), "web", Some(&svc)), want);
        // Random: each rule takes its share of what the ones before left.
        let three = [backends[0], backends[1], ("10.1.0.4".parse().unwrap(), 80)];
        let random = SvcRules { lb: Lb::Random, backends: &three, ..svc };
        let got = render_service(&Live::default(), "web", Some(&random));
        assert!(got.contains("--mode random --probability 0.33333333 -j DNAT --to-destination 10.1.0.2:80"), "{got}");
        assert!(got.contains("--mode random --probability 0.50000000 -j DNAT --to-destination 10.1.0.3:8080"), "{got}");
        assert!(got.contains("-A RCON-S-web -p tcp -j DNAT --to-destination 10.1.0.4:80"), "{got}");
    }

    #[test]
    fn a_restated_or_removed_service_drops_its_old_rules() {
        let l = Live::parse(
            "*nat\n:RCON-SERVICES - [0:0]\n:RCON-POSTROUTING - [0:0]\n:RCON-S-web - [0:0]\n\
             -A RCON-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -m comment --comment svc:web -j RCON-S-web\n\
             -A RCON-POSTROUTING -s 10.1.0.2/32 -d 10.1.0.2/32 -m conntrack --ctstate DNAT -m comment --comment svc:web -j MASQUERADE\n\
             -A RCON-S-web -p tcp -j DNAT --to-destination 10.1.0.2:80\n\
             -A RCON-SERVICES -d 10.96.0.2/32 -p tcp -m tcp --dport 80 -m comment --comment svc:api -j RCON-S-api\n\
             COMMIT\n",
        )
        .unwrap();
        let gone = render_service(&l, "web", None);
        assert_eq!(
            gone,
            "*nat\n\
             -D RCON-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -m comment --comment svc:web -j RCON-S-web\n\
             -D RCON-POSTROUTING -s 10.1.0.2/32 -d 10.1.0.2/32 -m conntrack --ctstate DNAT -m comment --comment svc:web -j MASQUERADE\n\
             -F RCON-S-web\n-X RCON-S-web\nCOMMIT\n"
        );
        // Restated without backends: the old rules go, the chain is declared (flushed) and keeps its jump.
        let empty = SvcRules { name: "web", vip: "10.96.0.1:80".parse().unwrap(), lb: Lb::Random, backends: &[] };
        let again = render_service(&l, "web", Some(&empty));
        assert!(again.starts_with("*nat\n-D RCON-SERVICES ") && again.contains(":RCON-S-web - [0:0]\n"), "{again}");
        assert!(
            !again.contains("-X RCON-S-web") && !again.contains("DNAT --to") && !again.contains("svc:api"),
            "{again}"
        );
        assert!(again.contains("-A RCON-SERVICES -d 10.96.0.1/32 -p tcp --dport 80 -m comment --comment svc:web"));
    }
}
