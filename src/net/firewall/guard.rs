//! No spoofing on a bridge: a container's bridge port passes only frames from
//! the container's own MAC, ARP that names its own MAC and address as the
//! sender, and IPv4 from its own address. Everything else it sends (another
//! source MAC, an ARP reply or gratuitous ARP for a neighbour's or the
//! gateway's address, IPv4 from another address, any other ethertype) is
//! dropped before the bridge learns or forwards it.
//!
//! ```text
//! table bridge rcon {
//!     set allow { type ifname . ether_addr . ipv4_addr; }   # PORT . MAC . IP comment "KEY"
//!     set free { type ifname; }                            # PORT comment "KEY" (--allow-spoofing)
//!     chain pre { type filter hook prerouting priority filter; policy accept;
//!         iifname != "rv*" accept                          # not a container's port (uplinks, vxlan)
//!         iifname @free accept
//!         arp htype 1 arp ptype ip arp hlen 6 arp plen 4
//!             iifname . ether saddr . arp saddr ip @allow
//!             iifname . arp saddr ether . arp saddr ip @allow accept
//!         iifname . ether saddr . ip saddr @allow accept
//!         drop
//!     }
//! }
//! ```
//!
//! One table for every network and both backends: the checks are the same whatever handles the
//! forwarding and NAT, and ebtables has no sets. Attaching or detaching a container adds or
//! deletes one element and nothing else, so the cost and the rule count stay flat with the number
//! of containers. Sets are node-wide rather than one per network: a port name is unique on the node
//! and belongs to one bridge, and this kernel lacks `meta ibrname` (the bridge a frame came in by),
//! so a per-network set would need a second per-port element only to pick the set.
//!
//! Each element carries its endpoint's key as comment, so gc removes what a gone endpoint left.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::nflist::{self, FAMILY_BRIDGE};
use super::{Guard, Want};

const TABLE: &str = "bridge rcon";
const ALLOW: &str = "allow";
const FREE: &str = "free";
const CHAIN: &str = "pre";
/// The base chain's rules, in order; each carries [`TAG`] (change it when they change).
const RULES: [&str; 5] = [
    "iifname != \"rv*\" accept",
    "iifname @free accept",
    "arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . ether saddr . arp saddr ip @allow \
     iifname . arp saddr ether . arp saddr ip @allow accept",
    "ether type ip iifname . ether saddr . ip saddr @allow accept",
    "drop",
];
const TAG: &str = "rcon guard 1";

/// What the table holds: whether it exists, whether its base is whole, and (listed only when asked)
/// the elements with their owners.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Live {
    pub exists: bool,
    pub intact: bool,
    /// (set, key in nft syntax, owner).
    pub elems: Vec<(String, String, Option<String>)>,
}

/// The table's chains, sets and rule comments, straight from netlink (no `nft`, no elements).
pub(crate) fn glance() -> Result<Live> {
    let l = nflist::glance(FAMILY_BRIDGE, "rcon")?;
    let rules = l.rules.get(CHAIN).map(Vec::as_slice).unwrap_or_default();
    let intact = l.sets.contains(ALLOW)
        && l.sets.contains(FREE)
        && rules.len() == RULES.len()
        && rules.iter().all(|c| c.as_deref() == Some(TAG));
    Ok(Live { exists: l.exists, intact, elems: Vec::new() })
}

/// [`glance`] with the elements (`nft -j list table`).
pub(crate) fn live() -> Result<Live> {
    let mut l = glance()?;
    if l.exists {
        l.elems = parse_elems(&super::nft::list_json("table bridge rcon")?)?;
    }
    Ok(l)
}

/// The elements of `allow` and `free` in `nft -j list table bridge rcon`.
fn parse_elems(json: &str) -> Result<Vec<(String, String, Option<String>)>> {
    let v: Value = serde_json::from_str(json).context("parsing nft's JSON listing")?;
    let mut out = Vec::new();
    for set in v["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get("set")) {
        let name = set["name"].as_str().unwrap_or_default();
        if name != ALLOW && name != FREE {
            continue;
        }
        for item in set["elem"].as_array().into_iter().flatten() {
            let (val, owner) = match item.get("elem") {
                Some(e) => (&e["val"], e["comment"].as_str().map(String::from)),
                None => (item, None),
            };
            let parts: Option<Vec<String>> = match val.get("concat") {
                Some(c) => c.as_array().map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()),
                None => val.as_str().map(|s| vec![s.to_string()]),
            };
            let Some(mut parts) = parts.filter(|p| !p.is_empty()) else { continue };
            // The port is a string: quoted again, so that any name reads back as the same key.
            parts[0] = format!("\"{}\"", parts[0]);
            out.push((name.to_string(), parts.join(" . "), owner));
        }
    }
    Ok(out)
}

