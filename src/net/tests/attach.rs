//! attach undoes what it did when a later step fails; detach and gc remove
//! in their order (net::manage over the fakes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{context, records};
use crate::net::endpoint::{self, Endpoint};
use crate::net::kernel::Kernel;
use crate::net::links::Links as _;
use crate::net::manage::{self, AttachRequest};
use crate::net::network::{Driver, Request};
use crate::net::testing::{
    self, calls_since, fail_at, fail_on, no_faults, FakeFirewalls, FakeLinks, Ns, Rules, Shared,
};
use crate::Context;

/// Everything a test compares: both models and the records.
#[derive(Debug, PartialEq)]
struct State {
    links: BTreeMap<String, Ns>,
    rules: BTreeMap<String, Rules>,
    records: BTreeMap<PathBuf, String>,
}

struct World {
    _dir: tempfile::TempDir,
    ctx: Context,
    k: Kernel,
    links: FakeLinks,
    fw: FakeFirewalls,
    script: Shared,
}

impl World {
    fn new() -> World {
        let (dir, ctx) = context();
        let (k, links, fw) = testing::kernel();
        let script = links.script();
        World { _dir: dir, ctx, k, links, fw, script }
    }

    fn state(&self) -> State {
        State { links: self.links.snapshot(), rules: self.fw.snapshot(), records: records(&self.ctx.data_root) }
    }

    fn network(&self, name: &str, driver: Driver) {
        let mut req = Request::new(name);
        req.driver = driver;
        if driver == Driver::Veth {
            req.subnet = Some("10.99.0.0/30".parse().unwrap());
        }
        let net = manage::create_network_with(&self.ctx, &self.k, &req).unwrap();
        // Publishing a port turns route_localnet on for the whole bridge, and it stays on.
        if let Some(b) = &net.bridge {
            self.links.set_conf(b, "route_localnet", "1").unwrap();
        }
    }

    fn attach(&self, network: &str, ports: &str) -> anyhow::Result<Endpoint> {
        let req = AttachRequest {
            network: network.into(),
            netns: testing::own_netns(),
            owner: Some("c1".into()),
            ports: crate::net::ports::parse_list(ports).unwrap(),
            ..Default::default()
        };
        manage::attach_with(&self.ctx, &self.k, &req)
    }

    fn detach(&self, network: &str) -> anyhow::Result<()> {
        manage::detach_with(&self.ctx, &self.k, network, &testing::own_netns(), None)
    }

    fn gc(&self) -> manage::GcReport {
        manage::gc_with(&self.ctx, &self.k, &[crate::net::firewall::Backend::Nftables]).unwrap()
    }

    fn calls(&self) -> usize {
        self.script.borrow().calls.len()
    }

    fn fired(&self) -> bool {
        self.script.borrow().fired
    }
}

/// Fail attach's first change, then its second, and so on until one runs
/// whole: each time, the links, the rules and the records (leases, claims,
/// endpoint) must be as they were before it. Returns how many changes a
/// whole attach makes.
fn every_fault_is_undone(driver: Driver, ports: &str) -> usize {
    let w = World::new();
    w.network("n1", driver);
    let before = w.state();
    for n in 1.. {
        let from = w.calls();
        fail_at(&w.script, n);
        let res = w.attach("n1", ports);
        if !w.fired() {
            no_faults(&w.script);
            let ep = res.unwrap();
            assert!(ep.ip.is_some() && w.links.snapshot().len() == 2, "a whole attach wired nothing");
            w.detach("n1").unwrap();
            assert_eq!(w.state(), before, "detach after a whole attach left something");
            return n - 1;
        }
        let failed = calls_since(&w.script, from)[n - 1].clone();
        match res {
            Err(e) => assert!(format!("{e:#}").contains("injected fault"), "{driver:?} step {n}: {e:#}"),
            // A best-effort step (IPv6 off on the node end) may fail alone.
            Ok(_) => {
                assert!(failed.contains("disable_ipv6"), "{driver:?}: {failed} failed and attach went on");
                w.detach("n1").unwrap();
            }
        }
        assert_eq!(w.state(), before, "{driver:?}: a fault at step {n} ({failed}) was not undone");
    }
    unreachable!()
}

