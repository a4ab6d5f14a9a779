//! The nftables backend: everything lives in rcon's own `table ip rcon`.
//!
//! ```text
//! table ip rcon {
//!     set subnets { type ipv4_addr; flags interval; }             # every rcon network: S comment "NAME"
//!     map fwd_src { type ipv4_addr : verdict; flags interval; }   # S : jump out-NAME
//!     map fwd_dst { type ipv4_addr : verdict; flags interval; }   # S : jump replies (internal: drop)
//!     map nat_src { type ipv4_addr : verdict; flags interval; }   # S : jump nat-NAME (masquerading networks)
//!     map pub_any { type inet_proto . inet_service : ipv4_addr . inet_service; }               # published ports
//!     map pub_addr { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }  # … on one address
//!     set hairpin { type ipv4_addr . ipv4_addr; }   # C . C for each container C with published ports
//!     chain forward { type filter hook forward priority filter; policy accept;
//!         ct status dnat accept
//!         ip saddr vmap @fwd_src
//!         ip daddr vmap @fwd_dst
//!     }
//!     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!         ct status dnat ip saddr . ip daddr @hairpin masquerade   # a container reaching its own port
//!         ct status dnat ip saddr . ip daddr @svc_self masquerade  # a backend landing on itself via a VIP
//!         ct status dnat ip saddr 127.0.0.0/8 masquerade           # the node via 127.0.0.1
//!         ip saddr vmap @nat_src
//!     }
//!     map svc_vips { type ipv4_addr . inet_proto . inet_service : verdict; }   # VIP . tcp . 80 : goto svc-NAME
//!     set svc_self { type ipv4_addr . ipv4_addr; }   # B . B for each service backend B
//!     chain pub_pre { type nat hook prerouting priority dstnat; policy accept;
//!         ip daddr . meta l4proto . th dport vmap @svc_vips
//!         fib daddr type local jump pub_dnat
//!     }
//!     chain pub_out { type nat hook output priority -100; policy accept; (the same two rules) }
//!     chain svc-NAME { dnat ip to numgen inc mod 2 map { 0 : B1 . 80, 1 : B2 . 80 } }   # or numgen random
//!     chain pub_dnat {
//!         dnat ip to ip daddr . meta l4proto . th dport map @pub_addr
//!         dnat ip to meta l4proto . th dport map @pub_any
//!     }
//!     chain replies { ct state established,related accept }
//!     chain out-NAME { ip daddr S accept; ip daddr @subnets drop; accept }   # internal: drop last
//!     chain nat-NAME { ip daddr != S masquerade }
//! }
//! ```
//!
//! Published ports are elements of `pub_any`/`pub_addr` whose comment is the endpoint's key: publishing or
//! unpublishing a container adds or deletes its elements and touches nothing else, and a packet finds its
//! mapping with one hash lookup at 10 mappings as at 10,000. Traffic between containers of one bridge is
//! seen by these hooks through br_netfilter, so a neighbour reaching a container by the node's address and
//! port gets its replies un-NATed without masquerade; only a container reaching itself (the reply would
//! never leave it) and the node's own 127.0.0.1 are masqueraded.
//!
//! A packet finds its network's chain with one lookup in an interval map, however many networks there are, and
//! adding or removing a network touches only its own map elements and chains. Every element carries the
//! network's name as its comment: that is how `networks()` and removal find a network's objects. Chains whose
//! name the network's name cannot form bare (see `chain_suffix`) use a hash instead.
//!
//! nft semantics to keep in mind: an `accept` here ends the packet's walk through this table only. A `drop` in
//! another table on the same hook (a host's own firewall) still wins, so a host that drops forwarded traffic
//! must allow rcon's subnets itself; the iptables backend, whose chains hang off the shared FORWARD chain, is
//! the one for such hosts.
//!

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::{chain_suffix, run, NetRules, Published, SvcRules, Want};
use crate::net::service_types::Lb;
use std::net::Ipv4Addr;

