//! The cluster use cases: init and reset this node, add and remove peers.
//! The record goes first and is removed last, as for networks.

use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::{backend, peers, Backend, Cluster, IpipMode, Node, Peers};
use crate::net::kernel::Kernel;
use crate::net::links::Links;
use crate::net::manage as netmanage;
use crate::net::network::{Driver, Request};
use crate::Context;

/// `rcon cluster init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitRequest {
    pub cidr: Ipv4Net,
    pub node_subnet: Ipv4Net,
    pub backend: Backend,
    pub vni: u32,
    pub port: u16,
    /// Default: the interface of the default route.
    pub underlay: Option<String>,
    pub network: String,
    pub ipip_mode: IpipMode,
}

pub(super) fn lock(ctx: &Context) -> Result<crate::store::Lock> {
    let d = super::dir(&ctx.data_root);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    crate::store::lock(&d.join(".lock"))
}

/// The lock, and this node's cluster (read under it). Without a cluster,
/// the error, and nothing made on disk.
pub(super) fn lock_cluster(ctx: &Context) -> Result<(crate::store::Lock, Cluster)> {
    super::require(&ctx.data_root)?;
    let l = lock(ctx)?;
    Ok((l, super::require(&ctx.data_root)?))
}

fn check_range(cidr: Ipv4Net, subnet: Ipv4Net, what: &str) -> Result<()> {
    if subnet != subnet.trunc() {
        bail!("{what} {subnet}: host bits are set (did you mean {}?)", subnet.trunc());
    }
    if !cidr.contains(&subnet) || subnet.prefix_len() <= cidr.prefix_len() {
        bail!("{what} {subnet} is not a subnet inside the cluster range {cidr}");
    }
    Ok(())
}

/// The underlay as init found it.
pub(super) struct Underlay {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mtu: u32,
}

/// The underlay interface (default: the default route's) and this node's
/// address on it: `public_ip` when given (it must be one of the
/// interface's), else the interface's first.
pub(super) fn underlay(node: &dyn Links, name: Option<&str>, public_ip: Option<Ipv4Addr>) -> Result<Underlay> {
    let name = match name {
        Some(u) => u.to_string(),
        None => default_interface(node)?,
    };
    let idx = node.index(&name)?.with_context(|| format!("--underlay {name}: no such interface"))?;
    let addrs: Vec<Ipv4Addr> = node.ipv4_addresses(idx)?.iter().map(|a| a.addr()).collect();
    let ip = match public_ip {
        Some(ip) if addrs.contains(&ip) => ip,
        Some(ip) => bail!(
            "--public-ip {ip} is not an address of the underlay {name} (it has {})",
            if addrs.is_empty() {
                "none".to_string()
            } else {
                addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            }
        ),
        None => *addrs.first().with_context(|| format!("--underlay {name}: the interface has no IPv4 address"))?,
    };
    Ok(Underlay { name, ip, mtu: node.mtu_of(idx)?.unwrap_or(1500) })
}

/// The error of an init on a node that is in a cluster already.
pub(super) fn refuse_member(ctx: &Context) -> Result<()> {
    if let Some(c) = super::load(&ctx.data_root)? {
        bail!("this node is already in a cluster ({} on {}): run `rcon cluster reset` first", c.cidr, c.node_subnet);
    }
    Ok(())
}

/// Check the settings every init shares.
pub(super) fn check_settings(cidr: Ipv4Net, node_subnet: Ipv4Net, vni: u32, port: u16, network: &str) -> Result<()> {
    if cidr != cidr.trunc() {
        bail!("--cidr {cidr}: host bits are set (did you mean {}?)", cidr.trunc());
    }
    crate::net::network::check_unreserved("--cidr", cidr)?;
    check_range(cidr, node_subnet, "--node-subnet")?;
    if node_subnet.prefix_len() > 30 {
        bail!("--node-subnet {node_subnet}: too small for a gateway and pods (at most /30)");
    }
    if !(1..=super::MAX_VNI).contains(&vni) {
        bail!("--vni {vni} is out of range: use 1 to {}", super::MAX_VNI);
    }
    if port == 0 {
        bail!("--port 0: use a UDP port from 1 to 65535");
    }
    crate::store::validate_id("network name", network).context("--network")
}

/// Set this node up: the record, the node's network, the backend's device.
/// Returns the cluster and a note for the user (the IPIP fallback).
pub fn init(ctx: &Context, req: &InitRequest) -> Result<(Cluster, Option<String>)> {
    init_with(ctx, &Kernel::real(), req)
}

