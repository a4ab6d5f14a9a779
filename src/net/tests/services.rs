//! The services an endpoint backs, found through the index: a detach
//! touches those and no other, reads no other record, and a data root
//! without an index (an older rcon's) gets one built once.

use std::net::Ipv4Addr;

use super::context;
use crate::net::endpoint::{self, Endpoint};
use crate::net::firewall::Backend;
use crate::net::service::{self, commit, drop_endpoint};
use crate::net::service_index::Index;
use crate::net::service_store::{self, Member, Service};
use crate::net::testing::kernel;

fn member(key: &str, last: u8) -> Member {
    let container = if key.starts_with("addr:") { String::new() } else { format!("c-{key}") };
    Member { container, name: key.into(), endpoint: key.into(), ip: Ipv4Addr::new(10, 1, 0, last), port: 80 }
}

fn service(name: &str, vip: &str, backends: Vec<Member>) -> Service {
    Service {
        name: name.into(),
        vip: vip.parse().unwrap(),
        lb: Default::default(),
        firewall: Backend::Nftables,
        backends,
    }
}

/// web (k1, k2), api (k2), ext (an address backend), saved with their index entries.
fn three(ctx: &crate::Context, indexed: bool) {
    let store = service_store::store(&ctx.data_root);
    let _lock = store.lock().unwrap();
    let idx = Index::at(&ctx.data_root);
    for svc in [
        service("web", "10.96.0.1:80", vec![member("k1", 2), member("k2", 3)]),
        service("api", "10.96.0.1:81", vec![member("k2", 3)]),
        service("ext", "10.96.0.2:80", vec![member("addr:10.2.0.9", 9)]),
    ] {
        if indexed {
            std::fs::create_dir_all(ctx.data_root.join("services/index")).unwrap();
            idx.add(&svc).unwrap();
        }
        store.save(&svc).unwrap();
    }
}

fn backends(ctx: &crate::Context, name: &str) -> Vec<String> {
    let svc = service_store::store(&ctx.data_root).get(name).unwrap();
    svc.backends.into_iter().map(|m| m.endpoint).collect()
}

#[test]
fn a_detach_changes_only_the_services_its_endpoint_backs() {
    let (_d, ctx) = context();
    three(&ctx, true);
    let (_k, _links, fw) = kernel();
    drop_endpoint(&ctx, &fw, "k2").unwrap();
    assert_eq!(backends(&ctx, "web"), ["k1"]);
    assert!(backends(&ctx, "api").is_empty());
    assert_eq!(backends(&ctx, "ext"), ["addr:10.2.0.9"]);
    // The firewall saw exactly the two changes.
    let rules = fw.snapshot();
    let touched: Vec<&String> = rules["nftables"].services.keys().collect();
    assert_eq!(touched, ["api", "web"]);
    let idx = Index::at(&ctx.data_root);
    assert!(!idx.may_back("k2") && idx.may_back("k1"));
    // An endpoint that backs nothing costs one lookup and changes nothing.
    let before = super::records(&ctx.data_root);
    drop_endpoint(&ctx, &fw, "k9").unwrap();
    assert_eq!(super::records(&ctx.data_root), before);
    assert_eq!(fw.snapshot(), rules);
}

#[test]
fn an_older_data_root_gets_its_index_built_once() {
    let (_d, ctx) = context();
    three(&ctx, false);
    let idx = Index::at(&ctx.data_root);
    assert!(!idx.built());
    let (_k, _links, fw) = kernel();
    drop_endpoint(&ctx, &fw, "k1").unwrap();
    assert!(idx.built());
    assert_eq!(backends(&ctx, "web"), ["k2"]);
    assert_eq!(idx.backed_by("k2"), ["api", "web"]);
    assert_eq!(idx.on_address("10.96.0.1".parse().unwrap(), "web"), ["api"]);
    assert_eq!(idx.vip_holder(&"10.96.0.2:80".parse().unwrap()).as_deref(), Some("ext"));
}

#[test]
fn gc_sweeps_the_entries_no_record_backs() {
    let (_d, ctx) = context();
    three(&ctx, true);
    let store = service_store::store(&ctx.data_root);
    // A crash after the index entries and before the record: entries of a service that is not there,
    // and of a backend the record no longer has.
    store.remove("api").unwrap();
    let mut web = store.get("web").unwrap();
    web.backends.retain(|m| m.endpoint != "k1");
    store.save(&web).unwrap();
    let idx = Index::at(&ctx.data_root);
    assert_eq!(idx.sweep(&store).unwrap(), 3, "api's VIP and k2 entry, web's k1 entry");
    assert_eq!(idx.backed_by("k2"), ["web"]);
    assert!(!idx.may_back("k1"));
    assert!(idx.on_address("10.96.0.1".parse().unwrap(), "web").is_empty());
    assert_eq!(idx.sweep(&store).unwrap(), 0);
}

/// The record of test member `key`'s endpoint (container `c-KEY`).
fn endpoint(key: &str, last: u8) -> Endpoint {
    let m = member(key, last);
    Endpoint {
        network: "n1".into(),
        key: m.endpoint,
        netns: "/x".into(),
        netns_id: format!("1:{last}"),
        owner: Some(m.container),
        ifname: "eth0".into(),
        host_ifname: endpoint::host_ifname(key, false),
        ip: Some(m.ip),
        prefix: 24,
        mac: endpoint::mac_for(key),
        gateway: None,
        ports: Vec::new(),
        names: Vec::new(),
    }
}

