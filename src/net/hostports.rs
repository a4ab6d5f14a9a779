//! Host port claims: which endpoint publishes which host port, so that two
//! containers never publish the same one, and a port some process on the
//! node listens on is refused.
//!
//! `<data-root>/ports/<proto>-<port>/` holds one symlink per claim, named
//! `any` (every node address) or the host address, pointing at the endpoint
//! key. A claim is made by creating its link, so one name can never be taken
//! twice; `any` and a specific address of one port exclude each other, which
//! the flock on `ports/` (held by [`Claims`]) makes safe to check. As with
//! leases, attach holds the lock until the endpoint record lists its ports,
//! so gc never mistakes a fresh claim for an orphan.

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::BuildHasher as _;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::ports::{Mapping, PortSpec, Proto};
use crate::store;

const ANY: &str = "any";

/// The claims, locked for as long as this lives.
pub struct Claims {
    dir: PathBuf,
    _lock: store::Lock,
}

/// One claim as found on disk (gc).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub proto: Proto,
    pub port: u16,
    pub host_ip: Option<Ipv4Addr>,
    pub owner: String,
}

impl Claims {
    pub fn open(data_root: &Path) -> Result<Claims> {
        let dir = data_root.join("ports");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let f = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        Ok(Claims { _lock: store::lock_file(f).context("locking the host port claims")?, dir })
    }

    fn port_dir(&self, proto: Proto, port: u16) -> PathBuf {
        self.dir.join(format!("{proto}-{port}"))
    }

    /// Resolve `specs` to mappings for endpoint `owner` and claim every host
    /// port. All or nothing: on a conflict, what this call claimed is released.
    pub fn claim(&self, owner: &str, specs: &[PortSpec]) -> Result<Vec<Mapping>> {
        let mut got: Vec<Mapping> = Vec::new();
        let res = (|| {
            for spec in specs {
                for (host, ctr) in spec.pairs() {
                    let host_port = match host {
                        Some(p) => {
                            self.take(owner, spec.proto, spec.host_ip, p)?;
                            p
                        }
                        None => self.take_free(owner, spec.proto, spec.host_ip)?,
                    };
                    got.push(Mapping { proto: spec.proto, host_ip: spec.host_ip, host_port, ctr_port: ctr });
                }
            }
            Ok(())
        })();
        match res {
            Ok(()) => Ok(got),
            Err(e) => {
                let _ = self.release(owner, &got);
                Err(e)
            }
        }
    }

    /// Claim one host port, or say who has it.
    fn take(&self, owner: &str, proto: Proto, ip: Option<Ipv4Addr>, port: u16) -> Result<()> {
        let shown = format!("{}:{port}/{proto}", ip.unwrap_or(Ipv4Addr::UNSPECIFIED));
        if let Some(c) =
            self.holders(proto, port)?.into_iter().find(|c| ip.is_none() || c.host_ip.is_none() || c.host_ip == ip)
        {
            bail!("host port {shown} is already published by endpoint {}", c.owner);
        }
        if let Some(why) = in_use(proto, ip, port) {
            bail!("host port {shown} is {why}");
        }
        let dir = self.port_dir(proto, port);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = ip.map(|i| i.to_string()).unwrap_or_else(|| ANY.into());
        symlink(owner, dir.join(&name)).with_context(|| format!("claiming host port {shown}"))
    }

    /// Claim a free host port from the node's ephemeral range, starting at a
    /// random place in it (as the kernel does for bind to port 0).
    fn take_free(&self, owner: &str, proto: Proto, ip: Option<Ipv4Addr>) -> Result<u16> {
        let (lo, hi) = ephemeral_range();
        let n = u32::from(hi - lo) + 1;
        let start = (RandomState::new().hash_one(owner) % u64::from(n)) as u32;
        for i in 0..n {
            let port = lo + ((start + i) % n) as u16;
            if self.take(owner, proto, ip, port).is_ok() {
                return Ok(port);
            }
        }
        bail!("no free host port for {proto} in {lo}-{hi}")
    }

    /// Release `mappings` held by `owner` (links naming another owner stay).
    pub fn release(&self, owner: &str, mappings: &[Mapping]) -> Result<()> {
        mappings.iter().try_for_each(|m| self.release_one(owner, m.proto, m.host_ip, m.host_port))
    }

    /// Release one claim as found on disk (gc).
    pub fn release_claim(&self, c: &Claim) -> Result<()> {
        self.release_one(&c.owner, c.proto, c.host_ip, c.port)
    }

    fn release_one(&self, owner: &str, proto: Proto, ip: Option<Ipv4Addr>, port: u16) -> Result<()> {
        let dir = self.port_dir(proto, port);
        let link = dir.join(ip.map(|i| i.to_string()).unwrap_or_else(|| ANY.into()));
        if fs::read_link(&link).is_ok_and(|t| t.as_os_str() == owner) {
            fs::remove_file(&link).with_context(|| format!("releasing {}", link.display()))?;
        }
        let _ = fs::remove_dir(&dir); // the last claim of a port takes its directory
        Ok(())
    }

