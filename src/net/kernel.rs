//! What the network logic changes outside its records, in one value: the
//! links of the node's namespace and the firewall of each backend. The
//! commands' entry points take the real ones (`Kernel::real`) and hand them
//! down; unit tests hand down fakes (`net::testing`).

use std::cell::OnceCell;

use anyhow::Result;

use super::firewall::{self, Backend, Firewall};
use super::link::Netlink;
use super::links::Links;

/// Opens the firewall of a backend.
pub trait Firewalls {
    fn open(&self, backend: Backend) -> Box<dyn Firewall>;
    /// Forget the conntrack entries of these UDP mappings, so that a flow
    /// that was seen before the rules changed takes the new ones.
    fn flush_udp_conntrack(&self, mappings: &[super::ports::Mapping]) -> Result<()>;
}

/// The real backends (libnftables in-process, `iptables-restore`) and conntrack over netlink, in the
/// calling thread's namespace.
pub struct RealFirewalls;

impl Firewalls for RealFirewalls {
    fn open(&self, backend: Backend) -> Box<dyn Firewall> {
        firewall::open(backend)
    }

    fn flush_udp_conntrack(&self, mappings: &[super::ports::Mapping]) -> Result<()> {
        firewall::flush_udp_conntrack(mappings)
    }
}

/// rcon's resolver (docs/DNS.md), told of the records it serves from.
pub trait Resolver {
    /// An endpoint or service changed; with `wait`, return once the resolver serves the change.
    fn changed(&self, ctx: &crate::Context, wait: bool) -> Result<()>;
    /// A network's DNS came or went: start, reload or stop the resolver; returns what it did.
    fn sync(&self, ctx: &crate::Context) -> Result<Option<&'static str>>;
}

/// The real one: `rcon dns`.
pub struct RealResolver;

impl Resolver for RealResolver {
    fn changed(&self, ctx: &crate::Context, wait: bool) -> Result<()> {
        super::dns::changed(ctx, wait)
    }

    fn sync(&self, ctx: &crate::Context) -> Result<Option<&'static str>> {
        super::dns::sync(ctx)
    }
}

/// None at all: unit tests over fakes start no daemon.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn changed(&self, _: &crate::Context, _: bool) -> Result<()> {
        Ok(())
    }

    fn sync(&self, _: &crate::Context) -> Result<Option<&'static str>> {
        Ok(None)
    }
}

/// The node's links and firewalls. The real links are opened on first use
/// (a netlink socket and its runtime), so a command that needs none, such as
/// the delete of a container without a network, pays nothing for them.
pub struct Kernel {
    links: OnceCell<Box<dyn Links>>,
    pub firewalls: Box<dyn Firewalls>,
    pub resolver: Box<dyn Resolver>,
}

impl Kernel {
    /// The real ones, in the calling thread's network namespace.
    pub fn real() -> Kernel {
        Kernel { links: OnceCell::new(), firewalls: Box::new(RealFirewalls), resolver: Box::new(RealResolver) }
    }

    /// Given ones (a test's fakes), and no resolver.
    pub fn with(links: Box<dyn Links>, firewalls: Box<dyn Firewalls>) -> Kernel {
        Kernel { links: OnceCell::from(links), firewalls, resolver: Box::new(NoResolver) }
    }

    /// The node's links (for `real`, a socket in the calling thread's namespace).
    pub fn links(&self) -> Result<&dyn Links> {
        if let Some(l) = self.links.get() {
            return Ok(l.as_ref());
        }
        let opened: Box<dyn Links> = Box::new(Netlink::current()?);
        Ok(self.links.get_or_init(|| opened).as_ref())
    }

    pub fn firewall(&self, backend: Backend) -> Box<dyn Firewall> {
        self.firewalls.open(backend)
    }
}
