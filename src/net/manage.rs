//! The network use cases: create and remove networks, attach and detach
//! endpoints, and gc. Order is what makes a crash harmless: a record is
//! written before the kernel object it describes, and removed after it.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::endpoint::{self, Endpoint, Filter};
use super::firewall::{self, Backend};
use super::hostports::Claims;
use super::ipam::Ipam;
use super::kernel::Kernel;
use super::links::Links;
use super::macaddr::Mac;
use super::network::{self, Driver, Network, Request, DEFAULT_NETWORK};
use super::ports::PortSpec;
use super::{dns, driver, forwarding, heal, shortcut};
use crate::store::Broken;
use crate::Context;

fn networks(ctx: &Context) -> network::Store {
    network::store(&ctx.data_root)
}

fn endpoints(ctx: &Context) -> endpoint::Store {
    endpoint::Store::new(&ctx.data_root)
}

/// Create a network: record, bridge, forwarding and firewall rules. On any
/// failure what was done is undone, and the node is as it was.
pub fn create_network(ctx: &Context, req: &Request) -> Result<Network> {
    create_network_with(ctx, &Kernel::real(), req)
}

/// [`create_network`] on these links and firewalls.
pub fn create_network_with(ctx: &Context, k: &Kernel, req: &Request) -> Result<Network> {
    heal::ensure_with(ctx, k.firewalls.as_ref(), req.firewall)?;
    let store = networks(ctx);
    let _lock = store.lock()?;
    create_locked(ctx, k, &store, req)
}

fn create_locked(ctx: &Context, k: &Kernel, store: &network::Store, req: &Request) -> Result<Network> {
    if store.exists(&req.name) {
        bail!("network {:?} already exists", req.name);
    }
    let node = k.links()?;
    let mut taken: Vec<(String, ipnet::Ipv4Net)> =
        store.list()?.into_iter().map(|n| (format!("network {}", n.name), n.subnet)).collect();
    // Service VIPs: a range holding one would hand it to a container (`service create` takes this lock too).
    for s in super::service_store::store(&ctx.data_root).list()? {
        taken.push((format!("the VIP of service {}", s.name), ipnet::Ipv4Net::from(s.vip.ip)));
    }
    // Routes already here, except the default route (it overlaps everything).
    taken.extend(
        node.routes()?.into_iter().filter(|r| r.dest.prefix_len() > 0).map(|r| (format!("route {}", r.dest), r.dest)),
    );
    let net = network::resolve(req, &taken, node.default_route_mtu()?)?;
    if let Some(b) = &net.bridge {
        if node.index(b)?.is_some() {
            bail!("--bridge {b}: a link with that name already exists");
        }
    }
    store.save(&net)?;
    crate::store::fault("network:recorded");
    let dns = || match dns::table::serves(&net) {
        Some(_) => k.resolver.sync(ctx).map(drop),
        None => Ok(()),
    };
    if let Err(e) = install(ctx, k, &net).and_then(|()| dns()) {
        let _ = uninstall(ctx, k, &net);
        let _ = store.remove(&net.name);
        return Err(e);
    }
    Ok(net)
}

/// The kernel side of a network: bridge, ip_forward, firewall rules.
fn install(ctx: &Context, k: &Kernel, net: &Network) -> Result<()> {
    if net.driver == Driver::Bridge {
        driver::ensure_bridge(k.links()?, net)?;
    }
    enable_rules(ctx, k, net)
}

/// A network's forwarding and firewall rules (both idempotent).
fn enable_rules(ctx: &Context, k: &Kernel, net: &Network) -> Result<()> {
    forwarding::enable(k.links()?, &ctx.data_root, &net.name)?;
    k.firewall(net.firewall).add_network(&net.rules())
}

/// A bridge network's kernel side back after its bridge went missing (a
/// reboot, `ip link del`): the bridge with its address, forwarding, the
/// rules, and the node ends of its endpoints that still exist as its ports
/// again. Returns whether the bridge had to be made.
pub fn restore_bridge(ctx: &Context, k: &Kernel, net: &Network) -> Result<bool> {
    if net.driver != Driver::Bridge {
        return Ok(false);
    }
    let node = k.links()?;
    let (br, made) = driver::ensure_bridge(node, net)?;
    if made {
        enable_rules(ctx, k, net)?;
        for ep in endpoints(ctx).on_network(&net.name)? {
            if let Some(host) = node.index(&ep.host_ifname)? {
                driver::make_port(node, net, br, host)?;
            }
        }
    }
    Ok(made)
}

