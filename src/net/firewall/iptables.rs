//! The iptables backend: rcon's own `RCON-*` chains, reached by one jump each from the built-in chains.
//!
//! ```text
//! *filter
//! -I FORWARD 1 -j RCON-FORWARD
//! RCON-FORWARD   -s S -m comment --comment NAME -j RCON-N-NAME                  (inserted: sources first)
//!                -d S -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment NAME -j ACCEPT
//!                -d S -m comment --comment NAME -j DROP                          (internal, instead)
//! RCON-ISOLATE   -d S -m comment --comment NAME -j DROP                          (one per network)
//! RCON-N-NAME    -d S -j ACCEPT; -j RCON-ISOLATE; -j ACCEPT                      (internal: -j DROP last)
//! RCON-ISOLATE   -m conntrack --ctstate DNAT -m comment --comment rcon:published -j RETURN   (first)
//! -I FORWARD 1 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT
//! *nat
//! -I POSTROUTING 1 -j RCON-POSTROUTING
//! RCON-POSTROUTING -s S ! -d S -m comment --comment NAME -j MASQUERADE            (masquerading networks)
//!                  -s 127.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j MASQUERADE
//!                  -s C -d C -m conntrack --ctstate DNAT -m comment --comment port:KEY -j MASQUERADE
//! -A PREROUTING -m addrtype --dst-type LOCAL -j RCON-PORTS;  -A OUTPUT (the same)
//! RCON-PORTS     -m comment --comment port:KEY -j RCON-P-KEY                     (one jump per endpoint)
//! RCON-P-KEY     -p P [-d HOSTIP] --dport HP -j DNAT --to-destination C:CP       (one rule per mapping)
//! ```
//!
//! Published ports are one DNAT rule each, in a chain per endpoint (lists: a packet walks them rule by
//! rule, which is what the nftables backend's maps avoid).
//!
//! The same semantics as the nftables backend, with lists instead of maps: a packet walks one rule per
//! network. Because the chains hang off the shared FORWARD chain, the `ACCEPT`s here also let rcon's traffic
//! through on hosts whose FORWARD policy is DROP (Docker hosts). Every rule that belongs to a network carries
//! its name as a comment (chain names are limited to 28 bytes, so a long or odd name is hashed in
//! `RCON-N_<hash>`), and a change is one `iptables-restore --noflush` run, atomic per table. Removal deletes the
//! exact rules `iptables-save` lists back; the last network takes the `RCON-*` chains and the jumps with it.
//! Plain `iptables-restore` is used, so the system's alternative (nft or legacy) decides where rules live.
//!
//! This file holds the chain names, the backend's [`super::Ruleset`] face and the glance (`iptables -S`
//! of the chains the check reads). The inputs are rendered by concern: a network and rcon's base chains
//! (`networks`), published ports (`published`), services (`services`), and the check and restore of all
//! of rcon's rules (`restore`); `live` reads `iptables-save` back.

#[cfg(test)]
mod fixtures;
mod live;
mod networks;
mod published;
mod restore;
mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::Result;
use ipnet::Ipv4Net;

pub(crate) use self::live::Live;
use super::{chain_suffix, run, NetRules, Published, SvcChange, SvcRules, Want};

/// The iptables implementation of [`Firewall`].
pub struct Iptables;

const PREFIX: &str = "RCON-";
const FORWARD: &str = "RCON-FORWARD";
const ISOLATE: &str = "RCON-ISOLATE";
const POSTROUTING: &str = "RCON-POSTROUTING";
const PORTS: &str = "RCON-PORTS";
const SERVICES: &str = "RCON-SERVICES";
/// The comment on a service's rules is this and its name.
const SVC_TAG: &str = "svc:";

fn svc_chain(name: &str) -> String {
    format!("RCON-S{}", chain_suffix(name, MAX_BARE))
}
/// The comment on the rules published ports need once (not a network's).
const PUBLISHED: &str = "rcon:published";
/// The comment on an endpoint's port rules is this and its key.
const PORT_TAG: &str = "port:";
/// `RCON-N-` plus at most 21 bytes: iptables chain names hold 28.
const MAX_BARE: usize = 21;

