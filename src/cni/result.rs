//! The ADD result: rcon's endpoint as the spec's interfaces, ips, routes and
//! dns, after what earlier plugins of a chain returned (`prevResult`). Pure.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use rscni_plugin::types::{CNIResult, Dns, Interface, IpConfig, Route};

use crate::net::endpoint::Endpoint;
use crate::net::network::{Driver, Network, ROUTED_GATEWAY};

fn iface(name: &str, mac: String, mtu: u32, sandbox: Option<&str>) -> Interface {
    Interface {
        name: name.to_string(),
        mac,
        mtu: Some(mtu),
        sandbox: sandbox.map(str::to_string),
        socket_path: None,
        pci_id: None,
    }
}

fn route(dst: Ipv4Net, gw: Option<Ipv4Addr>) -> Route {
    Route {
        dst: IpNet::V4(dst),
        gw: gw.map(IpAddr::V4),
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    }
}

/// `prev` with this endpoint added: the bridge and the node end on the
/// host (no sandbox), the interface in `netns`, its address pointing at that
/// interface, the routes the driver made there, and `dns` when it says anything.
pub fn build(prev: Option<CNIResult>, net: &Network, ep: &Endpoint, netns: &str, dns: Option<Dns>) -> CNIResult {
    let mut r = prev.unwrap_or_default();
    if let Some(b) = &net.bridge {
        if !r.interfaces.iter().any(|i| &i.name == b && i.sandbox.is_none()) {
            r.interfaces.push(iface(b, String::new(), net.mtu, None));
        }
    }
    if net.driver != Driver::Veth {
        r.interfaces.push(iface(&ep.host_ifname, String::new(), net.mtu, None));
    }
    r.interfaces.push(iface(&ep.ifname, ep.mac.to_string(), net.mtu, Some(netns)));
    let index = u32::try_from(r.interfaces.len() - 1).unwrap_or(u32::MAX);
    if let Some(ip) = ep.ip {
        let address = Ipv4Net::new(ip, ep.prefix).map(IpNet::V4).expect("a recorded prefix is at most 32");
        r.ips.push(IpConfig { interface: Some(index), address, gateway: ep.gateway.map(IpAddr::V4) });
    }
    if let Some(gw) = ep.gateway {
        if gw == ROUTED_GATEWAY {
            r.routes.push(route(Ipv4Net::new(gw, 32).expect("32 is a prefix"), None));
        }
        // The driver leaves a default route that is already there alone.
        if !r.routes.iter().any(|x| x.dst.prefix_len() == 0 && x.dst.addr().is_ipv4()) {
            r.routes.push(route(Ipv4Net::default(), Some(gw)));
        }
    }
    if dns.as_ref().is_some_and(|d| !d.nameservers.is_empty() || d.search.as_ref().is_some_and(|s| !s.is_empty())) {
        r.dns = dns;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::macaddr::Mac;

    fn net(driver: Driver) -> Network {
        serde_json::from_value(serde_json::json!({
            "name":"n","driver":driver,"subnet":"10.1.0.0/24","gateway":"10.1.0.1",
            "bridge": if driver == Driver::Bridge { Some("rbr") } else { None },
            "mtu":1500,"internal":false,"icc":true,"masquerade":true,"firewall":"nftables","created":"x"}))
        .unwrap()
    }

    fn ep(gw: Ipv4Addr, prefix: u8) -> Endpoint {
        Endpoint {
            network: "n".into(),
            key: "k".into(),
            netns: "/run/netns/x".into(),
            netns_id: "1:2".into(),
            owner: Some("cni:c".into()),
            ifname: "eth0".into(),
            host_ifname: "rv0123456789".into(),
            ip: Some(Ipv4Addr::new(10, 1, 0, 2)),
            prefix,
            mac: Mac([2, 0, 0, 0, 0, 1]),
            gateway: Some(gw),
            ports: Vec::new(),
            names: Vec::new(),
        }
    }

    #[test]
    fn bridge_result_points_the_address_at_the_sandboxed_interface() {
        let r = build(None, &net(Driver::Bridge), &ep(Ipv4Addr::new(10, 1, 0, 1), 24), "/run/netns/x", None);
        let names: Vec<&str> = r.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["rbr", "rv0123456789", "eth0"]);
        assert_eq!(r.interfaces[2].sandbox.as_deref(), Some("/run/netns/x"));
        assert_eq!(r.interfaces[2].mac, "02:00:00:00:00:01");
        assert_eq!(r.ips[0].interface, Some(2));
        assert_eq!(r.ips[0].address.to_string(), "10.1.0.2/24");
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert!(r.dns.is_none());
    }

    #[test]
    fn routed_result_has_the_onlink_gateway_route() {
        let r = build(None, &net(Driver::Routed), &ep(ROUTED_GATEWAY, 32), "/x", None);
        assert_eq!(r.interfaces.len(), 2);
        assert_eq!(r.ips[0].interface, Some(1));
        let routes: Vec<String> = r.routes.iter().map(|x| x.dst.to_string()).collect();
        assert_eq!(routes, ["169.254.1.1/32", "0.0.0.0/0"]);
    }

    #[test]
    fn a_previous_result_is_kept_and_indexes_follow_it() {
        let prev: CNIResult = serde_json::from_value(serde_json::json!({
            "interfaces":[{"name":"lo0"}],"ips":[{"interface":0,"address":"192.168.0.2/24"}],
            "routes":[{"dst":"0.0.0.0/0","gw":"192.168.0.1"}],"dns":{"nameservers":["1.1.1.1"]}}))
        .unwrap();
        let r = build(Some(prev), &net(Driver::Bridge), &ep(Ipv4Addr::new(10, 1, 0, 1), 24), "/x", None);
        assert_eq!(r.interfaces[0].name, "lo0");
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.ips[1].interface, Some(3));
        assert_eq!(r.routes.len(), 1, "the earlier default route stays the only one");
        assert_eq!(r.dns.unwrap().nameservers, ["1.1.1.1"]);
    }
}