fn uninstall(ctx: &Context, k: &Kernel, net: &Network) -> Result<()> {
    k.firewall(net.firewall).remove_network(&net.name)?;
    forwarding::release(k.links()?, &ctx.data_root, &net.name)?;
    driver::remove_bridge(k.links()?, net)
}

/// The default network, made on first use (with the context's firewall backend).
fn default_network(ctx: &Context, k: &Kernel) -> Result<Network> {
    let store = networks(ctx);
    if store.exists(DEFAULT_NETWORK) {
        return store.get(DEFAULT_NETWORK);
    }
    let _lock = store.lock()?;
    if store.exists(DEFAULT_NETWORK) {
        return store.get(DEFAULT_NETWORK);
    }
    let mut req = Request::new(DEFAULT_NETWORK);
    req.firewall = ctx.firewall;
    create_locked(ctx, k, &store, &req)
}

/// A network by name; `bridge` is made on first use like docker0.
pub fn get_network(ctx: &Context, name: &str) -> Result<Network> {
    network_with(ctx, &Kernel::real(), name)
}

fn network_with(ctx: &Context, k: &Kernel, name: &str) -> Result<Network> {
    if name == DEFAULT_NETWORK {
        return default_network(ctx, k);
    }
    networks(ctx).get(name)
}

/// Refuse a network name that neither exists nor is the default (which is
/// made on first use), before any work is done for it.
pub fn check_network(ctx: &Context, name: &str) -> Result<()> {
    if name != DEFAULT_NETWORK {
        networks(ctx).get(name)?;
    }
    Ok(())
}

/// Every network that can be read.
pub fn list_networks(ctx: &Context) -> Result<Vec<Network>> {
    networks(ctx).list()
}

/// `network ls`: every network, and those whose record cannot be read.
pub fn scan_networks(ctx: &Context) -> Result<crate::store::Listing<Network>> {
    networks(ctx).scan()
}

/// `network inspect`: the definition plus its endpoints.
#[derive(Debug, Serialize)]
pub struct Inspect {
    #[serde(flatten)]
    pub network: Network,
    pub endpoints: Vec<Endpoint>,
    /// Every address leased on the network and its holder (an endpoint key);
    /// one without an endpoint is an orphan that `rcon gc` releases.
    pub leases: Vec<super::ipam::Lease>,
    /// The network's endpoint and lease records that cannot be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub broken: Vec<Broken>,
}

pub fn inspect_network(ctx: &Context, name: &str) -> Result<Inspect> {
    let network = networks(ctx).get(name)?;
    let eps = endpoints(ctx).scan_all(Some(name))?;
    let leases = Ipam::new(&ctx.data_root).leases(name)?;
    let broken = eps.broken.into_iter().chain(leases.broken).collect();
    Ok(Inspect { network, endpoints: eps.good, leases: leases.good, broken })
}

/// Remove a network; with endpoints it needs `force`, which detaches them first.
pub fn remove_network(ctx: &Context, name: &str, force: bool) -> Result<()> {
    remove_network_with(ctx, &Kernel::real(), name, force)
}

/// [`remove_network`] on these links and firewalls.
pub fn remove_network_with(ctx: &Context, k: &Kernel, name: &str, force: bool) -> Result<()> {
    let store = networks(ctx);
    heal::ensure_with(ctx, k.firewalls.as_ref(), store.get(name)?.firewall)?;
    let _lock = store.lock()?;
    let net = store.get(name)?;
    let eps = endpoints(ctx).on_network(name)?;
    if !eps.is_empty() && !force {
        bail!("network {name:?} has {} endpoint(s): detach them first or use --force", eps.len());
    }
    for ep in &eps {
        detach_endpoint(ctx, k, ep)?;
    }
    uninstall(ctx, k, &net)?;
    Ipam::new(&ctx.data_root).drop_network(name)?;
    store.remove(name)?;
    if net.dns {
        // The last DNS network takes the resolver with it.
        k.resolver.sync(ctx)?;
    }
    Ok(())
}

