//! The kernel side of each driver: the links, addresses and routes that
//! make an endpoint, given its record. Records, leases and rules are the
//! caller's (net::manage); everything here is undone by deleting the veth.

use std::fs::File;
use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::endpoint::Endpoint;
use super::links::{Links, Veth};
use super::network::{Driver, Network, ROUTED_GATEWAY};
use crate::net::macaddr::Mac;

/// The bridge's MAC, derived from the network name so it never follows its ports.
fn bridge_mac(net: &Network) -> Mac {
    // A cluster network has the same name on every node, and with vxlan-l2
    // one L2 domain: its MACs come from the node's own addresses.
    if let (Some(_), Some(gw)) = (net.cluster, net.gateway) {
        return Mac::from_ip(gw);
    }
    super::endpoint::mac_for(&format!("bridge/{}", net.name))
}

/// Make the network's bridge with its gateway address, unless it exists.
/// Returns whether it had to be made (the caller then re-applies rules).
pub fn ensure_bridge(node: &dyn Links, net: &Network) -> Result<(u32, bool)> {
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

/// Bring the node end `host` up as a port of the network's bridge `br`,
/// with the network's hairpin and isolation settings.
pub fn make_port(node: &dyn Links, net: &Network, br: u32, host: u32) -> Result<()> {
    node.up(host, Some(br)).map_err(|e| match crate::error::errno(&e) {
        Some(libc::EXFULL) => anyhow::anyhow!(
            "network {}: bridge {} is full (a Linux bridge takes at most 1023 ports)",
            net.name,
            net.bridge.as_deref().unwrap_or("?")
        ),
        _ => e,
    })?;
    node.bridge_port(host, true, !net.icc)
}

pub fn remove_bridge(node: &dyn Links, net: &Network) -> Result<()> {
    match &net.bridge {
        Some(b) => node.delete_by_name(b),
        None => Ok(()),
    }
}

/// Wire one endpoint whose record (with its address) is already saved.
/// `inner` is a handle in the endpoint's namespace, `ns` its file. Returns
/// whether the network's bridge had to be made (the caller re-applies rules).
pub fn attach(
    node: &dyn Links,
    inner: &dyn Links,
    ns: &File,
    net: &Network,
    ep: &Endpoint,
    others: &[Endpoint],
) -> Result<bool> {
    let mac = ep.mac;
    // A node end of the same name is a leftover (a detach still deleting it in
    // the background, or a crash): it goes first.
    node.delete_by_name(&ep.host_ifname)?;
    match net.driver {
        Driver::Bridge => {
            let (br, made) = ensure_bridge(node, net)?;
            let host = node.create_veth(&veth(ep, None, ns, net))?;
            no_ipv6(node, &ep.host_ifname);
            make_port(node, net, br, host)?;
            configure_inside(inner, ep, net.gateway.map(|g| (g, false)))?;
            Ok(made)
        }
        Driver::Routed => {
            let host_mac = super::endpoint::mac_for(&format!("host/{}", ep.key));
            let host = node.create_veth(&veth(ep, Some(host_mac), ns, net))?;
            node.set_conf(&ep.host_ifname, "proxy_arp", "1")?;
            no_ipv6(node, &ep.host_ifname);
            node.up(host, None)?;
            let ip = ep.ip.context("routed endpoint without an address")?;
            node.add_route(Ipv4Net::new(ip, 32)?, None, host, false)?;
            let idx = configure_inside(inner, ep, Some((ROUTED_GATEWAY, true)))?;
            // proxy_arp answers for 169.254.1.1 only while the node has a route
            // to it elsewhere (a default route); a permanent entry does not depend on that.
            inner.add_neighbour(idx, ROUTED_GATEWAY, host_mac)?;
            Ok(false)
        }
        Driver::Veth => attach_p2p(node, inner, ns, net, ep, mac, others).map(|_| false),
    }
}

/// The node end of a veth carries no IPv6 at all (rcon's networks are
/// IPv4-only). With IPv6 on, each end coming up adds a multicast route to
/// the node's IPv6 table, which every later link event walks, and sends DAD
/// and MLD packets that the bridge floods to every port: both grow with the
/// number of containers. Set before the link comes up. Best effort: a node
/// without IPv6 has no such file. (The container end gets `addrgenmode
/// none` over netlink instead: writing /proc/sys there would mean entering
/// its namespace, and those lookups slow down as namespaces accumulate.)
fn no_ipv6(node: &dyn Links, ifname: &str) {
    let _ = node.set_sysctl(&format!("ipv6/conf/{ifname}/disable_ipv6"), "1");
}

/// Address, link up and (for the first interface) the default route, inside the namespace.
/// `onlink` routes go via a gateway that is not in the interface's subnet (routed: 169.254.1.1).
/// Returns the interface's index.
fn configure_inside(inner: &dyn Links, ep: &Endpoint, gateway: Option<(Ipv4Addr, bool)>) -> Result<u32> {
    let idx = inner.require(&ep.ifname)?;
    let ip = ep.ip.context("endpoint without an address")?;
    inner.no_ipv6_addresses(idx)?;
    inner.add_address(idx, ip, ep.prefix)?;
    inner.up(idx, None)?;
    // lo is always index 1 in a namespace.
    inner.up(1, None)?;
    let Some((gw, onlink)) = gateway else { return Ok(idx) };
    if onlink {
        inner.add_route(Ipv4Net::new(gw, 32)?, None, idx, false)?;
    }
    // A second network does not steal the default route from the first.
    if !inner.routes()?.iter().any(|r| r.dest.prefix_len() == 0) {
        inner.add_route(Ipv4Net::default(), Some(gw), idx, onlink)?;
    }
    Ok(idx)
}

/// The veth driver: the first end waits parked in the node namespace
/// (down, named after its record) until the second end's namespace comes.
fn attach_p2p(
    node: &dyn Links,
    inner: &dyn Links,
    ns: &File,
    net: &Network,
    ep: &Endpoint,
    mac: Mac,
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
            let idx = inner.require(&ep.ifname)?;
            inner.set_address(idx, mac)?;
            configure_inside(inner, ep, None).map(|_| ())
        }
        Some(o) if o.netns_alive() => {
            // The partner lost its end when we last detached: make a new pair
            // and hand the local end to the partner, under its old name.
            let theirs = File::open(&o.netns)?;
            let local = node.create_veth(&veth(ep, None, ns, net))?;
            node.rename_into(local, &o.ifname, Some(&theirs))?;
            let other_side = node.in_netns(&theirs)?;
            let idx = other_side.require(&o.ifname)?;
            other_side.set_address(idx, o.mac)?;
            configure_inside(other_side.as_ref(), o, None)?;
            configure_inside(inner, ep, None).map(|_| ())
        }
        _ => {
            node.create_veth(&veth(ep, None, ns, net))?;
            configure_inside(inner, ep, None).map(|_| ())
        }
    }
}

/// Remove the endpoint's interfaces. Deleting either end of a veth deletes
/// both (and the routes through it); a namespace that is gone took them along.
pub fn detach(node: &dyn Links, ep: &Endpoint) -> Result<()> {
    if node.index(&ep.host_ifname)?.is_some() {
        return node.delete_detached(&ep.host_ifname);
    }
    if ep.netns_alive() {
        if let Ok(ns) = File::open(&ep.netns) {
            node.in_netns(&ns)?.delete_by_name(&ep.ifname)?;
        }
    }
    Ok(())
}

/// The pair of endpoint `ep`: its node end (with `host_mac`, when given)
/// here, its own end born in the container's namespace `ns`.
fn veth<'a>(ep: &'a Endpoint, host_mac: Option<Mac>, ns: &'a File, net: &Network) -> Veth<'a> {
    Veth { local: &ep.host_ifname, local_mac: host_mac, peer: &ep.ifname, peer_ns: ns, peer_mac: ep.mac, mtu: net.mtu }
}
