//! Network definitions: what `network create` records under the data root
//! (`<data-root>/networks/<name>.json`), validated once so that every later
//! attach can trust them.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::firewall::Backend;
use super::link::IFNAMSIZ_MAX;

/// The network `rcon run` uses when none is named, and its bridge.
pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_BRIDGE: &str = "rcon0";
/// The routed driver's gateway: never on the wire, answered by proxy_arp.
pub const ROUTED_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// docker0-style: a Linux bridge with the gateway address, a veth per container.
    #[default]
    Bridge,
    /// A veth per container, /32 routes and proxy_arp on the host end, no bridge.
    Routed,
    /// Two namespaces joined directly by one veth pair.
    Veth,
}

impl std::str::FromStr for Driver {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bridge" => Ok(Driver::Bridge),
            "routed" => Ok(Driver::Routed),
            "veth" => Ok(Driver::Veth),
            _ => bail!("unknown network driver {s:?}: use bridge, routed or veth"),
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::Bridge => "bridge",
            Driver::Routed => "routed",
            Driver::Veth => "veth",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub driver: Driver,
    pub subnet: Ipv4Net,
    /// The containers' next hop: the bridge address, 169.254.1.1 for routed, none for veth.
    pub gateway: Option<Ipv4Addr>,
    /// The bridge device (bridge driver only).
    pub bridge: Option<String>,
    pub mtu: u32,
    pub internal: bool,
    pub icc: bool,
    pub masquerade: bool,
    pub firewall: Backend,
    pub created: String,
    /// Addresses handed out, when not the whole subnet (a cluster's node
    /// range inside the subnet all nodes share, for vxlan-l2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// A cluster's pod range: reached from this network without masquerade
    /// (pods see each other's own addresses across nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Ipv4Net>,
    /// Containers may send from any MAC and address (`--allow-spoofing`: routers in containers). A
    /// record from before the flag reads as protected.
    #[serde(default)]
    pub allow_spoofing: bool,
    /// rcon's resolver answers on the gateway (docs/DNS.md; bridge networks only). A record from
    /// before DNS reads as off.
    #[serde(default)]
    pub dns: bool,
}

impl Network {
    /// Where IPAM takes addresses from.
    pub fn pool(&self) -> Ipv4Net {
        self.ip_range.unwrap_or(self.subnet)
    }

    /// The prefix length containers get on their interface.
    pub fn container_prefix(&self) -> u8 {
        match self.driver {
            Driver::Routed => 32,
            _ => self.subnet.prefix_len(),
        }
    }

    /// The gateway address IPAM must never hand out (only the bridge's is in the subnet).
    pub fn reserved_gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.filter(|g| self.subnet.contains(g))
    }

    pub fn rules(&self) -> super::firewall::NetRules {
        super::firewall::NetRules {
            name: self.name.clone(),
            subnet: self.subnet,
            internal: self.internal,
            masquerade: self.masquerade,
            unnat: self.cluster.unwrap_or(self.subnet),
            bridge: self.driver == Driver::Bridge,
        }
    }
}

/// What `network create` asks for; unset fields get defaults in `resolve`.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub name: String,
    pub driver: Driver,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
    pub internal: bool,
    pub icc: bool,
    pub masquerade: bool,
    pub firewall: Backend,
    pub ip_range: Option<Ipv4Net>,
    pub cluster: Option<Ipv4Net>,
    pub allow_spoofing: bool,
    /// `--dns` / `--disable-dns`; unset: on for user bridge networks, off for the default `bridge`.
    pub dns: Option<bool>,
}

impl Request {
    pub fn new(name: &str) -> Request {
        Request { name: name.into(), icc: true, masquerade: true, ..Default::default() }
    }
}

/// Check an interface name the way the kernel will.
pub fn check_ifname(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX {
        bail!("{what} {name:?} is not a valid interface name: 1 to {IFNAMSIZ_MAX} bytes");
    }
    if name.contains(['/', ':']) || name.chars().any(|c| c.is_whitespace()) || name == "." || name == ".." {
        bail!("{what} {name:?} is not a valid interface name: no '/', ':' or spaces");
    }
    Ok(())
}

/// The ranges no network may use, by name: their addresses mean something
/// else to the kernel (a bridge holding 127.0.0.1, a multicast route) or,
/// for 0.0.0.0/8 and 240.0.0.0/4, cannot be assigned at all.
const RESERVED: [(&str, [u8; 4], u8); 5] = [
    ("\"this network\"", [0, 0, 0, 0], 8),
    ("loopback", [127, 0, 0, 0], 8),
    ("link-local", [169, 254, 0, 0], 16),
    ("multicast", [224, 0, 0, 0], 4),
    ("reserved (broadcast)", [240, 0, 0, 0], 4),
];