/// `network update --dns/--disable-dns`: turn the resolver on or off for a bridge network (the
/// default `bridge` too, made first if need be). Containers that run keep their resolv.conf.
pub fn update_network(ctx: &Context, name: &str, dns: bool) -> Result<Network> {
    let k = Kernel::real();
    network_with(ctx, &k, name)?;
    let store = networks(ctx);
    let _lock = store.lock()?;
    let old = store.get(name)?;
    if dns && old.driver != Driver::Bridge {
        bail!("--dns applies to the bridge driver only (network {name} is {})", old.driver);
    }
    let net = Network { dns, ..old.clone() };
    store.save(&net)?;
    if let Err(e) = k.resolver.sync(ctx) {
        store.save(&old)?;
        let _ = k.resolver.sync(ctx);
        return Err(e);
    }
    Ok(net)
}

/// The resolver's address on `network` when it has DNS on (a default `bridge` not made yet has not).
pub fn resolver_of(ctx: &Context, network: &str) -> Result<Option<Ipv4Addr>> {
    if network == DEFAULT_NETWORK && !networks(ctx).exists(network) {
        return Ok(None);
    }
    Ok(dns::table::serves(&networks(ctx).get(network)?))
}

/// What attach needs besides the network.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub network: String,
    pub netns: PathBuf,
    /// eth0, eth1 …: the first free one when not given.
    pub ifname: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<Mac>,
    pub owner: Option<String>,
    /// Host ports to publish to this interface (`-p`).
    pub ports: Vec<PortSpec>,
    /// The names the resolver answers for this interface (when the network has DNS on).
    pub names: Vec<String>,
}

/// Attach a namespace to a network. All or nothing.
pub fn attach(ctx: &Context, req: &AttachRequest) -> Result<Endpoint> {
    attach_with(ctx, &Kernel::real(), req)
}

