//! The firewall: one interface, an nftables backend (the default) and an
//! iptables backend, chosen at run time.
//!
//! The shape is per network: a network's rules (masquerade, internal,
//! isolation from the other rcon networks, accept) are installed once when
//! the network is created and removed when it goes; attaching a container
//! adds nothing. rcon keeps everything in its own table (nftables) or its own
//! `RCON-*` chains (iptables) and never touches a rule it did not make. Each
//! change is one batch, applied atomically by the kernel (iptables: per
//! table): nft script text run in-process by libnftables (`nft`), or fed to
//! an `iptables-restore --noflush` child, the one backend that still spawns.
//!
//! The kernel is the record: a backend reads the live ruleset back (`nft -j
//! list table`, `iptables-save`) to find what a network owns. Every object
//! that belongs to a network carries the network's name (an element or rule
//! comment), so removal is exact and `networks()` needs no file.
//!
//! Read-modify-apply is serialised across rcon processes with an flock on the
//! network namespace itself (`/proc/thread-self/ns/net`): every opener of one
//! namespace sees the same nsfs inode, so the lock is scoped to exactly the
//! ruleset it guards and needs no path on disk.
//!
//! Everything acts on the calling thread's network namespace (libnftables'
//! and the conntrack socket are opened there, and an `iptables-restore` child
//! inherits it): call from a thread that is in the namespace to configure.

mod conntrack;
pub mod guard;
pub mod iptables;
mod nflist;
mod nfset;
pub mod nft;
pub mod nftables;

use std::collections::BTreeSet;
use std::fs::File;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use crate::context::FirewallBackend as Backend;
use crate::net::service_types::{Lb, Vip};
use crate::store;
use crate::sys::spawn::{self, Keep};

/// One network's firewall needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRules {
    pub name: String,
    pub subnet: Ipv4Net,
    /// Drop forwarded traffic between the subnet and the outside.
    pub internal: bool,
    /// Masquerade traffic leaving the subnet (ignored when `internal`).
    pub masquerade: bool,
    /// Destinations not masqueraded: the subnet, or a cluster's whole pod range.
    pub unnat: Ipv4Net,
    /// A bridge network: the anti-spoofing table (see `guard`) must be there for its ports.
    #[serde(default)]
    pub bridge: bool,
}

impl NetRules {
    /// A plain network's rules: nothing beyond its subnet is left un-NATed, no anti-spoofing.
    pub fn plain(name: &str, subnet: Ipv4Net, internal: bool, masquerade: bool) -> NetRules {
        NetRules { name: name.into(), subnet, internal, masquerade, unnat: subnet, bridge: false }
    }
}

/// One container's bridge port, and what it may send from (see `guard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The endpoint's key: the comment on its element.
    pub owner: String,
    /// The node-side veth end (the bridge port frames come in on).
    pub port: String,
    /// Its MAC (as `ip link` prints it) and address; None: its network allows spoofing.
    pub from: Option<(String, std::net::Ipv4Addr)>,
}

/// One endpoint's published ports, as the firewall needs them.
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    /// The endpoint's key: the comment on each of its entries.
    pub owner: &'a str,
    pub ip: std::net::Ipv4Addr,
    pub mappings: &'a [crate::net::ports::Mapping],
}

/// One service's rules: its VIP and its backends, in order.
#[derive(Debug, Clone, Copy)]
pub struct SvcRules<'a> {
    pub name: &'a str,
    pub vip: Vip,
    pub lb: Lb,
    pub backends: &'a [(std::net::Ipv4Addr, u16)],
}

/// One change of one service: what it had, what it gets, and its neighbours on its VIP address.
#[derive(Debug, Clone, Copy)]
pub struct SvcChange<'a> {
    pub name: &'a str,
    /// Its rules as last recorded (None: a new service, or, with `new` None too, one whose record is
    /// gone: then the live ruleset is read for what it owns).
    pub old: Option<SvcRules<'a>>,
    /// Its rules from now on (None: it goes).
    pub new: Option<SvcRules<'a>>,
    /// The other services on the same VIP address: the masquerade entries of a backend landing on
    /// itself are keyed on that address, and those the neighbours need stay.
    pub peers: &'a [SvcRules<'a>],
}