fn net_chain(name: &str) -> String {
    format!("RCON-N{}", chain_suffix(name, MAX_BARE))
}

/// The chains `damage` reads: the whole filter table (rcon's part of it does not grow with ports) and, of
/// the nat table, the chains that hold jumps and per-network or per-service rules, not the per-endpoint
/// chains of DNAT rules. `iptables-save` reads every rule (about 75 ms at 10,000 mappings here); one
/// `iptables -S CHAIN` reads its chain (1.4 ms), and the seven run at once.
const GLANCED: [(&str, Option<&str>); 7] = [
    ("filter", None),
    ("nat", Some("PREROUTING")),
    ("nat", Some("OUTPUT")),
    ("nat", Some("POSTROUTING")),
    ("nat", Some(POSTROUTING)),
    ("nat", Some(PORTS)),
    ("nat", Some(SERVICES)),
];

/// [`GLANCED`], read back as one `iptables-save`-shaped text and parsed. A chain that does not exist
/// lists nothing.
fn glance() -> Result<Live> {
    use crate::sys::spawn::{self, Keep};
    let children: Vec<_> = GLANCED
        .iter()
        .map(|(table, chain)| {
            let mut c = std::process::Command::new("iptables");
            c.args(["-w", "-t", table, "-S"]).args(chain.iter()).env("LC_ALL", "C");
            spawn::spawn(&mut c, None, Keep::STDOUT)
                .map_err(|e| anyhow::Error::new(e.into_io()).context("spawning iptables (is its package installed?)"))
        })
        .collect::<Result<_>>()?;
    let mut save = String::new();
    let mut table = "";
    for ((t, _), child) in GLANCED.iter().zip(children) {
        let out = child.wait(None).map_err(|e| anyhow::Error::new(e.into_io()).context("waiting for iptables"))?;
        if *t != table {
            if !table.is_empty() {
                save.push_str("COMMIT\n");
            }
            let _ = writeln!(save, "*{t}");
            table = t;
        }
        if !out.status.success() {
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("-N"), Some(chain), _) => {
                    let _ = writeln!(save, ":{chain} - [0:0]");
                }
                (Some("-P"), Some(chain), Some(policy)) => {
                    let _ = writeln!(save, ":{chain} {policy} [0:0]");
                }
                _ => {
                    let _ = writeln!(save, "{line}");
                }
            }
        }
    }
    save.push_str("COMMIT\n");
    Live::parse(&save)
}

impl super::Ruleset for Iptables {
    type Live = Live;
    const NAME: &'static str = "iptables";

    fn live(&self) -> Result<Live> {
        Live::parse(&run("iptables-save", &[], None)?)
    }

    fn glance(&self) -> Result<Live> {
        glance()
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

    fn apply(&self, input: &str) -> Result<()> {
        run("iptables-restore", &["-w", "--noflush"], Some(input)).map(drop)
    }

    fn render_ports(p: &Published, add: bool) -> String {
        published::render_ports(p, add)
    }

    fn port_owners(live: &Live) -> BTreeSet<&str> {
        live.port_owners()
    }

    fn render_remove_ports_of(live: &Live, owner: &str) -> Option<String> {
        published::render_remove_ports_of(live, owner)
    }

    fn render_service(live: &Live, c: &SvcChange, _whole: bool) -> String {
        services::render_service(live, c.name, c.new.as_ref())
    }

    fn service_names(live: &Live) -> BTreeSet<&str> {
        live.rules
            .iter()
            .filter(|r| r.table == "nat" && r.chain == SERVICES)
            .filter_map(|r| r.comment.as_deref()?.strip_prefix(SVC_TAG))
            .collect()
    }

    fn damage(live: &Live, want: &Want) -> Option<String> {
        restore::damage(live, want)
    }

    fn render_restore(live: &Live, want: &Want) -> String {
        restore::render_restore(live, want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_fit() {
        assert_eq!(net_chain("web"), "RCON-N-web");
        assert_eq!(net_chain(&"x".repeat(21)).len(), 28);
        assert!(net_chain(&"x".repeat(22)).len() <= 28);
        assert!(net_chain("a+b").starts_with("RCON-N_"));
    }
}
