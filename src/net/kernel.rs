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

/// The node's links and firewalls. The real links are opened on first use
/// (a netlink socket and its runtime), so a command that needs none, such as
/// the delete of a container without a network, pays nothing for them.
pub struct Kernel {
    links: OnceCell<Box<dyn Links>>,
    pub firewalls: Box<dyn Firewalls>,
}

impl Kernel {
    /// The real ones, in the calling thread's network namespace.
    pub fn real() -> Kernel {
        Kernel { links: OnceCell::new(), firewalls: Box::new(RealFirewalls) }
    }

    /// Given ones (a test's fakes).
    pub fn with(links: Box<dyn Links>, firewalls: Box<dyn Firewalls>) -> Kernel {
        Kernel { links: OnceCell::from(links), firewalls }
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