    /// Remove port directories that hold no claim: a claim killed between
    /// its mkdir and its symlink leaves one (gc, under the lock, so no
    /// claim is being made in it).
    pub fn sweep_empty(&self) -> Result<()> {
        for entry in fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                let _ = fs::remove_dir(&path); // fails, as it should, on a dir with claims
            }
        }
        Ok(())
    }

    /// Every claim (gc).
    pub fn all(&self) -> Result<Vec<Claim>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some((proto, port)) = name.split_once('-') else { continue };
            let (Ok(proto), Ok(port)) = (proto.parse::<Proto>(), port.parse::<u16>()) else { continue };
            out.extend(self.holders(proto, port)?);
        }
        Ok(out)
    }

    /// The claims on one port.
    fn holders(&self, proto: Proto, port: u16) -> Result<Vec<Claim>> {
        let dir = self.port_dir(proto, port);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let host_ip = match name.as_str() {
                ANY => None,
                ip => match ip.parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => continue,
                },
            };
            if let Ok(owner) = fs::read_link(entry.path()) {
                out.push(Claim { proto, port, host_ip, owner: owner.to_string_lossy().into_owned() });
            }
        }
        Ok(out)
    }
}

/// Why a process on the node holds the port already, if one does: a bind
/// test in the calling thread's namespace (the node's). SCTP is not tested.
fn in_use(proto: Proto, ip: Option<Ipv4Addr>, port: u16) -> Option<String> {
    let addr = SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    let res = match proto {
        Proto::Tcp => TcpListener::bind(addr).map(drop),
        Proto::Udp => UdpSocket::bind(addr).map(drop),
        Proto::Sctp => Ok(()),
    };
    match res {
        Ok(()) => None,
        Err(e) if e.kind() == ErrorKind::AddrInUse => Some("in use by a process on the node".into()),
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => Some("not an address of this node".into()),
        // Anything else (no permission for a low port as non-root…) is not a conflict.
        Err(_) => None,
    }
}

/// The node's ephemeral port range (net.ipv4.ip_local_port_range).
fn ephemeral_range() -> (u16, u16) {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|s| s.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if lo > 0 && lo <= hi => (lo, hi),
        _ => (32768, 60999),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    #[test]
    fn conflicts_ranges_and_release() {
        let d = tempfile::tempdir().unwrap();
        let c = Claims::open(d.path()).unwrap();
        // High ports that nothing on a test machine listens on.
        let m = c.claim("a", &[spec("41000-41002:80-82"), spec("41000:53/udp")]).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[2], Mapping { proto: Proto::Tcp, host_ip: None, host_port: 41002, ctr_port: 82 });
        // tcp and udp of one number are different ports.
        let err = c.claim("b", &[spec("41003:1"), spec("41001:80")]).unwrap_err().to_string();
        assert!(err.contains("0.0.0.0:41001/tcp is already published by endpoint a"), "{err}");
        // All or nothing: b's 41003 was given back.
        assert!(c.all().unwrap().iter().all(|cl| cl.owner == "a"));
        fs::create_dir(c.port_dir(Proto::Udp, 41999)).unwrap(); // a claim killed after its mkdir
        c.sweep_empty().unwrap();
        assert!(!c.port_dir(Proto::Udp, 41999).exists() && c.port_dir(Proto::Tcp, 41000).exists());
        // `any` and one address exclude each other.
        let err = c.claim("b", &[spec("127.0.0.1:41000:80")]).unwrap_err().to_string();
        assert!(err.contains("already published by endpoint a"), "{err}");
        c.release("b", &m).unwrap(); // not b's: nothing happens
        assert_eq!(c.all().unwrap().len(), 4);
        c.release("a", &m).unwrap();
        assert!(c.all().unwrap().is_empty());
        assert_eq!(fs::read_dir(d.path().join("ports")).unwrap().count(), 0);
        // Free ports come from the ephemeral range, distinct per claim.
        let (lo, hi) = ephemeral_range();
        let free = c.claim("c", &[spec("80"), spec("81")]).unwrap();
        assert!(free.iter().all(|m| (lo..=hi).contains(&m.host_port)));
        assert_ne!(free[0].host_port, free[1].host_port);
    }

    #[test]
    fn a_listening_process_is_a_conflict() {
        let d = tempfile::tempdir().unwrap();
        let c = Claims::open(d.path()).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let err = c.claim("a", &[spec(&format!("{port}:80"))]).unwrap_err().to_string();
        assert!(err.contains("in use by a process on the node"), "{err}");
        let err = c.claim("a", &[spec(&format!("192.0.2.77:{port}:80"))]).unwrap_err().to_string();
        assert!(err.contains("not an address of this node"), "{err}");
        assert!(c.all().unwrap().is_empty());
    }
}