/// [`attach`] on these links and firewalls.
pub fn attach_with(ctx: &Context, k: &Kernel, req: &AttachRequest) -> Result<Endpoint> {
    let net = network_with(ctx, k, &req.network)?;
    tracing::debug!(network = %net.name, "attach: network ready");
    if !req.ports.is_empty() {
        if net.internal {
            bail!("network {} is internal: it publishes no ports", net.name);
        }
        if net.driver == Driver::Veth {
            bail!("network {}: the veth driver has no node side to publish ports on", net.name);
        }
        heal::ensure_with(ctx, k.firewalls.as_ref(), net.firewall)?;
    }
    // A file that is not a network namespace is said so, before anything is done.
    let ns =
        crate::sys::ns::check_ns_file(&req.netns, oci_spec::runtime::LinuxNamespaceType::Network).context("--netns")?;
    let netns_id = endpoint::ns_identity(&req.netns)?;
    let eps = endpoints(ctx);
    let _p2p = match net.driver {
        Driver::Veth => {
            let dir = ctx.data_root.join("endpoints");
            std::fs::create_dir_all(&dir).context("creating the endpoint store")?;
            Some(crate::store::lock(&dir.join(format!(".{}.lock", net.name)))?)
        }
        _ => None,
    };
    // Only this namespace's records are read (their file names say whose they are).
    let mine = eps.find(Filter { netns_id: Some(&netns_id), ..Default::default() })?;
    if let Some(ep) = mine.iter().find(|e| e.network == net.name && e.netns_alive()) {
        bail!("{} is already attached to network {} as {}", req.netns.display(), net.name, ep.ifname);
    }
    let inner = k.links()?.in_netns(&ns)?;
    let ifname = match &req.ifname {
        Some(i) => {
            network::check_ifname("interface", i)?;
            if inner.index(i)?.is_some() {
                bail!("{} already has an interface {i}", req.netns.display());
            }
            i.clone()
        }
        None => {
            let mut used: HashSet<String> = inner.link_names()?.into_iter().collect();
            used.extend(mine.iter().map(|e| e.ifname.clone()));
            (0..).map(|i| format!("eth{i}")).find(|n| !used.contains(n)).unwrap()
        }
    };
    let key = endpoint::key_for(&net.name, &netns_id, &ifname);
    let mac = req.mac.unwrap_or_else(|| endpoint::mac_for(&key));
    let mut ep = Endpoint {
        network: net.name.clone(),
        key: key.clone(),
        netns: req.netns.clone(),
        netns_id,
        owner: req.owner.clone(),
        ifname,
        host_ifname: endpoint::host_ifname(&key, net.driver == Driver::Veth),
        ip: None,
        prefix: net.container_prefix(),
        mac,
        gateway: net.gateway,
        ports: Vec::new(),
        names: req.names.clone(),
    };
    let others: Vec<Endpoint> = match net.driver {
        Driver::Veth => eps.on_network(&net.name)?.into_iter().filter(|e| e.key != key).collect(),
        _ => Vec::new(),
    };
    if net.driver == Driver::Veth && others.len() >= 2 {
        bail!("network {}: the veth driver joins exactly two ends, and both are attached", net.name);
    }
    let node = k.links()?;
    tracing::debug!("attach: namespace checked, interface named");
    let res = (|| {
        // The lease, then the record (gc's way back to everything), then the
        // kernel. The lease book stays locked until the record names the
        // lease, so a gc meanwhile cannot take it for an orphan; a crash
        // before the record leaves an orphan lease, which gc does release.
        // Host ports likewise: claimed, then recorded, under the claims' lock.
        let book = Ipam::new(&ctx.data_root).open(&net.name)?;
        let ip = book.allocate(net.pool(), net.reserved_gateway(), &key, req.ip)?;
        ep.ip = Some(ip);
        if req.mac.is_none() && net.cluster.is_some() {
            ep.mac = Mac::from_ip(ip);
        }
        // A --mac is reserved (a link in the book) and must repeat no endpoint's derived MAC; a derived
        // one (from the key, or the address on a cluster network) only has to miss the reserved ones.
        let holder = match req.mac {
            Some(_) => book.take_mac(ep.mac, &key)?.or_else(|| {
                let eps = eps.on_network(&net.name).ok()?;
                eps.into_iter().find(|e| e.mac == ep.mac && e.key != key).map(|e| e.key)
            }),
            None => book.mac_holder(ep.mac, &key)?,
        };
        if let Some(holder) = holder {
            let who = eps.on_network(&net.name)?.into_iter().find(|e| e.key == holder);
            let who = who.map_or(holder, |e| e.owner.unwrap_or_else(|| e.netns.display().to_string()));
            bail!("--mac {}: network {} has this address already, on {who}", ep.mac, net.name);
        }
        crate::store::fault("attach:leased");
        let claims = (!req.ports.is_empty()).then(|| Claims::open(&ctx.data_root)).transpose()?;
        if let Some(c) = &claims {
            ep.ports = c.claim(&key, &req.ports)?;
        }
        eps.save(&ep)?;
        drop((claims, book));
        tracing::debug!(ip = ?ep.ip, "attach: leased and recorded");
        crate::store::fault("attach:recorded");
        // Before the port exists, so that its first frame is checked.
        if let Some(g) = heal::guard(&net, &ep) {
            if let Err(e) = k.firewall(net.firewall).add_guard(&g) {
                // The table went (a firewall reload): a restore puts it back with every port the
                // records name, this one included.
                if !heal::ensure_with(ctx, k.firewalls.as_ref(), net.firewall)? {
                    return Err(e);
                }
            }
        }
        tracing::debug!("attach: guarded");
        crate::store::fault("attach:guarded");
        // A bridge that had to be made again (node rebooted, crash during
        // create) comes back with its forwarding and rules.
        if driver::attach(node, inner.as_ref(), &ns, &net, &ep, &others)? {
            enable_rules(ctx, k, &net)?;
        }
        if let Some((bridge, e)) = on_shortcut(&net, &ep) {
            shortcut::add(node, bridge, &e)?;
        }
        tracing::debug!("attach: wired");
        publish(ctx, k, &net, &ep)?;
        crate::store::fault("attach:wired");
        if dns::table::serves(&net).is_some() {
            k.resolver.changed(ctx, false)?;
        }
        tracing::debug!("attach: published, resolver told");
        Ok(())
    })();
    if let Err(e) = res {
        let _ = detach_endpoint(ctx, k, &ep);
        return Err(e);
    }
    Ok(ep)
}

