//! What a network configuration asks of rcon: which rcon network, how to
//! make it when it is not there yet, where rcon's state lives, who hands out
//! addresses, and the published ports of the `portMappings` capability.
//! Pure: everything here is read from the configuration and the environment.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use rscni_plugin::error::Error;
use rscni_plugin::types::{NetConf, Protocol};
use serde_json::Value;

use crate::context::FirewallBackend;
use crate::net::network::{Driver, Request};
use crate::net::overlay::DEFAULT_NETWORK as CLUSTER_NETWORK;
use crate::net::ports::{PortSpec, Proto};

/// The owner rcon records for a CNI attachment: `cni:` and the container id.
pub const OWNER_PREFIX: &str = "cni:";

pub fn owner(container_id: &str) -> String {
    format!("{OWNER_PREFIX}{container_id}")
}

/// The configuration, read once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The rcon network (the `network` key; else the configuration's name).
    pub network: String,
    /// How to make the network on first ADD; None: it must exist (the cluster network).
    pub create: Option<Request>,
    /// The keys that were set, checked against an existing network.
    pub driver: Option<Driver>,
    pub subnet: Option<Ipv4Net>,
    pub data_root: PathBuf,
    pub root: PathBuf,
    pub firewall: Option<FirewallBackend>,
    /// The delegated IPAM plugin (`ipam.type`), None for rcon's own.
    pub ipam: Option<String>,
    pub ports: Vec<PortSpec>,
}

fn invalid(msg: String) -> Error {
    Error::InvalidNetworkConfig(msg)
}

/// The keys rcon reads from the configuration; a plugin ignores the rest.
fn str_key<'a>(conf: &'a NetConf, key: &str) -> Result<Option<&'a str>, Error> {
    match conf.custom.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(invalid(format!("field {key}: {v} is not a string"))),
    }
}

fn bool_key(conf: &NetConf, key: &str) -> Result<Option<bool>, Error> {
    match conf.custom.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(invalid(format!("field {key}: {v} is not true or false"))),
    }
}

fn parsed<T: std::str::FromStr>(conf: &NetConf, key: &str) -> Result<Option<T>, Error>
where
    T::Err: std::fmt::Display,
{
    str_key(conf, key)?.map(|s| s.parse::<T>().map_err(|e| invalid(format!("field {key}: {s:?}: {e}")))).transpose()
}

/// The subnet a delegated IPAM configuration hands addresses from
/// (host-local's `subnet`, or the first of its `ranges`).
fn ipam_subnet(conf: &NetConf) -> Result<Option<Ipv4Net>, Error> {
    let Some(ipam) = &conf.ipam else { return Ok(None) };
    let v = ipam.custom.get("subnet").or_else(|| ipam.custom.get("ranges")?.get(0)?.get(0)?.get("subnet"));
    match v.and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| invalid(format!("ipam subnet {s:?}: {e} (rcon networks are IPv4)"))),
    }
}

/// Read the settings of `conf`; `env` looks up the plugin's environment.
pub fn settings(conf: &NetConf, env: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
    let path = |key: &str, var: &str, default: &str| -> Result<PathBuf, Error> {
        Ok(PathBuf::from(match str_key(conf, key)? {
            Some(p) => p.to_string(),
            None => env(var).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string()),
        }))
    };
    let driver_key = str_key(conf, "driver")?;
    let cluster = driver_key == Some("cluster");
    let driver = match driver_key {
        None | Some("cluster") => None,
        Some(d @ ("bridge" | "routed")) => Some(d.parse::<Driver>().map_err(|e| invalid(e.to_string()))?),
        Some(d) => return Err(invalid(format!("field driver: {d:?}: use bridge, routed or cluster"))),
    };
    let network = match str_key(conf, "network")? {
        Some(n) => n.to_string(),
        None if cluster => CLUSTER_NETWORK.to_string(),
        None => conf.name.clone(),
    };
    if network.is_empty() {
        return Err(invalid("no network: set name or network".into()));
    }
    let ipam = match &conf.ipam {
        Some(i) if i.r#type.is_empty() || i.r#type == "rcon" => None,
        Some(i) => Some(i.r#type.clone()),
        None => None,
    };
    let subnet = match parsed::<Ipv4Net>(conf, "subnet")? {
        Some(s) => Some(s),
        None if ipam.is_some() => ipam_subnet(conf)?,
        None => None,
    };
    let firewall = parsed::<FirewallBackend>(conf, "firewallBackend")?;
    let create = (!cluster).then(|| -> Result<Request, Error> {
        let mut req = Request::new(&network);
        req.driver = driver.unwrap_or_default();
        req.subnet = subnet;
        req.gateway = parsed::<Ipv4Addr>(conf, "gateway")?;
        req.bridge = str_key(conf, "bridge")?.map(str::to_string);
        // The runtime brings its own DNS (podman's aardvark, a dnsname plugin): no rcon resolver.
        req.dns = Some(false);
        req.mtu = match conf.custom.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .ok_or_else(|| invalid(format!("field mtu: {v} is not a number")))?,
            ),
        };
        req.internal = bool_key(conf, "internal")?.unwrap_or(false);
        req.icc = bool_key(conf, "icc")?.unwrap_or(true);
        req.masquerade = conf.ip_masq.unwrap_or(true);
        req.firewall = firewall.unwrap_or_default();
        Ok(req)
    });
    Ok(Settings {
        create: create.transpose()?,
        network,
        driver,
        subnet,
        data_root: path("dataRoot", "RCON_DATA_ROOT", "/var/lib/rcon")?,
        root: path("runRoot", "RCON_ROOT", "/run/rcon")?,
        firewall,
        ipam,
        ports: ports(conf)?,
    })
}