/// [`init`] on these links and firewalls.
pub fn init_with(ctx: &Context, k: &Kernel, req: &InitRequest) -> Result<(Cluster, Option<String>)> {
    check_settings(req.cidr, req.node_subnet, req.vni, req.port, &req.network)?;
    let ul = underlay(k.links()?, req.underlay.as_deref(), None)?;
    let _lock = lock(ctx)?;
    refuse_member(ctx)?;
    build(ctx, k, new_cluster(req, ul))
}

/// The record of a node joining with `req` over `ul`.
pub(super) fn new_cluster(req: &InitRequest, ul: Underlay) -> Cluster {
    Cluster {
        cidr: req.cidr,
        node_subnet: req.node_subnet,
        backend: req.backend,
        vni: req.vni,
        port: req.port,
        underlay: ul.name,
        underlay_ip: ul.ip,
        mtu: ul.mtu - req.backend.overhead(),
        network: req.network.clone(),
        vtep_mac: super::vtep_mac_for(ul.ip),
        ipip_mode: req.ipip_mode,
        ipip_plane: None,
        daemon: None,
        store: None,
        created: crate::sys::time::now_rfc3339(),
    }
}

/// Record `c`, then make its network and device; on failure undo it all.
/// The caller holds the cluster lock.
pub(super) fn build(ctx: &Context, k: &Kernel, mut c: Cluster) -> Result<(Cluster, Option<String>)> {
    super::save(&ctx.data_root, &c)?;
    crate::store::fault("cluster:recorded");
    let res = (|| {
        let net = netmanage::create_network_with(ctx, k, &network_request(ctx, &c))?;
        let bridge = net.bridge.clone().context("the cluster network has no bridge")?;
        let note = backend::setup(k.links()?, &mut c, &bridge, &ctx.data_root)?;
        crate::store::fault("cluster:device");
        super::save(&ctx.data_root, &c)?;
        Ok(note)
    })();
    match res {
        Ok(note) => Ok((c, note)),
        Err(e) => {
            let _ = undo(ctx, k, &c, true);
            Err(e)
        }
    }
}

/// The node's network: its subnet, or (vxlan-l2) the whole range, of which
/// it hands out only its own subnet. Traffic within the range is not
/// masqueraded. DNS is on.
fn network_request(ctx: &Context, c: &Cluster) -> Request {
    let mut r = Request::new(&c.network);
    r.driver = Driver::Bridge;
    r.mtu = Some(c.mtu);
    r.firewall = ctx.firewall;
    r.cluster = Some(c.cidr);
    // Pods find each other by name, across nodes too in the etcd mode (docs/DNS.md), whatever the
    // network is called (a network named `bridge` would have it off by default).
    r.dns = Some(true);
    if c.backend == Backend::VxlanL2 {
        r.subnet = Some(c.cidr);
        r.ip_range = Some(c.node_subnet);
        r.gateway = c.node_subnet.hosts().next();
    } else {
        r.subnet = Some(c.node_subnet);
    }
    r
}

fn default_interface(node: &dyn Links) -> Result<String> {
    let oif = node.routes()?.into_iter().find(|r| r.dest.prefix_len() == 0).and_then(|r| r.oif);
    let Some(oif) = oif else { bail!("no default route to take the underlay from: give --underlay IFACE") };
    node.link_names()?
        .into_iter()
        .find(|n| node.index(n).ok().flatten() == Some(oif))
        .context("the default route's interface has no name")
}

/// `rcon cluster reset`: peers, device, network, records. A network with
/// endpoints needs `force` (which detaches them).
pub fn reset(ctx: &Context, force: bool) -> Result<()> {
    let (_lock, c) = lock_cluster(ctx)?;
    undo(ctx, &Kernel::real(), &c, force)
}

pub(super) fn undo(ctx: &Context, k: &Kernel, c: &Cluster, force: bool) -> Result<()> {
    if netmanage::list_networks(ctx)?.iter().any(|n| n.name == c.network) {
        netmanage::remove_network_with(ctx, k, &c.network, force)?;
    }
    let node = k.links()?;
    let store = super::peer_store(&ctx.data_root, c);
    for p in store.list()? {
        backend::unprogram(node, c, &p)?;
        store.remove(&p.name)?;
    }
    backend::teardown(node, c, &ctx.data_root)?;
    if let Some(m) = &c.store {
        super::member::leave(m, &c.lease_name());
        super::LeasePeers::new(&ctx.data_root).remove_file()?;
    }
    std::fs::remove_file(super::config_path(&ctx.data_root)).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e).context("removing the cluster record"),
    })
}

/// Bring this node's own part back to what its records say: the cluster
/// network and its bridge, the backend's device, the userspace IPIP
/// daemon, and each peer's route, FDB and neighbour entries (set with
/// replace semantics, so what is in place stays as it is). A line for each
/// thing brought back.
pub fn repair(ctx: &Context) -> Result<Vec<String>> {
    repair_with(ctx, &Kernel::real())
}