/// The DNAT entries of an endpoint's published ports, with what the node
/// needs for them: 127.0.0.1 may be DNATed out of the node side (the bridge,
/// or the routed veth end), and stale UDP flows are forgotten.
fn publish(ctx: &Context, k: &Kernel, net: &Network, ep: &Endpoint) -> Result<()> {
    let Some(p) = published(ep) else { return Ok(()) };
    let dev = match net.driver {
        Driver::Bridge => net.bridge.clone().context("bridge network without a bridge")?,
        _ => ep.host_ifname.clone(),
    };
    k.links()?.set_conf(&dev, "route_localnet", "1")?;
    if let Err(e) = k.firewall(net.firewall).add_ports(&p) {
        // The table went since the check at the start (a firewall reload just now): a restore puts it
        // back with these ports, which the record names already.
        if !heal::ensure_with(ctx, k.firewalls.as_ref(), net.firewall)? {
            return Err(e);
        }
    }
    k.firewalls.flush_udp_conntrack(&ep.ports)
}

/// A cluster network's bridge may have the shortcut (net::shortcut, put there by the eBPF IPIP
/// plane): the bridge and the endpoint's entry.
fn on_shortcut<'a>(net: &'a Network, ep: &'a Endpoint) -> Option<(&'a str, shortcut::Endpoint<'a>)> {
    let (Some(_), Driver::Bridge, Some(bridge), Some(ip)) = (net.cluster, net.driver, net.bridge.as_deref(), ep.ip)
    else {
        return None;
    };
    Some((bridge, shortcut::Endpoint { ip, mac: ep.mac, port: &ep.host_ifname }))
}

/// Make the shortcut of `net`'s bridge, when it has one, name the network's endpoints
/// (`cluster repair`: a program loaded again starts empty).
pub fn refill_shortcut(ctx: &Context, k: &Kernel, net: &Network) -> Result<()> {
    let Some(bridge) = net.bridge.as_deref() else { return Ok(()) };
    let eps = endpoints(ctx).on_network(&net.name)?;
    let entries: Vec<shortcut::Endpoint> = eps.iter().filter_map(|e| on_shortcut(net, e).map(|(_, s)| s)).collect();
    shortcut::refill(k.links()?, bridge, &entries)
}

fn published(ep: &Endpoint) -> Option<firewall::Published<'_>> {
    let ip = ep.ip.filter(|_| !ep.ports.is_empty())?;
    Some(firewall::Published { owner: &ep.key, ip, mappings: &ep.ports })
}

/// Undo one endpoint: published ports, interfaces, claims, record, service backends, lease (in that
/// order). The record loses its ports before the rules go, so that a restore of the
/// firewall meanwhile does not put them back (see `heal`).
pub(super) fn detach_endpoint(ctx: &Context, k: &Kernel, ep: &Endpoint) -> Result<()> {
    if let Some(p) = published(ep) {
        let eps = endpoints(ctx);
        if eps.recorded(ep) {
            eps.save(&Endpoint { ports: Vec::new(), ..ep.clone() })?;
        }
        crate::store::fault("detach:unpublishing");
        let backend = networks(ctx).get(&ep.network).map(|n| n.firewall).unwrap_or_default();
        k.firewall(backend).remove_ports(&p)?;
        k.firewalls.flush_udp_conntrack(&ep.ports)?;
    }
    let net = networks(ctx).get(&ep.network);
    // Before the address is free for another endpoint.
    if let Some((bridge, e)) = net.as_ref().ok().and_then(|n| on_shortcut(n, ep)) {
        shortcut::remove(k.links()?, bridge, e.ip)?;
    }
    driver::detach(k.links()?, ep)?;
    tracing::debug!(key = %ep.key, "detach: ports dropped, links going");
    if !ep.ports.is_empty() {
        Claims::open(&ctx.data_root)?.release(&ep.key, &ep.ports)?;
    }
    endpoints(ctx).remove(ep)?;
    crate::store::fault("detach:unrecorded");
    // The services after the record: drop_endpoint looks at their index without their lock, and a
    // `service create` or `add-backend` that resolved this endpoint checks its record again after
    // writing its index entry (service::commit). So either that check finds the record gone, or the
    // entry is there when drop_endpoint looks. Killed in between, gc drops the backends.
    super::service::drop_endpoint(ctx, k.firewalls.as_ref(), &ep.key)?;
    // The address last: leased while a service still sends to it, it goes to no other container.
    Ipam::new(&ctx.data_root).release(&ep.network, &ep.key, ep.ip, Some(ep.mac))?;
    tracing::debug!("detach: record, services and lease gone");
    // Last, after the record: a firewall restore meanwhile re-adds what the records name.
    let res = match &net {
        Ok(net) => heal::guard(net, ep).map_or(Ok(()), |g| k.firewall(net.firewall).remove_guard(&g)),
        Err(_) => k.firewall(Backend::default()).remove_guard_of(&ep.key),
    };
    tracing::debug!("detach: guard removed");
    if net.as_ref().is_ok_and(|n| dns::table::serves(n).is_some()) && !ep.names.is_empty() {
        // Waited for: the name must be gone when the detach returns. A resolver that cannot be told
        // answers from the records when it comes back, which no longer name it.
        let _ = k.resolver.changed(ctx, true);
    }
    res
}

