//! Published ports: a nat chain per endpoint with one DNAT rule per mapping, one jump to it from
//! RCON-PORTS, and the masquerade of the container reaching its own port.

use std::fmt::Write as _;

use super::{chain_suffix, Live, Published, MAX_BARE, PORTS, PORT_TAG, POSTROUTING};

/// An endpoint's own nat chain: its DNAT rules, one jump to it from RCON-PORTS. Removal is then one `-D` of
/// the jump and a flush, not one `-D` per mapping (iptables finds each by comparing it with every rule of
/// the chain: 10,000 mappings took minutes).
pub(super) fn ports_chain(owner: &str) -> String {
    format!("RCON-P{}", chain_suffix(owner, MAX_BARE))
}

/// The input that adds or deletes exactly one endpoint's port rules: its chain, the jump to it, and the
/// masquerade of a container reaching its own published port (a DNATed flow from itself to itself).
pub(crate) fn render_ports(p: &Published, add: bool) -> String {
    let mut b = String::from("*nat\n");
    if add {
        port_lines(p, &mut b);
    } else {
        let (jump, hairpin) = port_refs(p);
        let chain = ports_chain(p.owner);
        let _ = writeln!(b, "-D {jump}\n-D {POSTROUTING} {hairpin}\n-F {chain}\n-X {chain}");
    }
    b.push_str("COMMIT\n");
    b
}

/// An endpoint's jump from RCON-PORTS (as `RCON-PORTS SPEC`) and its hairpin masquerade (as its SPEC).
fn port_refs(p: &Published) -> (String, String) {
    let c = format!("-m comment --comment {PORT_TAG}{}", p.owner);
    let jump = format!("{PORTS} {c} -j {}", ports_chain(p.owner));
    let hairpin = format!("-s {ip}/32 -d {ip}/32 -m conntrack --ctstate DNAT {c} -j MASQUERADE", ip = p.ip);
    (jump, hairpin)
}

/// The nat lines that add one endpoint's chain, its DNAT rules and its references.
pub(super) fn port_lines(p: &Published, b: &mut String) {
    let chain = ports_chain(p.owner);
    let (jump, hairpin) = port_refs(p);
    // Declaring the chain creates it, or flushes it when it exists.
    let _ = writeln!(b, ":{chain} - [0:0]");
    for m in p.mappings {
        let dst = m.host_ip.map(|ip| format!(" -d {ip}/32")).unwrap_or_default();
        let _ = writeln!(
            b,
            "-A {chain} -p {}{dst} --dport {} -j DNAT --to-destination {}:{}",
            m.proto, m.host_port, p.ip, m.ctr_port
        );
    }
    let _ = writeln!(b, "-A {jump}");
    let _ = writeln!(b, "-I {POSTROUTING} 1 {hairpin}");
}

/// The input that deletes every port rule and the chain of `owner` that iptables-save lists.
pub(crate) fn render_remove_ports_of(live: &Live, owner: &str) -> Option<String> {
    let tag = format!("{PORT_TAG}{owner}");
    let mut lines: String = live
        .rules
        .iter()
        .filter(|r| r.table == "nat" && r.comment.as_deref() == Some(tag.as_str()))
        .map(|r| format!("-D {} {}\n", r.chain, r.spec))
        .collect();
    let chain = ports_chain(owner);
    if live.has_chain("nat", &chain) {
        let _ = writeln!(lines, "-F {chain}\n-X {chain}");
    }
    (!lines.is_empty()).then(|| format!("*nat\n{lines}COMMIT\n"))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::live;
    use super::*;

    #[test]
    fn ports_add_remove_and_owners() {
        use crate::net::ports::{Mapping, Proto};
        let m = [
            Mapping { proto: Proto::Udp, host_ip: None, host_port: 5353, ctr_port: 53 },
            Mapping { proto: Proto::Tcp, host_ip: Some("127.0.0.1".parse().unwrap()), host_port: 8081, ctr_port: 80 },
        ];
        let p = Published { owner: "k2", ip: "10.1.0.3".parse().unwrap(), mappings: &m };
        let want = "\
*nat
:RCON-P-k2 - [0:0]
-A RCON-P-k2 -p udp --dport 5353 -j DNAT --to-destination 10.1.0.3:53
-A RCON-P-k2 -p tcp -d 127.0.0.1/32 --dport 8081 -j DNAT --to-destination 10.1.0.3:80
-A RCON-PORTS -m comment --comment port:k2 -j RCON-P-k2
-I RCON-POSTROUTING 1 -s 10.1.0.3/32 -d 10.1.0.3/32 -m conntrack --ctstate DNAT -m comment --comment port:k2 -j MASQUERADE
COMMIT
";
        assert_eq!(render_ports(&p, true), want);
        let want = "\
*nat
-D RCON-PORTS -m comment --comment port:k2 -j RCON-P-k2
-D RCON-POSTROUTING -s 10.1.0.3/32 -d 10.1.0.3/32 -m conntrack --ctstate DNAT -m comment --comment port:k2 -j MASQUERADE
-F RCON-P-k2
-X RCON-P-k2
COMMIT
";
        assert_eq!(render_ports(&p, false), want);
        let l = live();
        assert_eq!(l.port_owners().into_iter().collect::<Vec<_>>(), ["k1"]);
        let gone = render_remove_ports_of(&l, "k1").unwrap();
        assert_eq!(gone.lines().filter(|l| l.starts_with("-D ")).count(), 2, "{gone}");
        assert!(gone.contains("-D RCON-PORTS -m comment --comment port:k1 -j RCON-P-k1\n"), "{gone}");
        assert!(gone.contains("-F RCON-P-k1\n-X RCON-P-k1\n"), "{gone}");
        assert_eq!(render_remove_ports_of(&l, "k9"), None);
        // Port rules and the shared published-port rules are nobody's network.
        assert!(!l.owners().contains("port:k1") && !l.owners().contains("rcon:published"));
    }
}
