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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use std::net::Ipv4Addr;

use super::{chain_suffix, run, NetRules, Published, SvcRules, Want};
use crate::net::service_types::Lb;

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

/// What `iptables-save` shows of the filter and nat tables.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Live {
    /// (table, chain) of every chain, built-in or not.
    pub chains: BTreeSet<(String, String)>,
    pub rules: Vec<Rule>,
}

/// One rule, as `-A CHAIN SPEC`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub table: String,
    pub chain: String,
    /// Everything after `-A CHAIN `, as iptables-save printed it (so `-D CHAIN SPEC` deletes exactly it).
    pub spec: String,
    pub comment: Option<String>,
    pub target: Option<String>,
    pub dst: Option<Ipv4Net>,
}

impl Live {
    /// Parse `iptables-save` output, keeping the filter and nat tables.
    pub(crate) fn parse(save: &str) -> Result<Live> {
        let mut live = Live::default();
        let mut table: Option<&str> = None;
        for (i, line) in save.lines().enumerate() {
            let line = line.trim_end();
            if let Some(t) = line.strip_prefix('*') {
                table = Some(t);
                continue;
            }
            let Some(t) = table.filter(|t| *t == "filter" || *t == "nat") else { continue };
            if let Some(decl) = line.strip_prefix(':') {
                let chain = decl.split_whitespace().next().unwrap_or_default();
                live.chains.insert((t.to_string(), chain.to_string()));
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let Some((chain, spec)) = rest.split_once(' ') else { continue };
                let words = split_words(spec).with_context(|| format!("iptables-save line {}: {line}", i + 1))?;
                let after = |flag: &str| words.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
                // `! -d S` is the negation: not this rule's destination network.
                let negated_dst = words.windows(2).any(|w| w[0] == "!" && w[1] == "-d");
                live.rules.push(Rule {
                    table: t.to_string(),
                    chain: chain.to_string(),
                    spec: spec.to_string(),
                    comment: after("--comment"),
                    target: after("-j"),
                    dst: if negated_dst { None } else { after("-d").and_then(|d| d.parse().ok()) },
                });
            }
        }
        Ok(live)
    }

    fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.chains.contains(&(table.to_string(), chain.to_string()))
    }

    fn has_jump(&self, table: &str, from: &str, to: &str) -> bool {
        self.rules.iter().any(|r| r.table == table && r.chain == from && r.target.as_deref() == Some(to))
    }

    /// Rules in rcon's chains that belong to `name`.
    fn owned<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain.starts_with(PREFIX) && r.comment.as_deref() == Some(name))
    }

    /// Network names, from the comments on the rules in rcon's chains.
    pub(crate) fn owners(&self) -> BTreeSet<&str> {
        self.rules
            .iter()
            .filter(|r| r.chain.starts_with(PREFIX))
            .filter_map(|r| r.comment.as_deref())
            .filter(|c| *c != PUBLISHED && !c.starts_with(PORT_TAG) && !c.starts_with(SVC_TAG))
            .collect()
    }

    /// Endpoint keys with published-port rules.
    pub(crate) fn port_owners(&self) -> BTreeSet<&str> {
        self.rules.iter().filter_map(|r| r.comment.as_deref()?.strip_prefix(PORT_TAG)).collect()
    }

    fn has_comment(&self, table: &str, chain: &str, comment: &str) -> bool {
        self.rules.iter().any(|r| r.table == table && r.chain == chain && r.comment.as_deref() == Some(comment))
    }

    /// Each network's subnet, from RCON-ISOLATE.
    pub(crate) fn subnets(&self) -> BTreeMap<&str, Ipv4Net> {
        self.rules
            .iter()
            .filter(|r| r.table == "filter" && r.chain == ISOLATE)
            .filter_map(|r| Some((r.comment.as_deref()?, r.dst?)))
            .collect()
    }
}