/// The nftables implementation of [`Firewall`].
pub struct Nftables;

const TABLE: &str = "ip rcon";
const SUBNETS: &str = "subnets";
const FWD_SRC: &str = "fwd_src";
const FWD_DST: &str = "fwd_dst";
const NAT_SRC: &str = "nat_src";
/// Longest network name used bare in a chain name (nft takes 255 bytes; this keeps listings readable).
const MAX_BARE: usize = 64;

fn out_chain(name: &str) -> String {
    format!("out{}", chain_suffix(name, MAX_BARE))
}

fn nat_chain(name: &str) -> String {
    format!("nat{}", chain_suffix(name, MAX_BARE))
}

/// What the kernel holds of `table ip rcon`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Live {
    pub exists: bool,
    pub chains: BTreeSet<String>,
    /// Names of the sets and maps.
    pub sets: BTreeSet<String>,
    /// Each chain's rules, as their comments.
    pub rules: BTreeMap<String, Vec<Option<String>>>,
    pub elems: Vec<Elem>,
    /// Elements of the published-port maps and the hairpin set.
    pub ports: Vec<PortElem>,
    /// Elements of the service map and the service hairpin set.
    pub svc: Vec<PortElem>,
}

/// One published-port element: its key as nft takes it back (`tcp . 8080`), and its owner (an endpoint key).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PortElem {
    pub set: String,
    pub key: String,
    pub owner: Option<String>,
}

/// One element of one of rcon's sets or maps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Elem {
    pub set: String,
    pub key: Ipv4Net,
    /// The owning network (the element's comment).
    pub owner: Option<String>,
}

impl Live {
    /// Parse `nft -j list table ip rcon`.
    pub(crate) fn parse(json: &str) -> Result<Live> {
        let v: Value = serde_json::from_str(json).context("parsing nft's JSON listing")?;
        let mut live = Live::default();
        for obj in v["nftables"].as_array().into_iter().flatten() {
            if obj.get("table").is_some() {
                live.exists = true;
            } else if let Some(name) = obj["chain"]["name"].as_str() {
                live.chains.insert(name.to_string());
            } else if let Some(chain) = obj["rule"]["chain"].as_str() {
                let comment = obj["rule"]["comment"].as_str().map(String::from);
                live.rules.entry(chain.to_string()).or_default().push(comment);
            } else if let Some(set) = obj.get("set").or_else(|| obj.get("map")) {
                let name = set["name"].as_str().unwrap_or_default();
                live.sets.insert(name.to_string());
                for item in set["elem"].as_array().into_iter().flatten() {
                    // A map's element is [key, verdict]; a set's is the key itself.
                    let key = item.as_array().and_then(|kv| kv.first()).unwrap_or(item);
                    if [PUB_ANY, PUB_ADDR, HAIRPIN, SVC_VIPS, SVC_SELF].contains(&name) {
                        if let Some((key, owner)) = parse_concat(key) {
                            let list = if name.starts_with("svc") { &mut live.svc } else { &mut live.ports };
                            list.push(PortElem { set: name.to_string(), key, owner });
                        }
                    } else if let Some((key, owner)) = parse_key(key) {
                        live.elems.push(Elem { set: name.to_string(), key, owner });
                    }
                }
            }
        }
        Ok(live)
    }

    /// Network names, from the element comments.
    pub(crate) fn owners(&self) -> BTreeSet<&str> {
        self.elems.iter().filter_map(|e| e.owner.as_deref()).collect()
    }

    /// Each network's subnet, from the `subnets` set.
    pub(crate) fn subnets(&self) -> BTreeMap<&str, Ipv4Net> {
        self.elems.iter().filter(|e| e.set == SUBNETS).filter_map(|e| Some((e.owner.as_deref()?, e.key))).collect()
    }
}

