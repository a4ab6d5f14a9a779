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
//!         ct status dnat ip saddr . ip daddr . th dport . ct original ip daddr . meta l4proto @svc_self masquerade
//!                                                                    # a backend landing on itself via a VIP
//!         ct status dnat ip saddr 127.0.0.0/8 masquerade           # the node via 127.0.0.1
//!         ip saddr vmap @nat_src
//!     }
//!     set svc_all { type ipv4_addr . inet_proto . inet_service; }     # every service's VIP . tcp . 80
//!     set svc-random-2 { type ipv4_addr . inet_proto . inet_service; }  # the VIPs of services with 2 backends,
//!                                     # spread at random (one set per chain below that a service uses)
//!     map svc_dst_0 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }  # VIP . tcp . 80 : B1 . 8080
//!     map svc_dst_1 { … }                             # VIP . tcp . 80 : B2 . 8080 (one map per backend slot in use)
//!     set svc_self { type ipv4_addr . ipv4_addr . inet_service . ipv4_addr . inet_proto; }
//!                                   # B . B . PORT . VIP . tcp for each backend B:PORT of a service VIP:…/tcp
//!     chain pub_pre { type nat hook prerouting priority dstnat; policy accept;
//!         ip daddr . meta l4proto . th dport @svc_all jump svc_pick
//!         fib daddr type local jump pub_dnat
//!     }
//!     chain pub_out { type nat hook output priority -100; policy accept; (the same two rules) }
//!     chain svc_pick { ip daddr . meta l4proto . th dport @svc-random-2 goto svc-random-2  # one rule per set above
//!     }
//!     chain svc-random-2 { numgen random mod 2 vmap { 0 : goto svc-slot-0, 1 : goto svc-slot-1 } }
//!     chain svc-roundrobin-2 { (the same with numgen inc) }      # one per spreading and number of backends in use
//!     chain svc-slot-0 { dnat ip to ip daddr . meta l4proto . th dport map @svc_dst_0 }   # one per slot in use
//!     chain svc-none { reject }                                   # a service without backends
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
//! A service is elements only: its VIP in `svc_all` and in the set named after the shared chain for its
//! number of backends and its spreading, one element in `svc_dst_I` for its backend I, one in
//! `svc_self` per backend, each with the service's name as its comment. A change of one service renders
//! its batch from its record before and after (and those of the few services on the same VIP address,
//! whose `svc_self` elements may be the same) and a glance at the table's chains, reads no element and
//! touches nothing else, so it costs the same at 10 services as at 10,000. A chain or an anonymous map per
//! service, as before, made every nft batch slower with each service: libnftables lists every chain and
//! set of the table into its cache before it applies anything (a published port too), and the kernel
//! walks every chain a verdict can reach when a batch adds a jump. Each deletion in a service batch is
//! preceded by an add of the same element, which makes the batch hold whether the element was there or
//! not; a batch that fails anyway (the records and the table disagree: a crash, a hand edit) is rendered
//! again from the whole listing. A connection to a VIP takes `svc_all`, then one lookup per shared
//! chain in use (a handful: one per spreading and number of backends) until its set is found, then
//! the slot's verdict and `svc_dst_I`, at 10 services as at 10,000; any other new connection takes
//! `svc_all` alone. The VIPs are no verdict map (`VIP : goto chain`, as they were): the kernel checks
//! every chain a batch's new jump can reach, and with a jump per element it walked every service's
//! element on each create and remove (twice as slow at 10,000 services). A plain set's element
//! carries no jump; only a service size never used before adds one, its `svc_pick` rule. (One map
//! keyed on `numgen . VIP . proto . port` would do with fewer lookups, but nft 1.0.6 cannot add a rule
//! for a `typeof` map holding `th dport` once the map exists; nor can its syntax feed one lookup's
//! result into the next.) Round robin's counter belongs to the shared chain: each service's connections
//! still take its backends in turn, but two services of the same size that take connections at once
//! share one sequence.
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
//! This file holds the layout (names, base rules) and the backend's [`super::Ruleset`] face. The batches
//! are rendered by concern: a network and the base (`networks`), published ports (`published`), services
//! (`services`), and the whole table's check and restore (`restore`); `live` reads the table back.

#[cfg(test)]
mod fixtures;
mod live;
mod networks;
mod published;
mod restore;
mod services;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use ipnet::Ipv4Net;

