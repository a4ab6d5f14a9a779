//! What the resolver answers, built whole from rcon's records on each reload
//! and swapped in at once: per DNS network (keyed by its gateway, the address
//! queries arrive on), the names of its endpoints and every service, and the
//! reverse (PTR) entries for them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::net::endpoint::Endpoint;
use crate::net::network::{Driver, Network};
use crate::net::service_store::Service;

/// One network's view: only what is on it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetTable {
    pub subnet: Option<Ipv4Net>,
    /// Lowercase names without the trailing dot.
    names: HashMap<String, Vec<Ipv4Addr>>,
    ptr: HashMap<Ipv4Addr, String>,
}

impl NetTable {
    pub(super) fn add(&mut self, name: &str, ip: Ipv4Addr) {
        let name = name.to_ascii_lowercase();
        let ips = self.names.entry(name.clone()).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
        self.ptr.entry(ip).or_insert(name);
    }

    /// The addresses of `name` (lowercase, no trailing dot).
    pub fn lookup(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.names.get(name).map(Vec::as_slice)
    }

    /// The name of `ip`.
    pub fn reverse(&self, ip: Ipv4Addr) -> Option<&str> {
        self.ptr.get(&ip).map(String::as_str)
    }
}

/// Every DNS network's table, and where other names go.
#[derive(Debug, Default)]
pub struct Table {
    pub nets: HashMap<Ipv4Addr, Arc<NetTable>>,
    pub upstreams: Vec<SocketAddr>,
}

/// Whether `net` is served: a bridge network with DNS on (its gateway is its own; routed networks
/// share 169.254.1.1, so an arrival address could not tell them apart).
pub fn serves(net: &Network) -> Option<Ipv4Addr> {
    net.gateway.filter(|_| net.dns && net.driver == Driver::Bridge)
}

/// The table for these records. Services answer on every DNS network: a VIP is the node's.
pub fn build(networks: &[Network], endpoints: &[Endpoint], services: &[Service]) -> HashMap<Ipv4Addr, Arc<NetTable>> {
    let mut out = HashMap::new();
    for net in networks {
        let Some(gw) = serves(net) else { continue };
        let mut t = NetTable { subnet: Some(net.subnet), ..Default::default() };
        for (name, ip) in names_on(&net.name, endpoints) {
            t.add(name, ip);
        }
        for s in services {
            t.add(&s.name, s.vip.ip);
        }
        out.insert(gw, Arc::new(t));
    }
    out
}

/// The names of the endpoints on network `name`, with their addresses, as the endpoints list them.
pub fn names_on<'a>(name: &'a str, endpoints: &'a [Endpoint]) -> impl Iterator<Item = (&'a str, Ipv4Addr)> + 'a {
    endpoints
        .iter()
        .filter(move |e| e.network == name)
        .filter_map(|e| Some((e, e.ip?)))
        .flat_map(|(e, ip)| e.names.iter().map(move |n| (n.as_str(), ip)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::network::{resolve, Request};

    fn net(name: &str, subnet: &str, dns: bool) -> Network {
        let mut r = Request::new(name);
        r.subnet = Some(subnet.parse().unwrap());
        r.dns = Some(dns);
        resolve(&r, &[], 1500).unwrap()
    }

    fn ep(network: &str, ip: &str, names: &[&str]) -> Endpoint {
        let mut e: Endpoint = serde_json::from_value(serde_json::json!({
            "network": network, "key": "k", "netns": "/x", "netns_id": "1:2", "owner": null,
            "ifname": "eth0", "host_ifname": "rv0", "ip": ip, "prefix": 24, "mac": "02:00:00:00:00:01",
            "gateway": null
        }))
        .unwrap();
        e.names = names.iter().map(|s| s.to_string()).collect();
        e
    }

    #[test]
    fn a_name_answers_only_on_its_networks() {
        let nets = [net("a", "10.1.0.0/24", true), net("b", "10.2.0.0/24", true), net("c", "10.3.0.0/24", false)];
        let eps = [ep("a", "10.1.0.2", &["Web", "www"]), ep("b", "10.2.0.2", &["db"]), ep("c", "10.3.0.2", &["x"])];
        let t = build(&nets, &eps, &[]);
        assert_eq!(t.len(), 2, "c has DNS off");
        let a = &t[&"10.1.0.1".parse().unwrap()];
        assert_eq!(a.lookup("web"), Some(&["10.1.0.2".parse().unwrap()][..]));
        assert_eq!(a.lookup("www"), a.lookup("web"));
        assert_eq!(a.lookup("db"), None);
        assert_eq!(a.reverse("10.1.0.2".parse().unwrap()), Some("web"));
        let b = &t[&"10.2.0.1".parse().unwrap()];
        assert!(b.lookup("web").is_none() && b.lookup("db").is_some());
    }
}