/// Everything rcon's records say the firewall of one backend must hold: the
/// input of a restore (`rcon firewall reload`, or a command that finds the
/// table damaged). Owned, as it is read from the records under the lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Want {
    pub networks: Vec<NetRules>,
    /// Published ports: endpoint key, container address, mappings.
    pub ports: Vec<(String, std::net::Ipv4Addr, Vec<crate::net::ports::Mapping>)>,
    pub services: Vec<WantService>,
    /// Some network is a bridge: the anti-spoofing table must be there.
    pub bridged: bool,
    /// The bridge ports of containers.
    pub guards: Vec<Guard>,
}

/// One service as [`Want`] holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct WantService {
    pub name: String,
    pub vip: Vip,
    pub lb: Lb,
    pub backends: Vec<(std::net::Ipv4Addr, u16)>,
}

impl Want {
    pub(crate) fn published(&self) -> impl Iterator<Item = Published<'_>> {
        self.ports.iter().map(|(owner, ip, mappings)| Published { owner, ip: *ip, mappings })
    }

    pub(crate) fn service_rules(&self) -> impl Iterator<Item = SvcRules<'_>> {
        self.services.iter().map(|s| SvcRules { name: &s.name, vip: s.vip, lb: s.lb, backends: &s.backends })
    }
}

pub trait Firewall {
    /// Install rcon's base table/chains if missing and this network's rules, in one atomic batch (and, for a
    /// bridge, the anti-spoofing table in a second). Idempotent: adding a network that is already there
    /// replaces its rules (no duplicates).
    fn add_network(&self, net: &NetRules) -> Result<()>;
    /// Remove exactly this network's rules; when no rcon network remains, remove rcon's table/chains/jumps entirely.
    /// Idempotent (absent: Ok).
    fn remove_network(&self, name: &str) -> Result<()>;
    /// Names of the networks that currently have rules (gc compares them with the network store).
    fn networks(&self) -> Result<Vec<String>>;
    /// Publish an endpoint's ports (DNAT entries and the masquerade of a container reaching its own port) in
    /// one atomic batch that adds entries and reads nothing back, so its cost does not grow with the number of
    /// mappings. The endpoint's network must be installed.
    fn add_ports(&self, p: &Published) -> Result<()>;
    /// Remove exactly these entries. Idempotent: when some are gone already, whatever the live ruleset still
    /// holds for the owner goes.
    fn remove_ports(&self, p: &Published) -> Result<()>;
    /// Owners (endpoint keys) that have port entries (gc compares them with the endpoint records).
    fn port_owners(&self) -> Result<Vec<String>>;
    /// Remove every port entry of `owner` that the live ruleset holds.
    fn remove_ports_of(&self, owner: &str) -> Result<()>;
    /// Install, restate or remove one service (its VIP entry, its load-spreading DNAT and the masquerade
    /// of a backend landing on itself) in one atomic batch. Idempotent: what is already there (or gone)
    /// is no error. With nftables its cost does not grow with the other services: the batch is
    /// rendered from `c` alone, unless `c` knows neither what the service had nor what it gets (gc).
    fn change_service(&self, c: &SvcChange) -> Result<()>;
    /// Names of the services that have rules (gc).
    fn services(&self) -> Result<Vec<String>>;
    /// Let container port `g.port` send only from its own MAC and address (or anything, for a network
    /// that allows spoofing): one element, added in one batch that reads nothing back, so its cost does
    /// not grow with the containers. Fails when the table is missing (see [`Firewall::restore`]).
    fn add_guard(&self, g: &Guard) -> Result<()>;
    /// Remove `g`'s element. Idempotent.
    fn remove_guard(&self, g: &Guard) -> Result<()>;
    /// Owners (endpoint keys) that have a guard element (gc compares them with the endpoint records).
    fn guard_owners(&self) -> Result<Vec<String>>;
    /// Remove every guard element of `owner`.
    fn remove_guard_of(&self, owner: &str) -> Result<()>;
    /// What the live ruleset lacks of `want` (a table deleted, a chain gone, a network's rules
    /// missing), or None when it holds all of it. Read without the lock: a hint to [`Firewall::restore`].
    fn damage(&self, want: &Want) -> Result<Option<String>>;
    /// Under the namespace's lock: read the live ruleset and `want()` (the records, read only now, so
    /// that every change recorded before another command's firewall change is seen), and when `force`
    /// or when something is missing, replace all of rcon's rules with `want` in one batch. Returns
    /// what was missing (`force`: "reload"), or None when nothing had to be done.
    fn restore(&self, want: &dyn Fn() -> Result<Want>, force: bool) -> Result<Option<String>>;
}