#[test]
fn attach_undoes_every_step_when_a_later_one_fails() {
    // bridge: veth, IPv6 off, port up, flags, address, up, route, rules, and more.
    assert!(every_fault_is_undone(Driver::Bridge, "38080:80") >= 8);
    assert!(every_fault_is_undone(Driver::Routed, "38081:80/udp") >= 8);
    assert!(every_fault_is_undone(Driver::Veth, "") >= 4);
}

/// A bridge port is guarded (its own MAC and address) before its veth exists, so that its first frame is
/// checked; a network that allows spoofing gets an exempt port instead, and other drivers nothing.
#[test]
fn bridge_ports_are_guarded_before_they_exist() {
    let w = World::new();
    w.network("n1", Driver::Bridge);
    let from = w.calls();
    let ep = w.attach("n1", "").unwrap();
    let ops = ops(&w, from);
    let guard = ops.iter().position(|o| *o == format!("nftables: add_guard {}", ep.key)).expect("not guarded");
    let veth = ops.iter().position(|o| o.starts_with("node: create_veth")).expect("no veth");
    assert!(guard < veth, "{ops:?}");
    let rules = &w.fw.snapshot()["nftables"];
    let g = &rules.guards[&ep.key];
    assert_eq!(
        (g.port.as_str(), g.from.clone()),
        (ep.host_ifname.as_str(), Some((ep.mac.to_string(), ep.ip.unwrap())))
    );
    w.detach("n1").unwrap();

    let mut req = Request::new("free");
    req.allow_spoofing = true;
    manage::create_network_with(&w.ctx, &w.k, &req).unwrap();
    let ep = w.attach("free", "").unwrap();
    assert_eq!(w.fw.snapshot()["nftables"].guards[&ep.key].from, None);

    w.network("r1", Driver::Routed);
    let ep = w.attach("r1", "").unwrap();
    assert!(!w.fw.snapshot()["nftables"].guards.contains_key(&ep.key), "a routed port was guarded");
}

/// What the fakes were asked, without the namespace names of containers.
fn ops(w: &World, from: usize) -> Vec<String> {
    calls_since(&w.script, from)
        .into_iter()
        .map(|c| {
            if c.starts_with("node:") || c.starts_with("nftables:") {
                c
            } else {
                format!("ctr:{}", c.split_once(':').unwrap().1)
            }
        })
        .collect()
}

fn recorded(ctx: &Context, ep: &Endpoint) -> bool {
    endpoint::Store::new(&ctx.data_root).recorded(ep)
}

fn leased(ctx: &Context, ep: &Endpoint) -> bool {
    let leases = crate::net::ipam::Ipam::new(&ctx.data_root).leases(&ep.network).unwrap().good;
    leases.iter().any(|l| l.owner == ep.key)
}

#[test]
fn detach_removes_rules_then_the_veth_then_lease_and_record() {
    let w = World::new();
    w.network("n1", Driver::Bridge);
    let before = w.state();
    let ep = w.attach("n1", "38082:80").unwrap();
    let from = w.calls();
    w.detach("n1").unwrap();
    // The port rules first (the record loses its ports before, so a restore of the firewall meanwhile does
    // not put them back), then the node end, which takes the container's end along; leases and the
    // record are files, released after the kernel's objects so that a failure leaves the record that
    // finds them. The anti-spoofing element goes last, once no record names it (a restore meanwhile
    // would put it back).
    assert_eq!(
        ops(&w, from),
        [
            format!("nftables: remove_ports {}", ep.key),
            format!("node: delete_detached {}", ep.host_ifname),
            format!("nftables: remove_guard {}", ep.key),
        ]
    );
    assert_eq!(w.state(), before);

    // A fault at either step: the lease and the record stay, and a detach again, then gc, take the rest.
    for op in ["remove_ports", "delete_detached"] {
        let ep = w.attach("n1", "38082:80").unwrap();
        fail_on(&w.script, op);
        assert!(w.detach("n1").is_err());
        assert!(recorded(&w.ctx, &ep) && leased(&w.ctx, &ep), "{op} failed, and the record or lease went");
        w.detach("n1").unwrap();
        w.gc();
        assert_eq!(w.state(), before, "a detach failing at {op} left something after a retry and gc");
    }
}