/// The `portMappings` capability as rcon's port specs (one port each).
fn ports(conf: &NetConf) -> Result<Vec<PortSpec>, Error> {
    let Some(rc) = &conf.runtime_config else { return Ok(Vec::new()) };
    let port = |i: usize, what: &str, p: u32| -> Result<u16, Error> {
        u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid(format!("runtimeConfig.portMappings[{i}].{what}: {p} is not a port (1-65535)")))
    };
    let mut out = Vec::new();
    for (i, m) in rc.port_mappings.iter().enumerate() {
        let host_ip = match m.custom.get("hostIP").and_then(Value::as_str) {
            None | Some("") | Some("0.0.0.0") => None,
            Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                invalid(format!("runtimeConfig.portMappings[{i}].hostIP: {s:?} is not an IPv4 address"))
            })?),
        };
        let (h, c) = (port(i, "hostPort", m.host_port)?, port(i, "containerPort", m.container_port)?);
        let proto = match m.protocol {
            None | Some(Protocol::Tcp) => Proto::Tcp,
            Some(Protocol::Udp) => Proto::Udp,
            Some(Protocol::Sctp) => Proto::Sctp,
        };
        out.push(PortSpec { host_ip, host: Some((h, h)), ctr: (c, c), proto });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: serde_json::Value) -> NetConf {
        serde_json::from_value(v).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_make_a_bridge_network_named_like_the_config() {
        let s = settings(&conf(serde_json::json!({"cniVersion":"1.0.0","name":"net1","type":"rcon"})), no_env).unwrap();
        assert_eq!(s.network, "net1");
        let req = s.create.unwrap();
        assert_eq!((req.driver, req.masquerade, req.icc, req.subnet), (Driver::Bridge, true, true, None));
        assert_eq!(s.data_root, PathBuf::from("/var/lib/rcon"));
        assert_eq!(s.ipam, None);
    }

    #[test]
    fn keys_and_environment() {
        let c = conf(serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"rcon","network":"blue",
            "driver":"routed","subnet":"10.9.0.0/24","ipMasq":false,"icc":false,"mtu":1400,"runRoot":"/r"}));
        let s = settings(&c, |v| (v == "RCON_DATA_ROOT").then(|| "/d".to_string())).unwrap();
        let req = s.create.unwrap();
        assert_eq!(s.network, "blue");
        assert_eq!((req.driver, req.masquerade, req.icc, req.mtu), (Driver::Routed, false, false, Some(1400)));
        assert_eq!(req.subnet, Some("10.9.0.0/24".parse().unwrap()));
        assert_eq!((s.data_root, s.root), (PathBuf::from("/d"), PathBuf::from("/r")));
    }

    #[test]
    fn the_cluster_network_is_never_made_here() {
        let s = settings(
            &conf(serde_json::json!({"cniVersion":"1.0.0","name":"k8s","type":"rcon","driver":"cluster"})),
            no_env,
        )
        .unwrap();
        assert_eq!(s.network, "cluster");
        assert!(s.create.is_none());
    }

    #[test]
    fn delegated_ipam_gives_the_subnet() {
        let c = conf(serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"rcon",
            "ipam":{"type":"host-local","ranges":[[{"subnet":"10.7.0.0/24"}]]}}));
        let s = settings(&c, no_env).unwrap();
        assert_eq!(s.ipam.as_deref(), Some("host-local"));
        assert_eq!(s.subnet, Some("10.7.0.0/24".parse().unwrap()));
    }

    #[test]
    fn port_mappings_become_port_specs() {
        let c =
            conf(serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"rcon","runtimeConfig":{"portMappings":[
            {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
            {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]}}));
        let p = settings(&c, no_env).unwrap().ports;
        assert_eq!(p[0], PortSpec { host_ip: None, host: Some((8080, 8080)), ctr: (80, 80), proto: Proto::Tcp });
        assert_eq!(p[1].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p[1].proto, Proto::Udp);
    }

    #[test]
    fn bad_keys_name_the_field() {
        for (v, want) in [
            (serde_json::json!({"driver":"macvlan"}), "field driver"),
            (serde_json::json!({"subnet":"10.0.0.0/33"}), "field subnet"),
            (serde_json::json!({"icc":"yes"}), "field icc"),
            (serde_json::json!({"mtu":"big"}), "field mtu"),
            (
                serde_json::json!({"runtimeConfig":{"portMappings":[{"hostPort":70000,"containerPort":80}]}}),
                "hostPort: 70000",
            ),
            (
                serde_json::json!({"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"::1"}]}}),
                "hostIP",
            ),
        ] {
            let mut base = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"rcon"});
            base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
            let e = settings(&conf(base), no_env).unwrap_err();
            assert!(matches!(e, Error::InvalidNetworkConfig(_)), "{e:?}");
            assert!(e.details().contains(want), "{want}: {}", e.details());
        }
    }
}