/// Detach `netns` from `network` (one interface, or all of them on that network).
pub fn detach(ctx: &Context, network: &str, netns: &Path, ifname: Option<&str>) -> Result<()> {
    detach_with(ctx, &Kernel::real(), network, netns, ifname)
}

/// [`detach`] on these links and firewalls.
pub fn detach_with(ctx: &Context, k: &Kernel, network: &str, netns: &Path, ifname: Option<&str>) -> Result<()> {
    networks(ctx).get(network)?;
    let id = endpoint::ns_identity(netns)?;
    let mine: Vec<Endpoint> =
        detachable(ctx, k, Filter { network: Some(network), netns_id: Some(&id), ..Default::default() })?
            .into_iter()
            .filter(|e| ifname.is_none_or(|i| i == e.ifname))
            .collect();
    if mine.is_empty() {
        bail!("{} is not attached to network {network}", netns.display());
    }
    tracing::debug!("detach: records read");
    ensure_for(ctx, k, &mine)?;
    tracing::debug!("detach: firewall checked");
    mine.iter().try_for_each(|ep| detach_endpoint(ctx, k, ep))
}

/// The records of a detach that match `filter`, all of them. One left empty by an attach killed
/// between the record's creation and its write (nothing was made after it) goes first, with its
/// leases, as gc would take it; one that cannot be read otherwise names the lease, claims and veth
/// to undo, so the detach stops before it starts.
pub(super) fn detachable(ctx: &Context, k: &Kernel, filter: Filter) -> Result<Vec<Endpoint>> {
    let eps = endpoints(ctx);
    let mut found = eps.scan(filter)?;
    if !found.broken.is_empty() {
        let ipam = Ipam::new(&ctx.data_root);
        let nets: std::collections::BTreeSet<&str> =
            found.broken.iter().filter_map(|b| b.name.split_once('/').map(|(n, _)| n)).collect();
        for net in nets {
            let book = ipam.open(net)?;
            let prefix = format!("{net}/");
            let here: Vec<&Broken> = found.broken.iter().filter(|b| b.name.starts_with(&prefix)).collect();
            remove_unborn(&eps, k.links()?, &book, &here)?;
        }
        found = eps.scan(filter)?;
    }
    match found.broken.first() {
        Some(b) => Err(b.error()),
        None => Ok(found.good),
    }
}

/// Every endpoint that belongs to `owner` (a container id).
pub fn endpoints_of(ctx: &Context, owner: &str) -> Result<Vec<Endpoint>> {
    endpoints(ctx).find(Filter { owner: Some(owner), ..Default::default() })
}

/// Detach what `owner` has on `network`, or on every network (container
/// delete, where having nothing is fine). Returns how many were detached.
pub fn detach_owner(ctx: &Context, owner: &str, network: Option<&str>) -> Result<usize> {
    detach_owner_with(ctx, &Kernel::real(), owner, network)
}

/// [`detach_owner`] on these links and firewalls.
pub fn detach_owner_with(ctx: &Context, k: &Kernel, owner: &str, network: Option<&str>) -> Result<usize> {
    let mine = detachable(ctx, k, Filter { owner: Some(owner), network, ..Default::default() })?;
    if !mine.is_empty() {
        ensure_for(ctx, k, &mine)?;
        mine.iter().try_for_each(|ep| detach_endpoint(ctx, k, ep))?;
    }
    Ok(mine.len())
}

/// Heal the firewall before endpoints with published ports are detached.
pub(super) fn ensure_for(ctx: &Context, k: &Kernel, eps: &[Endpoint]) -> Result<()> {
    if eps.iter().any(|e| !e.ports.is_empty()) {
        heal::ensure_all(ctx, k.firewalls.as_ref())?;
    }
    Ok(())
}