pub(crate) use self::live::Live;
use super::{chain_suffix, NetRules, Published, SvcChange, SvcRules, Want};
use crate::net::service_types::Lb;

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
            "ct status dnat ip saddr . ip daddr . th dport . ct original ip daddr . meta l4proto @svc_self masquerade",
            "ct status dnat ip saddr 127.0.0.0/8 masquerade",
            "ip saddr vmap @nat_src",
        ],
    ),
    ("replies", &["ct state established,related accept"]),
    ("pub_pre", &["ip daddr . meta l4proto . th dport @svc_all jump svc_pick", "fib daddr type local jump pub_dnat"]),
    ("pub_out", &["ip daddr . meta l4proto . th dport @svc_all jump svc_pick", "fib daddr type local jump pub_dnat"]),
    (
        "pub_dnat",
        &[
            "dnat ip to ip daddr . meta l4proto . th dport map @pub_addr",
            "dnat ip to meta l4proto . th dport map @pub_any",
        ],
    ),
];
/// Names the layout version of the base rules; change it whenever `BASE_RULES` changes.
const BASE_TAG: &str = "rcon base 5";
const PUB_ANY: &str = "pub_any";
const PUB_ADDR: &str = "pub_addr";
const HAIRPIN: &str = "hairpin";
const SVC_ALL: &str = "svc_all";
/// The chain that sends a VIP's connection to its service's shared chain: one rule per such chain.
const SVC_PICK: &str = "svc_pick";
const SVC_SELF: &str = "svc_self";

/// The maps of backend slot i, `svc_dst_0`, `svc_dst_1`, ...: VIP . proto . port : backend . port.
const SVC_DST: &str = "svc_dst_";

/// The map, chain and rule of backend slot `i`: the chain DNATs to the slot's backend of the VIP.
/// Made the first time a service has that many backends, kept until the table is restored.
fn slot(i: usize) -> (String, String, String) {
    let map = format!("{SVC_DST}{i}");
    let rule = format!("dnat ip to ip daddr . meta l4proto . th dport map @{map}");
    (map, format!("svc-slot-{i}"), rule)
}

/// The chain that sends a new connection to one of a service's `k` backend slots, spread by `lb` (no
/// backend: reject), and its one rule. Shared by every service with `k` backends and that spreading, and
/// made the first time one needs it: a service is then elements only, never a chain or a rule of its own.
fn lb_chain(lb: Lb, k: usize) -> (String, String) {
    let gen = match lb {
        Lb::Roundrobin => "inc",
        Lb::Random => "random",
    };
    if k == 0 {
        return ("svc-none".to_string(), "reject".to_string());
    }
    let slots: Vec<String> = (0..k).map(|i| format!("{i} : goto {}", slot(i).1)).collect();
    (format!("svc-{lb}-{k}"), format!("numgen {gen} mod {k} vmap {{ {} }}", slots.join(", ")))
}

/// `svc_pick`'s rule for the shared chain `chain`, whose VIPs are the elements of the set of the same name.
fn pick_rule(chain: &str) -> String {
    format!("ip daddr . meta l4proto . th dport @{chain} goto {chain}")
}

/// Whether `chain` is a service's shared chain (`svc-random-2`, `svc-none`; not a slot's).
fn is_lb_chain(chain: &str) -> bool {
    chain.starts_with("svc-") && !chain.starts_with("svc-slot-")
}

/// Every set and map of the layout that is made with the table.
const SETS: [&str; 9] = [SUBNETS, FWD_SRC, FWD_DST, NAT_SRC, PUB_ANY, PUB_ADDR, HAIRPIN, SVC_ALL, SVC_SELF];

/// `nft -j list WHAT` parsed; a missing table reads as an empty one.
fn list(what: &str) -> Result<Live> {
    match super::nft::list_json(what) {
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
        list("table ip rcon")
    }

    fn glance(&self) -> Result<Live> {
        super::nflist::glance(super::nflist::FAMILY_IP, "rcon")
    }

    fn subnets(live: &Live) -> BTreeMap<&str, Ipv4Net> {
        live.subnets()
    }

    fn owners(live: &Live) -> BTreeSet<&str> {
        live.owners()
    }

    fn render_add(live: &Live, net: &NetRules) -> String {
        networks::render_add(live, net)
    }

    fn render_remove(live: &Live, name: &str) -> Option<String> {
        networks::render_remove(live, name)
    }

    fn apply(&self, batch: &str) -> Result<()> {
        super::nft::apply(batch)
    }

    fn render_ports(p: &Published, add: bool) -> String {
        published::render_ports(p, add)
    }

    fn port_owners(live: &Live) -> BTreeSet<&str> {
        live.ports.iter().filter_map(|e| e.owner.as_deref()).collect()
    }

    fn render_remove_ports_of(live: &Live, owner: &str) -> Option<String> {
        published::render_remove_ports_of(live, owner)
    }

    const SERVICE_GLANCE: bool = true;

    fn render_service(live: &Live, c: &SvcChange, whole: bool) -> String {
        services::render_service(live, c, whole)
    }

    fn service_names(live: &Live) -> BTreeSet<&str> {
        live.svc.iter().filter(|e| e.set == SVC_ALL).filter_map(|e| e.owner.as_deref()).collect()
    }

    fn damage(live: &Live, want: &Want) -> Option<String> {
        restore::damage(live, want)
    }

    fn render_restore(_live: &Live, want: &Want) -> String {
        restore::render_restore(want)
    }
}