/// A concatenated key as nft prints it ({"concat": ["tcp", 8080]}, maybe inside {"elem": {"val": …}}), back
/// in nft's syntax (`tcp . 8080`).
fn parse_concat(v: &Value) -> Option<(String, Option<String>)> {
    let (val, owner) = match v.get("elem") {
        Some(e) => (&e["val"], e["comment"].as_str().map(String::from)),
        None => (v, None),
    };
    let parts: Vec<String> = val["concat"]
        .as_array()?
        .iter()
        .map(|p| p.as_str().map(String::from).or_else(|| p.as_u64().map(|n| n.to_string())))
        .collect::<Option<_>>()?;
    Some((parts.join(" . "), owner))
}

/// A key as nft prints it: "10.0.0.1", {"prefix": {...}}, or {"elem": {"val": ..., "comment": ...}}.
fn parse_key(v: &Value) -> Option<(Ipv4Net, Option<String>)> {
    if let Some(s) = v.as_str() {
        return Some((Ipv4Net::new(s.parse().ok()?, 32).ok()?, None));
    }
    if let Some(p) = v.get("prefix") {
        let addr = p["addr"].as_str()?.parse().ok()?;
        return Some((Ipv4Net::new(addr, p["len"].as_u64()? as u8).ok()?, None));
    }
    let e = v.get("elem")?;
    let (key, _) = parse_key(&e["val"])?;
    Some((key, e["comment"].as_str().map(String::from)))
}

/// The base chains' rules, in order. Each carries the comment [`BASE_TAG`]: a base chain whose rules differ
/// from these in number or tag (a table made by another rcon version, or edited by hand) is restated whole.
/// Restating only when needed matters: the kernel takes a grace period (~10 ms here) to commit a batch that
/// deletes or redeclares a chain or rule, and a batch that only adds takes a few ms.
const BASE_RULES: [(&str, &[&str]); 6] = [
    ("forward", &["ct status dnat accept", "ip saddr vmap @fwd_src", "ip daddr vmap @fwd_dst"]),
    (
        "postrouting",
        &[
            "ct status dnat ip saddr . ip daddr @hairpin masquerade",
            "ct status dnat ip saddr . ip daddr @svc_self masquerade",
            "ct status dnat ip saddr 127.0.0.0/8 masquerade",
            "ip saddr vmap @nat_src",
        ],
    ),
    ("replies", &["ct state established,related accept"]),
    ("pub_pre", &["ip daddr . meta l4proto . th dport vmap @svc_vips", "fib daddr type local jump pub_dnat"]),
    ("pub_out", &["ip daddr . meta l4proto . th dport vmap @svc_vips", "fib daddr type local jump pub_dnat"]),
    (
        "pub_dnat",
        &[
            "dnat ip to ip daddr . meta l4proto . th dport map @pub_addr",
            "dnat ip to meta l4proto . th dport map @pub_any",
        ],
    ),
];
/// Names the layout version of the base rules; change it whenever `BASE_RULES` changes.
const BASE_TAG: &str = "rcon base 3";
const PUB_ANY: &str = "pub_any";
const PUB_ADDR: &str = "pub_addr";
const HAIRPIN: &str = "hairpin";
const SVC_VIPS: &str = "svc_vips";
const SVC_SELF: &str = "svc_self";

fn svc_chain(name: &str) -> String {
    format!("svc{}", chain_suffix(name, MAX_BARE))
}

/// The service maps, declared with the table and again with each service batch (declaring is idempotent).
fn declare_service_sets(b: &mut String) {
    let _ = writeln!(b, "add map {TABLE} {SVC_VIPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}");
    let _ = writeln!(b, "add set {TABLE} {SVC_SELF} {{ type ipv4_addr . ipv4_addr; }}");
}

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
fn base_intact(live: &Live, chain: &str, rules: &[&str]) -> bool {
    let have = live.rules.get(chain).map(Vec::as_slice).unwrap_or_default();
    have.len() == rules.len() && have.iter().all(|c| c.as_deref() == Some(BASE_TAG))
}

