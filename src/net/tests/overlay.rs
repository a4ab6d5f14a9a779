//! The overlay backends program exactly the entries their peers imply, and
//! `cluster apply` of the same file twice changes nothing (over the fakes).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{context, records};
use crate::net::links::Links as _;
use crate::net::overlay::{apply, backend, vtep_mac_for, Backend, Cluster, IpipMode, Node};
use crate::net::testing::{self, calls_since, FakeLinks, Ns};

const UNDERLAY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn peer(n: u8) -> Node {
    Node {
        name: format!("n{n}"),
        underlay_ip: Ipv4Addr::new(192, 168, 50, n),
        subnet: net(&format!("10.244.{n}.0/24")),
        vtep_mac: None,
    }
}

fn cluster(backend: Backend, plane: Option<IpipMode>) -> Cluster {
    Cluster {
        cidr: net("10.244.0.0/16"),
        node_subnet: net("10.244.1.0/24"),
        backend,
        vni: 1,
        port: 8472,
        underlay: "eth0".into(),
        underlay_ip: UNDERLAY_IP,
        mtu: 1450,
        network: "pods".into(),
        vtep_mac: vtep_mac_for(UNDERLAY_IP),
        ipip_mode: plane.unwrap_or_default(),
        ipip_plane: plane,
        daemon: None,
        store: None,
        created: String::new(),
    }
}

/// The node's namespace with its underlay (and the cluster bridge), and the backend's device made.
fn node(c: &mut Cluster, data_root: &std::path::Path) -> (FakeLinks, Ns) {
    let links = FakeLinks::new();
    links.seed_link("eth0", "ether", Some(net("192.168.50.1/24")));
    links.seed_link("rcon-pods", "bridge", None);
    if c.ipip_plane == Some(IpipMode::Userspace) {
        // Its TUN device and daemon are ipip_user's, not the links'.
        links.seed_link("rcon-tun", "tun", None);
    } else if c.ipip_plane == Some(IpipMode::Ebpf) {
        // Its veth comes with programs that only a kernel loads (runtime-tests/ipip_ebpf.rs).
        links.seed_link("rcon-ebpf", "veth", None);
    } else {
        backend::setup(&links, c, "rcon-pods", data_root).unwrap();
    }
    let base = links.ns();
    (links, base)
}

/// `base` plus what reaching `peers` over `c`'s backend means, written out
/// here from the backends' definitions, not from their code.
fn with_peers(links: &FakeLinks, c: &Cluster, base: &Ns, peers: &[Node]) -> Ns {
    let mut want = base.clone();
    let dev = |name: &str| links.require(name).unwrap();
    for p in peers {
        let gw = p.subnet.network();
        let mac = vtep_mac_for(p.underlay_ip);
        match (c.backend, c.ipip_plane) {
            (Backend::HostGw, _) => {
                want.routes.insert(p.subnet, (Some(p.underlay_ip), dev("eth0"), false));
            }
            (Backend::Vxlan, _) => {
                let vx = dev("rcon-vx1");
                want.routes.insert(p.subnet, (Some(gw), vx, true));
                want.neighbours.insert((vx, gw), mac);
                want.fdb.insert((vx, mac, p.underlay_ip));
            }
            (Backend::VxlanL2, _) => {
                want.fdb.insert((dev("rcon-vx1"), crate::net::macaddr::Mac::default(), p.underlay_ip));
            }
            (Backend::Ipip, Some(IpipMode::Userspace)) => {
                want.routes.insert(p.subnet, (None, dev("rcon-tun"), false));
            }
            // The peer's gateway resolves to rcon-ebpf's own MAC (its egress program ignores it).
            (Backend::Ipip, Some(IpipMode::Ebpf)) => {
                let d = dev("rcon-ebpf");
                want.routes.insert(p.subnet, (Some(gw), d, true));
                want.neighbours.insert((d, gw), vtep_mac_for(UNDERLAY_IP));
            }
            (Backend::Ipip, _) => {
                want.routes.insert(p.subnet, (Some(p.underlay_ip), dev("rcon-ipip"), true));
            }
        }
    }
    want
}