/// The set and key of `g`'s element.
fn element(g: &Guard) -> (&'static str, String) {
    match &g.from {
        Some((mac, ip)) => (ALLOW, format!("\"{}\" . {mac} . {ip}", g.port)),
        None => (FREE, format!("\"{}\"", g.port)),
    }
}

/// The set and the key bytes of `g`'s element, as the kernel stores them (see nfset).
fn element_key(g: &Guard) -> Result<(&'static str, Vec<u8>)> {
    let mut key = super::nfset::ifname_field(&g.port).to_vec();
    let Some((mac, ip)) = &g.from else { return Ok((FREE, key)) };
    let octets: Vec<u8> = mac.split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    anyhow::ensure!(octets.len() == 6, "{mac:?} is not a MAC address");
    key.extend_from_slice(&octets);
    key.extend_from_slice(&[0, 0]); // a field is padded to 4 bytes
    key.extend_from_slice(&ip.octets());
    Ok((ALLOW, key))
}

/// Add `g`'s element (one netlink message; present already: nothing changes).
pub(crate) fn add(g: &Guard) -> Result<()> {
    let (set, key) = element_key(g)?;
    Ok(super::nfset::add(FAMILY_BRIDGE, "rcon", set, &key, &g.owner)?)
}

/// Delete `g`'s element; not there (nor the table): nothing to do.
pub(crate) fn remove(g: &Guard) -> Result<()> {
    let (set, key) = element_key(g)?;
    Ok(super::nfset::delete(FAMILY_BRIDGE, "rcon", set, &key)?)
}

/// The batch that makes the table's base whole (`live`: what is there), keeping its elements.
pub(crate) fn render_base(live: &Live) -> String {
    let mut b = String::new();
    if live.exists && live.intact {
        return b;
    }
    let _ = writeln!(b, "add table {TABLE}");
    let _ = writeln!(b, "add chain {TABLE} {CHAIN} {{ type filter hook prerouting priority filter; policy accept; }}");
    let _ = writeln!(b, "add set {TABLE} {ALLOW} {{ type ifname . ether_addr . ipv4_addr; }}");
    let _ = writeln!(b, "add set {TABLE} {FREE} {{ type ifname; }}");
    let _ = writeln!(b, "flush chain {TABLE} {CHAIN}");
    for r in RULES {
        let _ = writeln!(b, "add rule {TABLE} {CHAIN} {r} comment \"{TAG}\"");
    }
    b
}

/// The batch that adds `g`'s element.
pub(crate) fn render_add(g: &Guard) -> String {
    let (set, key) = element(g);
    format!("add element {TABLE} {set} {{ {key} comment \"{}\" }}\n", g.owner)
}

/// The batch that deletes every element of `owner`; None: it has none.
pub(crate) fn render_remove_of(live: &Live, owner: &str) -> Option<String> {
    let mut b = String::new();
    for (set, key, _) in live.elems.iter().filter(|(_, _, o)| o.as_deref() == Some(owner)) {
        let _ = writeln!(b, "delete element {TABLE} {set} {{ {key} }}");
    }
    (!b.is_empty()).then_some(b)
}

/// Endpoint keys with an element.
pub(crate) fn owners(live: &Live) -> BTreeSet<&str> {
    live.elems.iter().filter_map(|(_, _, o)| o.as_deref()).collect()
}

/// What the table lacks of `want` (its elements are not checked, as for the other tables).
pub(crate) fn damage(live: &Live, want: &Want) -> Option<String> {
    if !want.bridged {
        return None;
    }
    if !live.exists {
        return Some(format!("table {TABLE} is missing"));
    }
    (!live.intact).then(|| format!("chain {CHAIN} or a set of table {TABLE} is missing or changed"))
}

/// The batch that restores the base and every element `want` names. Elements of the other backend's
/// networks, which share the table, are kept; gc removes those of gone endpoints.
pub(crate) fn render_restore(live: &Live, want: &Want) -> String {
    if !want.bridged {
        return String::new();
    }
    let mut b = render_base(live);
    for g in &want.guards {
        b.push_str(&render_add(g));
    }
    b
}