/// Every set and map of the layout.
const SETS: [&str; 9] = [SUBNETS, FWD_SRC, FWD_DST, NAT_SRC, PUB_ANY, PUB_ADDR, HAIRPIN, SVC_VIPS, SVC_SELF];

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
    for svc in &want.services {
        if rules(&svc_chain(&svc.name)) != 1 {
            return Some(format!("service {}: its rules are missing", svc.name));
        }
    }
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
    for chain in own_chains.chain(want.services.iter().map(|s| svc_chain(&s.name))) {
        let _ = writeln!(b, "add chain {TABLE} {chain}");
        live.chains.insert(chain);
    }
    for net in &want.networks {
        b.push_str(&render_add(&live, net));
        // The base is in the batch now: the next network's part adds only its own.
        for (chain, rules) in BASE_RULES {
            live.chains.insert(chain.to_string());
            live.rules.insert(chain.to_string(), vec![Some(BASE_TAG.to_string()); rules.len()]);
        }
    }
    for p in want.published() {
        b.push_str(&render_ports(&p, true));
    }
    let all = want.all_backends();
    for svc in want.service_rules() {
        b.push_str(&render_service(&live, svc.name, Some(&svc), &all));
        // The hairpin set is whole after the first service.
        let pairs = all.iter().map(|ip| PortElem { set: SVC_SELF.into(), key: format!("{ip} . {ip}"), owner: None });
        if live.svc.is_empty() {
            live.svc.extend(pairs);
        }
    }
    b
}

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

/// `nft ARGS` parsed; a missing table reads as an empty one.
fn list(args: &[&str]) -> Result<Live> {
    match run("nft", args, None) {
        Ok(out) => Live::parse(&out),
        // The table does not exist (yet, or any more).
        Err(e) if e.to_string().contains("No such file or directory") => Ok(Live::default()),
        Err(e) => Err(e),
    }
}

impl super::Ruleset for Nftables {
    type Live = Live;
    const NAME: &'static str = "nftables";

    fn live(&self) -> Result<Live> {
        list(&["-j", "list", "table", "ip", "rcon"])
    }

    fn glance(&self) -> Result<Live> {
        super::nflist::glance("rcon")
    }

    fn subnets(live: &Live) -> BTreeMap<&str, Ipv4Net> {
        live.subnets()
    }

    fn owners(live: &Live) -> BTreeSet<&str> {
        live.owners()
    }

    fn render_add(live: &Live, net: &NetRules) -> String {
        render_add(live, net)
    }

    fn render_remove(live: &Live, name: &str) -> Option<String> {
        render_remove(live, name)
    }

    fn apply(&self, batch: &str) -> Result<()> {
        run("nft", &["-f", "-"], Some(batch)).map(drop)
    }

    fn render_ports(p: &Published, add: bool) -> String {
        render_ports(p, add)
    }

    fn port_owners(live: &Live) -> BTreeSet<&str> {
        live.ports.iter().filter_map(|e| e.owner.as_deref()).collect()
    }

    fn render_remove_ports_of(live: &Live, owner: &str) -> Option<String> {
        render_remove_ports_of(live, owner)
    }

    fn render_service(live: &Live, name: &str, svc: Option<&SvcRules>, all: &[Ipv4Addr]) -> String {
        render_service(live, name, svc, all)
    }

    fn service_names(live: &Live) -> BTreeSet<&str> {
        live.svc.iter().filter(|e| e.set == SVC_VIPS).filter_map(|e| e.owner.as_deref()).collect()
    }

    fn damage(live: &Live, want: &Want) -> Option<String> {
        damage(live, want)
    }

