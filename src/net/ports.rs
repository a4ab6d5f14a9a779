//! Published ports: what `-p`, `-P` and the `rcon.ports` annotation ask for,
//! and the mappings they resolve to.
//!
//! `-p [HOSTIP:][HOSTPORT[-END]:]CTRPORT[-END][/tcp|/udp|/sctp]`, as docker
//! takes it. A missing host port (or `HOSTIP::CTRPORT`) means "any free
//! one", which rcon picks from the node's ephemeral range and reports.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Proto> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => bail!("unknown protocol {s:?}: use tcp, udp or sctp"),
        }
    }
}

/// One `-p` as written: ports still as ranges, the host side maybe open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Option<Ipv4Addr>,
    /// First and last host port; None: pick free ones.
    pub host: Option<(u16, u16)>,
    pub ctr: (u16, u16),
    pub proto: Proto,
}

/// One published port, resolved: what the rules and `rcon port` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mapping {
    pub proto: Proto,
    /// Only packets to this node address are forwarded (None: any of the node's addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub ctr_port: u16,
}

impl fmt::Display for Mapping {
    /// `80/tcp -> 0.0.0.0:8080`, as `docker port` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(f, "{}/{} -> {ip}:{}", self.ctr_port, self.proto, self.host_port)
    }
}

fn port(s: &str, what: &str, spec: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("-p {spec}: {what} {s:?} is not a port (1-65535)"),
    }
}

fn range(s: &str, what: &str, spec: &str) -> Result<(u16, u16)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (port(a, what, spec)?, port(b, what, spec)?),
        None => {
            let p = port(s, what, spec)?;
            (p, p)
        }
    };
    if b < a {
        bail!("-p {spec}: {what} range {s} runs backwards");
    }
    Ok((a, b))
}

impl FromStr for PortSpec {
    type Err = anyhow::Error;

    fn from_str(spec: &str) -> Result<PortSpec> {
        let (ports, proto) = match spec.rsplit_once('/') {
            Some((p, proto)) => (p, proto.parse().with_context(|| format!("-p {spec}"))?),
            None => (spec, Proto::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, host, ctr) = match parts[..] {
            [c] => (None, None, c),
            [h, c] => (None, Some(h), c),
            [ip, h, c] => (Some(ip), Some(h).filter(|h| !h.is_empty()), c),
            _ => bail!("-p {spec}: use [HOSTIP:][HOSTPORT:]CTRPORT[/PROTO]"),
        };
        let host_ip = match ip {
            Some(ip) => Some(
                ip.parse::<Ipv4Addr>()
                    .ok()
                    .with_context(|| format!("-p {spec}: {ip:?} is not an IPv4 address of this node"))?,
            ),
            None => None,
        };
        let ctr = range(ctr, "container port", spec)?;
        let host = host.map(|h| range(h, "host port", spec)).transpose()?;
        if let Some((a, b)) = host {
            if b - a != ctr.1 - ctr.0 {
                bail!("-p {spec}: the host range and the container range differ in length");
            }
        }
        Ok(PortSpec { host_ip: host_ip.filter(|ip| !ip.is_unspecified()), host, ctr, proto })
    }
}

impl PortSpec {
    /// The container ports with their asked-for host ports (None: pick one).
    pub fn pairs(&self) -> impl Iterator<Item = (Option<u16>, u16)> + '_ {
        (self.ctr.0..=self.ctr.1).map(move |c| (self.host.map(|(h, _)| h + (c - self.ctr.0)), c))
    }
}

/// An image's `ExposedPorts` key (`80/tcp`, `53/udp`, `8000-8009/tcp`) as a
/// spec with free host ports (`-P`).
pub fn exposed(key: &str) -> Result<PortSpec> {
    let spec: PortSpec = key.parse().with_context(|| format!("exposed port {key:?} of the image"))?;
    if spec.host.is_some() || spec.host_ip.is_some() {
        bail!("exposed port {key:?} of the image names a host side");
    }
    Ok(spec)
}

/// The `rcon.ports` annotation: specs separated by commas.
pub fn parse_list(s: &str) -> Result<Vec<PortSpec>> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    #[test]
    fn docker_forms_parse() {
        assert_eq!(p("80"), PortSpec { host_ip: None, host: None, ctr: (80, 80), proto: Proto::Tcp });
        assert_eq!(p("8080:80").host, Some((8080, 8080)));
        assert_eq!(p("53:53/udp").proto, Proto::Udp);
        let s = p("127.0.0.1:8080:80/sctp");
        assert_eq!((s.host_ip, s.host, s.proto), (Some(Ipv4Addr::LOCALHOST), Some((8080, 8080)), Proto::Sctp));
        let s = p("10.0.0.1::80");
        assert_eq!((s.host_ip, s.host), (Some(Ipv4Addr::new(10, 0, 0, 1)), None));
        assert_eq!(p("0.0.0.0:81:80").host_ip, None);
        let r = p("8000-8009:80-89");
        assert_eq!(r.pairs().count(), 10);
        assert_eq!(r.pairs().nth(3), Some((Some(8003), 83)));
        assert_eq!(p("80-81").pairs().collect::<Vec<_>>(), [(None, 80), (None, 81)]);
        assert_eq!(exposed("53/udp").unwrap().proto, Proto::Udp);
        assert_eq!(parse_list("80, 8080:81/udp").unwrap().len(), 2);
    }

    #[test]
    fn bad_specs_say_why() {
        let err = |s: &str| s.parse::<PortSpec>().unwrap_err().to_string();
        let e = |s: &str| format!("{:#}", s.parse::<PortSpec>().unwrap_err());
        assert!(err("0").contains("not a port"));
        assert!(err("70000").contains("not a port"));
        assert!(err("8000-8009:80-85").contains("differ in length"));
        assert!(err("90-80").contains("backwards"));
        assert!(e("80/icmp").contains("unknown protocol"));
        assert!(err("host:80:80").contains("not an IPv4 address"));
        assert!(err("1:2:3:4").contains("use [HOSTIP:]"));
        assert!(exposed("80").is_ok() && exposed("1.2.3.4:80:80").is_err());
        let m = Mapping { proto: Proto::Udp, host_ip: None, host_port: 5353, ctr_port: 53 };
        assert_eq!(m.to_string(), "53/udp -> 0.0.0.0:5353");
    }
}