/// What a backend provides; the read-check-render-apply sequence, the lock
/// and the error context are shared ([`Firewall`] for every `Backend`).
pub(crate) trait Ruleset {
    type Live;
    /// The backend's name in error messages.
    const NAME: &'static str;
    /// rcon's part of the live ruleset.
    fn live(&self) -> Result<Self::Live>;
    /// As much of it as [`Ruleset::damage`] reads (nftables: chains, sets and rule comments straight
    /// from netlink, without the sets' elements, whose listing grows with the published ports).
    fn glance(&self) -> Result<Self::Live> {
        self.live()
    }
    /// Name and subnet of each installed network.
    fn subnets(live: &Self::Live) -> std::collections::BTreeMap<&str, Ipv4Net>;
    fn owners(live: &Self::Live) -> std::collections::BTreeSet<&str>;
    fn render_add(live: &Self::Live, net: &NetRules) -> String;
    /// None: nothing of `name` is installed.
    fn render_remove(live: &Self::Live, name: &str) -> Option<String>;
    /// Apply one batch atomically.
    fn apply(&self, batch: &str) -> Result<()>;
    /// The batch that adds (or removes) exactly `p`'s entries.
    fn render_ports(p: &Published, add: bool) -> String;
    fn port_owners(live: &Self::Live) -> std::collections::BTreeSet<&str>;
    /// None: `owner` has no entries.
    fn render_remove_ports_of(live: &Self::Live, owner: &str) -> Option<String>;
    /// Whether a service change is rendered from [`Ruleset::glance`] and the records first, before the
    /// whole listing (which it then reads only when that batch fails).
    const SERVICE_GLANCE: bool = false;
    /// The batch that makes service `c.name` what `c.new` says, replacing what it had. `whole`: `live`
    /// is the whole listing, and what the service has is read off it rather than taken from `c.old`;
    /// else it is a glance.
    fn render_service(live: &Self::Live, c: &SvcChange, whole: bool) -> String;
    fn service_names(live: &Self::Live) -> std::collections::BTreeSet<&str>;
    /// The first thing `want` needs that `live` lacks, or None.
    fn damage(live: &Self::Live, want: &Want) -> Option<String>;
    /// The batch that replaces everything rcon has in `live` with exactly `want`.
    fn render_restore(live: &Self::Live, want: &Want) -> String;
}

/// The read-check-render-apply every change that depends on the live ruleset
/// goes through: under the namespace's lock, list what rcon has, render a
/// batch from it (None: nothing to do), apply it atomically.
fn relisted<R: Ruleset>(
    r: &R,
    what: impl FnOnce() -> String,
    render: impl FnOnce(&R::Live) -> Result<Option<String>>,
) -> Result<()> {
    let change = || -> Result<()> {
        let _lock = lock_netns()?;
        match render(&r.live()?)? {
            Some(batch) => r.apply(&batch),
            None => Ok(()),
        }
    };
    change().with_context(|| format!("firewall ({}): {}", R::NAME, what()))
}

/// Names read off the live ruleset (networks, port owners, services).
fn listed<R: Ruleset>(r: &R, what: &str, names: impl FnOnce(&R::Live) -> BTreeSet<&str>) -> Result<Vec<String>> {
    let live = r.live().with_context(|| format!("firewall ({}): listing {what}", R::NAME))?;
    Ok(names(&live).into_iter().map(String::from).collect())
}

impl<R: Ruleset> Firewall for R {
    fn add_network(&self, net: &NetRules) -> Result<()> {
        check_name("network name", &net.name)
            .with_context(|| format!("firewall ({}): adding network {}", R::NAME, net.name))?;
        relisted(
            self,
            || format!("adding network {}", net.name),
            |live| {
                check_network(net, R::subnets(live))?;
                Ok(Some(R::render_add(live, net)))
            },
        )?;
        if !net.bridge {
            return Ok(());
        }
        let base = || -> Result<()> {
            let _lock = lock_netns()?;
            let batch = guard::render_base(&guard::glance()?);
            if batch.is_empty() {
                return Ok(());
            }
            nft::apply(&batch)
        };
        base().with_context(|| format!("firewall (anti-spoofing): adding network {}", net.name))
    }