/// Refuse a range that is in, or overlaps, one of the [`RESERVED`] ranges;
/// `what` names the flag (`--subnet`, `--cidr`).
pub fn check_unreserved(what: &str, range: Ipv4Net) -> Result<()> {
    for (name, addr, len) in RESERVED {
        let r = Ipv4Net::new(Ipv4Addr::from(addr), len).expect("a valid prefix");
        if r.contains(&range) {
            bail!("{what} {range} is in the {name} range {r}");
        }
        if range.contains(&r) {
            bail!("{what} {range} overlaps the {name} range {r}");
        }
    }
    Ok(())
}

/// Turn a request into a full definition. `taken` holds the subnets that
/// must not be overlapped (other networks, routes in the namespace);
/// `default_mtu` is the MTU of the default-route interface.
pub fn resolve(req: &Request, taken: &[(String, Ipv4Net)], default_mtu: u32) -> Result<Network> {
    crate::store::validate_id("network name", &req.name)?;
    // Firewall comments and record names stay short; docker allows far less in practice.
    crate::store::check_len("network name", &req.name, 64, "it names records and firewall rules")?;
    let subnet = match req.subnet {
        Some(s) => {
            if s != s.trunc() {
                bail!("--subnet {s}: host bits are set (did you mean {}?)", s.trunc());
            }
            check_unreserved("--subnet", s)?;
            if let Some((what, _)) = taken.iter().find(|(_, t)| super::ipam::overlaps(&s, t)) {
                bail!("--subnet {s} overlaps {what}");
            }
            s
        }
        None if req.driver == Driver::Veth => bail!("the veth driver needs --subnet (a /30 or /31)"),
        None => super::ipam::pick_subnet(&taken.iter().map(|(_, t)| *t).collect::<Vec<_>>())?,
    };
    let gateway = match req.driver {
        Driver::Bridge => {
            let gw = match req.gateway {
                Some(g) => g,
                None => first_host(subnet).with_context(|| format!("--subnet {subnet} has no room for a gateway"))?,
            };
            if !subnet.contains(&gw) {
                bail!("--gateway {gw} is outside --subnet {subnet}");
            }
            if subnet.prefix_len() < 31 && (gw == subnet.network() || gw == subnet.broadcast()) {
                bail!("--gateway {gw} is the network or broadcast address of {subnet}");
            }
            if subnet.prefix_len() >= 31 {
                bail!("--subnet {subnet} is too small for a bridge network (a gateway and containers)");
            }
            Some(gw)
        }
        Driver::Routed => {
            if req.gateway.is_some() {
                bail!("--gateway: the routed driver's gateway is always {ROUTED_GATEWAY}");
            }
            Some(ROUTED_GATEWAY)
        }
        Driver::Veth => {
            if req.gateway.is_some() {
                bail!("--gateway: the veth driver has no gateway");
            }
            if subnet.prefix_len() < 30 {
                bail!("--subnet {subnet}: the veth driver joins two ends, use a /30 or /31");
            }
            None
        }
    };
    let bridge = match (req.driver, &req.bridge) {
        (Driver::Bridge, Some(b)) => {
            check_ifname("--bridge", b)?;
            Some(b.clone())
        }
        (Driver::Bridge, None) if req.name == DEFAULT_NETWORK => Some(DEFAULT_BRIDGE.into()),
        (Driver::Bridge, None) => Some(bridge_name(&req.name)),
        (_, Some(_)) => bail!("--bridge applies to the bridge driver only"),
        (_, None) => None,
    };
    if let Some(r) = req.ip_range {
        if r != r.trunc() || !subnet.contains(&r) {
            bail!("--ip-range {r} is not a range inside --subnet {subnet}");
        }
    }
    if req.allow_spoofing && req.driver != Driver::Bridge {
        bail!("--allow-spoofing applies to the bridge driver only (the {} driver has no shared segment)", req.driver);
    }
    let dns = match (req.driver, req.dns) {
        (Driver::Bridge, d) => d.unwrap_or(req.name != DEFAULT_NETWORK),
        (_, Some(true)) => {
            bail!("--dns applies to the bridge driver only (the {} driver has no gateway of its own)", req.driver)
        }
        (_, _) => false,
    };
    let mtu = req.mtu.unwrap_or(default_mtu);
    if !(576..=65535).contains(&mtu) {
        bail!("--mtu {mtu}: use 576 to 65535");
    }
    Ok(Network {
        name: req.name.clone(),
        driver: req.driver,
        subnet,
        gateway,
        bridge,
        mtu,
        internal: req.internal,
        icc: req.icc,
        masquerade: req.masquerade && !req.internal,
        firewall: req.firewall,
        created: crate::sys::time::now_rfc3339(),
        ip_range: req.ip_range,
        cluster: req.cluster,
        allow_spoofing: req.allow_spoofing,
        dns,
    })
}

fn first_host(subnet: Ipv4Net) -> Option<Ipv4Addr> {
    subnet.hosts().next()
}

/// `rcon-NAME` when it fits an interface name, else `rcon-` and a hash of the name.
fn bridge_name(net: &str) -> String {
    let plain = format!("rcon-{net}");
    if plain.len() <= IFNAMSIZ_MAX && check_ifname("bridge", &plain).is_ok() {
        return plain;
    }
    format!("rcon-{}", &super::short_hash(net)[..10])
}

