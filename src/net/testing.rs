//! Recording fakes of the network's seams, for unit tests without root:
//! `FakeLinks` keeps an in-memory model of each namespace's links,
//! addresses, routes, neighbour and FDB entries and sysctls, and
//! `FakeFirewalls` one of each backend's networks, published ports and
//! services. Both write every change they are asked for into one shared
//! log, in order, and either can be told to fail the Nth change or the
//! first change of a named operation (a fault fires once).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

use anyhow::{bail, Result};
use ipnet::Ipv4Net;

use super::kernel::Kernel;
use super::links::{Links, Request, Route, Veth, Vxlan};
use super::macaddr::Mac;

mod firewalls;
pub use firewalls::{FakeFirewalls, Rules};

/// The log and the faults the fakes share.
#[derive(Debug, Default)]
pub struct Script {
    /// Every change, in order: "node: add_route 10.0.0.0/24", "nftables: add_ports KEY".
    pub calls: Vec<String>,
    fail_at: Option<usize>,
    fail_op: Option<String>,
    /// Whether the last fault set has fired.
    pub fired: bool,
}

impl Script {
    /// Log a change; Err when it is the one to fail.
    fn step(&mut self, who: &str, op: &str, args: String) -> Result<()> {
        self.calls.push(format!("{who}: {op} {args}").trim_end().to_string());
        let nth = self.fail_at == Some(self.calls.len());
        let named = self.fail_op.as_deref() == Some(op);
        if nth || named {
            (self.fail_at, self.fail_op, self.fired) = (None, None, true);
            bail!("injected fault at {op}");
        }
        Ok(())
    }
}

pub type Shared = Rc<RefCell<Script>>;

/// One link of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub kind: String,
    pub up: bool,
    pub master: Option<u32>,
    pub mac: Option<Mac>,
    /// The other end of a veth: its namespace and index.
    pub peer: Option<(String, u32)>,
    pub flags: String,
}

/// One namespace of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ns {
    pub links: BTreeMap<u32, Link>,
    pub addrs: BTreeSet<(u32, Ipv4Net)>,
    /// Destination → (via, device, onlink).
    pub routes: BTreeMap<Ipv4Net, (Option<Ipv4Addr>, u32, bool)>,
    pub neighbours: BTreeMap<(u32, Ipv4Addr), Mac>,
    pub fdb: BTreeSet<(u32, Mac, Ipv4Addr)>,
    pub sysctls: BTreeMap<String, String>,
}

impl Ns {
    /// A fresh namespace: `lo` (index 1, up, as the runtime leaves it) and forwarding off.
    fn new() -> Ns {
        let lo = Link {
            name: "lo".into(),
            kind: "loopback".into(),
            up: true,
            master: None,
            mac: None,
            peer: None,
            flags: String::new(),
        };
        Ns {
            links: [(1, lo)].into(),
            addrs: BTreeSet::new(),
            routes: BTreeMap::new(),
            neighbours: BTreeMap::new(),
            fdb: BTreeSet::new(),
            sysctls: [("ipv4/ip_forward".to_string(), "0".to_string())].into(),
        }
    }

    fn by_name(&self, name: &str) -> Option<u32> {
        self.links.iter().find(|(_, l)| l.name == name).map(|(i, _)| *i)
    }

    /// Drop link `index` and what the kernel drops with it.
    fn drop_link(&mut self, index: u32) -> Option<Link> {
        let l = self.links.remove(&index)?;
        self.addrs.retain(|(i, _)| *i != index);
        self.routes.retain(|_, (_, dev, _)| *dev != index);
        self.neighbours.retain(|(i, _), _| *i != index);
        self.fdb.retain(|(i, _, _)| *i != index);
        let conf = [format!("ipv4/conf/{}/", l.name), format!("ipv6/conf/{}/", l.name)];
        self.sysctls.retain(|k, _| !conf.iter().any(|c| k.starts_with(c)));
        for other in self.links.values_mut() {
            if other.master == Some(index) {
                other.master = None;
            }
        }
        Some(l)
    }
}

#[derive(Debug)]
struct World {
    nss: BTreeMap<String, Ns>,
    next_index: u32,
}

/// The fake of `Links`: a handle on one namespace of a shared model.
#[derive(Clone)]
pub struct FakeLinks {
    world: Rc<RefCell<World>>,
    script: Shared,
    ns: String,
}

/// The name of the node's namespace in the model.
pub const NODE: &str = "node";

fn gone(what: String) -> anyhow::Error {
    anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENODEV)).context(what)
}

impl FakeLinks {
    /// A model with the node's namespace only, and its own log.
    pub fn new() -> FakeLinks {
        FakeLinks::sharing(Shared::default())
    }

