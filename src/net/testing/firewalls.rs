//! The fake firewall: each backend's networks, published ports and services,
//! in memory, logging every change into the shared script.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;

use anyhow::Result;

use super::Shared;
use crate::net::firewall::{Backend, Firewall, Guard, NetRules, Published, SvcChange, Want};
use crate::net::kernel::Firewalls;
use crate::net::ports::Mapping;

/// What one backend of the fake firewall holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub networks: BTreeMap<String, NetRules>,
    /// Owner (endpoint key) → (address, mappings).
    pub ports: BTreeMap<String, (Ipv4Addr, Vec<Mapping>)>,
    /// Service → its backends.
    pub services: BTreeMap<String, Vec<(Ipv4Addr, u16)>>,
    /// Owner (endpoint key) → its guarded port.
    pub guards: BTreeMap<String, Guard>,
}

/// Backend name → its rules (`Backend` has no order of its own).
type Tables = Rc<RefCell<BTreeMap<String, Rules>>>;

/// The fake of `Firewalls`: each backend's rules in memory.
#[derive(Clone)]
pub struct FakeFirewalls {
    tables: Tables,
    script: Shared,
}

impl FakeFirewalls {
    pub fn sharing(script: Shared) -> FakeFirewalls {
        FakeFirewalls { tables: Tables::default(), script }
    }

    /// Every backend's rules, as they are now (a backend never touched is absent).
    pub fn snapshot(&self) -> BTreeMap<String, Rules> {
        self.tables
            .borrow()
            .iter()
            .filter(|(_, r)| **r != Rules::default())
            .map(|(b, r)| (b.clone(), r.clone()))
            .collect()
    }

    /// Put rules in place without logging them.
    pub fn seed(&self, b: Backend, f: impl FnOnce(&mut Rules)) {
        f(self.tables.borrow_mut().entry(b.to_string()).or_default())
    }
}

impl Firewalls for FakeFirewalls {
    fn open(&self, backend: Backend) -> Box<dyn Firewall> {
        Box::new(FakeFirewall { backend, tables: self.tables.clone(), script: self.script.clone() })
    }

    fn flush_udp_conntrack(&self, mappings: &[Mapping]) -> Result<()> {
        let udp = mappings.iter().filter(|m| m.proto == crate::net::ports::Proto::Udp).count();
        if udp == 0 {
            return Ok(());
        }
        self.script.borrow_mut().step("conntrack", "flush_udp", udp.to_string())
    }
}

struct FakeFirewall {
    backend: Backend,
    tables: Tables,
    script: Shared,
}

impl FakeFirewall {
    fn step(&self, op: &str, args: &str) -> Result<()> {
        self.script.borrow_mut().step(&self.backend.to_string(), op, args.to_string())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Rules) -> T) -> T {
        f(self.tables.borrow_mut().entry(self.backend.to_string()).or_default())
    }
}

impl Firewall for FakeFirewall {
    fn add_network(&self, net: &NetRules) -> Result<()> {
        self.step("add_network", &net.name)?;
        self.with(|r| r.networks.insert(net.name.clone(), net.clone()));
        Ok(())
    }

    fn remove_network(&self, name: &str) -> Result<()> {
        self.step("remove_network", name)?;
        self.with(|r| r.networks.remove(name));
        Ok(())
    }

    fn networks(&self) -> Result<Vec<String>> {
        Ok(self.with(|r| r.networks.keys().cloned().collect()))
    }

    fn add_ports(&self, p: &Published) -> Result<()> {
        self.step("add_ports", p.owner)?;
        self.with(|r| r.ports.insert(p.owner.to_string(), (p.ip, p.mappings.to_vec())));
        Ok(())
    }

    fn remove_ports(&self, p: &Published) -> Result<()> {
        self.remove_ports_of(p.owner)
    }

    fn port_owners(&self) -> Result<Vec<String>> {
        Ok(self.with(|r| r.ports.keys().cloned().collect()))
    }

    fn remove_ports_of(&self, owner: &str) -> Result<()> {
        self.step("remove_ports", owner)?;
        self.with(|r| r.ports.remove(owner));
        Ok(())
    }

    fn change_service(&self, c: &SvcChange) -> Result<()> {
        match &c.new {
            Some(svc) => {
                self.step("set_service", c.name)?;
                self.with(|r| r.services.insert(c.name.to_string(), svc.backends.to_vec()));
            }
            None => {
                self.step("remove_service", c.name)?;
                self.with(|r| r.services.remove(c.name));
            }
        }
        Ok(())
    }

    fn services(&self) -> Result<Vec<String>> {
        Ok(self.with(|r| r.services.keys().cloned().collect()))
    }

    fn add_guard(&self, g: &Guard) -> Result<()> {
        self.step("add_guard", &g.owner)?;
        self.with(|r| r.guards.insert(g.owner.clone(), g.clone()));
        Ok(())
    }

    fn remove_guard(&self, g: &Guard) -> Result<()> {
        self.remove_guard_of(&g.owner)
    }

    fn guard_owners(&self) -> Result<Vec<String>> {
        Ok(self.with(|r| r.guards.keys().cloned().collect()))
    }

    fn remove_guard_of(&self, owner: &str) -> Result<()> {
        self.step("remove_guard", owner)?;
        self.with(|r| r.guards.remove(owner));
        Ok(())
    }

    fn damage(&self, _want: &Want) -> Result<Option<String>> {
        Ok(None)
    }

    fn restore(&self, _want: &dyn Fn() -> Result<Want>, _force: bool) -> Result<Option<String>> {
        Ok(None)
    }
}