/// Split an iptables-save rule into words, undoing its double quotes and backslash escapes.
fn split_words(s: &str) -> Result<Vec<String>> {
    let (mut words, mut cur, mut in_word, mut quoted) = (Vec::new(), String::new(), false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        bail!("unterminated quote");
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The `iptables-restore --noflush` input that installs rcon's chains and jumps if missing and `net`'s rules,
/// replacing whatever `net.name` had before.
pub(crate) fn render_add(live: &Live, net: &NetRules) -> String {
    let mut b = String::from("*filter\n");
    filter_base(live, &mut b);
    // Declaring the network's chain creates it, or flushes it when it exists.
    let _ = writeln!(b, ":{} - [0:0]", net_chain(&net.name));
    for r in live.owned(&net.name).filter(|r| r.table == "filter") {
        let _ = writeln!(b, "-D {} {}", r.chain, r.spec);
    }
    filter_net(net, &mut b);
    b.push_str("COMMIT\n*nat\n");
    nat_base(live, &mut b);
    for r in live.owned(&net.name).filter(|r| r.table == "nat") {
        let _ = writeln!(b, "-D {} {}", r.chain, r.spec);
    }
    nat_net(net, &mut b);
    b.push_str("COMMIT\n");
    b
}

/// The conntrack match and comment of the rules published ports need once.
fn published_dnat() -> String {
    format!("-m conntrack --ctstate DNAT -m comment --comment {PUBLISHED}")
}

/// rcon's filter chains and the rules outside its network chains, those `live` lacks.
fn filter_base(live: &Live, b: &mut String) {
    for base in [FORWARD, ISOLATE] {
        if !live.has_chain("filter", base) {
            let _ = writeln!(b, ":{base} - [0:0]");
        }
    }
    if !live.has_jump("filter", "FORWARD", FORWARD) {
        let _ = writeln!(b, "-I FORWARD 1 -j {FORWARD}");
    }
    // Published ports reach a container from anywhere, another rcon network included.
    let dnat = published_dnat();
    if !live.has_comment("filter", ISOLATE, PUBLISHED) {
        let _ = writeln!(b, "-I {ISOLATE} 1 {dnat} -j RETURN");
    }
    // In FORWARD itself, beside the jump: a rule of rcon's own chain would move
    // whenever a network's rules are replaced.
    if !live.has_comment("filter", "FORWARD", PUBLISHED) {
        let _ = writeln!(b, "-I FORWARD 1 {dnat} -j ACCEPT");
    }
}

/// One network's filter rules (its chain declared already).
fn filter_net(net: &NetRules, b: &mut String) {
    let (name, s, chain) = (net.name.as_str(), net.subnet.trunc(), net_chain(&net.name));
    let c = format!("-m comment --comment \"{name}\"");
    let _ = writeln!(b, "-I {FORWARD} 1 -s {s} {c} -j {chain}");
    if net.internal {
        let _ = writeln!(b, "-A {FORWARD} -d {s} {c} -j DROP");
    } else {
        let _ = writeln!(b, "-A {FORWARD} -d {s} -m conntrack --ctstate RELATED,ESTABLISHED {c} -j ACCEPT");
    }
    let _ = writeln!(b, "-A {ISOLATE} -d {s} {c} -j DROP");
    let _ = writeln!(b, "-A {chain} -d {s} -j ACCEPT");
    let _ = writeln!(b, "-A {chain} -j {ISOLATE}");
    let _ = writeln!(b, "-A {chain} -j {}", if net.internal { "DROP" } else { "ACCEPT" });
}

/// rcon's nat chains and the jumps to them, those `live` lacks.
fn nat_base(live: &Live, b: &mut String) {
    for base in [POSTROUTING, PORTS, SERVICES] {
        if !live.has_chain("nat", base) {
            let _ = writeln!(b, ":{base} - [0:0]");
        }
    }
    for from in ["PREROUTING", "OUTPUT"] {
        if !live.has_jump("nat", from, SERVICES) {
            let _ = writeln!(b, "-A {from} -j {SERVICES}");
        }
        if !live.has_jump("nat", from, PORTS) {
            let _ = writeln!(b, "-A {from} -m addrtype --dst-type LOCAL -j {PORTS}");
        }
    }
    if !live.has_comment("nat", POSTROUTING, PUBLISHED) {
        let _ = writeln!(b, "-A {POSTROUTING} -s 127.0.0.0/8 {} -j MASQUERADE", published_dnat());
    }
    if !live.has_jump("nat", "POSTROUTING", POSTROUTING) {
        let _ = writeln!(b, "-I POSTROUTING 1 -j {POSTROUTING}");
    }
}

/// One network's masquerade, when it has one.
fn nat_net(net: &NetRules, b: &mut String) {
    if net.masquerade && !net.internal {
        let (name, s) = (&net.name, net.subnet.trunc());
        let _ = writeln!(
            b,
            "-A {POSTROUTING} -s {s} ! -d {} -m comment --comment \"{name}\" -j MASQUERADE",
            net.unnat.trunc()
        );
    }
}

/// rcon's rules in the built-in chains of `table`: the jumps to its chains and the published-port rules.
fn builtin_refs<'a>(live: &'a Live, table: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
    live.rules.iter().filter(move |r| {
        r.table == table
            && !r.chain.starts_with(PREFIX)
            && (r.target.as_deref().is_some_and(|t| t.starts_with(PREFIX)) || r.comment.as_deref() == Some(PUBLISHED))
    })
}

/// The lines of one table that empty rcon's part of it: its rules in the built-in chains go, the chains
/// in `keep` are declared (created, or flushed), and every other rcon chain is flushed and deleted.
fn wipe(live: &Live, table: &str, keep: &BTreeSet<String>, b: &mut String) {
    for r in builtin_refs(live, table) {
        let _ = writeln!(b, "-D {} {}", r.chain, r.spec);
    }
    for c in keep {
        let _ = writeln!(b, ":{c} - [0:0]");
    }
    let gone: Vec<&str> = live
        .chains
        .iter()
        .filter(|(t, c)| t == table && c.starts_with(PREFIX) && !keep.contains(c))
        .map(|(_, c)| &**c)
        .collect();
    for verb in ["-F", "-X"] {
        for c in &gone {
            let _ = writeln!(b, "{verb} {c}");
        }
    }
}

/// The input that replaces all of rcon's chains and rules with `want` (atomic per table).
pub(crate) fn render_restore(live: &Live, want: &Want) -> String {
    let mut fresh = Live::default();
    let mut keep = |table: &str, chains: Vec<String>| -> BTreeSet<String> {
        if want.networks.is_empty() {
            return BTreeSet::new();
        }
        for c in &chains {
            fresh.chains.insert((table.to_string(), c.clone()));
        }
        chains.into_iter().collect()
    };
    let filter: Vec<String> = [FORWARD.to_string(), ISOLATE.to_string()]
        .into_iter()
        .chain(want.networks.iter().map(|n| net_chain(&n.name)))
        .collect();
    let filter = keep("filter", filter);
    let nat: Vec<String> = [POSTROUTING, PORTS, SERVICES]
        .into_iter()
        .map(String::from)
        .chain(want.ports.iter().map(|(owner, _, _)| ports_chain(owner)))
        .chain(want.services.iter().map(|s| svc_chain(&s.name)))
        .collect();
    let nat = keep("nat", nat);
    let mut b = String::from("*filter\n");
    wipe(live, "filter", &filter, &mut b);
    if !want.networks.is_empty() {
        filter_base(&fresh, &mut b);
        want.networks.iter().for_each(|n| filter_net(n, &mut b));
    }
    b.push_str("COMMIT\n*nat\n");
    wipe(live, "nat", &nat, &mut b);
    if !want.networks.is_empty() {
        nat_base(&fresh, &mut b);
        want.networks.iter().for_each(|n| nat_net(n, &mut b));
        want.published().for_each(|p| port_lines(&p, &mut b));
        want.service_rules().for_each(|s| service_lines(&s, &mut b));
    }
    b.push_str("COMMIT\n");
    b
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
    use std::process::{Command, Stdio};
    let children: Vec<_> = GLANCED
        .iter()
        .map(|(table, chain)| {
            let mut c = Command::new("iptables");
            c.args(["-w", "-t", table, "-S"]).args(chain.iter());
            c.env("LC_ALL", "C").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
            c.spawn().context("spawning iptables (is its package installed?)")
        })
        .collect::<Result<_>>()?;
    let mut save = String::new();
    let mut table = "";
    for ((t, _), child) in GLANCED.iter().zip(children) {
        let out = child.wait_with_output().context("waiting for iptables")?;
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

/// The first thing of `want` that `live` lacks: a chain or jump of rcon's base, a network's rules, a
/// service's rules (its VIP jump and masquerades: its own chain is not in the glance). Published ports
/// are not checked (see the nftables backend's `damage`).
pub(crate) fn damage(live: &Live, want: &Want) -> Option<String> {
    if want.networks.is_empty() {
        return None;
    }
    let chains = [("filter", FORWARD), ("filter", ISOLATE), ("nat", POSTROUTING), ("nat", PORTS), ("nat", SERVICES)];
    if let Some((t, c)) = chains.iter().find(|(t, c)| !live.has_chain(t, c)) {
        return Some(format!("chain {c} of table {t} is missing"));
    }
    let jumps = [
        ("filter", "FORWARD", FORWARD),
        ("nat", "PREROUTING", SERVICES),
        ("nat", "PREROUTING", PORTS),
        ("nat", "OUTPUT", SERVICES),
        ("nat", "OUTPUT", PORTS),
        ("nat", "POSTROUTING", POSTROUTING),
    ];
    if let Some((t, from, to)) = jumps.iter().find(|(t, f, to)| !live.has_jump(t, f, to)) {
        return Some(format!("the jump from {from} to {to} (table {t}) is missing"));
    }
    let published = [("filter", ISOLATE), ("filter", "FORWARD"), ("nat", POSTROUTING)];
    if let Some((t, c)) = published.iter().find(|(t, c)| !live.has_comment(t, c, PUBLISHED)) {
        return Some(format!("the published-port rule of {c} (table {t}) is missing"));
    }
    let count = |table: &str, chain: &str| live.rules.iter().filter(|r| r.table == table && r.chain == chain).count();
    for net in &want.networks {
        let owned = |table: &str| live.owned(&net.name).filter(|r| r.table == table).count();
        let masq = net.masquerade && !net.internal;
        if count("filter", &net_chain(&net.name)) != 3 || owned("filter") != 3 || owned("nat") != usize::from(masq) {
            return Some(format!("network {}: its rules are missing or changed", net.name));
        }
    }
    for svc in &want.services {
        let tag = format!("{SVC_TAG}{}", svc.name);
        let tagged =
            live.rules.iter().filter(|r| r.table == "nat" && r.comment.as_deref() == Some(tag.as_str())).count();
        if tagged != svc.backends.len() + 1 {
            return Some(format!("service {}: its rules are missing", svc.name));
        }
    }
    None
}

/// The input that removes `name`'s rules and chain, or every `RCON-*` chain and jump when no other network
/// remains; None when there is nothing to do.
pub(crate) fn render_remove(live: &Live, name: &str) -> Option<String> {
    let last = live.owners().iter().all(|o| *o == name);
    let mut b = String::new();
    for table in ["filter", "nat"] {
        let mut lines = String::new();
        if last {
            // Our jumps from the built-in chains, then every rcon chain: flushed first so none is still
            // referenced when it is deleted.
            wipe(live, table, &BTreeSet::new(), &mut lines);
        } else {
            for r in live.owned(name).filter(|r| r.table == table) {
                let _ = writeln!(lines, "-D {} {}", r.chain, r.spec);
            }
            let chain = net_chain(name);
            if table == "filter" && live.has_chain(table, &chain) {
                let _ = writeln!(lines, "-F {chain}\n-X {chain}");
            }
        }
        if !lines.is_empty() {
            let _ = write!(b, "*{table}\n{lines}COMMIT\n");
        }
    }
    (!b.is_empty()).then_some(b)
}

/// An endpoint's own nat chain: its DNAT rules, one jump to it from RCON-PORTS. Removal is then one `-D` of
/// the jump and a flush, not one `-D` per mapping (iptables finds each by comparing it with every rule of
/// the chain: 10,000 mappings took minutes).
fn ports_chain(owner: &str) -> String {
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
fn port_lines(p: &Published, b: &mut String) {
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

/// The input that restates (or, `svc` None, removes) service `name`: a jump from RCON-SERVICES for its VIP
/// to a chain of its own that DNATs to one backend (statistic nth or random, as kube-proxy does), and the
/// masquerade of a backend whose flow through the VIP lands on itself. `_all` is for the nftables
/// backend's shared set: here each service carries its own masquerade rules.
pub(crate) fn render_service(live: &Live, name: &str, svc: Option<&SvcRules>, _all: &[Ipv4Addr]) -> String {
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
fn service_lines(s: &SvcRules, b: &mut String) {
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
        render_add(live, net)
    }

    fn render_remove(live: &Live, name: &str) -> Option<String> {
        render_remove(live, name)
    }

    fn apply(&self, input: &str) -> Result<()> {
        run("iptables-restore", &["-w", "--noflush"], Some(input)).map(drop)
    }

    fn render_ports(p: &Published, add: bool) -> String {
        render_ports(p, add)
    }

    fn port_owners(live: &Live) -> BTreeSet<&str> {
        live.port_owners()
    }

    fn render_remove_ports_of(live: &Live, owner: &str) -> Option<String> {
        render_remove_ports_of(live, owner)
    }

    fn render_service(live: &Live, name: &str, svc: Option<&SvcRules>, all: &[Ipv4Addr]) -> String {
        render_service(live, name, svc, all)
    }

    fn service_names(live: &Live) -> BTreeSet<&str> {
        live.rules
            .iter()
            .filter(|r| r.table == "nat" && r.chain == SERVICES)
            .filter_map(|r| r.comment.as_deref()?.strip_prefix(SVC_TAG))
            .collect()
    }

    fn damage(live: &Live, want: &Want) -> Option<String> {
        damage(live, want)
    }

    fn render_restore(live: &Live, want: &Want) -> String {
        render_restore(live, want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str, internal: bool, masquerade: bool) -> NetRules {
        NetRules::plain(name, subnet.parse().unwrap(), internal, masquerade)
    }

    /// What iptables-save 1.8.9 prints with networks "a" (10.1.0.0/24, masquerading) and "b+x" (10.2.0.0/24,
    /// internal) installed, beside a foreign rule and a foreign chain.
    const SAVE: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 23 15:04:39 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:RCON-FORWARD - [0:0]
:RCON-ISOLATE - [0:0]
:RCON-N-a - [0:0]
:RCON-N_77267fbff2ca85bc - [0:0]
-A FORWARD -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT
-A FORWARD -j RCON-FORWARD
-A FORWARD -m comment --comment "foreign rule" -j DOCKER-USER
-A RCON-FORWARD -s 10.2.0.0/24 -m comment --comment "b+x" -j RCON-N_77267fbff2ca85bc
-A RCON-FORWARD -s 10.1.0.0/24 -m comment --comment a -j RCON-N-a
-A RCON-FORWARD -d 10.1.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment a -j ACCEPT
-A RCON-FORWARD -d 10.2.0.0/24 -m comment --comment "b+x" -j DROP
-A RCON-ISOLATE -m conntrack --ctstate DNAT -m comment --comment rcon:published -j RETURN
-A RCON-ISOLATE -d 10.1.0.0/24 -m comment --comment a -j DROP
-A RCON-ISOLATE -d 10.2.0.0/24 -m comment --comment "b+x" -j DROP
-A RCON-N-a -d 10.1.0.0/24 -j ACCEPT
-A RCON-N-a -j RCON-ISOLATE
-A RCON-N-a -j ACCEPT
COMMIT
# Completed on Mon Nov 23 15:04:39 2026
*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m comment --comment a -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:RCON-P-k1 - [0:0]
:RCON-PORTS - [0:0]
:RCON-POSTROUTING - [0:0]
:RCON-SERVICES - [0:0]
-A PREROUTING -j RCON-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j RCON-PORTS
-A OUTPUT -j RCON-SERVICES
-A OUTPUT -m addrtype --dst-type LOCAL -j RCON-PORTS
-A POSTROUTING -j RCON-POSTROUTING
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A RCON-P-k1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80
-A RCON-PORTS -m comment --comment port:k1 -j RCON-P-k1
-A RCON-POSTROUTING -s 10.1.0.2/32 -d 10.1.0.2/32 -m conntrack --ctstate DNAT -m comment --comment port:k1 -j MASQUERADE
-A RCON-POSTROUTING -s 127.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j MASQUERADE
-A RCON-POSTROUTING -s 10.1.0.0/24 ! -d 10.1.0.0/24 -m comment --comment a -j MASQUERADE
COMMIT
"#;

    fn live() -> Live {
        Live::parse(SAVE).unwrap()
    }

    #[test]
    fn damage_names_what_is_missing() {
        let a = Want { networks: vec![net("a", "10.1.0.0/24", false, true)], ..Want::default() };
        assert_eq!(damage(&live(), &a), None);
        assert_eq!(damage(&live(), &Want::default()), None);
        // The listing has no rules in b+x's own chain.
        let both = Want { networks: vec![a.networks[0].clone(), net("b+x", "10.2.0.0/24", true, false)], ..a.clone() };
        assert_eq!(damage(&live(), &both).unwrap(), "network b+x: its rules are missing or changed");
        let no_jump = Live::parse(&SAVE.replace("-A POSTROUTING -j RCON-POSTROUTING\n", "")).unwrap();
        assert_eq!(
            damage(&no_jump, &a).unwrap(),
            "the jump from POSTROUTING to RCON-POSTROUTING (table nat) is missing"
        );
        let flushed =
            Live::parse(&SAVE.replace("-A RCON-POSTROUTING -s 10.1.0.0/24", "-A OTHER -s 10.1.0.0/24")).unwrap();
        assert_eq!(damage(&flushed, &a).unwrap(), "network a: its rules are missing or changed");
        assert_eq!(damage(&Live::default(), &a).unwrap(), "chain RCON-FORWARD of table filter is missing");
    }

    #[test]
    fn restore_replaces_everything_of_rcon_and_nothing_else() {
        let a = Want { networks: vec![net("a", "10.1.0.0/24", false, true)], ..Want::default() };
        let got = render_restore(&live(), &a);
        for line in [
            "-D FORWARD -j RCON-FORWARD",
            "-D FORWARD -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT",
            ":RCON-FORWARD - [0:0]",
            ":RCON-N-a - [0:0]",
            "-F RCON-N_77267fbff2ca85bc\n-X RCON-N_77267fbff2ca85bc",
            "-I FORWARD 1 -j RCON-FORWARD",
            "-A RCON-N-a -d 10.1.0.0/24 -j ACCEPT",
            "-D POSTROUTING -j RCON-POSTROUTING",
            "-X RCON-P-k1",
            "-A RCON-POSTROUTING -s 10.1.0.0/24 ! -d 10.1.0.0/24 -m comment --comment \"a\" -j MASQUERADE",
        ] {
            assert!(got.contains(line), "missing {line:?} in\n{got}");
        }
        assert!(!got.contains("DOCKER") && !got.contains("foreign") && !got.contains("docker0"), "{got}");
        // Each declared chain is declared once, before any rule goes into it.
        assert_eq!(got.matches(":RCON-N-a ").count(), 1);
        let decl = got.find(":RCON-N-a ").unwrap();
        assert!(got.find("-A RCON-N-a").unwrap() > decl);
        // No network: everything of rcon goes, and nothing comes back.
        let gone = render_restore(&live(), &Want::default());
        assert!(gone.contains("-X RCON-FORWARD") && !gone.contains("-I ") && !gone.contains("-A "), "{gone}");
    }

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

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"-s 1 -m comment --comment "a b\"c" -j X"#).unwrap(),
            ["-s", "1", "-m", "comment", "--comment", "a b\"c", "-j", "X"]
        );
        assert_eq!(split_words(r#"--comment """#).unwrap(), ["--comment", ""]);
        assert!(split_words(r#"--comment "a"#).is_err());
    }

    #[test]
    fn parse_save() {
        let l = live();
        assert_eq!(l.owners().into_iter().collect::<Vec<_>>(), ["a", "b+x"], "the mangle rule is not ours");
        assert_eq!(l.subnets()["a"], "10.1.0.0/24".parse::<Ipv4Net>().unwrap());
        assert!(l.has_jump("filter", "FORWARD", FORWARD) && l.has_jump("nat", "POSTROUTING", POSTROUTING));
        let masq = l.rules.iter().find(|r| r.chain == POSTROUTING && r.comment.as_deref() == Some("a")).unwrap();
        assert_eq!(masq.dst, None, "a negated -d is not the rule's destination");
        assert_eq!(masq.spec, "-s 10.1.0.0/24 ! -d 10.1.0.0/24 -m comment --comment a -j MASQUERADE");
    }

    #[test]
    fn add_to_empty() {
        let got = render_add(&Live::default(), &net("web", "10.88.0.7/16", false, true));
        let want = "\
*filter
:RCON-FORWARD - [0:0]
:RCON-ISOLATE - [0:0]
-I FORWARD 1 -j RCON-FORWARD
-I RCON-ISOLATE 1 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j RETURN
-I FORWARD 1 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT
:RCON-N-web - [0:0]
-I RCON-FORWARD 1 -s 10.88.0.0/16 -m comment --comment \"web\" -j RCON-N-web
-A RCON-FORWARD -d 10.88.0.0/16 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"web\" -j ACCEPT
-A RCON-ISOLATE -d 10.88.0.0/16 -m comment --comment \"web\" -j DROP
-A RCON-N-web -d 10.88.0.0/16 -j ACCEPT
-A RCON-N-web -j RCON-ISOLATE
-A RCON-N-web -j ACCEPT
COMMIT
*nat
:RCON-POSTROUTING - [0:0]
:RCON-PORTS - [0:0]
:RCON-SERVICES - [0:0]
-A PREROUTING -j RCON-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j RCON-PORTS
-A OUTPUT -j RCON-SERVICES
-A OUTPUT -m addrtype --dst-type LOCAL -j RCON-PORTS
-A RCON-POSTROUTING -s 127.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment rcon:published -j MASQUERADE
-I POSTROUTING 1 -j RCON-POSTROUTING
-A RCON-POSTROUTING -s 10.88.0.0/16 ! -d 10.88.0.0/16 -m comment --comment \"web\" -j MASQUERADE
COMMIT
";
        assert_eq!(got, want);
    }

    #[test]
    fn internal_network() {
        let got = render_add(&Live::default(), &net("iso", "10.3.0.0/24", true, true));
        assert!(!got.contains("--comment \"iso\" -j MASQUERADE"), "{got}");
        assert!(got.contains("-A RCON-FORWARD -d 10.3.0.0/24 -m comment --comment \"iso\" -j DROP\n"), "{got}");
        assert!(got.contains("-A RCON-N-iso -j DROP\n"), "{got}");
    }

    #[test]
    fn replace_keeps_base_and_others() {
        let got = render_add(&live(), &net("a", "10.5.0.0/24", false, false));
        let want = "\
*filter
:RCON-N-a - [0:0]
-D RCON-FORWARD -s 10.1.0.0/24 -m comment --comment a -j RCON-N-a
-D RCON-FORWARD -d 10.1.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment a -j ACCEPT
-D RCON-ISOLATE -d 10.1.0.0/24 -m comment --comment a -j DROP
-I RCON-FORWARD 1 -s 10.5.0.0/24 -m comment --comment \"a\" -j RCON-N-a
-A RCON-FORWARD -d 10.5.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"a\" -j ACCEPT
-A RCON-ISOLATE -d 10.5.0.0/24 -m comment --comment \"a\" -j DROP
-A RCON-N-a -d 10.5.0.0/24 -j ACCEPT
-A RCON-N-a -j RCON-ISOLATE
-A RCON-N-a -j ACCEPT
COMMIT
*nat
-D RCON-POSTROUTING -s 10.1.0.0/24 ! -d 10.1.0.0/24 -m comment --comment a -j MASQUERADE
COMMIT
";
        assert_eq!(got, want);
    }

    #[test]
    fn remove_one_then_last() {
        let l = live();
        let got = render_remove(&l, "b+x").unwrap();
        assert_eq!(net_chain("b+x"), "RCON-N_77267fbff2ca85bc");
        let want = "\
*filter
-D RCON-FORWARD -s 10.2.0.0/24 -m comment --comment \"b+x\" -j RCON-N_77267fbff2ca85bc
-D RCON-FORWARD -d 10.2.0.0/24 -m comment --comment \"b+x\" -j DROP
-D RCON-ISOLATE -d 10.2.0.0/24 -m comment --comment \"b+x\" -j DROP
-F RCON-N_77267fbff2ca85bc
-X RCON-N_77267fbff2ca85bc
COMMIT
";
        assert_eq!(got, want);
        assert_eq!(render_remove(&l, "nope"), None);

        let mut only_a = live();
        only_a.rules.retain(|r| r.comment.as_deref() != Some("b+x"));
        let got = render_remove(&only_a, "a").unwrap();
        let want = "\
*filter
-D FORWARD -m conntrack --ctstate DNAT -m comment --comment rcon:published -j ACCEPT
-D FORWARD -j RCON-FORWARD
-F RCON-FORWARD
-F RCON-ISOLATE
-F RCON-N-a
-F RCON-N_77267fbff2ca85bc
-X RCON-FORWARD
-X RCON-ISOLATE
-X RCON-N-a
-X RCON-N_77267fbff2ca85bc
COMMIT
*nat
-D PREROUTING -j RCON-SERVICES
-D PREROUTING -m addrtype --dst-type LOCAL -j RCON-PORTS
-D OUTPUT -j RCON-SERVICES
-D OUTPUT -m addrtype --dst-type LOCAL -j RCON-PORTS
-D POSTROUTING -j RCON-POSTROUTING
-F RCON-P-k1
-F RCON-PORTS
-F RCON-POSTROUTING
-F RCON-SERVICES
-X RCON-P-k1
-X RCON-PORTS
-X RCON-POSTROUTING
-X RCON-SERVICES
COMMIT
";
        assert_eq!(got, want, "the foreign DOCKER-USER jump and docker0 masquerade stay");
        assert_eq!(render_remove(&Live::default(), "a"), None);
    }

    #[test]
    fn chain_names_fit() {
        assert_eq!(net_chain("web"), "RCON-N-web");
        assert_eq!(net_chain(&"x".repeat(21)).len(), 28);
        assert!(net_chain(&"x".repeat(22)).len() <= 28);
        assert!(net_chain("a+b").starts_with("RCON-N_"));
    }
}