/// The record goes before the detach looks at the services' index without their lock (a service
/// change adding the endpoint checks the record after writing its entry, see `service::commit`),
/// and the lease after the services no longer send to the address.
#[test]
fn detach_removes_the_record_then_the_service_backends_then_the_lease() {
    use crate::net::service_store::{self, Member, Service};
    let w = World::new();
    w.network("n1", Driver::Bridge);
    let ep = w.attach("n1", "").unwrap();
    let store = service_store::store(&w.ctx.data_root);
    let m =
        Member { container: "c1".into(), name: "c1".into(), endpoint: ep.key.clone(), ip: ep.ip.unwrap(), port: 80 };
    let web = Service {
        name: "web".into(),
        vip: "10.96.0.1:80".parse().unwrap(),
        lb: Default::default(),
        firewall: crate::net::firewall::Backend::Nftables,
        backends: vec![m],
    };
    {
        let _lock = store.lock().unwrap();
        let idx = crate::net::service_index::Index::open(&store, &w.ctx.data_root).unwrap();
        let eps = endpoint::Store::new(&w.ctx.data_root);
        crate::net::service::commit(&store, &idx, &eps, &w.fw, None, &web).unwrap();
    }
    let seen = std::rc::Rc::new(std::cell::Cell::new(false));
    let _hook = crate::store::at_fault("detach:unrecorded", {
        let (ctx, ep, seen) = (w.ctx.clone(), ep.clone(), seen.clone());
        move || {
            assert!(!recorded(&ctx, &ep) && leased(&ctx, &ep), "the record goes first, the lease stays");
            assert_eq!(
                service_store::store(&ctx.data_root).get("web").unwrap().backends.len(),
                1,
                "the services come after the record"
            );
            seen.set(true);
        }
    });
    w.detach("n1").unwrap();
    assert!(seen.get());
    assert!(store.get("web").unwrap().backends.is_empty() && !leased(&w.ctx, &ep));
}

/// An endpoint record whose namespace is gone (its file names another).
fn orphan(w: &World, ep: &Endpoint, gone: &Path) {
    let dead = Endpoint { netns: gone.to_path_buf(), ..ep.clone() };
    endpoint::Store::new(&w.ctx.data_root).save(&dead).unwrap();
}

#[test]
fn gc_detaches_the_dead_then_removes_orphans_rules_links_and_networks() {
    let w = World::new();
    w.network("n1", Driver::Bridge);
    let before = w.state();
    let ep = w.attach("n1", "38083:80").unwrap();
    orphan(&w, &ep, &w.ctx.data_root.join("no-such-netns"));
    // Left by crashes: port rules of an endpoint without a record, a node end without one, and the rules
    // of a network whose record is gone.
    w.links.seed_link("rv00deadbeef", "veth", None);
    w.fw.seed(crate::net::firewall::Backend::Nftables, |r| {
        r.ports.insert("00deadbeef".into(), ("10.0.0.9".parse().unwrap(), Vec::new()));
        let g = crate::net::firewall::Guard { owner: "00deadbeef".into(), port: "rv00deadbeef".into(), from: None };
        r.guards.insert(g.owner.clone(), g);
        let mut gone = r.networks["n1"].clone();
        gone.name = "gone".into();
        r.networks.insert("gone".into(), gone);
    });
    let from = w.calls();
    let report = w.gc();
    assert_eq!(
        ops(&w, from),
        [
            format!("nftables: remove_ports {}", ep.key),
            format!("node: delete_detached {}", ep.host_ifname),
            format!("nftables: remove_guard {}", ep.key),
            "nftables: remove_guard 00deadbeef".into(),
            "nftables: remove_ports 00deadbeef".into(),
            "node: delete_link rv00deadbeef".into(),
            "nftables: remove_network gone".into(),
        ]
    );
    assert_eq!(report.endpoints, [format!("n1/{}", ep.key)]);
    assert_eq!(report.links, ["rv00deadbeef"]);
    assert_eq!(w.state(), before, "gc left something of the dead endpoint or the orphans");
    // A second gc finds nothing.
    let from = w.calls();
    let again = w.gc();
    assert!(ops(&w, from).is_empty() && again.endpoints.is_empty() && again.links.is_empty());
}