/// The batch that removes the table when it holds no element (the last network went).
pub(crate) fn render_drop_empty(live: &Live) -> Option<String> {
    (live.exists && live.elems.is_empty()).then(|| format!("delete table {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(owner: &str, port: &str, from: Option<(&str, &str)>) -> Guard {
        Guard { owner: owner.into(), port: port.into(), from: from.map(|(m, ip)| (m.to_string(), ip.parse().unwrap())) }
    }

    #[test]
    fn one_element_per_port() {
        let g = guard("k1", "rv0123456789", Some(("02:42:0a:01:00:02", "10.1.0.2")));
        assert_eq!(
            render_add(&g),
            "add element bridge rcon allow { \"rv0123456789\" . 02:42:0a:01:00:02 . 10.1.0.2 comment \"k1\" }\n"
        );
        // The same element as netlink carries it: port (16 bytes), MAC padded to 8, address.
        let (set, key) = element_key(&g).unwrap();
        assert_eq!(set, ALLOW);
        assert_eq!(&key[..12], b"rv0123456789");
        assert_eq!(key[12..16], [0; 4]);
        assert_eq!(key[16..], [2, 0x42, 10, 1, 0, 2, 0, 0, 10, 1, 0, 2]);
        let free = guard("k2", "rvaaaaaaaaaa", None);
        assert_eq!(render_add(&free), "add element bridge rcon free { \"rvaaaaaaaaaa\" comment \"k2\" }\n");
        assert_eq!(element_key(&free).unwrap(), (FREE, super::super::nfset::ifname_field("rvaaaaaaaaaa").to_vec()));
        assert!(element_key(&guard("k3", "rv1", Some(("02:42", "10.1.0.2")))).is_err());
    }

    #[test]
    fn base_only_when_needed() {
        let b = render_base(&Live::default());
        assert!(b.starts_with("add table bridge rcon\n"), "{b}");
        assert_eq!(b.matches(&format!("comment \"{TAG}\"")).count(), RULES.len(), "{b}");
        assert!(b.ends_with("add rule bridge rcon pre drop comment \"rcon guard 1\"\n"), "{b}");
        assert_eq!(render_base(&Live { exists: true, intact: true, elems: vec![] }), "");
    }

    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "bridge", "name": "rcon", "handle": 3}},
      {"set": {"family": "bridge", "name": "allow", "table": "rcon", "type": ["ifname", "ether_addr", "ipv4_addr"],
        "elem": [{"elem": {"val": {"concat": ["rv0123456789", "02:42:0a:01:00:02", "10.1.0.2"]}, "comment": "k1"}},
                 {"concat": ["rv0000000000", "02:42:0a:01:00:03", "10.1.0.3"]}]}},
      {"set": {"family": "bridge", "name": "free", "table": "rcon", "type": "ifname",
        "elem": [{"elem": {"val": "rv0123456780", "comment": "k2"}}]}},
      {"chain": {"family": "bridge", "table": "rcon", "name": "pre", "handle": 1}}]}"#;

    #[test]
    fn listing_gives_owned_elements() {
        let l = Live { exists: true, intact: true, elems: parse_elems(LISTING).unwrap() };
        assert_eq!(l.elems.len(), 3);
        assert_eq!(owners(&l).into_iter().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(
            render_remove_of(&l, "k1").unwrap(),
            "delete element bridge rcon allow { \"rv0123456789\" . 02:42:0a:01:00:02 . 10.1.0.2 }\n"
        );
        assert_eq!(render_remove_of(&l, "k2").unwrap(), "delete element bridge rcon free { \"rv0123456780\" }\n");
        assert_eq!(render_remove_of(&l, "k9"), None);
        assert_eq!(render_drop_empty(&l), None);
        assert_eq!(render_drop_empty(&Live { exists: true, ..Live::default() }).unwrap(), "delete table bridge rcon\n");
    }

    #[test]
    fn damage_and_restore() {
        let g = guard("k1", "rv0123456789", Some(("02:42:0a:01:00:02", "10.1.0.2")));
        let want = Want { bridged: true, guards: vec![g.clone()], ..Want::default() };
        assert_eq!(damage(&Live::default(), &Want::default()), None, "no bridge network needs no table");
        assert_eq!(damage(&Live::default(), &want).unwrap(), "table bridge rcon is missing");
        let broken = Live { exists: true, ..Live::default() };
        assert!(damage(&broken, &want).unwrap().contains("missing or changed"));
        let whole = Live { exists: true, intact: true, elems: vec![] };
        assert_eq!(damage(&whole, &want), None);
        assert_eq!(render_restore(&whole, &want), render_add(&g));
        let r = render_restore(&Live::default(), &want);
        assert!(r.starts_with("add table") && r.ends_with(&render_add(&g)), "{r}");
        assert_eq!(render_restore(&Live::default(), &Want::default()), "");
    }
}