/// The on-disk set of networks: `<data-root>/networks/<name>.json`.
pub type Store = crate::store::Records<Network>;

pub fn store(data_root: &Path) -> Store {
    Store::new(data_root.join("networks"), "network")
}

impl crate::store::Named for Network {
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn bridge_defaults() {
        let n = resolve(&Request::new("bridge"), &[], 1450).unwrap();
        assert_eq!(n.subnet, net("172.17.0.0/16"));
        assert_eq!(n.gateway, Some("172.17.0.1".parse().unwrap()));
        assert_eq!(n.bridge.as_deref(), Some("rcon0"));
        assert_eq!(n.mtu, 1450);
        let n = resolve(&Request::new("a-very-long-network-name"), &[("route".into(), net("172.17.0.0/16"))], 1500)
            .unwrap();
        assert_eq!(n.subnet, net("172.18.0.0/16"));
        assert!(n.bridge.unwrap().len() <= 15);
    }

    #[test]
    fn bad_requests_name_the_cause() {
        let mut r = Request::new("x");
        r.subnet = Some(net("10.1.0.0/24"));
        r.gateway = Some("10.2.0.1".parse().unwrap());
        assert!(resolve(&r, &[], 1500).unwrap_err().to_string().contains("outside"));
        r.gateway = None;
        let e = resolve(&r, &[("network y".into(), net("10.1.0.128/25"))], 1500).unwrap_err().to_string();
        assert!(e.contains("overlaps network y"), "{e}");
        r.bridge = Some("a-bridge-name-too-long".into());
        assert!(resolve(&r, &[], 1500).unwrap_err().to_string().contains("interface name"));
        r.bridge = None;
        r.subnet = Some(net("10.1.0.1/24"));
        assert!(resolve(&r, &[], 1500).unwrap_err().to_string().contains("host bits"));
        let mut v = Request::new("p2p");
        v.driver = Driver::Veth;
        v.subnet = Some(net("10.9.0.0/24"));
        assert!(resolve(&v, &[], 1500).unwrap_err().to_string().contains("/30"));
        v.subnet = Some(net("10.9.0.0/31"));
        assert_eq!(resolve(&v, &[], 1500).unwrap().gateway, None);
        v.allow_spoofing = true;
        let e = resolve(&v, &[], 1500).unwrap_err().to_string();
        assert_eq!(e, "--allow-spoofing applies to the bridge driver only (the veth driver has no shared segment)");
        let mut b = Request::new("routers");
        b.allow_spoofing = true;
        let n = resolve(&b, &[], 1500).unwrap();
        assert!(n.allow_spoofing && n.rules().bridge);
        // A record written before the flag existed reads as protected.
        let mut old = serde_json::to_value(&n).unwrap();
        old.as_object_mut().unwrap().remove("allow_spoofing");
        assert!(!serde_json::from_value::<Network>(old).unwrap().allow_spoofing);
    }

    #[test]
    fn reserved_ranges_are_refused_by_name() {
        let e = |s: &str| check_unreserved("--subnet", net(s)).map_err(|e| e.to_string());
        assert_eq!(e("127.0.0.0/24"), Err("--subnet 127.0.0.0/24 is in the loopback range 127.0.0.0/8".into()));
        assert_eq!(e("224.0.0.0/24"), Err("--subnet 224.0.0.0/24 is in the multicast range 224.0.0.0/4".into()));
        assert!(e("169.254.3.0/24").unwrap_err().contains("link-local range 169.254.0.0/16"));
        assert!(e("0.0.0.0/16").unwrap_err().contains("\"this network\" range 0.0.0.0/8"));
        assert!(e("255.255.255.0/24").unwrap_err().contains("240.0.0.0/4"));
        assert!(e("240.0.0.0/4").unwrap_err().contains("is in the reserved (broadcast) range"));
        // Overlap, not only containment.
        assert_eq!(e("96.0.0.0/3"), Err("--subnet 96.0.0.0/3 overlaps the loopback range 127.0.0.0/8".into()));
        assert!(e("128.0.0.0/1").unwrap_err().contains("overlaps the link-local range"));
        for ok in ["10.0.0.0/8", "126.0.0.0/8", "128.0.0.0/8", "169.253.0.0/16", "223.255.255.0/24", "172.17.0.0/16"] {
            assert_eq!(e(ok), Ok(()), "{ok}");
        }
        let mut r = Request::new("lo");
        r.subnet = Some(net("127.0.0.0/24"));
        assert!(resolve(&r, &[], 1500).unwrap_err().to_string().contains("loopback"));
    }

    #[test]
    fn routed_uses_the_link_local_gateway() {
        let mut r = Request::new("calico");
        r.driver = Driver::Routed;
        r.subnet = Some(net("10.50.0.0/24"));
        let n = resolve(&r, &[], 1500).unwrap();
        assert_eq!(n.gateway, Some(ROUTED_GATEWAY));
        assert_eq!(n.reserved_gateway(), None);
        assert_eq!(n.container_prefix(), 32);
    }
}
