//! Published ports: elements of the `pub_any`/`pub_addr` maps and the hairpin set, each with its
//! endpoint's key as the comment.

use std::fmt::Write as _;

use super::{Live, Published, HAIRPIN, PUB_ADDR, PUB_ANY, TABLE};

/// The batch that adds (or deletes) one endpoint's published ports: map elements only.
pub(crate) fn render_ports(p: &Published, add: bool) -> String {
    let verb = if add { "add" } else { "delete" };
    let c = format!(" comment \"{}\"", p.owner);
    let mut b = String::new();
    for m in p.mappings {
        let (map, key) = match m.host_ip {
            Some(ip) => (PUB_ADDR, format!("{ip} . {} . {}", m.proto, m.host_port)),
            None => (PUB_ANY, format!("{} . {}", m.proto, m.host_port)),
        };
        let value = if add { format!("{c} : {} . {}", p.ip, m.ctr_port) } else { String::new() };
        let _ = writeln!(b, "{verb} element {TABLE} {map} {{ {key}{value} }}");
    }
    if !p.mappings.is_empty() {
        let tail = if add { c.as_str() } else { "" };
        let _ = writeln!(b, "{verb} element {TABLE} {HAIRPIN} {{ {ip} . {ip}{tail} }}", ip = p.ip);
    }
    b
}

/// The batch that deletes whatever port elements `owner` has in the live table (gc, or a removal whose
/// exact batch failed because part of it was gone already).
pub(crate) fn render_remove_ports_of(live: &Live, owner: &str) -> Option<String> {
    let mut b = String::new();
    for e in live.ports.iter().filter(|e| e.owner.as_deref() == Some(owner)) {
        let _ = writeln!(b, "delete element {TABLE} {} {{ {} }}", e.set, e.key);
    }
    (!b.is_empty()).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::live;
    use super::*;

    #[test]
    fn ports_are_elements_with_their_owner() {
        use crate::net::ports::{Mapping, Proto};
        let m = [
            Mapping { proto: Proto::Tcp, host_ip: None, host_port: 8080, ctr_port: 80 },
            Mapping { proto: Proto::Udp, host_ip: Some("127.0.0.1".parse().unwrap()), host_port: 5353, ctr_port: 53 },
        ];
        let p = Published { owner: "k2", ip: "10.1.0.3".parse().unwrap(), mappings: &m };
        assert_eq!(
            render_ports(&p, true),
            "\
add element ip rcon pub_any { tcp . 8080 comment \"k2\" : 10.1.0.3 . 80 }
add element ip rcon pub_addr { 127.0.0.1 . udp . 5353 comment \"k2\" : 10.1.0.3 . 53 }
add element ip rcon hairpin { 10.1.0.3 . 10.1.0.3 comment \"k2\" }
"
        );
        assert_eq!(
            render_ports(&p, false),
            "\
delete element ip rcon pub_any { tcp . 8080 }
delete element ip rcon pub_addr { 127.0.0.1 . udp . 5353 }
delete element ip rcon hairpin { 10.1.0.3 . 10.1.0.3 }
"
        );
        let l = live();
        assert_eq!(l.ports.len(), 2);
        assert_eq!(
            render_remove_ports_of(&l, "k1").unwrap(),
            "delete element ip rcon pub_any { tcp . 8080 }\ndelete element ip rcon hairpin { 10.1.0.2 . 10.1.0.2 }\n"
        );
        assert_eq!(render_remove_ports_of(&l, "k2"), None);
        assert!(!l.owners().contains("k1"), "a port owner is no network");
    }
}