#[test]
fn each_backend_programs_exactly_its_peers_entries_and_removes_exactly_one_peers() {
    let kinds = [
        (Backend::HostGw, None),
        (Backend::Vxlan, None),
        (Backend::VxlanL2, None),
        (Backend::Ipip, Some(IpipMode::Kernel)),
        (Backend::Ipip, Some(IpipMode::Ebpf)),
        (Backend::Ipip, Some(IpipMode::Userspace)),
    ];
    let (n2, n3) = (peer(2), peer(3));
    for (b, plane) in kinds {
        let (_d, ctx) = context();
        let mut c = cluster(b, plane);
        let (links, base) = node(&mut c, &ctx.data_root);
        let what = format!("{b:?} {plane:?}");

        let res = backend::program_all(&links, &c, &[n2.clone(), n3.clone()]);
        assert!(res.iter().all(|r| r.is_ok()), "{what}: {res:?}");
        let both = with_peers(&links, &c, &base, &[n2.clone(), n3.clone()]);
        assert_eq!(links.ns(), both, "{what}: program_all");
        // One by one is the same, and programming again changes nothing.
        backend::program(&links, &c, &n2).unwrap();
        backend::program(&links, &c, &n3).unwrap();
        assert_eq!(links.ns(), both, "{what}: programmed twice");

        backend::unprogram(&links, &c, &n2).unwrap();
        assert_eq!(links.ns(), with_peers(&links, &c, &base, std::slice::from_ref(&n3)), "{what}: n2 removed");
        backend::unprogram(&links, &c, &n3).unwrap();
        assert_eq!(links.ns(), base, "{what}: both removed");
        // Gone is done.
        backend::unprogram(&links, &c, &n3).unwrap();

        // Teardown removes the device, and the kernel takes the entries on it along (host-gw has none: its
        // routes are on the underlay, and `cluster reset` unprograms each peer first).
        if !matches!(plane, Some(IpipMode::Userspace | IpipMode::Ebpf)) {
            if b != Backend::HostGw {
                backend::program_all(&links, &c, std::slice::from_ref(&n2));
            }
            backend::teardown(&links, &c, &ctx.data_root).unwrap();
            let mut bare = links.ns();
            bare.sysctls.clear();
            assert!(bare.links.values().all(|l| ["lo", "eth0", "rcon-pods"].contains(&l.name.as_str())), "{what}");
            assert!(bare.routes.keys().all(|r| *r == net("192.168.50.0/24")), "{what}: {:?}", bare.routes);
            assert!(bare.fdb.is_empty() && bare.neighbours.is_empty(), "{what}");
        }
    }
}

const FILE: &str = "[cluster]\ncidr = \"10.244.0.0/16\"\nnode_subnet = \"10.244.1.0/24\"\nbackend = \"vxlan\"\n\n\
    [[nodes]]\nname = \"n2\"\nunderlay_ip = \"192.168.50.2\"\nsubnet = \"10.244.2.0/24\"\n\n\
    [[nodes]]\nname = \"n3\"\nunderlay_ip = \"192.168.50.3\"\nsubnet = \"10.244.3.0/24\"\n";

#[test]
fn cluster_apply_twice_changes_nothing_the_second_time() {
    let (d, ctx) = context();
    let (k, links, fw) = testing::kernel();
    let eth0 = links.seed_link("eth0", "ether", Some(net("192.168.50.1/24")));
    links.seed_route(net("0.0.0.0/0"), Some(Ipv4Addr::new(192, 168, 50, 254)), eth0);
    let file = d.path().join("cluster.toml");
    std::fs::write(&file, FILE).unwrap();

    let first = apply::apply_with(&ctx, &k, &file).unwrap();
    assert_eq!(first.len(), 3, "{first:?}");
    let state = (links.snapshot(), fw.snapshot(), records(&ctx.data_root));
    let vx = links.require("rcon-vx1").unwrap();
    assert!(links.ns().fdb.contains(&(
        vx,
        vtep_mac_for(Ipv4Addr::new(192, 168, 50, 3)),
        "192.168.50.3".parse().unwrap()
    )));

    let from = links.script().borrow().calls.len();
    let second = apply::apply_with(&ctx, &k, &file).unwrap();
    assert!(second.is_empty(), "the second apply did {second:?}");
    assert_eq!((links.snapshot(), fw.snapshot(), records(&ctx.data_root)), state, "the second apply changed something");
    // What it sent is the peers' entries again, with replace: nothing made, nothing removed.
    let sent = calls_since(&links.script(), from);
    assert!(sent.iter().all(|c| c.contains(": set_")), "{sent:?}");

    // A peer left out of the file goes, with exactly its entries.
    std::fs::write(&file, FILE.split("\n\n[[nodes]]\nname = \"n3\"").next().unwrap()).unwrap();
    assert_eq!(apply::apply_with(&ctx, &k, &file).unwrap(), ["removed node n3"]);
    let ns = links.ns();
    assert!(!ns.routes.contains_key(&net("10.244.3.0/24")) && ns.routes.contains_key(&net("10.244.2.0/24")));
    assert_eq!(ns.fdb.len(), 1);
}