/// `service create web` (`old`: None) or a change of `old` to `svc`, committed the way the commands
/// do, under the lock; while it runs, endpoint `gone` is detached at fault point `at`: its record goes,
/// then the detach looks at the index (where the old code could look too early: before the entry).
fn commit_while_detached(
    ctx: &crate::Context,
    fw: &crate::net::testing::FakeFirewalls,
    old: Option<&Service>,
    svc: &Service,
    gone: &str,
    at: &str,
) -> anyhow::Result<()> {
    let store = service_store::store(&ctx.data_root);
    let eps = endpoint::Store::new(&ctx.data_root);
    let rec = eps.find(Default::default()).unwrap().into_iter().find(|e| e.key == gone).unwrap();
    let detached = std::rc::Rc::new(std::cell::Cell::new(false));
    let _hook = crate::store::at_fault(at, {
        let (eps, detached) = (endpoint::Store::new(&ctx.data_root), detached.clone());
        move || {
            eps.remove(&rec).unwrap();
            detached.set(true);
        }
    });
    let res = {
        let _lock = store.lock().unwrap();
        let idx = Index::open(&store, &ctx.data_root).unwrap();
        commit(&store, &idx, &eps, fw, old, svc)
    };
    assert!(detached.get(), "fault point {at} not reached");
    // The rest of the detach, after the lock is free.
    drop_endpoint(ctx, fw, gone).unwrap();
    res
}

/// A detach of a backend's endpoint while a create or an add-backend that resolved it writes its
/// index entry: the record goes before the change checks it again (the change fails, naming the
/// endpoint, and leaves things as they were), or after (the detach finds the entry and drops the
/// backend). Either way no service is left sending to the gone endpoint.
#[test]
fn a_backend_detached_while_it_is_added_is_not_kept() {
    let (_d, ctx) = context();
    let (_k, _links, fw) = kernel();
    let eps = endpoint::Store::new(&ctx.data_root);
    for (key, last) in [("k1", 2), ("k2", 3)] {
        eps.save(&endpoint(key, last)).unwrap();
    }
    let store = service_store::store(&ctx.data_root);
    let idx = Index::at(&ctx.data_root);

    // Create: k2's record goes after its entry is written and before it is checked.
    let web = service("web", "10.96.0.1:80", vec![member("k1", 2), member("k2", 3)]);
    let err = commit_while_detached(&ctx, &fw, None, &web, "k2", "service:indexed").unwrap_err().to_string();
    assert!(err.contains("endpoint k2 was just detached") && !err.contains('\n'), "{err}");
    assert!(!store.exists("web"), "a service kept a backend whose endpoint is gone");
    assert!(!idx.may_back("k1") && !idx.may_back("k2"), "index entries of a create that failed");
    assert_eq!(fw.snapshot(), Default::default(), "rules of a create that failed");

    // Create again, k2's record going after the check: the detach finds the entry and drops k2.
    eps.save(&endpoint("k2", 3)).unwrap();
    commit_while_detached(&ctx, &fw, None, &web, "k2", "service:applied").unwrap();
    assert_eq!(backends(&ctx, "web"), ["k1"]);
    assert!(idx.may_back("k1") && !idx.may_back("k2"));
    assert_eq!(fw.snapshot()["nftables"].services["web"], [("10.1.0.2".parse().unwrap(), 80)]);

    // Add-backend: web (k1) gets k3, whose record goes before the check: web stays as it was.
    eps.save(&endpoint("k3", 4)).unwrap();
    let (old, rules) = (store.get("web").unwrap(), fw.snapshot());
    let mut more = old.clone();
    more.backends.push(member("k3", 4));
    let err = commit_while_detached(&ctx, &fw, Some(&old), &more, "k3", "service:indexed").unwrap_err();
    assert!(err.to_string().contains("endpoint k3 was just detached"), "{err}");
    assert_eq!(store.get("web").unwrap(), old);
    assert!(idx.may_back("k1") && !idx.may_back("k3"));
    assert_eq!(fw.snapshot(), rules);
}

/// A detach killed between its endpoint's record and the services: gc drops the backends whose
/// endpoint has no record, and keeps those whose record is there.
#[test]
fn gc_drops_the_backends_whose_endpoint_record_is_gone() {
    let (_d, ctx) = context();
    three(&ctx, true);
    let (_k, _links, fw) = kernel();
    endpoint::Store::new(&ctx.data_root).save(&endpoint("k1", 2)).unwrap();
    let removed = service::gc(&ctx, &fw, &[Backend::Nftables]).unwrap();
    assert_eq!(removed, ["service backends of endpoint k2"]);
    assert_eq!(backends(&ctx, "web"), ["k1"]);
    assert!(backends(&ctx, "api").is_empty());
    assert_eq!(backends(&ctx, "ext"), ["addr:10.2.0.9"]);
    let idx = Index::at(&ctx.data_root);
    assert!(idx.may_back("k1") && !idx.may_back("k2"));
    assert!(service::gc(&ctx, &fw, &[Backend::Nftables]).unwrap().is_empty());
}