    fn remove_network(&self, name: &str) -> Result<()> {
        check_name("network name", name).with_context(|| format!("firewall ({}): removing network {name}", R::NAME))?;
        relisted(self, || format!("removing network {name}"), |live| Ok(R::render_remove(live, name)))?;
        // The anti-spoofing table goes with the last container port of any network.
        guarded("removing the anti-spoofing table when empty", |live| Ok(guard::render_drop_empty(live)))
    }

    fn networks(&self) -> Result<Vec<String>> {
        listed(self, "networks", R::owners)
    }

    fn add_ports(&self, p: &Published) -> Result<()> {
        if p.mappings.is_empty() {
            return Ok(());
        }
        // Under the lock, though nothing is read back: a restore reads the records under it, so
        // these entries are either in its batch or added after it, never wiped by it.
        let add = || -> Result<()> {
            let _lock = lock_netns()?;
            self.apply(&R::render_ports(p, true))
        };
        add().with_context(|| format!("firewall ({}): publishing ports of {}", R::NAME, p.owner))
    }

    fn remove_ports(&self, p: &Published) -> Result<()> {
        if p.mappings.is_empty() {
            return Ok(());
        }
        let removed = lock_netns().and_then(|_lock| self.apply(&R::render_ports(p, false)));
        if removed.is_ok() {
            return Ok(());
        }
        self.remove_ports_of(p.owner)
    }

    fn port_owners(&self) -> Result<Vec<String>> {
        listed(self, "published ports", R::port_owners)
    }

    fn remove_ports_of(&self, owner: &str) -> Result<()> {
        relisted(self, || format!("unpublishing ports of {owner}"), |live| Ok(R::render_remove_ports_of(live, owner)))
    }

    fn change_service(&self, c: &SvcChange) -> Result<()> {
        let what = || format!("{} service {}", if c.new.is_some() { "setting" } else { "removing" }, c.name);
        check_name("service name", c.name).with_context(|| format!("firewall ({}): {}", R::NAME, what()))?;
        let change = || -> Result<()> {
            let _lock = lock_netns()?;
            // gc knows a service by its name alone: only the whole listing says what it has.
            let known = c.old.is_some() || c.new.is_some();
            if R::SERVICE_GLANCE && known && self.apply(&R::render_service(&self.glance()?, c, false)).is_ok() {
                return Ok(());
            }
            self.apply(&R::render_service(&self.live()?, c, true))
        };
        change().with_context(|| format!("firewall ({}): {}", R::NAME, what()))
    }

    fn services(&self) -> Result<Vec<String>> {
        listed(self, "services", R::service_names)
    }

    fn add_guard(&self, g: &Guard) -> Result<()> {
        // No table is made here: one made for this element alone would drop every other container's
        // frames. The caller heals a missing table from the records instead.
        let add = || -> Result<()> {
            let _lock = lock_netns()?;
            guard::add(g)
        };
        add().with_context(|| format!("firewall (anti-spoofing): guarding port {} of {}", g.port, g.owner))
    }

    fn remove_guard(&self, g: &Guard) -> Result<()> {
        let remove = || -> Result<()> {
            let _lock = lock_netns()?;
            guard::remove(g)
        };
        remove().with_context(|| format!("firewall (anti-spoofing): unguarding port {} of {}", g.port, g.owner))
    }

    fn guard_owners(&self) -> Result<Vec<String>> {
        let live = guard::live().context("firewall (anti-spoofing): listing guarded ports")?;
        Ok(guard::owners(&live).into_iter().map(String::from).collect())
    }

    fn remove_guard_of(&self, owner: &str) -> Result<()> {
        guarded(&format!("unguarding the ports of {owner}"), |live| Ok(guard::render_remove_of(live, owner)))
    }

    fn damage(&self, want: &Want) -> Result<Option<String>> {
        let live = self.glance().with_context(|| format!("firewall ({}): checking rcon's rules", R::NAME))?;
        if let Some(d) = R::damage(&live, want) {
            return Ok(Some(d));
        }
        if !want.bridged {
            return Ok(None);
        }
        let live = guard::glance().context("firewall (anti-spoofing): checking rcon's table")?;
        Ok(guard::damage(&live, want))
    }

