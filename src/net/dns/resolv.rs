//! resolv.conf, both ways: the host's is read for the resolver's upstreams and
//! for containers without rcon's DNS; a container's is written from its
//! network's resolver and the `run` flags, as Docker does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Result};

/// The host's file: `RCON_RESOLV_CONF` (tests), else /etc/resolv.conf.
pub fn host_path() -> PathBuf {
    std::env::var_os("RCON_RESOLV_CONF").map_or_else(|| PathBuf::from("/etc/resolv.conf"), PathBuf::from)
}

/// The host's file as text; none reads as empty.
pub fn host_text() -> String {
    std::fs::read_to_string(host_path()).unwrap_or_default()
}

/// What a resolv.conf says that rcon uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

pub fn parse(text: &str) -> ResolvConf {
    let mut c = ResolvConf::default();
    for line in text.lines() {
        let mut words = line.split(['#', ';']).next().unwrap_or("").split_whitespace();
        match words.next() {
            Some("nameserver") => c.nameservers.extend(words.next().and_then(|w| w.parse::<IpAddr>().ok())),
            // The last search (or domain) line wins, as in glibc.
            Some("search") | Some("domain") => c.search = words.map(String::from).collect(),
            Some("options") => c.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    c
}

/// The resolver's upstreams: the host's nameservers, port 53.
pub fn upstreams(host: &ResolvConf) -> Vec<SocketAddr> {
    host.nameservers.iter().map(|ip| SocketAddr::new(*ip, 53)).collect()
}

/// `--dns`, `--dns-search`, `--dns-option`: each replaces what the file would have had.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Flags {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// Where a container's names are looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--network host` or `none`: the host's file as it is.
    Host,
    /// A network without rcon's DNS: the host's file without loopback nameservers (they would be
    /// the container's own loopback); Docker's public fallback when none is left.
    NoDns,
    /// A network with rcon's DNS: its resolver (the gateway), and `ndots:0` so that a bare name
    /// is asked as it is first.
    Resolver(Ipv4Addr),
}

/// Docker's fallback when the host names only loopback resolvers.
const FALLBACK: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// The container's /etc/resolv.conf.
pub fn container(host_text: &str, mode: Mode, flags: &Flags) -> String {
    if mode == Mode::Host && flags.is_empty() {
        return host_text.to_string();
    }
    let host = parse(host_text);
    let mut servers = match mode {
        Mode::Host => host.nameservers.clone(),
        Mode::NoDns => host.nameservers.iter().copied().filter(|ip| !ip.is_loopback()).collect(),
        Mode::Resolver(gw) => vec![IpAddr::V4(gw)],
    };
    if !flags.servers.is_empty() {
        servers = flags.servers.clone();
    } else if servers.is_empty() && mode == Mode::NoDns {
        servers = FALLBACK.iter().map(|ip| IpAddr::V4(*ip)).collect();
    }
    let search = if flags.search.is_empty() { host.search } else { flags.search.clone() };
    let mut options = if flags.options.is_empty() { host.options } else { flags.options.clone() };
    let ndots = |o: &String| o.starts_with("ndots:");
    // The host's ndots gives way; the user's own stays.
    if matches!(mode, Mode::Resolver(_)) && !(flags.options.iter().any(ndots)) {
        options.retain(|o| !ndots(o));
        options.push("ndots:0".into());
    }
    let mut out = String::new();
    servers.iter().for_each(|s| out.push_str(&format!("nameserver {s}\n")));
    // `--dns-search .` means no search domains, as in Docker.
    let search: Vec<&String> = search.iter().filter(|s| s.as_str() != ".").collect();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// `--add-host NAME:IP` as an /etc/hosts line.
pub fn host_line(spec: &str) -> Result<String> {
    let Some((name, ip)) = spec.split_once(':') else { bail!("--add-host {spec:?}: use NAME:IP") };
    let Ok(ip) = ip.trim_matches(['[', ']']).parse::<IpAddr>() else {
        bail!("--add-host {spec:?}: {ip:?} is not an IP address")
    };
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        bail!("--add-host {spec:?}: {name:?} is not a host name");
    }
    Ok(format!("{ip}\t{name}\n"))
}

/// Whether `name` is a DNS label rcon can answer for: letters, digits and '-', 1 to 63 bytes, not
/// starting or ending with '-'.
pub fn is_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// [`is_label`], or the error that says what a name on `network` must be.
pub fn check_label(what: &str, name: &str, network: &str) -> Result<()> {
    if !is_label(name) {
        bail!(
            "{what} {name:?} is not a DNS name, which network {network} (DNS on) needs: \
             letters, digits and '-', at most 63 (or a network with --disable-dns)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # office\nsearch corp.example\noptions edns0 ndots:2\n";

    #[test]
    fn parses_the_host_file() {
        let c = parse(HOST);
        assert_eq!(c.nameservers, ["127.0.0.53".parse::<IpAddr>().unwrap(), "10.0.0.2".parse().unwrap()]);
        assert_eq!((c.search, c.options), (vec!["corp.example".to_string()], vec!["edns0".into(), "ndots:2".into()]));
    }

    #[test]
    fn writes_each_mode() {
        let f = Flags::default();
        assert_eq!(container(HOST, Mode::Host, &f), HOST);
        assert_eq!(
            container(HOST, Mode::NoDns, &f),
            "nameserver 10.0.0.2\nsearch corp.example\noptions edns0 ndots:2\n"
        );
        assert_eq!(container("nameserver 127.0.0.53\n", Mode::NoDns, &f), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        let gw = Mode::Resolver("10.1.0.1".parse().unwrap());
        assert_eq!(
            container("nameserver 1.1.1.1\nsearch a.b\n", gw, &f),
            "nameserver 10.1.0.1\nsearch a.b\noptions ndots:0\n"
        );
        let f = Flags {
            servers: vec!["9.9.9.9".parse().unwrap()],
            search: vec!["x.y".into()],
            options: vec!["timeout:1".into()],
        };
        assert_eq!(container(HOST, gw, &f), "nameserver 9.9.9.9\nsearch x.y\noptions timeout:1 ndots:0\n");
        let none = Flags { search: vec![".".into()], ..Default::default() };
        assert_eq!(
            container(HOST, Mode::Host, &none),
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0 ndots:2\n"
        );
    }

    #[test]
    fn checks_names_and_hosts() {
        assert!(check_label("--name", "web-1", "n").is_ok());
        for bad in ["a_b.c", "-a", "", &"x".repeat(64)] {
            let e = check_label("--name", bad, "n").unwrap_err().to_string();
            assert!(e.contains("not a DNS name"), "{e}");
        }
        assert_eq!(host_line("db:10.0.0.9").unwrap(), "10.0.0.9\tdb\n");
        assert!(host_line("db").is_err() && host_line("db:x").is_err());
    }
}