    fn render_restore(_live: &Live, want: &Want) -> String {
        render_restore(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str, internal: bool, masquerade: bool) -> NetRules {
        NetRules::plain(name, subnet.parse().unwrap(), internal, masquerade)
    }

    /// The listing nft 1.0.6 prints for a table holding network "a" (10.1.0.0/24, masquerading) and "b"
    /// (10.2.0.0/24, internal), trimmed to what the parser reads plus some rules it must skip.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "ip", "name": "rcon", "handle": 7}},
      {"set": {"family": "ip", "name": "subnets", "table": "rcon", "type": "ipv4_addr", "flags": ["interval"],
        "elem": [{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
                 {"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 24}}, "comment": "b"}}]}},
      {"map": {"family": "ip", "name": "fwd_src", "table": "rcon", "type": "ipv4_addr", "map": "verdict",
        "elem": [[{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
                  {"jump": {"target": "out-a"}}],
                 [{"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 24}}, "comment": "b"}},
                  {"jump": {"target": "out-b"}}]]}},
      {"map": {"family": "ip", "name": "fwd_dst", "table": "rcon", "type": "ipv4_addr", "map": "verdict",
        "elem": [[{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
                  {"jump": {"target": "replies"}}],
                 [{"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 24}}, "comment": "b"}},
                  {"drop": null}]]}},
      {"map": {"family": "ip", "name": "nat_src", "table": "rcon", "type": "ipv4_addr", "map": "verdict",
        "elem": [[{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
                  {"jump": {"target": "nat-a"}}]]}},
      {"chain": {"family": "ip", "table": "rcon", "name": "forward", "handle": 1, "type": "filter",
                 "hook": "forward", "prio": 0, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "rcon", "name": "postrouting", "handle": 2}},
      {"chain": {"family": "ip", "table": "rcon", "name": "replies", "handle": 3}},
      {"chain": {"family": "ip", "table": "rcon", "name": "out-a", "handle": 4}},
      {"chain": {"family": "ip", "table": "rcon", "name": "nat-a", "handle": 5}},
      {"chain": {"family": "ip", "table": "rcon", "name": "out-b", "handle": 6}},
      {"chain": {"family": "ip", "table": "rcon", "name": "pub_pre", "handle": 14}},
      {"chain": {"family": "ip", "table": "rcon", "name": "pub_out", "handle": 15}},
      {"chain": {"family": "ip", "table": "rcon", "name": "pub_dnat", "handle": 16}},
      {"map": {"family": "ip", "name": "pub_any", "table": "rcon", "type": ["inet_proto", "inet_service"],
        "map": "concat", "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "k1"}},
                                   {"concat": ["10.1.0.2", 80]}]]}},
      {"set": {"family": "ip", "name": "hairpin", "table": "rcon", "type": ["ipv4_addr", "ipv4_addr"],
        "elem": [{"elem": {"val": {"concat": ["10.1.0.2", "10.1.0.2"]}, "comment": "k1"}}]}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "forward", "handle": 8, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "forward", "handle": 9, "comment": "rcon base 3",
                "expr": [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "saddr"}}, "data": "@fwd_src"}}]}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "forward", "handle": 10, "comment": "rcon base 3",
                "expr": [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@fwd_dst"}}]}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 11, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 17, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 18, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 23, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "pub_pre", "handle": 24, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "pub_out", "handle": 25, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "replies", "handle": 12, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "pub_pre", "handle": 19, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "pub_out", "handle": 20, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "pub_dnat", "handle": 21, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "pub_dnat", "handle": 22, "comment": "rcon base 3",
                "expr": []}},
      {"rule": {"family": "ip", "table": "rcon", "chain": "out-a", "handle": 13, "expr": []}}
    ]}"#;

    fn live() -> Live {
        Live::parse(LISTING).unwrap()
    }

    #[test]
    fn parse_listing() {
        let l = live();
        assert!(l.exists);
        assert_eq!(l.owners().into_iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(l.subnets()["b"], "10.2.0.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(l.elems.iter().filter(|e| e.owner.as_deref() == Some("a")).count(), 4);
        assert!(l.chains.contains("nat-a") && l.chains.contains("forward"));
        // A bare /32 key, and a set element without a comment.
        let bare = r#"{"nftables": [{"set": {"name": "subnets", "elem": ["10.9.0.1", {"prefix": {"addr": "10.8.0.0", "len": 16}}]}}]}"#;
        let l = Live::parse(bare).unwrap();
        assert!(!l.exists);
        assert_eq!(l.elems[0].key, "10.9.0.1/32".parse::<Ipv4Net>().unwrap());
        assert_eq!(l.elems[1].owner, None);
    }

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
add map ip rcon svc_vips { type ipv4_addr . inet_proto . inet_service : verdict; }
add set ip rcon svc_self { type ipv4_addr . ipv4_addr; }
add rule ip rcon forward ct status dnat accept comment \"rcon base 3\"
add rule ip rcon forward ip saddr vmap @fwd_src comment \"rcon base 3\"
add rule ip rcon forward ip daddr vmap @fwd_dst comment \"rcon base 3\"
add rule ip rcon postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade comment \"rcon base 3\"
add rule ip rcon postrouting ct status dnat ip saddr . ip daddr @svc_self masquerade comment \"rcon base 3\"
add rule ip rcon postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade comment \"rcon base 3\"
add rule ip rcon postrouting ip saddr vmap @nat_src comment \"rcon base 3\"
add rule ip rcon replies ct state established,related accept comment \"rcon base 3\"
add rule ip rcon pub_pre ip daddr . meta l4proto . th dport vmap @svc_vips comment \"rcon base 3\"
add rule ip rcon pub_pre fib daddr type local jump pub_dnat comment \"rcon base 3\"
add rule ip rcon pub_out ip daddr . meta l4proto . th dport vmap @svc_vips comment \"rcon base 3\"
add rule ip rcon pub_out fib daddr type local jump pub_dnat comment \"rcon base 3\"
add rule ip rcon pub_dnat dnat ip to ip daddr . meta l4proto . th dport map @pub_addr comment \"rcon base 3\"
add rule ip rcon pub_dnat dnat ip to meta l4proto . th dport map @pub_any comment \"rcon base 3\"
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

    fn want_two() -> Want {
        use crate::net::ports::{Mapping, Proto};
        let m = vec![Mapping { proto: Proto::Tcp, host_ip: None, host_port: 8080, ctr_port: 80 }];
        let svc = |name: &str, vip: &str| super::super::WantService {
            name: name.into(),
            vip: vip.parse().unwrap(),
            lb: Lb::Random,
            backends: vec![("10.1.0.2".parse().unwrap(), 80)],
        };
        Want {
            networks: vec![net("a", "10.1.0.0/24", false, true), net("b", "10.2.0.0/24", true, false)],
            ports: vec![("k1".into(), "10.1.0.2".parse().unwrap(), m)],
            services: vec![svc("web", "10.96.0.1:80"), svc("api", "10.96.0.2:80")],
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
            "add element ip rcon svc_vips { 10.96.0.2 . tcp . 80 comment \"api\" : goto svc-api }",
        ] {
            assert!(got.contains(line), "missing {line:?} in\n{got}");
        }
        assert!(!got.contains("nat-b"), "an internal network masquerades:\n{got}");
        assert_eq!(got.matches("add element ip rcon svc_self { 10.1.0.2 . 10.1.0.2 }").count(), 1, "{got}");
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
        for s in &w.services {
            l.rules.insert(svc_chain(&s.name), vec![None]);
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
        let mut l = intact();
        l.rules.remove("svc-web");
        assert_eq!(damage(&l, &w).unwrap(), "service web: its rules are missing");
        // Elements are not read (a terse listing has none).
        let mut l = intact();
        l.elems.clear();
        assert_eq!(damage(&l, &w), None);
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