    fn restore(&self, want: &dyn Fn() -> Result<Want>, force: bool) -> Result<Option<String>> {
        let mut found = None;
        relisted(
            self,
            || "restoring rcon's rules from its records".to_string(),
            |live| {
                let want = want()?;
                found = if force { Some("reload".to_string()) } else { R::damage(live, &want) };
                if want.bridged {
                    // The anti-spoofing table under the same lock, so that the records read above are
                    // what it gets: an attach records its endpoint before it adds its element, a detach
                    // removes its record before its element.
                    let guards = guard::live().context("anti-spoofing table")?;
                    if found.is_none() {
                        found = guard::damage(&guards, &want);
                    }
                    let batch = guard::render_restore(&guards, &want);
                    if found.is_some() && !batch.is_empty() {
                        nft::apply(&batch)?;
                    }
                }
                Ok(found.is_some().then(|| R::render_restore(live, &want)))
            },
        )?;
        Ok(found)
    }
}

/// [`relisted`] for the anti-spoofing table, which both backends share.
fn guarded(what: &str, render: impl FnOnce(&guard::Live) -> Result<Option<String>>) -> Result<()> {
    let change = || -> Result<()> {
        let _lock = lock_netns()?;
        match render(&guard::live()?)? {
            Some(batch) => nft::apply(&batch),
            None => Ok(()),
        }
    };
    change().with_context(|| format!("firewall (anti-spoofing): {what}"))
}

/// Flush the conntrack entries of UDP mappings: a flow the kernel tracked
/// before a mapping existed (or while another one did) would keep its old
/// translation for as long as packets keep coming. TCP and SCTP flows end.
/// One listing, then one delete per stale flow found (usually none), over
/// netlink in-process (`conntrack`).
pub fn flush_udp_conntrack(mappings: &[crate::net::ports::Mapping]) -> Result<()> {
    if !mappings.iter().any(|m| m.proto == crate::net::ports::Proto::Udp) {
        return Ok(());
    }
    conntrack::flush_udp(mappings)
}

/// The backend's implementation of [`Firewall`].
pub fn open(backend: Backend) -> Box<dyn Firewall> {
    match backend {
        Backend::Nftables => Box::new(nftables::Nftables),
        Backend::Iptables => Box::new(iptables::Iptables),
    }
}

/// The longest network name the firewall takes: nft element comments hold at most 128 bytes.
pub const MAX_NAME: usize = 128;

/// A network or service name (`what`) fit for comments and chain names:
/// 1 to 128 of letters, digits and `_.+-`.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    crate::store::check_len(what, name, MAX_NAME, "nft comments")?;
    let ok = |c: char| c.is_ascii_alphanumeric() || "_.+-".contains(c);
    if name.is_empty() || !name.chars().all(ok) {
        bail!("{what} {name:?} cannot be used in firewall rules: use 1 to {MAX_NAME} letters, digits and _.+-");
    }
    Ok(())
}

/// Validate a network before rendering: its name, a subnet that is not the whole space, and no overlap with
/// the subnets of the other networks already installed (`live`: name and subnet of each).
pub(crate) fn check_network<'a>(net: &NetRules, live: impl IntoIterator<Item = (&'a str, Ipv4Net)>) -> Result<()> {
    check_name("network name", &net.name)?;
    let subnet = net.subnet.trunc();
    if subnet.prefix_len() == 0 {
        bail!("network {}: subnet {} covers every address", net.name, net.subnet);
    }
    for (other, s) in live {
        if other != net.name && (s.contains(&subnet) || subnet.contains(&s)) {
            bail!("network {}: subnet {subnet} overlaps {s} of network {other}", net.name);
        }
    }
    Ok(())
}