    /// A model whose changes go to `script`'s log.
    pub fn sharing(script: Shared) -> FakeLinks {
        let world = World { nss: [(NODE.to_string(), Ns::new())].into(), next_index: 2 };
        FakeLinks { world: Rc::new(RefCell::new(world)), script, ns: NODE.into() }
    }

    pub fn script(&self) -> Shared {
        self.script.clone()
    }

    /// Every namespace of the model that holds anything, as it is now (a
    /// container's namespace that is as fresh as when it was first seen is left out).
    pub fn snapshot(&self) -> BTreeMap<String, Ns> {
        let fresh = Ns::new();
        self.world
            .borrow()
            .nss
            .iter()
            .filter(|(n, ns)| *n == NODE || **ns != fresh)
            .map(|(n, ns)| (n.clone(), ns.clone()))
            .collect()
    }

    /// This handle's namespace, as it is now.
    pub fn ns(&self) -> Ns {
        self.world.borrow().nss[&self.ns].clone()
    }

    /// The model's name of a netns file's namespace: its "dev:inode".
    pub fn ns_name(f: &File) -> Result<String> {
        let md = f.metadata()?;
        Ok(format!("{}:{}", md.dev(), md.ino()))
    }

    /// Put a link in this namespace without logging it (the world a test starts from).
    pub fn seed_link(&self, name: &str, kind: &str, addr: Option<Ipv4Net>) -> u32 {
        let idx = self.insert(&self.ns, name, kind, None);
        let mut w = self.world.borrow_mut();
        let ns = w.nss.get_mut(&self.ns).unwrap();
        ns.links.get_mut(&idx).unwrap().up = true;
        if let Some(a) = addr {
            ns.addrs.insert((idx, a));
            ns.routes.insert(a.trunc(), (None, idx, false));
        }
        idx
    }

    /// Put a route in this namespace without logging it.
    pub fn seed_route(&self, dest: Ipv4Net, via: Option<Ipv4Addr>, dev: u32) {
        self.world.borrow_mut().nss.get_mut(&self.ns).unwrap().routes.insert(dest, (via, dev, false));
    }

    fn insert(&self, ns: &str, name: &str, kind: &str, mac: Option<Mac>) -> u32 {
        let mut w = self.world.borrow_mut();
        let idx = w.next_index;
        w.next_index += 1;
        let link = Link {
            name: name.into(),
            kind: kind.into(),
            up: false,
            master: None,
            mac,
            peer: None,
            flags: String::new(),
        };
        w.nss.entry(ns.to_string()).or_insert_with(Ns::new).links.insert(idx, link);
        idx
    }

    fn step(&self, op: &str, args: String) -> Result<()> {
        self.script.borrow_mut().step(&self.ns, op, args)
    }

    /// Change this namespace's model.
    fn with<T>(&self, f: impl FnOnce(&mut Ns) -> T) -> T {
        f(self.world.borrow_mut().nss.get_mut(&self.ns).unwrap())
    }

    fn link<T>(&self, index: u32, f: impl FnOnce(&mut Link) -> T) -> Result<T> {
        self.with(|ns| ns.links.get_mut(&index).map(f)).ok_or_else(|| gone(format!("link {index}")))
    }

    /// A new device, refused when the name is taken.
    fn create(&self, op: &str, name: &str, kind: &str, mac: Option<Mac>) -> Result<u32> {
        self.create_logged(op, name.to_string(), name, kind, mac)
    }

    fn create_logged(&self, op: &str, log: String, name: &str, kind: &str, mac: Option<Mac>) -> Result<u32> {
        self.step(op, log)?;
        if self.with(|ns| ns.by_name(name)).is_some() {
            bail!(std::io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(self.insert(&self.ns.clone(), name, kind, mac))
    }

    fn apply(&self, r: &Request) -> Result<()> {
        match *r {
            Request::Route { dest, via, dev, onlink } => {
                self.step("set_route", format!("{dest} via {via:?} dev {dev}"))?;
                self.with(|ns| ns.routes.insert(dest, (via, dev, onlink)));
            }
            Request::Neighbour { index, ip, mac } => {
                self.step("set_neighbour", format!("{ip} dev {index}"))?;
                self.with(|ns| ns.neighbours.insert((index, ip), mac));
            }
            Request::Fdb { index, mac, dst, append } => {
                self.step("set_fdb", format!("{mac:02x?} dst {dst} dev {index}"))?;
                self.with(|ns| {
                    if !append {
                        ns.fdb.retain(|(i, m, _)| !(*i == index && *m == mac));
                    }
                    ns.fdb.insert((index, mac, dst))
                });
            }
        }
        Ok(())
    }
}

impl Default for FakeLinks {
    fn default() -> FakeLinks {
        FakeLinks::new()
    }
}

impl Links for FakeLinks {
    fn in_netns(&self, ns: &File) -> Result<Box<dyn Links>> {
        let name = FakeLinks::ns_name(ns)?;
        self.world.borrow_mut().nss.entry(name.clone()).or_insert_with(Ns::new);
        Ok(Box::new(FakeLinks { world: self.world.clone(), script: self.script.clone(), ns: name }))
    }

    fn index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.with(|ns| ns.by_name(name)))
    }

