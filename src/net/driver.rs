//! The kernel side of each driver: the links, addresses and routes that
//! make an endpoint, given its record. Records, leases and rules are the
//! caller's (net::manage); everything here is undone by deleting the veth.

use std::fs::File;
use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::endpoint::{parse_mac, Endpoint};
use super::link::{set_conf, Netlink};
use super::network::{Driver, Network, ROUTED_GATEWAY};

/// The bridge's MAC, derived from the network name so it never follows its ports.
fn bridge_mac(net: &Network) -> [u8; 6] {
    super::endpoint::mac_for(&format!("bridge/{}", net.name))
}

/// Make the network's bridge with its gateway address, unless it exists.
/// Returns whether it had to be made (the caller then re-applies rules).
pub fn ensure_bridge(node: &Netlink, net: &Network) -> Result<(u32, bool)> {
    let name = net.bridge.as_deref().context("bridge network without a bridge name")?;
    if let Some(i) = node.index(name)? {
        return Ok((i, false));
    }
    let idx = match node.create_bridge(name, bridge_mac(net), net.mtu) {
        Ok(i) => i,
        // Another rcon made it between our look and our create.
        Err(_) if node.index(name)?.is_some() => return Ok((node.require(name)?, false)),
        Err(e) => return Err(e),
    };
    let gw = net.gateway.context("bridge network without a gateway")?;
    node.add_address(idx, gw, net.subnet.prefix_len())?;
    Ok((idx, true))
}

pub fn remove_bridge(node: &Netlink, net: &Network) -> Result<()> {
    match &net.bridge {
        Some(b) => node.delete_by_name(b),
        None => Ok(()),
    }
}

/// Wire one endpoint whose record (with its address) is already saved.
pub fn attach(node: &Netlink, net: &Network, ep: &Endpoint, others: &[Endpoint]) -> Result<()> {
    let ns = File::open(&ep.netns).with_context(|| format!("netns {}", ep.netns.display()))?;
    let mac = parse_mac(&ep.mac)?;
    match net.driver {
        Driver::Bridge => {
            let (br, _) = ensure_bridge(node, net)?;
            let host = node.create_veth(&ep.host_ifname, &ep.ifname, &ns, mac, net.mtu)?;
            node.up(host, Some(br))?;
            node.bridge_port(host, true, !net.icc)?;
            configure_inside(&ns, ep, net.gateway.map(|g| (g, false)))
        }
        Driver::Routed => {
            let host_mac = super::endpoint::mac_for(&format!("host/{}", ep.key));
            let host = node.create_veth_with(&ep.host_ifname, Some(host_mac), &ep.ifname, &ns, mac, net.mtu)?;
            set_conf(&ep.host_ifname, "proxy_arp", "1")?;
            node.up(host, None)?;
            let ip = ep.ip.context("routed endpoint without an address")?;
            node.add_route(Ipv4Net::new(ip, 32)?, None, host, false)?;
            configure_inside(&ns, ep, Some((ROUTED_GATEWAY, true)))?;
            // proxy_arp answers for 169.254.1.1 only while the node has a route
            // to it elsewhere (a default route); a permanent entry does not depend on that.
            let inner = Netlink::in_netns(&ns)?;
            inner.add_neighbour(inner.require(&ep.ifname)?, ROUTED_GATEWAY, host_mac)
        }
        Driver::Veth => attach_p2p(node, net, ep, &ns, mac, others),
    }
}

/// Address, link up and (for the first interface) the default route, inside the namespace.
/// `onlink` routes go via a gateway that is not in the interface's subnet (routed: 169.254.1.1).
fn configure_inside(ns: &File, ep: &Endpoint, gateway: Option<(Ipv4Addr, bool)>) -> Result<()> {
    let inner = Netlink::in_netns(ns)?;
    let idx = inner.require(&ep.ifname)?;
    let ip = ep.ip.context("endpoint without an address")?;
    inner.add_address(idx, ip, ep.prefix)?;
    inner.up(idx, None)?;
    if let Some(lo) = inner.index("lo")? {
        inner.up(lo, None)?;
    }
    let Some((gw, onlink)) = gateway else { return Ok(()) };
    if onlink {
        inner.add_route(Ipv4Net::new(gw, 32)?, None, idx, false)?;
    }
    // A second network does not steal the default route from the first.
    if !inner.routes()?.iter().any(|r| r.dest.prefix_len() == 0) {
        inner.add_route(Ipv4Net::default(), Some(gw), idx, onlink)?;
    }
    Ok(())
}

/// The veth driver: the first end waits parked in the node namespace
/// (down, named after its record) until the second end's namespace comes.
fn attach_p2p(
    node: &Netlink,
    net: &Network,
    ep: &Endpoint,
    ns: &File,
    mac: [u8; 6],
    others: &[Endpoint],
) -> Result<()> {
    let other = match others {
        [] => None,
        [o] => Some(o),
        _ => bail!("network {}: the veth driver joins exactly two ends, and both are attached", net.name),
    };
    match other {
        Some(o) if node.index(&o.host_ifname)?.is_some() => {
            // Bring the parked end over and make it ours.
            let parked = node.require(&o.host_ifname)?;
            node.rename_into(parked, &ep.ifname, Some(ns))?;
            let inner = Netlink::in_netns(ns)?;
            let idx = inner.require(&ep.ifname)?;
            set_mac(&inner, idx, mac)?;
            drop(inner);
            configure_inside(ns, ep, None)
        }
        Some(o) if o.netns_alive() => {
            // The partner lost its end when we last detached: make a new pair
            // and hand the local end to the partner, under its old name.
            let theirs = File::open(&o.netns)?;
            let local = node.create_veth(&ep.host_ifname, &ep.ifname, ns, mac, net.mtu)?;
            node.rename_into(local, &o.ifname, Some(&theirs))?;
            let inner = Netlink::in_netns(&theirs)?;
            let idx = inner.require(&o.ifname)?;
            set_mac(&inner, idx, parse_mac(&o.mac)?)?;
            drop(inner);
            configure_inside(&theirs, o, None)?;
            configure_inside(ns, ep, None)
        }
        _ => {
            node.create_veth(&ep.host_ifname, &ep.ifname, ns, mac, net.mtu)?;
            configure_inside(ns, ep, None)
        }
    }
}

fn set_mac(inner: &Netlink, idx: u32, mac: [u8; 6]) -> Result<()> {
    inner.set_address(idx, mac)
}

/// Remove the endpoint's interfaces. Deleting either end of a veth deletes
/// both (and the routes through it); a namespace that is gone took them along.
pub fn detach(node: &Netlink, ep: &Endpoint) -> Result<()> {
    if node.index(&ep.host_ifname)?.is_some() {
        return node.delete_by_name(&ep.host_ifname);
    }
    if ep.netns_alive() {
        if let Ok(ns) = File::open(&ep.netns) {
            Netlink::in_netns(&ns)?.delete_by_name(&ep.ifname)?;
        }
    }
    Ok(())
}