/// Remove the records among `broken` (of `book`'s network) that a crash left empty between their
/// creation and their write, with their leases: nothing was made after them. Call it holding `book`,
/// under which every record is made, so none of them is being written. One whose veth exists is
/// damaged rather than unborn, and stays. Returns the names of those removed.
fn remove_unborn(
    eps: &endpoint::Store,
    node: &dyn Links,
    book: &super::ipam::Book,
    broken: &[&Broken],
) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for b in broken {
        let key = endpoint::broken_key(b);
        let wired =
            [false, true].into_iter().any(|p| node.index(&endpoint::host_ifname(key, p)).ok().flatten().is_some());
        if !wired && eps.remove_unborn(b) {
            book.release(key)?;
            for m in book.macs()?.into_iter().filter(|m| m.owner == key) {
                book.release_mac(&m.mac, key)?;
            }
            gone.push(b.name.clone());
        }
    }
    Ok(gone)
}

/// What `rcon gc` removed, and the records it could not read.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub endpoints: Vec<String>,
    pub leases: Vec<String>,
    pub links: Vec<String>,
    pub rules: Vec<String>,
    /// Host port claims of endpoints that are gone.
    pub ports: Vec<String>,
    /// Dangling links in the endpoint indexes (a crash while saving or removing a record).
    pub index_links: usize,
    /// Records that could not be read: left in place, with all they may own.
    pub broken: Vec<Broken>,
}

impl GcReport {
    fn broken(&mut self, more: impl IntoIterator<Item = Broken>) {
        for b in more {
            if !self.broken.iter().any(|o| o.path == b.path) {
                self.broken.push(b);
            }
        }
    }
}

/// The keys of the endpoint records on `network` (every network: None),
/// the unreadable ones included: gc must not take what a broken record may
/// hold. Its key is in its file name, and its lease, claims, port rules and
/// veth names all derive from that key.
fn endpoint_keys(
    eps: &endpoint::Store,
    network: Option<&str>,
    keep: impl Fn(&Endpoint) -> bool,
    report: &mut GcReport,
) -> Result<HashSet<String>> {
    let scan = eps.scan_all(network)?;
    let mut keys: HashSet<String> = scan.good.into_iter().filter(|e| keep(e)).map(|e| e.key).collect();
    keys.extend(scan.broken.iter().map(|b| endpoint::broken_key(b).to_string()));
    report.broken(scan.broken);
    Ok(keys)
}

/// Remove what crashed or vanished processes left: endpoints whose namespace
/// is gone (with their veth and lease), leases without a record, rcon veths
/// without a record, and firewall rules of networks that no longer exist.
/// Safe at any time: a live endpoint is never touched. A record that cannot
/// be read is skipped and reported, and nothing it may own is removed.
pub fn gc(ctx: &Context, backends: &[Backend]) -> Result<GcReport> {
    gc_with(ctx, &Kernel::real(), backends)
}