    fn link_names(&self) -> Result<Vec<String>> {
        Ok(self.with(|ns| ns.links.values().map(|l| l.name.clone()).collect()))
    }

    fn mtu_of(&self, _index: u32) -> Result<Option<u32>> {
        Ok(Some(1500))
    }

    fn tc_programs(&self, _index: u32, _ingress: bool) -> Result<Vec<(String, u32)>> {
        Ok(Vec::new())
    }

    fn create_bridge(&self, name: &str, mac: Mac, _mtu: u32) -> Result<u32> {
        let idx = self.create("create_bridge", name, "bridge", Some(mac))?;
        self.link(idx, |l| l.up = true)?;
        Ok(idx)
    }

    fn create_veth(&self, v: &Veth) -> Result<u32> {
        let (local, peer) = (v.local, v.peer);
        let theirs = FakeLinks::ns_name(v.peer_ns)?;
        let idx = self.create_logged("create_veth", format!("{local} peer {peer}"), local, "veth", v.local_mac)?;
        let pidx = self.insert(&theirs, peer, "veth", Some(v.peer_mac));
        let mut w = self.world.borrow_mut();
        w.nss.get_mut(&self.ns).unwrap().links.get_mut(&idx).unwrap().peer = Some((theirs.clone(), pidx));
        w.nss.get_mut(&theirs).unwrap().links.get_mut(&pidx).unwrap().peer = Some((self.ns.clone(), idx));
        Ok(idx)
    }

    fn create_vxlan(&self, name: &str, v: &Vxlan) -> Result<u32> {
        self.create("create_vxlan", name, &format!("vxlan {}", v.vni), Some(v.mac))
    }

    fn create_ipip(&self, name: &str, _local: Ipv4Addr, _underlay: u32, _mtu: u32) -> Result<u32> {
        self.create("create_ipip", name, "ipip", None)
    }

    fn no_ipv6_addresses(&self, index: u32) -> Result<()> {
        self.step("no_ipv6_addresses", index.to_string())?;
        self.link(index, |l| l.flags.push_str("noipv6 "))
    }

    fn up(&self, index: u32, master: Option<u32>) -> Result<()> {
        self.step("up", format!("{index} master {master:?}"))?;
        self.link(index, |l| {
            l.up = true;
            if master.is_some() {
                l.master = master;
            }
        })
    }

    fn rename_into(&self, index: u32, name: &str, ns: Option<&File>) -> Result<()> {
        self.step("rename_into", format!("{index} {name}"))?;
        let to = ns.map(FakeLinks::ns_name).transpose()?.unwrap_or_else(|| self.ns.clone());
        let mut link = self.with(|n| n.links.remove(&index)).ok_or_else(|| gone(format!("link {index}")))?;
        link.name = name.into();
        let mut w = self.world.borrow_mut();
        w.nss.entry(to).or_insert_with(Ns::new).links.insert(index, link);
        Ok(())
    }

    fn set_address(&self, index: u32, mac: Mac) -> Result<()> {
        self.step("set_address", index.to_string())?;
        self.link(index, |l| l.mac = Some(mac))
    }

    fn bridge_port(&self, index: u32, hairpin: bool, isolated: bool) -> Result<()> {
        self.step("bridge_port", format!("{index} hairpin {hairpin} isolated {isolated}"))?;
        self.link(index, |l| l.flags.push_str(&format!("hairpin={hairpin} isolated={isolated} ")))
    }

    fn delete_link(&self, index: u32) -> Result<()> {
        let name = self.with(|ns| ns.links.get(&index).map(|l| l.name.clone()));
        self.step("delete_link", name.clone().unwrap_or_else(|| index.to_string()))?;
        let l = self.with(|ns| ns.drop_link(index)).ok_or_else(|| gone(format!("deleting link {index}")))?;
        // Either end of a veth takes the other along.
        if let Some((ns, i)) = l.peer {
            if let Some(n) = self.world.borrow_mut().nss.get_mut(&ns) {
                n.drop_link(i);
            }
        }
        Ok(())
    }

    fn delete_detached(&self, name: &str) -> Result<()> {
        self.step("delete_detached", name.to_string())?;
        if let Some(i) = self.with(|ns| ns.by_name(name)) {
            let l = self.with(|ns| ns.drop_link(i)).unwrap();
            if let Some((ns, i)) = l.peer {
                if let Some(n) = self.world.borrow_mut().nss.get_mut(&ns) {
                    n.drop_link(i);
                }
            }
        }
        Ok(())
    }