/// The part of a per-network chain name that names the network: `-NAME` when the name has at most `max` bytes of
/// characters every backend takes bare (letters, digits, `_.-`), else `_` and 16 hex digits of its SHA-256.
/// The two forms differ in their first character, so they never collide.
pub(crate) fn chain_suffix(name: &str, max: usize) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    if name.len() <= max && name.chars().all(bare) {
        format!("-{name}")
    } else {
        let h = Sha256::digest(name.as_bytes());
        format!("_{}", h[..8].iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// Hold an exclusive flock on the calling thread's network namespace until dropped (see the module doc).
pub(crate) fn lock_netns() -> Result<store::Lock> {
    let f = File::open("/proc/thread-self/ns/net").context("opening /proc/thread-self/ns/net")?;
    store::lock_file(f).context("locking the network namespace for a firewall change")
}

/// Run `prog args`, feeding `input` on stdin; returns stdout. A failure reads as one line: the program and
/// its stderr.
pub(crate) fn run(prog: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let shown = std::iter::once(prog).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
    let mut cmd = Command::new(prog);
    cmd.args(args).env("LC_ALL", "C");
    // A hook run by another runtime may get no PATH at all (runc passes the hook's `env` alone), and
    // the libc default has no sbin, where nft and iptables live.
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    let out = spawn::run(&mut cmd, input.map(str::as_bytes), Keep::BOTH, None)?;
    if !out.status.success() {
        bail!("{shown}: {}", one_line(&String::from_utf8_lossy(&out.stderr), &format!("failed ({})", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A tool's stderr on one line: no blank lines, no `^^^` markers, no "Try --help" advice; `empty` when it
/// said nothing.
fn one_line(stderr: &str, empty: &str) -> String {
    let parts: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == '~' || c == ' ') && !l.starts_with("Try `"))
        .collect();
    let mut s = if parts.is_empty() { empty.to_string() } else { parts.join("; ") };
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_parse_and_show() {
        assert_eq!("nftables".parse::<Backend>().unwrap(), Backend::Nftables);
        assert_eq!("iptables".parse::<Backend>().unwrap(), Backend::Iptables);
        let err = "pf".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("\"pf\"") && err.contains("nftables") && err.contains("iptables"), "{err}");
        assert_eq!(Backend::default(), Backend::Nftables);
        assert_eq!(Backend::Iptables.to_string(), "iptables");
        assert_eq!(serde_json::to_string(&Backend::Iptables).unwrap(), "\"iptables\"");
        assert_eq!(serde_json::from_str::<Backend>("\"nftables\"").unwrap(), Backend::Nftables);
    }

    #[test]
    fn names() {
        assert!(check_name("network name", "a.b+c_d-1").is_ok());
        assert!(check_name("network name", &"x".repeat(MAX_NAME)).is_ok());
        for bad in ["", "a b", "a\"b", "a/b", "é", &"x".repeat(MAX_NAME + 1)] {
            assert!(check_name("network name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn suffixes() {
        assert_eq!(chain_suffix("web", 21), "-web");
        assert_eq!(chain_suffix("a.b_c-d", 21), "-a.b_c-d");
        let plus = chain_suffix("a+b", 21);
        assert!(plus.starts_with('_') && plus.len() == 17, "{plus}");
        assert_eq!(plus, chain_suffix("a+b", 21), "not deterministic");
        assert_ne!(plus, chain_suffix("a+c", 21));
        assert!(chain_suffix(&"x".repeat(22), 21).starts_with('_'));
        assert!(chain_suffix(&"x".repeat(21), 21).starts_with('-'));
    }

    #[test]
    fn overlap() {
        let net = |n: &str, s: &str| NetRules::plain(n, s.parse().unwrap(), false, true);
        let live = [("a", "10.1.0.0/24".parse().unwrap()), ("b", "10.2.0.0/16".parse().unwrap())];
        assert!(check_network(&net("c", "10.3.0.0/24"), live).is_ok());
        assert!(check_network(&net("a", "10.1.0.0/25"), live).is_ok(), "a network may replace its own subnet");
        let err = check_network(&net("c", "10.2.3.0/24"), live).unwrap_err().to_string();
        assert!(err.contains("overlaps 10.2.0.0/16 of network b"), "{err}");
        assert!(check_network(&net("c", "10.0.0.0/8"), live).is_err());
        assert!(check_network(&net("c", "0.0.0.0/0"), []).is_err());
    }

    #[test]
    fn stderr_on_one_line() {
        let nft = "/dev/stdin:3:1-5: Error: Could not process rule: No such file or directory\n\
                   add element ip rcon x { 1.2.3.0/24 }\n                              ^^^^^\n";
        let s = one_line(nft, "failed");
        assert_eq!(
            s,
            "/dev/stdin:3:1-5: Error: Could not process rule: No such file or directory; \
             add element ip rcon x { 1.2.3.0/24 }"
        );
        let ipt = "iptables-restore v1.8.9 (nf_tables): Chain 'X' does not exist\nError occurred at line: 3\n\
                   Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n";
        let s = one_line(ipt, "failed");
        assert_eq!(s, "iptables-restore v1.8.9 (nf_tables): Chain 'X' does not exist; Error occurred at line: 3");
        assert_eq!(one_line("", "failed (exit status: 1)"), "failed (exit status: 1)");
    }
}