/// [`repair`] on these links and firewalls.
pub fn repair_with(ctx: &Context, k: &Kernel) -> Result<Vec<String>> {
    let (_lock, mut c) = lock_cluster(ctx)?;
    let node = k.links()?;
    let mut done = Vec::new();
    let net = match netmanage::list_networks(ctx)?.into_iter().find(|n| n.name == c.network) {
        Some(n) => n,
        None => {
            done.push(format!("recreated network {}", c.network));
            netmanage::create_network_with(ctx, k, &network_request(ctx, &c))?
        }
    };
    let bridge = net.bridge.clone().context("the cluster network has no bridge")?;
    let bridge_made = netmanage::restore_bridge(ctx, k, &net)?;
    if bridge_made {
        done.push(format!("recreated bridge {bridge}"));
    }
    let missing = match backend::device(&c) {
        Some(d) if node.index(&d)?.is_none() => Some(d),
        _ => None,
    };
    let stopped = c.daemon.is_some_and(|d| !d.alive());
    // The eBPF plane's underlay filter, removed by someone else.
    let detached = missing.is_none()
        && c.backend == Backend::Ipip
        && c.ipip_plane == Some(IpipMode::Ebpf)
        && !super::ipip_ebpf::attached(node, &c, &bridge)?;
    if missing.is_some() || stopped || detached {
        backend::teardown(node, &c, &ctx.data_root)?;
        (c.daemon, c.ipip_plane) = (None, None);
        super::save(&ctx.data_root, &c)?;
        backend::setup(node, &mut c, &bridge, &ctx.data_root)?;
        super::save(&ctx.data_root, &c)?;
        done.push(match missing {
            Some(d) => format!("recreated device {d}"),
            None if detached => "re-attached the eBPF IPIP programs".into(),
            None => "restarted the userspace IPIP daemon".into(),
        });
    } else if let (true, Backend::VxlanL2, Some(dev)) = (bridge_made, c.backend, backend::device(&c)) {
        // A bridge made again has no ports: the device is one again.
        node.up(node.require(&dev)?, Some(node.require(&bridge)?))?;
        done.push(format!("made {dev} a port of {bridge} again"));
    }
    let all = super::peer_store(&ctx.data_root, &c).list()?;
    for p in &all {
        backend::program(node, &c, p)?;
    }
    backend::sync_plane(node, &c, &all, &ctx.data_root)?;
    if c.ipip_plane == Some(IpipMode::Ebpf) {
        netmanage::refill_shortcut(ctx, k, &net)?;
    }
    Ok(done)
}

/// Peers declared by hand are for the static mode: in the etcd mode they
/// come from the store.
fn refuse_static(c: &Cluster, what: &str) -> Result<()> {
    match &c.store {
        Some(m) => bail!(
            "`{what}` declares peers by hand, but this node's peers come from etcd at {}",
            m.at.endpoints.join(",")
        ),
        None => Ok(()),
    }
}

/// Check a peer against this node and the other peers.
fn check_node(node: &dyn Links, c: &Cluster, others: &[Node], n: &Node) -> Result<()> {
    crate::store::validate_id("node name", &n.name)?;
    check_range(c.cidr, n.subnet, &format!("node {}: --subnet", n.name))?;
    if crate::net::ipam::overlaps(&n.subnet, &c.node_subnet) {
        bail!("node {}: --subnet {} overlaps this node's subnet {}", n.name, n.subnet, c.node_subnet);
    }
    if let Some(o) = others.iter().find(|o| o.name != n.name && crate::net::ipam::overlaps(&o.subnet, &n.subnet)) {
        bail!("node {}: --subnet {} overlaps node {}'s subnet {}", n.name, n.subnet, o.name, o.subnet);
    }
    if n.underlay_ip == c.underlay_ip {
        bail!("node {}: --underlay-ip {} is this node's own address", n.name, n.underlay_ip);
    }
    if let Some(o) = others.iter().find(|o| o.name != n.name && o.underlay_ip == n.underlay_ip) {
        bail!("node {}: --underlay-ip {} is node {}'s already", n.name, n.underlay_ip, o.name);
    }
    if let Some(m) = &n.vtep_mac {
        m.unicast().with_context(|| format!("node {}: --vtep-mac", n.name))?;
    }
    if c.backend == Backend::HostGw && !on_segment(node, c, n.underlay_ip)? {
        bail!(
            "node {}: {} is not on this node's underlay segment ({}): host-gw routes need one L2 segment; \
             use the vxlan or ipip backend",
            n.name,
            n.underlay_ip,
            c.underlay
        );
    }
    Ok(())
}