    fn add_address(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        self.step("add_address", format!("{ip}/{prefix} dev {index}"))?;
        let net = Ipv4Net::new(ip, prefix)?;
        self.with(|ns| {
            ns.addrs.insert((index, net));
            ns.routes.insert(net.trunc(), (None, index, false));
        });
        Ok(())
    }

    fn add_route(&self, dest: Ipv4Net, via: Option<Ipv4Addr>, dev: u32, onlink: bool) -> Result<()> {
        self.step("add_route", format!("{dest} via {via:?} dev {dev}"))?;
        if self.with(|ns| ns.routes.insert(dest, (via, dev, onlink))).is_some() {
            bail!(std::io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(())
    }

    fn add_neighbour(&self, index: u32, ip: Ipv4Addr, mac: Mac) -> Result<()> {
        self.step("add_neighbour", format!("{ip} dev {index}"))?;
        self.with(|ns| ns.neighbours.insert((index, ip), mac));
        Ok(())
    }

    fn del_route(&self, dest: Ipv4Net) -> Result<()> {
        self.step("del_route", dest.to_string())?;
        self.with(|ns| ns.routes.remove(&dest));
        Ok(())
    }

    fn del_fdb(&self, index: u32, mac: Mac, dst: Ipv4Addr) -> Result<()> {
        self.step("del_fdb", format!("{mac:02x?} dst {dst} dev {index}"))?;
        self.with(|ns| ns.fdb.remove(&(index, mac, dst)));
        Ok(())
    }

    fn del_neighbour(&self, index: u32, ip: Ipv4Addr) -> Result<()> {
        self.step("del_neighbour", format!("{ip} dev {index}"))?;
        self.with(|ns| ns.neighbours.remove(&(index, ip)));
        Ok(())
    }

    fn fdb_macs_to(&self, index: u32, dst: Ipv4Addr) -> Result<Vec<Mac>> {
        Ok(self.with(|ns| ns.fdb.iter().filter(|(i, _, d)| *i == index && *d == dst).map(|e| e.1).collect()))
    }

    fn send_all(&self, reqs: Vec<Request>) -> Vec<Result<()>> {
        reqs.iter().map(|r| self.apply(r)).collect()
    }

    fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>> {
        Ok(self.with(|ns| ns.addrs.iter().filter(|(i, _)| *i == index).map(|a| a.1).collect()))
    }

    fn all_ipv4_addresses(&self) -> Result<Vec<(String, Ipv4Addr)>> {
        Ok(self.with(|ns| ns.addrs.iter().map(|(i, a)| (ns.links[i].name.clone(), a.addr())).collect()))
    }

    fn routes(&self) -> Result<Vec<Route>> {
        Ok(self.with(|ns| ns.routes.iter().map(|(d, (_, dev, _))| Route { dest: *d, oif: Some(*dev) }).collect()))
    }

    fn sysctl(&self, key: &str) -> Result<String> {
        self.with(|ns| ns.sysctls.get(key).cloned()).ok_or_else(|| gone(format!("reading {key}")))
    }

    fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.step("set_sysctl", format!("{key}={value}"))?;
        self.with(|ns| ns.sysctls.insert(key.to_string(), value.to_string()));
        Ok(())
    }
}

/// A `Kernel` of fakes sharing one log, with handles on both models.
pub fn kernel() -> (Kernel, FakeLinks, FakeFirewalls) {
    let script = Shared::default();
    let links = FakeLinks::sharing(script.clone());
    let fw = FakeFirewalls::sharing(script);
    (Kernel::with(Box::new(links.clone()), Box::new(fw.clone())), links, fw)
}

/// Fail the `n`th change from now (1: the next one).
pub fn fail_at(script: &Shared, n: usize) {
    let mut s = script.borrow_mut();
    s.fail_at = Some(s.calls.len() + n);
    s.fired = false;
}

/// Fail the next change named `op` ("add_ports", "create_veth").
pub fn fail_on(script: &Shared, op: &str) {
    let mut s = script.borrow_mut();
    s.fail_op = Some(op.to_string());
    s.fired = false;
}

/// Forget a fault that has not fired.
pub fn no_faults(script: &Shared) {
    let mut s = script.borrow_mut();
    (s.fail_at, s.fail_op) = (None, None);
}

/// The log since `from`, without the namespaces' names (a container's is a dev:inode).
pub fn calls_since(script: &Shared, from: usize) -> Vec<String> {
    script.borrow().calls[from..].to_vec()
}

/// Whether the network's logic may run here at all: the tests that attach use
/// this process's own netns file, and touch it only through the fake.
pub fn own_netns() -> std::path::PathBuf {
    std::path::PathBuf::from("/proc/self/ns/net")
}
