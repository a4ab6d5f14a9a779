//! The services an endpoint backs, found through the index: a detach
//! touches those and no other, reads no other record, and a data root
//! without an index (an older rcon's) gets one built once.

use std::net::Ipv4Addr;

use super::context;
use crate::net::firewall::Backend;
use crate::net::service::drop_endpoint;
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
