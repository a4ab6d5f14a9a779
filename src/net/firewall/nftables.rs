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
//!     map svc_vips { type ipv4_addr . inet_proto . inet_service : verdict; }   # VIP . tcp . 80 : goto svc-NAME
//!     set svc_self { type ipv4_addr . ipv4_addr . inet_service . ipv4_addr . inet_proto; }
//!                                   # B . B . PORT . VIP . tcp for each backend B:PORT of a service VIP:…/tcp
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
//! A service is its chain, one `svc_vips` element and one `svc_self` element per backend, all of which
//! its record names: a change of one service renders its batch from its record before and after (and
//! those of the few services on the same VIP address, whose `svc_self` elements may be the same), reads
//! nothing back and touches nothing else, so it costs the same at 10 services as at 10,000. Each
//! deletion in it is preceded by an add of the same object, which makes the batch hold whether the
//! object was there or not. The `svc_self` key carries the VIP address, so that a pair `B . B` needed by
//! two services never goes with one of them; only gc, which knows a service by its name alone, reads
//! the table for what that service owns (the element comments).
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
const BASE_TAG: &str = "rcon base 4";
const PUB_ANY: &str = "pub_any";
const PUB_ADDR: &str = "pub_addr";
const HAIRPIN: &str = "hairpin";
const SVC_VIPS: &str = "svc_vips";
const SVC_SELF: &str = "svc_self";

fn svc_chain(name: &str) -> String {
    format!("svc{}", chain_suffix(name, MAX_BARE))
}

/// Every set and map of the layout.
const SETS: [&str; 9] = [SUBNETS, FWD_SRC, FWD_DST, NAT_SRC, PUB_ANY, PUB_ADDR, HAIRPIN, SVC_VIPS, SVC_SELF];

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

    fn service_reads_live(c: &SvcChange) -> bool {
        c.old.is_none() && c.new.is_none()
    }

    fn render_service(live: Option<&Live>, c: &SvcChange) -> String {
        services::render_service(live, c)
    }

    fn service_names(live: &Live) -> BTreeSet<&str> {
        live.svc.iter().filter(|e| e.set == SVC_VIPS).filter_map(|e| e.owner.as_deref()).collect()
    }

    fn damage(live: &Live, want: &Want) -> Option<String> {
        restore::damage(live, want)
    }

    fn render_restore(_live: &Live, want: &Want) -> String {
        restore::render_restore(want)
    }
}