/// [`gc`] on these links and firewalls.
pub fn gc_with(ctx: &Context, k: &Kernel, backends: &[Backend]) -> Result<GcReport> {
    heal::ensure_all(ctx, k.firewalls.as_ref())?;
    let mut report = GcReport::default();
    let node = k.links()?;
    let eps = endpoints(ctx);
    for ep in eps.all()? {
        if !ep.netns_alive() {
            detach_endpoint(ctx, k, &ep)?;
            report.endpoints.push(format!("{}/{}", ep.network, ep.key));
        }
    }
    // Before the leases: the address of a backend whose endpoint record is gone stays leased until
    // no service sends to it (see detach_endpoint).
    report.rules.extend(super::service::gc(ctx, k.firewalls.as_ref(), backends)?);
    let ipam = Ipam::new(&ctx.data_root);
    for net in ipam.networks()? {
        // Records are read under the book's lock: an attach holds it from its
        // lease until its record is saved.
        let book = ipam.open(&net)?;
        let broken = eps.scan_all(Some(&net))?.broken;
        report.endpoints.extend(remove_unborn(&eps, node, &book, &broken.iter().collect::<Vec<_>>())?);
        let mut keys = endpoint_keys(&eps, Some(&net), |_| true, &mut report)?;
        // A service's VIP lease: kept while the service is, its record readable or not (read under the
        // book's lock too, which `service create` holds until it is saved).
        let svcs = super::service_store::store(&ctx.data_root).scan()?;
        let names = svcs.good.iter().map(|s| s.name.as_str()).chain(svcs.broken.iter().map(|b| b.name.as_str()));
        keys.extend(names.map(super::service_store::lease_owner));
        let leases = book.leases()?;
        report.broken(leases.broken);
        for lease in leases.good {
            if !keys.contains(&lease.owner) {
                book.release_address(&lease)?;
                report.leases.push(format!("{net}/{}", lease.ip));
            }
        }
        for m in book.macs()? {
            if !keys.contains(&m.owner) {
                book.release_mac(&m.mac, &m.owner)?;
                report.leases.push(format!("{net}/{}", m.mac));
            }
        }
    }
    report.index_links = eps.sweep_index(std::time::Duration::from_secs(60));
    report.broken(super::service_store::store(&ctx.data_root).scan()?.broken);
    // The kernel's objects are listed before the records are read: attach
    // saves an endpoint's record before it makes the veth and the port
    // rules, so an object seen here that belongs to a live attach has its
    // record in the read below, and only objects of gone endpoints go.
    // The same holds for networks: saved before their bridge and rules.
    let links = rcon_links(node)?;
    let port_owners: Vec<(Backend, Vec<String>)> =
        backends.iter().filter_map(|b| k.firewall(*b).port_owners().ok().map(|o| (*b, o))).collect();
    // A backend whose tool is missing has no rules of ours.
    let fw_networks: Vec<(Backend, Vec<String>)> =
        backends.iter().filter_map(|b| k.firewall(*b).networks().ok().map(|n| (*b, n))).collect();
    // One table serves both backends: listed once.
    let guard_owners = match backends.first() {
        Some(b) => k.firewall(*b).guard_owners().ok().map(|o| (*b, o)),
        None => None,
    };
    let live = endpoint_keys(&eps, None, |_| true, &mut report)?;
    if let Some((b, owners)) = guard_owners {
        for o in owners.into_iter().filter(|o| !live.contains(o)) {
            k.firewall(b).remove_guard_of(&o)?;
            report.rules.push(format!("anti-spoofing:port of {o}"));
        }
    }
    {
        // Under the claims' lock, as attach records its claims under it.
        let claims = Claims::open(&ctx.data_root)?;
        // An endpoint whose record lost its ports (a detach that crashed midway) owns none.
        let keys = endpoint_keys(&eps, None, |e| !e.ports.is_empty(), &mut report)?;
        for c in claims.all()?.into_iter().filter(|c| !keys.contains(&c.owner)) {
            claims.release_claim(&c)?;
            report.ports.push(format!("{}:{}/{}", c.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), c.port, c.proto));
        }
        claims.sweep_empty()?;
        for (b, owners) in port_owners {
            let fw = k.firewall(b);
            for o in owners.into_iter().filter(|o| !keys.contains(o)) {
                fw.remove_ports_of(&o)?;
                report.rules.push(format!("{b}:ports of {o}"));
            }
        }
    }
    // Node ends are named from the key; a broken record's could be either kind.
    let hosts: HashSet<String> =
        live.iter().flat_map(|k| [endpoint::host_ifname(k, false), endpoint::host_ifname(k, true)]).collect();
    for name in links {
        if !hosts.contains(&name) {
            node.delete_by_name(&name)?;
            report.links.push(name);
        }
    }
    // A network whose record cannot be read keeps its rules.
    let nets = networks(ctx);
    report.broken(nets.scan()?.broken);
    let known: HashSet<String> = nets.names().into_iter().collect();
    for (b, fw_nets) in fw_networks {
        let fw = k.firewall(b);
        for n in fw_nets.into_iter().filter(|n| !known.contains(n)) {
            fw.remove_network(&n)?;
            forwarding::release(node, &ctx.data_root, &n)?;
            report.rules.push(format!("{b}:{n}"));
        }
    }
    if let Some(what) = k.resolver.sync(ctx)? {
        report.rules.push(format!("dns resolver {what}"));
    }
    Ok(report)
}

/// Node-side veth ends that rcon names (rv… for containers, rp… parked).
/// Read over netlink: /sys/class/net shows the namespace sysfs was mounted in.
fn rcon_links(node: &dyn Links) -> Result<Vec<String>> {
    Ok(node.link_names()?.into_iter().filter(|n| endpoint::is_host_ifname(n)).collect())
}

/// The netns file of a running process.
pub fn netns_of_pid(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}
