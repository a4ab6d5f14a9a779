//! The plain data of a service: its address, its load spreading, and the
//! targets `--backend` names. No records, no I/O: the firewall renders from
//! these, and the service logic, its records and the CLI parse into them, so
//! both sides import this module and neither imports the other.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::ports::Proto;

/// How new connections are spread over a service's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lb {
    #[default]
    Random,
    Roundrobin,
}

impl FromStr for Lb {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Lb> {
        match s {
            "random" => Ok(Lb::Random),
            "roundrobin" => Ok(Lb::Roundrobin),
            _ => bail!("--lb {s:?}: use random or roundrobin"),
        }
    }
}

impl fmt::Display for Lb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lb::Random => "random",
            Lb::Roundrobin => "roundrobin",
        })
    }
}

/// `IP:PORT[/proto]`, the service's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
}

impl FromStr for Vip {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Vip> {
        let (addr, proto) = match s.rsplit_once('/') {
            Some((a, p)) => (a, p.parse().with_context(|| format!("--vip {s}"))?),
            None => (s, Proto::Tcp),
        };
        let bad = || anyhow::anyhow!("--vip {s:?}: use IP:PORT[/tcp|udp|sctp]");
        let (ip, port) = addr.split_once(':').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
            bail!("--vip {s}: {ip} cannot be a service address");
        }
        Ok(Vip { ip, port, proto })
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.ip, self.port, self.proto)
    }
}

/// What a backend names: a container (its name or id, which the engine
/// resolves) or an address (a pod on another node, or any address this
/// node routes into one of its networks). Told apart once, here: a name
/// that reads as an IPv4 address is an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Container(String),
    Address(Ipv4Addr),
}

impl From<&str> for Target {
    fn from(s: &str) -> Target {
        match s.parse() {
            Ok(ip) => Target::Address(ip),
            Err(_) => Target::Container(s.to_string()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Container(c) => f.write_str(c),
            Target::Address(ip) => write!(f, "{ip}"),
        }
    }
}

/// `CONTAINER:PORT` (or `IP:PORT`), as `--backend` and `add-backend` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub target: Target,
    pub port: u16,
}

impl FromStr for BackendSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<BackendSpec> {
        let bad = || anyhow::anyhow!("--backend {s:?}: use CONTAINER:PORT");
        let (c, p) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        if c.is_empty() {
            return Err(bad());
        }
        Ok(BackendSpec { target: Target::from(c), port })
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.target, self.port)
    }
}

/// What `rm-backend` takes: `CONTAINER` (all its ports) or `CONTAINER:PORT`
/// (one of them). Whatever is no `CONTAINER:PORT` is a target whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRef {
    pub target: Target,
    pub port: Option<u16>,
}

impl From<&str> for BackendRef {
    fn from(s: &str) -> BackendRef {
        match s.parse::<BackendSpec>() {
            Ok(b) => BackendRef { target: b.target, port: Some(b.port) },
            Err(_) => BackendRef { target: Target::from(s), port: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_and_lb_parse() {
        let v: Vip = "10.96.0.100:80".parse().unwrap();
        assert_eq!((v.ip, v.port, v.proto), (Ipv4Addr::new(10, 96, 0, 100), 80, Proto::Tcp));
        assert_eq!("10.96.0.10:53/udp".parse::<Vip>().unwrap().to_string(), "10.96.0.10:53/udp");
        for bad in ["10.96.0.1", "10.96.0.1:0", "x:80", "0.0.0.0:80", "127.0.0.1:80", "10.0.0.1:80/icmp"] {
            assert!(bad.parse::<Vip>().is_err(), "{bad} accepted");
        }
        assert_eq!("roundrobin".parse::<Lb>().unwrap(), Lb::Roundrobin);
        assert!("rr".parse::<Lb>().is_err());
    }

    #[test]
    fn backend_specs_tell_containers_from_addresses() {
        let b: BackendSpec = "web:8080".parse().unwrap();
        assert_eq!(b, BackendSpec { target: Target::Container("web".into()), port: 8080 });
        let b: BackendSpec = "10.244.2.5:80".parse().unwrap();
        assert_eq!(b.target, Target::Address(Ipv4Addr::new(10, 244, 2, 5)));
        assert_eq!(b.to_string(), "10.244.2.5:80");
        // The last colon splits: a name may hold one.
        assert_eq!("a:b:9".parse::<BackendSpec>().unwrap().target, Target::Container("a:b".into()));
        for bad in ["web", ":80", "w:0", "w:x", "w:65536"] {
            let e = bad.parse::<BackendSpec>().unwrap_err().to_string();
            assert_eq!(e, format!("--backend {bad:?}: use CONTAINER:PORT"));
        }
    }

    #[test]
    fn backend_refs_take_a_port_or_not() {
        assert_eq!(BackendRef::from("web"), BackendRef { target: Target::Container("web".into()), port: None });
        assert_eq!(BackendRef::from("web:80").port, Some(80));
        let r = BackendRef::from("10.0.0.5");
        assert_eq!((r.target, r.port), (Target::Address(Ipv4Addr::new(10, 0, 0, 5)), None));
        // No valid port: the whole text is the target, as a container name that resolves or not.
        assert_eq!(BackendRef::from("web:0").target, Target::Container("web:0".into()));
    }
}