/// Whether `ip` is inside a subnet the underlay interface is directly on.
fn on_segment(node: &dyn Links, c: &Cluster, ip: Ipv4Addr) -> Result<bool> {
    let idx = node.require(&c.underlay)?;
    Ok(node.ipv4_addresses(idx)?.iter().any(|a| a.trunc().contains(&ip)))
}

/// `rcon node add`: record, then program. Adding the same node twice is a
/// no-op; a different node under a taken name is refused.
pub fn add_node(ctx: &Context, n: &Node) -> Result<()> {
    add_node_with(ctx, &Kernel::real(), n)
}

/// [`add_node`] on these links.
pub fn add_node_with(ctx: &Context, k: &Kernel, n: &Node) -> Result<()> {
    let (_lock, c) = lock_cluster(ctx)?;
    refuse_static(&c, "node add")?;
    let store = peers(&ctx.data_root);
    let all = Peers::list(&store)?;
    if let Some(old) = all.iter().find(|o| o.name == n.name) {
        if old != n {
            bail!("node {} already exists with other settings: `rcon node rm {}` first", n.name, n.name);
        }
    }
    let node = k.links()?;
    check_node(node, &c, &all, n)?;
    store.put(n)?;
    crate::store::fault("node:recorded");
    let res = backend::program(node, &c, n).and_then(|()| {
        let mut now = all.clone();
        now.retain(|o| o.name != n.name);
        now.push(n.clone());
        backend::sync_plane(node, &c, &now, &ctx.data_root)
    });
    if let Err(e) = res {
        let _ = backend::unprogram(node, &c, n);
        let _ = Peers::remove(&store, &n.name);
        return Err(e);
    }
    Ok(())
}

/// `rcon node rm`: unprogram, then forget.
pub fn remove_node(ctx: &Context, name: &str) -> Result<()> {
    remove_node_with(ctx, &Kernel::real(), name)
}

/// [`remove_node`] on these links.
pub fn remove_node_with(ctx: &Context, k: &Kernel, name: &str) -> Result<()> {
    let (_lock, c) = lock_cluster(ctx)?;
    refuse_static(&c, "node rm")?;
    let store = peers(&ctx.data_root);
    let all = Peers::list(&store)?;
    let Some(n) = all.iter().find(|o| o.name == name) else {
        // Says why: no such node (naming the others), or its record is unreadable.
        store.get(name)?;
        bail!("node {name:?} does not exist");
    };
    let node = k.links()?;
    backend::unprogram(node, &c, n)?;
    let rest: Vec<Node> = all.iter().filter(|o| o.name != name).cloned().collect();
    backend::sync_plane(node, &c, &rest, &ctx.data_root)?;
    Peers::remove(&store, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_subnets_must_sit_inside_the_range() {
        let cidr: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        assert!(check_range(cidr, "10.244.3.0/24".parse().unwrap(), "--subnet").is_ok());
        let outside = check_range(cidr, "10.245.0.0/24".parse().unwrap(), "--subnet").unwrap_err();
        assert!(outside.to_string().contains("not a subnet inside the cluster range 10.244.0.0/16"), "{outside}");
        // The whole range is not a node's part of it, and host bits are a typo.
        assert!(check_range(cidr, cidr, "--subnet").is_err());
        let typo = check_range(cidr, "10.244.3.1/24".parse().unwrap(), "--subnet").unwrap_err();
        assert!(typo.to_string().contains("did you mean 10.244.3.0/24"), "{typo}");
    }

    #[test]
    fn the_cluster_network_has_dns_whatever_its_name() {
        let ctx = Context {
            root: "/nonexistent/run".into(),
            netns_dir: "/nonexistent/netns".into(),
            data_root: "/nonexistent/data".into(),
            firewall: crate::net::firewall::Backend::Nftables,
        };
        for (name, backend) in [("cluster", Backend::Vxlan), ("bridge", Backend::VxlanL2)] {
            let req = InitRequest {
                cidr: "10.244.0.0/16".parse().unwrap(),
                node_subnet: "10.244.3.0/24".parse().unwrap(),
                backend,
                vni: 1,
                port: 8472,
                underlay: None,
                network: name.into(),
                ipip_mode: IpipMode::Auto,
            };
            let ul = Underlay { name: "u0".into(), ip: "192.168.77.1".parse().unwrap(), mtu: 1500 };
            let net = crate::net::network::resolve(&network_request(&ctx, &new_cluster(&req, ul)), &[], 1500).unwrap();
            assert!(net.dns, "{name}: no DNS");
        }
    }
}
